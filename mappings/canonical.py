"""The canonical model: the hub every system maps to and from (never system to system).

Inbound mappings produce these shapes; outbound mappings read them. Money is ``Decimal`` with an
ISO 4217 code beside it; references to other records are canonical ids (found through bindings).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from billing.money import Currency

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


def _known_currency(code: str) -> str:
    Currency.of(code)  # raises ValueError naming an unknown code
    return code


class CanonicalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Address(CanonicalModel):
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None


class Customer(CanonicalModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    account_number: str | None = None
    email: str | None = None
    phone: str | None = None
    currency: CurrencyCode
    billing_address: Address = Field(default_factory=Address)
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    active: bool = True
    #: Where invoices and reminders go (else ``email``).
    billing_email: str | None = None
    #: How the customer pays: decides card collection (Stripe) and SEPA direct debit.
    payment_method: Literal["card", "bank_transfer", "direct_debit", "cash", "cheque"] | None = None
    stripe_customer_id: str | None = None
    iban: str | None = None
    bic: str | None = None
    sepa_mandate_id: str | None = None
    sepa_mandate_signed_on: dt.date | None = None
    #: The dunning schedule this customer follows (billsync.yaml ``dunning.groups``).
    dunning_group: str | None = None
    #: How invoices reach the customer: ``email`` (the default when there is an address) or ``post``
    #: (listed for printing).
    invoice_delivery: Literal["email", "post"] | None = None
    #: The language of invoice e-mails (BCP 47: ``de``, ``fr-CA``); a value that is not a language tag
    #: falls back to ``delivery.default_language`` rather than holding up the customer's invoices.
    language: Annotated[str, StringConstraints(max_length=35)] | None = None
    #: For structured e-invoices: the buyer's VAT number (BT-48), the reference the buyer asks for
    #: (BT-10; XRechnung: the Leitweg-ID), its electronic address (BT-49, e.g. a Peppol id) with the
    #: EAS scheme, and the format it wants invoices in (else the PDF).
    vat_id: Annotated[str, StringConstraints(max_length=40)] | None = None
    buyer_reference: Annotated[str, StringConstraints(max_length=100)] | None = None
    electronic_address: Annotated[str, StringConstraints(max_length=100)] | None = None
    electronic_address_scheme: Annotated[str, StringConstraints(max_length=10)] | None = None
    invoice_format: Literal["pdf", "ubl", "peppol", "xrechnung", "cii", "facturx"] | None = None

    _currency = field_validator("currency")(_known_currency)


class Product(CanonicalModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    description: str | None = None
    active: bool = True


class Price(CanonicalModel):
    product_id: str
    currency: CurrencyCode
    unit_amount: Decimal
    active: bool = True

    _currency = field_validator("currency")(_known_currency)


class Order(CanonicalModel):
    customer_id: str
    number: str | None = None
    currency: CurrencyCode
    effective_date: dt.date
    end_date: dt.date | None = None
    status: Literal["draft", "activated", "cancelled"]

    _currency = field_validator("currency")(_known_currency)


class OrderLine(CanonicalModel):
    order_id: str
    product_id: str
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal | None = Field(default=None, ge=0)
    description: str | None = None


class PaymentAllocation(CanonicalModel):
    invoice_id: str
    amount: Decimal = Field(gt=0)


class Payment(CanonicalModel):
    """Money received from a customer, allocated to one or more invoices (the rest is credit)."""

    customer_id: str
    amount: Decimal = Field(gt=0)
    currency: CurrencyCode
    received_on: dt.date
    method: Literal["card", "bank_transfer", "direct_debit", "cash", "cheque", "gateway", "other"] = "other"
    reference: str | None = None
    allocations: list[PaymentAllocation] = Field(default_factory=list)

    _currency = field_validator("currency")(_known_currency)


class CreditNoteLine(CanonicalModel):
    description: str
    amount: Decimal
    product_id: str | None = None


class CreditNote(CanonicalModel):
    """Part or all of an invoice given back, with its own number; what accounting systems book."""

    number: str
    customer_id: str
    invoice_id: str
    currency: CurrencyCode
    issue_date: dt.date
    reason: str
    total: Decimal = Field(ge=0)
    lines: list[CreditNoteLine] = Field(default_factory=list)

    _currency = field_validator("currency")(_known_currency)


class CreditApplication(CanonicalModel):
    """Some of a credit note set against one invoice (in QBO: a zero-total Payment linking both)."""

    customer_id: str
    credit_note_id: str
    invoice_id: str
    amount: Decimal = Field(gt=0)
    currency: CurrencyCode
    applied_on: dt.date
    reference: str

    _currency = field_validator("currency")(_known_currency)


class InvoiceStatus(CanonicalModel):
    """Where an invoice stands with the customer; what flows back to the ERP and the CRM."""

    invoice_id: str
    number: str
    status: Literal["open", "partially_paid", "paid", "overdue", "void", "uncollectible"]
    currency: CurrencyCode
    amount_paid: Decimal = Field(ge=0)
    amount_due: Decimal = Field(ge=0)
    paid_on: dt.date | None = None

    _currency = field_validator("currency")(_known_currency)


class InvoiceVoid(CanonicalModel):
    """An invoice cancelled before anything was paid on it: the accounting system voids its copy
    (the number stays used there too)."""

    invoice_id: str
    number: str
    voided_on: dt.date
    reason: str


class CustomerBalance(CanonicalModel):
    """Where a customer stands with their invoices; what flows back to the CRM's account."""

    customer_id: str
    payment_status: Literal["none", "open", "partially_paid", "paid", "overdue", "uncollectible"]
    currency: CurrencyCode | None = None
    balance: Decimal = Field(ge=0)
    overdue_amount: Decimal = Field(ge=0)
    credit: Decimal = Field(ge=0)
    last_payment_date: dt.date | None = None
    open_invoices: int = Field(ge=0)


class OrderBalance(CanonicalModel):
    """Where the invoices billed from one CRM order stand; what flows back to the CRM's order."""

    order_id: str
    payment_status: Literal["none", "open", "partially_paid", "paid", "overdue", "uncollectible"]
    currency: CurrencyCode | None = None
    balance: Decimal = Field(ge=0)
    overdue_amount: Decimal = Field(ge=0)
    last_payment_date: dt.date | None = None


ENTITY_MODELS: dict[str, type[CanonicalModel]] = {
    "customer": Customer,
    "product": Product,
    "price": Price,
    "order": Order,
    "order_line": OrderLine,
    "payment": Payment,
    "credit_note": CreditNote,
    "credit_application": CreditApplication,
    "invoice_status": InvoiceStatus,
    "invoice_void": InvoiceVoid,
    "customer_balance": CustomerBalance,
    "order_balance": OrderBalance,
}


def validate_entity(entity: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate ``data`` as canonical ``entity``; return it as JSON-safe plain data (Decimals as str).

    What ``model_validate`` and ``model_dump(mode="json", exclude_none=True)`` do, called on the
    model's validator and serializer directly: a pull validates every record, and the two wrappers
    were a fifth of the cost."""
    model = ENTITY_MODELS[entity]
    instance = model.__pydantic_validator__.validate_python(data)
    dumped: dict[str, Any] = model.__pydantic_serializer__.to_python(instance, mode="json", exclude_none=True)
    return dumped
