"""The Salesforce objects and fields billsync works with, as in the standard data model.

Used offline by ``billsync mappings check`` (a misspelt source field is caught before any call) and
by the sandbox, which serves exactly these fields. Custom fields (``__c``) on standard objects exist
only in a given org, so they are accepted without a check; the custom objects billsync itself asks an
org to install (:data:`CUSTOM_OBJECTS`) are known field by field, and so are the custom fields it asks
the admin to add to Account and Order (:data:`CUSTOM_FIELDS`: payment status written back, and the
payment profile the CRM holds).
"""

from __future__ import annotations

#: Field types: id, reference, boolean, double, currency, date, datetime, string (and its kin).
SYSTEM_FIELDS = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "CreatedById": "reference",
    "LastModifiedDate": "datetime",
    "LastModifiedById": "reference",
    "SystemModstamp": "datetime",
}
READ_ONLY_FIELDS = frozenset(f.lower() for f in SYSTEM_FIELDS)
_ADDRESS = {
    "BillingStreet": "textarea",
    "BillingCity": "string",
    "BillingState": "string",
    "BillingPostalCode": "string",
    "BillingCountry": "string",
}
STANDARD_FIELDS: dict[str, dict[str, str]] = {
    "Account": {
        "Name": "string",
        "AccountNumber": "string",
        "Type": "picklist",
        "Phone": "phone",
        "Website": "url",
        "Description": "textarea",
        "ParentId": "reference",
        "OwnerId": "reference",
        "CurrencyIsoCode": "picklist",
        **_ADDRESS,
    },
    "Contact": {
        "AccountId": "reference",
        "FirstName": "string",
        "LastName": "string",
        "Name": "string",
        "Email": "email",
        "Phone": "phone",
        "OwnerId": "reference",
    },
    "Product2": {
        "Name": "string",
        "ProductCode": "string",
        "Description": "textarea",
        "Family": "picklist",
        "IsActive": "boolean",
        "QuantityUnitOfMeasure": "picklist",
        "CurrencyIsoCode": "picklist",
    },
    "Pricebook2": {
        "Name": "string",
        "Description": "textarea",
        "IsActive": "boolean",
        "IsStandard": "boolean",
    },
    "PricebookEntry": {
        "Name": "string",
        "Pricebook2Id": "reference",
        "Product2Id": "reference",
        "ProductCode": "string",
        "UnitPrice": "currency",
        "IsActive": "boolean",
        "UseStandardPrice": "boolean",
        "CurrencyIsoCode": "picklist",
    },
    "Order": {
        "AccountId": "reference",
        "Pricebook2Id": "reference",
        "OrderNumber": "string",
        "Status": "picklist",
        "Type": "picklist",
        "EffectiveDate": "date",
        "EndDate": "date",
        "ActivatedDate": "datetime",
        "Description": "textarea",
        "PoNumber": "string",
        "TotalAmount": "currency",
        "CurrencyIsoCode": "picklist",
        "OwnerId": "reference",
        **_ADDRESS,
    },
    "OrderItem": {
        "OrderId": "reference",
        "Product2Id": "reference",
        "PricebookEntryId": "reference",
        "OrderItemNumber": "string",
        "Quantity": "double",
        "UnitPrice": "currency",
        "ListPrice": "currency",
        "TotalPrice": "currency",
        "ServiceDate": "date",
        "EndDate": "date",
        "Description": "textarea",
    },
}


#: The custom objects billsync writes to (installed in the org by its admin). Invoice status flows
#: back to the CRM here, upserted by ``Invoice_Number__c`` in sObject collections of 200.
CUSTOM_OBJECTS: dict[str, dict[str, str]] = {
    "Billsync_Invoice__c": {
        "Name": "string",
        "Invoice_Number__c": "string",
        "Account__c": "reference",
        "Status__c": "picklist",
        "Total__c": "currency",
        "Amount_Paid__c": "currency",
        "Amount_Due__c": "currency",
        "Currency__c": "string",
        "Issue_Date__c": "date",
        "Due_Date__c": "date",
        "Paid_On__c": "date",
        "OwnerId": "reference",
    },
}

#: Payment status of an Account (all its invoices) or an Order (the invoices billed from it), as
#: billsync writes it back: "No Invoices" until the first invoice, then the worst state that applies
#: (Overdue over Partially Paid over Open); Paid when nothing is due; Void / Uncollectible when every
#: invoice was voided / written off.
PAYMENT_STATUS_VALUES = ("No Invoices", "Open", "Partially Paid", "Paid", "Overdue", "Void", "Uncollectible")
#: How an account pays (billsync's canonical methods card, bank_transfer, direct_debit, cheque, cash).
#: How a customer wants its invoices: the PDF, or a structured e-invoice (with the PDF).
INVOICE_FORMAT_VALUES = ("PDF", "UBL", "Peppol", "XRechnung", "CII", "Factur-X")
PAYMENT_METHOD_VALUES = ("Card", "Bank Transfer", "Direct Debit", "Cheque", "Cash")

_PAYMENT_STATUS_FIELDS = {
    "Payment_Status__c": "picklist",
    "Balance__c": "currency",  # open amount, in the record's currency
    "Last_Payment_Date__c": "date",
    "Overdue_Amount__c": "currency",
}

#: Custom fields billsync asks the admin to add to standard objects (all nillable, default null).
CUSTOM_FIELDS: dict[str, dict[str, str]] = {
    "Account": {
        **_PAYMENT_STATUS_FIELDS,
        "Billing_Email__c": "email",
        "Payment_Method__c": "picklist",
        "Stripe_Customer_Id__c": "string",
        "IBAN__c": "string",
        "BIC__c": "string",
        "SEPA_Mandate_Id__c": "string",
        "SEPA_Mandate_Date__c": "date",
        "Dunning_Group__c": "string",
        "Invoice_Delivery__c": "picklist",
        "Invoice_Language__c": "string",
        "Invoice_Format__c": "picklist",
        "VAT_Number__c": "string",
        "Buyer_Reference__c": "string",
        "E_Invoice_Address__c": "string",
        "E_Invoice_Scheme__c": "string",
    },
    "Order": dict(_PAYMENT_STATUS_FIELDS),
}

#: Lengths of text fields billsync defines (longer values: STRING_TOO_LONG). IBAN 34 and BIC 11 are
#: ISO 13616 / ISO 9362 maxima, a SEPA mandate reference has 35 characters at most, email fields 80.
FIELD_LENGTHS: dict[tuple[str, str], int] = {
    ("Account", "Billing_Email__c"): 80,
    ("Account", "Stripe_Customer_Id__c"): 255,
    ("Account", "IBAN__c"): 34,
    ("Account", "BIC__c"): 11,
    ("Account", "SEPA_Mandate_Id__c"): 35,
    ("Account", "Dunning_Group__c"): 80,
    ("Account", "Invoice_Language__c"): 10,
    ("Account", "VAT_Number__c"): 40,
    ("Account", "Buyer_Reference__c"): 100,
    ("Account", "E_Invoice_Address__c"): 100,
    ("Account", "E_Invoice_Scheme__c"): 10,
}

#: Fields defined as "External ID" (unique): the only ones an upsert may match on.
EXTERNAL_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "Billsync_Invoice__c": ("Invoice_Number__c",),
}

#: Restricted picklists: any other value is refused by the org (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST).
PICKLIST_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Billsync_Invoice__c", "Status__c"): (
        "Open",
        "Partially Paid",
        "Paid",
        "Overdue",
        "Void",
        "Uncollectible",
    ),
    ("Account", "Payment_Status__c"): PAYMENT_STATUS_VALUES,
    ("Order", "Payment_Status__c"): PAYMENT_STATUS_VALUES,
    ("Account", "Payment_Method__c"): PAYMENT_METHOD_VALUES,
    ("Account", "Invoice_Delivery__c"): ("Email", "Post"),
    ("Account", "Invoice_Format__c"): INVOICE_FORMAT_VALUES,
}

#: Suffix of fields and relationships an org defines itself; they cannot be checked offline.
CUSTOM_SUFFIXES = ("__c", "__r")


def object_fields(sobject: str) -> dict[str, str] | None:
    """Every field of a known object (system fields included), or None if billsync does not know it."""
    fields = STANDARD_FIELDS.get(sobject) or CUSTOM_OBJECTS.get(sobject)
    if fields is None:
        return None
    return {**SYSTEM_FIELDS, **fields, **CUSTOM_FIELDS.get(sobject, {})}


def open_suffixes(sobject: str) -> tuple[str, ...]:
    """Field endings not checked offline on ``sobject``: none on billsync's own objects (every field is
    known, so a misspelt ``Stauts__c`` is caught), ``__c``/``__r`` on standard objects."""
    return () if sobject in CUSTOM_OBJECTS else CUSTOM_SUFFIXES


def relationship_names(fields: dict[str, str]) -> set[str]:
    """``AccountId`` -> ``Account``, ``Account__c`` -> ``Account__r``: the names a dotted path starts with."""
    names = {name[:-2] for name, kind in fields.items() if kind == "reference" and name.endswith("Id")}
    names |= {
        name[:-3] + "__r" for name, kind in fields.items() if kind == "reference" and name.endswith("__c")
    }
    return names
