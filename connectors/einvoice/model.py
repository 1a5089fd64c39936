"""The EN 16931 semantic model of one invoice or credit note: what the UBL and CII writers write.

Why a model of its own: EN 16931 defines the invoice once (business terms BT-n, groups BG-n) and
two syntaxes for it (UBL 2.1 and UN/CEFACT CII D16B). Writing both from the same values keeps them
equivalent, and every rule of the norm can be traced to a field here (the BT numbers in the
comments). billsync's stored invoice is turned into this model in ``sync_engine.einvoices``; the
writers only serialise.

Amounts are ``Decimal`` in the invoice currency. EN 16931 allows at most two decimals on document
and line amounts (BR-DEC-*); prices (BT-146) may have more. The builder, not the writer, rounds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "CREDIT_NOTE",
    "INVOICE",
    "PROFILES",
    "Allowance",
    "EInvoice",
    "Line",
    "Party",
    "PaymentMeans",
    "TaxSubtotal",
]

#: BT-3 invoice type codes (UNTDID 1001) billsync issues.
INVOICE: Final = "380"
CREDIT_NOTE: Final = "381"

Format = Literal["ubl", "peppol", "xrechnung", "cii", "facturx"]

#: BT-24 specification identifier and BT-23 business process, per output format.
PROFILES: Final[dict[str, tuple[str, str | None]]] = {
    "ubl": ("urn:cen.eu:en16931:2017", None),
    "cii": ("urn:cen.eu:en16931:2017", None),
    "facturx": ("urn:cen.eu:en16931:2017", None),
    "peppol": (
        "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0",
        "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0",
    ),
    "xrechnung": (
        "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
        "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0",
    ),
}


@dataclass(frozen=True)
class Party:
    """BG-4 seller / BG-7 buyer."""

    name: str  # BT-27 / BT-44
    country: str  # BT-40 / BT-55: ISO 3166-1 alpha-2
    street: str | None = None  # BT-35 / BT-50
    additional_street: str | None = None  # BT-36 / BT-51
    city: str | None = None  # BT-37 / BT-52
    postal_code: str | None = None  # BT-38 / BT-53
    subdivision: str | None = None  # BT-39 / BT-54
    vat_id: str | None = None  # BT-31 / BT-48, with the country prefix (DE123456789)
    tax_registration_id: str | None = None  # BT-32: a local tax number (seller only)
    legal_id: str | None = None  # BT-30 / BT-47: company register number
    trading_name: str | None = None  # BT-28 / BT-45
    #: BT-34 / BT-49 electronic address and its scheme (EAS code: 0088 GLN, 9930 DE VAT, EM e-mail)
    electronic_address: str | None = None
    electronic_address_scheme: str | None = None
    contact_name: str | None = None  # BT-41 / BT-56
    contact_phone: str | None = None  # BT-42 / BT-57
    contact_email: str | None = None  # BT-43 / BT-58
    identifier: str | None = None  # BT-29 / BT-46: the seller's / buyer's own id


@dataclass(frozen=True)
class Allowance:
    """BG-27 line allowance (a discount): its amount and why."""

    amount: Decimal  # BT-136
    reason: str = "Discount"  # BT-139
    reason_code: str | None = "95"  # BT-140 (UNTDID 5189: 95 = discount)


@dataclass(frozen=True)
class Line:
    """BG-25 invoice line. ``net_amount`` = quantity x net price - allowances (BT-131)."""

    id: str  # BT-126
    name: str  # BT-153
    quantity: Decimal  # BT-129
    net_price: Decimal  # BT-146
    net_amount: Decimal  # BT-131
    vat_category: str  # BT-151 (UNCL 5305: S, Z, E, AE, K, G, O, L, M)
    vat_rate: Decimal | None  # BT-152 (None for category O)
    unit_code: str = "C62"  # BT-130 (UN/ECE Rec 20: C62 one, HUR hour, MON month)
    description: str | None = None  # BT-154
    seller_item_id: str | None = None  # BT-155
    period_start: dt.date | None = None  # BT-134
    period_end: dt.date | None = None  # BT-135 (the last day, inclusive)
    allowances: tuple[Allowance, ...] = ()
    #: BT-149: the quantity ``net_price`` is for (None: one unit). Lets a line whose amount is not
    #: quantity x a short price state its price exactly (the price of all ``quantity`` units).
    base_quantity: Decimal | None = None


@dataclass(frozen=True)
class TaxSubtotal:
    """BG-23 VAT breakdown, one per category and rate."""

    category: str  # BT-118
    rate: Decimal | None  # BT-119
    taxable: Decimal  # BT-116
    tax: Decimal  # BT-117
    exemption_reason: str | None = None  # BT-120
    exemption_code: str | None = None  # BT-121 (VATEX)


@dataclass(frozen=True)
class PaymentMeans:
    """BG-16 payment instructions."""

    code: (
        str  # BT-81 (UNTDID 4461: 58 SEPA credit transfer, 30 credit transfer, 59 SEPA direct debit, 48 card)
    )
    remittance: str | None = None  # BT-83: what the payer should quote (the invoice number)
    iban: str | None = None  # BT-84
    account_name: str | None = None  # BT-85
    bic: str | None = None  # BT-86
    mandate_id: str | None = None  # BT-89
    creditor_id: str | None = None  # BT-90
    debited_account: str | None = None  # BT-91
    card_last4: str | None = None  # BT-87


@dataclass(frozen=True)
class EInvoice:
    """BG-0: one invoice (type 380) or credit note (381) with everything EN 16931 needs."""

    number: str  # BT-1
    issue_date: dt.date  # BT-2
    type_code: str  # BT-3
    currency: str  # BT-5
    seller: Party  # BG-4
    buyer: Party  # BG-7
    lines: tuple[Line, ...]  # BG-25
    taxes: tuple[TaxSubtotal, ...]  # BG-23
    line_total: Decimal  # BT-106
    tax_exclusive: Decimal  # BT-109
    tax_total: Decimal  # BT-110
    tax_inclusive: Decimal  # BT-112
    payable: Decimal  # BT-115
    prepaid: Decimal = Decimal("0")  # BT-113
    allowance_total: Decimal = Decimal("0")  # BT-107 (document level; billsync uses line allowances)
    charge_total: Decimal = Decimal("0")  # BT-108
    due_date: dt.date | None = None  # BT-9
    buyer_reference: str | None = None  # BT-10 (XRechnung: the Leitweg-ID)
    order_reference: str | None = None  # BT-13
    preceding_invoice: str | None = None  # BT-25 (credit notes: the invoice credited)
    preceding_invoice_date: dt.date | None = None  # BT-26
    note: str | None = None  # BT-22
    payment_terms: str | None = None  # BT-20
    period_start: dt.date | None = None  # BT-73
    period_end: dt.date | None = None  # BT-74 (inclusive)
    payment_means: tuple[PaymentMeans, ...] = ()
    tax_currency: str | None = None  # BT-6 (not used: VAT is accounted in the invoice currency)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_credit_note(self) -> bool:
        return self.type_code == CREDIT_NOTE
