"""Realistic e-invoices and XML helpers shared by the UBL, CII and Factur-X writer tests.

One set of documents serves every syntax, so that a writer test in one syntax and its counterpart in
the other check the same invoice. Each sample is valid in all six formats (UBL, Peppol BIS 3,
XRechnung UBL, CII, XRechnung CII, Factur-X): that is why the endpoints use Peppol's scheme codes
(Peppol refuses ``EM``, e-mail) and why XRechnung's extra terms (Leitweg-ID, seller contact) are set.
The totals are derived from the lines and the VAT breakdown, as ``sync_engine.einvoices`` does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from lxml import etree

from connectors.einvoice.cii import NSMAP
from connectors.einvoice.model import (
    CREDIT_NOTE,
    INVOICE,
    Allowance,
    EInvoice,
    Line,
    Party,
    PaymentMeans,
    TaxSubtotal,
)
from connectors.einvoice.ubl import CAC, CBC, CREDIT_NOTE_NS, INVOICE_NS
from connectors.einvoice.validation import ValidationReport, format_report

D = Decimal
LEITWEG_ID: Final = "04011000-12345-34"

# -- parties, as the builder fills them from billsync.yaml and the customer record ---------------

GERMAN_SELLER: Final = Party(
    name="Nordlicht Software GmbH",
    trading_name="Nordlicht Cloud",
    country="DE",
    street="Hafenstraße 12",
    additional_street="3. OG",
    city="Hamburg",
    postal_code="20457",
    vat_id="DE123456789",
    tax_registration_id="22/815/08154",
    legal_id="HRB 123456",
    electronic_address="DE123456789",
    electronic_address_scheme="9930",  # DE VAT number; Peppol does not accept EM (e-mail)
    contact_name="Jana Petersen",
    contact_phone="+49 40 1234567",
    contact_email="jana.petersen@nordlicht.example",
)
GERMAN_BUYER: Final = Party(
    name="Stadtwerke Musterstadt GmbH",
    country="DE",
    street="Am Markt 1",
    additional_street="Gebäude B",
    city="Musterstadt",
    postal_code="12345",
    vat_id="DE987654321",
    electronic_address=LEITWEG_ID,
    electronic_address_scheme="0204",  # Leitweg-ID
    contact_name="Zentraler Einkauf",
)
US_SELLER: Final = Party(
    name="Acme Cloud Inc.",
    country="US",
    street="500 Market Street",
    city="San Francisco",
    postal_code="94105",
    subdivision="CA",
    legal_id="5432109",
    identifier="ACME-001",
    electronic_address="123456789",
    electronic_address_scheme="0060",  # DUNS
    contact_name="Billing Team",
    contact_phone="+1 415 555 0100",
    contact_email="billing@acme-cloud.example",
)


def _document(
    number: str,
    issue_date: dt.date,
    lines: tuple[Line, ...],
    taxes: tuple[TaxSubtotal, ...],
    payment_means: PaymentMeans,
    *,
    prepaid: Decimal = D("0"),
    **fields: Any,
) -> EInvoice:
    """An invoice from the German seller to the German (public) buyer in EUR unless ``fields`` say
    otherwise, with totals (BT-106 to BT-115) that agree with its lines and VAT breakdown."""
    line_total = sum((line.net_amount for line in lines), D("0"))
    tax_total = sum((subtotal.tax for subtotal in taxes), D("0"))
    header: dict[str, Any] = {
        "type_code": INVOICE,
        "currency": "EUR",
        "seller": GERMAN_SELLER,
        "buyer": GERMAN_BUYER,
        "buyer_reference": LEITWEG_ID,
    }
    return EInvoice(
        number=number,
        issue_date=issue_date,
        lines=lines,
        taxes=taxes,
        line_total=line_total,
        tax_exclusive=line_total,
        tax_total=tax_total,
        tax_inclusive=line_total + tax_total,
        prepaid=prepaid,
        payable=line_total + tax_total - prepaid,
        payment_means=(payment_means,),
        **(header | fields),
    )


# -- the documents ---------------------------------------------------------------------------------


def german_invoice(*, prepaid: Decimal = D("373.48")) -> EInvoice:
    """German B2G invoice: 19 % and 7 %, a discounted line, a price per 1000, a prepayment
    (``prepaid=D("0")`` for one without: BT-113 is then left out)."""
    lines = (
        Line(
            id="1",
            name="Beratung",
            description="IT-Beratung März 2024",
            seller_item_id="CONS-H",
            quantity=D("10"),
            unit_code="HUR",
            net_price=D("120.00"),
            allowances=(Allowance(amount=D("120.00"), reason="Rabatt 10 %"),),
            net_amount=D("1080.00"),
            vat_category="S",
            vat_rate=D("19"),
            period_start=dt.date(2024, 3, 1),
            period_end=dt.date(2024, 3, 31),
        ),
        Line(
            id="2",
            name="Fachbuch E-Rechnung",
            quantity=D("3"),
            net_price=D("25.00"),
            net_amount=D("75.00"),
            vat_category="S",
            vat_rate=D("7"),
        ),
        Line(  # 1500 SMS at 4.50 per 1000: the price is exact only with its base quantity (BT-149)
            id="3",
            name="SMS-Versand",
            quantity=D("1500"),
            net_price=D("4.50"),
            base_quantity=D("1000"),
            net_amount=D("6.75"),
            vat_category="S",
            vat_rate=D("19"),
        ),
    )
    return _document(
        "RE-2024-0042",
        dt.date(2024, 4, 2),
        lines,
        taxes=(
            TaxSubtotal("S", D("19"), taxable=D("1086.75"), tax=D("206.48")),
            TaxSubtotal("S", D("7"), taxable=D("75.00"), tax=D("5.25")),
        ),
        payment_means=PaymentMeans(
            code="58",
            remittance="RE-2024-0042",
            iban="DE89370400440532013000",
            account_name="Nordlicht Software GmbH",
            bic="COBADEFFXXX",
        ),
        prepaid=prepaid,
        due_date=dt.date(2024, 4, 16),
        order_reference="PO-7781",
        note="Vielen Dank für Ihren Auftrag.",
        payment_terms="Zahlbar innerhalb von 14 Tagen ohne Abzug.",
        period_start=dt.date(2024, 3, 1),
        period_end=dt.date(2024, 3, 31),
    )


def us_invoice() -> EInvoice:
    """US seller, USD, not subject to VAT (category O): no VAT ids anywhere (BR-O-02/03), no rates."""
    line = Line(
        id="1",
        name="Cloud hosting plan Pro",
        quantity=D("12"),
        unit_code="MON",
        net_price=D("49.00"),
        net_amount=D("588.00"),
        vat_category="O",
        vat_rate=None,
    )
    not_subject = TaxSubtotal(
        "O",
        None,
        taxable=D("588.00"),
        tax=D("0.00"),
        exemption_reason="Not subject to VAT",
        exemption_code="VATEX-EU-O",
    )
    return _document(
        "ACME-10017",
        dt.date(2024, 5, 1),
        (line,),
        (not_subject,),
        PaymentMeans(
            code="30",
            remittance="ACME-10017",
            iban="000123456789",  # BT-84 is any account identifier, here a US account number
            account_name="Acme Cloud Inc.",
            bic="CHASUS33",
        ),
        currency="USD",
        seller=US_SELLER,
        buyer=replace(GERMAN_BUYER, vat_id=None),
        due_date=dt.date(2024, 5, 31),
    )


def credit_note() -> EInvoice:
    """Credit note (381) for two hours of RE-2024-0042 (BT-25/26), refunded to the buyer's account."""
    line = Line(
        id="1",
        name="Beratung (Gutschrift)",
        quantity=D("2"),
        unit_code="HUR",
        net_price=D("120.00"),
        net_amount=D("240.00"),
        vat_category="S",
        vat_rate=D("19"),
    )
    return _document(
        "GS-2024-0007",
        dt.date(2024, 4, 20),
        (line,),
        (TaxSubtotal("S", D("19"), taxable=D("240.00"), tax=D("45.60")),),
        PaymentMeans(
            code="58",
            remittance="GS-2024-0007",
            iban="DE02120300000000202051",
            account_name="Stadtwerke Musterstadt GmbH",
        ),
        type_code=CREDIT_NOTE,
        due_date=dt.date(2024, 5, 4),
        preceding_invoice="RE-2024-0042",
        preceding_invoice_date=dt.date(2024, 4, 2),
    )


def direct_debit_invoice() -> EInvoice:
    """Monthly maintenance collected by SEPA direct debit (59): mandate (BT-89), creditor id (BT-90),
    debited IBAN (BT-91)."""
    line = Line(
        id="1",
        name="Wartungsvertrag Mai 2024",
        quantity=D("1"),
        unit_code="MON",
        net_price=D("99.00"),
        net_amount=D("99.00"),
        vat_category="S",
        vat_rate=D("19"),
        period_start=dt.date(2024, 5, 1),
        period_end=dt.date(2024, 5, 31),
    )
    return _document(
        "RE-2024-0051",
        dt.date(2024, 5, 2),
        (line,),
        (TaxSubtotal("S", D("19"), taxable=D("99.00"), tax=D("18.81")),),
        PaymentMeans(
            code="59",
            remittance="RE-2024-0051",
            mandate_id="MANDAT-0815",
            creditor_id="DE98ZZZ09999999999",
            debited_account="DE02120300000000202051",
        ),
        payment_terms="Der Betrag wird am 10.05.2024 per SEPA-Lastschrift eingezogen.",
    )


def usd_invoice() -> EInvoice:
    """The German seller billing in USD (BT-5), paid by non-SEPA transfer (30) after a prepayment;
    its price has more than two decimals (allowed for BT-146 only)."""
    line = Line(
        id="1",
        name="Support plan",
        quantity=D("1.5"),
        net_price=D("333.333333"),
        net_amount=D("500.00"),
        vat_category="S",
        vat_rate=D("19.00"),
        unit_code="MON",
    )
    return _document(
        "RE-2024-0044",
        dt.date(2024, 4, 2),
        (line,),
        (TaxSubtotal("S", D("19.00"), taxable=D("500.00"), tax=D("95.00")),),
        PaymentMeans(
            code="30",
            remittance="RE-2024-0044",
            iban="DE89370400440532013000",
            account_name="Nordlicht Software GmbH USD",
            bic="COBADEFFXXX",
        ),
        prepaid=D("95.00"),
        currency="USD",
        due_date=dt.date(2024, 4, 16),
    )


def card_invoice() -> EInvoice:
    """The German invoice paid by card (48): only the last digits of the card (BT-87, BR-51)."""
    return replace(
        german_invoice(),
        number="RE-2024-0045",
        payment_terms="Paid by card.",
        payment_means=(PaymentMeans(code="48", remittance="RE-2024-0045", card_last4="4242"),),
    )


#: The samples each writer's tests run through all its formats, by test id (the CII and Factur-X
#: tests run four of them, the UBL tests all six).
CII_SAMPLES: Final[dict[str, Callable[[], EInvoice]]] = {
    "de-19-7-discount-base-quantity": german_invoice,
    "us-usd-not-subject-to-vat": us_invoice,
    "credit-note": credit_note,
    "sepa-direct-debit": direct_debit_invoice,
}
UBL_SAMPLES: Final[dict[str, Callable[[], EInvoice]]] = {
    "german": german_invoice,
    "us-seller-O": us_invoice,
    "credit-note": credit_note,
    "direct-debit": direct_debit_invoice,
    "usd": usd_invoice,
    "card": card_invoice,
}


# -- reading the written XML -----------------------------------------------------------------------

#: The prefixes the tests' XPaths use: CII (rsm, ram, udt, qdt) and UBL (cac, cbc, inv, cn).
NAMESPACES: Final = {**NSMAP, "cac": CAC, "cbc": CBC, "inv": INVOICE_NS, "cn": CREDIT_NOTE_NS}


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def texts(root: etree._Element, path: str) -> list[str]:
    """Every value ``path`` selects, in document order."""
    return [str(v) for v in root.xpath(path, namespaces=NAMESPACES)]


def text(root: etree._Element, path: str) -> str:
    """The one value ``path`` selects (two or none fail the test)."""
    found = texts(root, path)
    assert len(found) == 1, f"{path}: {found}"
    return found[0]


def count(root: etree._Element, path: str) -> int:
    return len(root.xpath(path, namespaces=NAMESPACES))


def assert_valid(report: ValidationReport) -> None:
    """No fatal or error failure; on failure the message lists each one, as the CLI prints them."""
    assert report.ok, format_report(report)
