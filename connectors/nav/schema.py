"""The NAV page and codeunit services billsync uses: their fields, types and required values.

One table serves three readers: ``billsync mappings check`` (a misspelt target field such as
``Sell_to_Customer_Nr`` is caught offline, like :mod:`connectors.quickbooks.schema`), the sandbox's
WSDL generator (:mod:`connectors.nav.wsdl`) and the sandbox's validation. Names follow what NAV
publishes for the standard pages: a field's caption with every non-alphanumeric character replaced
by ``_`` (``Post Code`` -> ``Post_Code``, ``E-Mail`` -> ``E_Mail``), ``Key`` first, and a sub-page
part (``SalesLines``) holding a ``<Subpage>_List`` of line records. Option values are published the
same way (``Pending Approval`` -> ``Pending_Approval``, see :func:`option_name`). A page offers NAV's
full set of operations unless it is read-only: ``PaymentStatusEntries`` publishes only ``Read`` and
``ReadMultiple``, as NAV does for a page that allows no insert, modify or delete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: XSD type of each scalar kind NAV publishes (Code/Text -> string, Decimal, Date, Boolean, Integer).
XSD_TYPES = {
    "string": "xsd:string",
    "decimal": "xsd:decimal",
    "date": "xsd:date",
    "boolean": "xsd:boolean",
    "integer": "xsd:int",
}

#: Page operations NAV publishes for an editable page, in NAV's order.
PAGE_OPERATIONS = (
    "Read",
    "ReadMultiple",
    "IsUpdated",
    "Create",
    "CreateMultiple",
    "Update",
    "UpdateMultiple",
    "Delete",
)
#: What NAV publishes for a page that allows no insert, modify or delete.
READ_ONLY_OPERATIONS = ("Read", "ReadMultiple")


def option_name(caption: str) -> str:
    """An option value as NAV's WSDL publishes it: ``Partially Paid`` -> ``Partially_Paid``, ``""`` -> ``_blank_``."""
    return re.sub(r"[^0-9A-Za-z]", "_", caption) or "_blank_"


@dataclass(frozen=True)
class PageSpec:
    """One page (or sub-page) as its WSDL publishes it.

    ``fields`` maps a field to ``string``/``decimal``/``date``/``boolean``/``integer``, to an enum
    name of ``enums`` or, for a part, to the sub-page's name. ``key_field`` is the primary key
    ``Read`` takes. ``operations`` are those the page's WSDL publishes (and the sandbox answers).
    """

    name: str
    fields: dict[str, str]
    key_field: str = "No"
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)  # part field -> sub-page name
    read_only: frozenset[str] = frozenset({"Key"})
    required_on_create: tuple[str, ...] = ()
    operations: tuple[str, ...] = PAGE_OPERATIONS

    @property
    def writable(self) -> bool:
        return "Create" in self.operations


SALES_INVOICE_LINE = PageSpec(
    name="Sales_Invoice_Line",
    fields={
        "Key": "string",
        "Type": "Type",
        "No": "string",
        "Description": "string",
        "Quantity": "decimal",
        "Unit_Price": "decimal",
        "Line_Amount": "decimal",
    },
    key_field="Key",
    enums={"Type": ("_blank_", "G_L_Account", "Item", "Resource", "Fixed_Asset", "Charge_Item")},
)

CUSTOMER = PageSpec(
    name="Customer",
    fields={
        "Key": "string",
        "No": "string",
        "Name": "string",
        "Address": "string",
        "City": "string",
        "Post_Code": "string",
        "County": "string",
        "Country_Region_Code": "string",
        "Phone_No": "string",
        "E_Mail": "string",
        "Currency_Code": "string",
        "Payment_Terms_Code": "string",
        "Last_Date_Modified": "date",
    },
    read_only=frozenset({"Key", "Last_Date_Modified"}),
    required_on_create=("No", "Name"),
)

SALES_INVOICE = PageSpec(
    name="SalesInvoice",
    fields={
        "Key": "string",
        "No": "string",
        "Sell_to_Customer_No": "string",
        "Sell_to_Customer_Name": "string",
        "External_Document_No": "string",
        "Posting_Date": "date",
        "Document_Date": "date",
        "Due_Date": "date",
        "Currency_Code": "string",
        "Status": "Status",
        "SalesLines": "Sales_Invoice_Line",
    },
    enums={"Status": ("Open", "Released", "Pending_Approval", "Pending_Prepayment")},
    parts={"SalesLines": "Sales_Invoice_Line"},
    read_only=frozenset({"Key", "Sell_to_Customer_Name", "Status"}),
    required_on_create=("Sell_to_Customer_No",),
)

#: The statuses billsync records through codeunit ``PaymentStatus`` (its ``status`` parameter).
PAYMENT_STATUS_STATUSES = ("Open", "Partially Paid", "Paid", "Overdue", "Void", "Uncollectible")

#: The "Payment Status Entry" table billsync's extension adds, one entry per status recorded by
#: ``RecordPaymentStatus``, published read-only so statuses can be read back (audits, the demo).
#: Entries are appended: an invoice's current status is its entry with the highest ``Entry_No``.
PAYMENT_STATUS_ENTRIES = PageSpec(
    name="PaymentStatusEntries",
    fields={
        "Key": "string",
        "Entry_No": "integer",
        "Invoice_No": "string",
        "Status": "Status",
        "Amount_Paid": "decimal",
        "Amount_Due": "decimal",
        "Currency_Code": "string",
        "Paid_On": "date",
    },
    key_field="Entry_No",
    enums={"Status": tuple(option_name(status) for status in PAYMENT_STATUS_STATUSES)},
    read_only=frozenset(
        {"Key", "Entry_No", "Invoice_No", "Status", "Amount_Paid", "Amount_Due", "Currency_Code", "Paid_On"}
    ),
    operations=READ_ONLY_OPERATIONS,
)

PAGES: dict[str, PageSpec] = {
    CUSTOMER.name: CUSTOMER,
    SALES_INVOICE.name: SALES_INVOICE,
    PAYMENT_STATUS_ENTRIES.name: PAYMENT_STATUS_ENTRIES,
}
SUBPAGES: dict[str, PageSpec] = {SALES_INVOICE_LINE.name: SALES_INVOICE_LINE}


@dataclass(frozen=True)
class CodeunitOperation:
    """One codeunit function: its parameters in order (NAV sends every one, ``minOccurs=1``)."""

    name: str
    parameters: tuple[tuple[str, str], ...]
    returns: str = "boolean"


CODEUNITS: dict[str, dict[str, CodeunitOperation]] = {
    "PaymentStatus": {
        "RecordPaymentStatus": CodeunitOperation(
            name="RecordPaymentStatus",
            parameters=(
                ("invoiceNo", "string"),
                ("status", "string"),
                ("currencyCode", "string"),
                ("amountPaid", "decimal"),
                ("amountDue", "decimal"),
                ("paidOn", "date"),
            ),
        )
    }
}

#: Objects a mapping may target (pages, and the payment-status codeunit's parameters) -> fields.
OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    **{name: tuple(spec.fields) for name, spec in PAGES.items()},
    "PaymentStatus": tuple(name for name, _ in CODEUNITS["PaymentStatus"]["RecordPaymentStatus"].parameters),
}

#: Fields a write must carry. ``paidOn`` may be left out: the connector sends NAV's blank date.
REQUIRED_ON_CREATE: dict[str, tuple[str, ...]] = {
    **{name: spec.required_on_create for name, spec in PAGES.items()},
    "PaymentStatus": ("invoiceNo", "status", "currencyCode", "amountPaid", "amountDue"),
}
