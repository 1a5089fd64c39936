"""Top-level fields of the QuickBooks Online entities billsync writes, and those a create requires.

From Intuit's QBO v3 API reference (minor version 75). ``billsync mappings check`` uses it to catch a
misspelt target field (``DisplayNme``) or a required one left unmapped before any call is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_COMMON = ("Id", "SyncToken", "MetaData", "domain", "sparse")

ENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "Customer": (
        *_COMMON,
        "DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix", "FullyQualifiedName",
        "CompanyName", "PrintOnCheckName", "Active", "PrimaryPhone", "AlternatePhone", "Mobile", "Fax",
        "PrimaryEmailAddr", "WebAddr", "DefaultTaxCodeRef", "Taxable", "BillAddr", "ShipAddr", "Notes",
        "Job", "BillWithParent", "ParentRef", "Level", "SalesTermRef", "PaymentMethodRef", "Balance",
        "OpenBalanceDate", "BalanceWithJobs", "CurrencyRef", "PreferredDeliveryMethod", "ResaleNum",
        "TaxExemptionReasonId", "PrimaryTaxIdentifier", "SecondaryTaxIdentifier", "GSTIN", "BusinessNumber",
    ),
    "Item": (
        *_COMMON,
        "Name", "Sku", "Description", "Active", "SubItem", "ParentRef", "Level", "FullyQualifiedName",
        "Taxable", "SalesTaxIncluded", "UnitPrice", "Type", "IncomeAccountRef", "PurchaseDesc",
        "PurchaseTaxIncluded", "PurchaseCost", "ExpenseAccountRef", "AssetAccountRef", "TrackQtyOnHand",
        "QtyOnHand", "InvStartDate", "SalesTaxCodeRef", "PurchaseTaxCodeRef", "ClassRef",
    ),
    "Invoice": (
        *_COMMON,
        "DocNumber", "TxnDate", "DueDate", "CustomerRef", "Line", "CurrencyRef", "ExchangeRate",
        "PrivateNote", "CustomerMemo", "BillAddr", "ShipAddr", "BillEmail", "BillEmailCc", "BillEmailBcc",
        "SalesTermRef", "TxnTaxDetail", "ApplyTaxAfterDiscount", "PrintStatus", "EmailStatus", "Balance",
        "TotalAmt", "Deposit", "DepositToAccountRef", "AllowOnlineCreditCardPayment",
        "AllowOnlineACHPayment", "ClassRef", "DepartmentRef", "CustomField", "GlobalTaxCalculation",
        "LinkedTxn", "TrackingNum", "ShipDate", "ShipMethodRef", "TxnSource",
    ),
    "CreditMemo": (
        *_COMMON,
        "DocNumber", "TxnDate", "CustomerRef", "Line", "CurrencyRef", "ExchangeRate", "PrivateNote",
        "CustomerMemo", "BillAddr", "BillEmail", "TxnTaxDetail", "ApplyTaxAfterDiscount", "PrintStatus",
        "EmailStatus", "Balance", "RemainingCredit", "TotalAmt", "ClassRef", "DepartmentRef",
        "CustomField", "GlobalTaxCalculation", "LinkedTxn", "TxnSource", "SalesTermRef",
    ),
    "Payment": (
        *_COMMON,
        "TxnDate", "TotalAmt", "CustomerRef", "CurrencyRef", "ExchangeRate", "PaymentMethodRef",
        "PaymentRefNum", "DepositToAccountRef", "ARAccountRef", "UnappliedAmt", "ProcessPayment", "Line",
        "PrivateNote", "CreditCardPayment", "TxnSource", "TxnStatus",
    ),
}  # fmt: skip

#: Fields a create must carry (Intuit marks them "Required"; a Service item needs its income account).
REQUIRED_ON_CREATE: dict[str, tuple[str, ...]] = {
    "Customer": ("DisplayName",),
    "Item": ("Name", "Type", "IncomeAccountRef"),
    "Invoice": ("CustomerRef", "Line"),
    "Payment": ("TotalAmt", "CustomerRef"),
    "CreditMemo": ("CustomerRef", "Line"),
}


def applies_credit_only(payment: Mapping[str, Any]) -> bool:
    """A QBO Payment of zero whose lines link a CreditMemo: QBO's way of setting a credit against
    an invoice, not money received."""
    try:
        total = Decimal(str(payment.get("TotalAmt") or "0"))
    except ArithmeticError:
        return False
    links = [
        link.get("TxnType")
        for line in payment.get("Line") or []
        if isinstance(line, Mapping)
        for link in (line.get("LinkedTxn") or [])
        if isinstance(link, Mapping)
    ]
    return total == 0 and "CreditMemo" in links
