"""The UBL writer produces documents the official EN 16931, Peppol BIS 3 and XRechnung rules accept.

Each fixture is a realistic invoice as billsync's builder makes it (``sync_engine.einvoices``: the
seller's contact, addresses and electronic address from config, the buyer reference from the
customer record), written in each UBL format and run through the real validator (XSD + compiled
Schematron). A few writer facts a reader of the XML would notice are asserted directly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest
from lxml import etree

from connectors.einvoice.model import (
    CREDIT_NOTE,
    INVOICE,
    PROFILES,
    Allowance,
    EInvoice,
    Line,
    Party,
    PaymentMeans,
    TaxSubtotal,
)
from connectors.einvoice.ubl import CAC, CBC, CREDIT_NOTE_NS, INVOICE_NS, UBL_FORMATS, UblFormat, write_ubl
from connectors.einvoice.validation import format_report, validate

NS = {"cac": CAC, "cbc": CBC, "inv": INVOICE_NS, "cn": CREDIT_NOTE_NS}
D = Decimal

# -- parties, as the builder fills them from billsync.yaml and the customer record -------------

GERMAN_SELLER = Party(
    name="Nordlicht Software GmbH",
    trading_name="Nordlicht Cloud",
    country="DE",
    street="Hafenstraße 12",
    additional_street="3. OG",
    city="Hamburg",
    postal_code="20457",
    vat_id="DE123456789",
    tax_registration_id="22/815/08150",
    legal_id="HRB 123456",
    electronic_address="DE123456789",
    electronic_address_scheme="9930",  # Peppol does not accept EM (e-mail) as an endpoint scheme
    contact_name="Finance team",
    contact_phone="+49 40 1234567",
    contact_email="billing@nordlicht.example",
)
GERMAN_BUYER = Party(
    name="Elbe Logistik AG",
    country="DE",
    street="Am Sandtorkai 5",
    city="Hamburg",
    postal_code="20457",
    subdivision="HH",
    vat_id="DE987654321",
    electronic_address="4035811991021",
    electronic_address_scheme="0088",
    contact_email="ap@elbe-logistik.example",
    identifier="C-1042",
)
SEPA_TRANSFER = PaymentMeans(
    code="58",
    remittance="RE-2026-0042",
    iban="DE89370400440532013000",
    account_name="Nordlicht Software GmbH",
    bic="COBADEFFXXX",
)


def german_invoice() -> EInvoice:
    """S 19 % and 7 %, a discounted line, a line whose price is for all its units (BT-149)."""
    hosting = Line(
        id="1",
        name="Hosting Pro",
        description="Managed hosting, March 2026",
        quantity=D("1"),
        net_price=D("100.00"),
        net_amount=D("100.00"),
        vat_category="S",
        vat_rate=D("19"),
        unit_code="MON",
        seller_item_id="HOST-PRO",
        period_start=dt.date(2026, 3, 1),
        period_end=dt.date(2026, 3, 31),
    )
    consulting = Line(
        id="2",
        name="Consulting",
        quantity=D("10"),
        net_price=D("120"),
        net_amount=D("1080.00"),
        vat_category="S",
        vat_rate=D("19"),
        unit_code="HUR",
        allowances=(Allowance(D("120.00"), reason="Discount 10 %"),),
    )
    books = Line(  # 3 for 25.00: no short price times 3 gives 25.00 exactly
        id="3",
        name="Handbook (print)",
        quantity=D("3"),
        net_price=D("25.00"),
        net_amount=D("25.00"),
        vat_category="S",
        vat_rate=D("7"),
        base_quantity=D("3"),
    )
    return EInvoice(
        number="RE-2026-0042",
        issue_date=dt.date(2026, 4, 1),
        type_code=INVOICE,
        currency="EUR",
        seller=GERMAN_SELLER,
        buyer=GERMAN_BUYER,
        lines=(hosting, consulting, books),
        taxes=(
            TaxSubtotal("S", D("19"), taxable=D("1180.00"), tax=D("224.20")),
            TaxSubtotal("S", D("7"), taxable=D("25.00"), tax=D("1.75")),
        ),
        line_total=D("1205.00"),
        tax_exclusive=D("1205.00"),
        tax_total=D("225.95"),
        tax_inclusive=D("1430.95"),
        payable=D("1430.95"),
        due_date=dt.date(2026, 4, 15),
        buyer_reference="C-1042",
        order_reference="PO-7781",
        note="Thank you for your business.",
        payment_terms="Due 2026-04-15. Please quote the invoice number.",
        period_start=dt.date(2026, 3, 1),
        period_end=dt.date(2026, 3, 31),
        payment_means=(SEPA_TRANSFER,),
    )


def us_seller_invoice() -> EInvoice:
    """A US seller, not subject to VAT (O): no VAT identifiers anywhere (BR-O-02/03), in USD."""
    seller = Party(
        name="Prairie Analytics Inc.",
        country="US",
        street="500 Congress Ave",
        city="Austin",
        postal_code="78701",
        subdivision="TX",
        legal_id="EIN 12-3456789",
        electronic_address="123456789",
        electronic_address_scheme="0060",  # DUNS
        contact_name="Accounts receivable",
        contact_phone="+1 512 555 0100",
        contact_email="ar@prairie.example",
    )
    buyer = replace(GERMAN_BUYER, vat_id=None)
    line = Line(
        id="1",
        name="Analytics subscription",
        quantity=D("12"),
        net_price=D("250.00"),
        net_amount=D("3000.00"),
        vat_category="O",
        vat_rate=None,
        unit_code="MON",
        period_start=dt.date(2026, 1, 1),
        period_end=dt.date(2026, 12, 31),
    )
    return EInvoice(
        number="PA-1001",
        issue_date=dt.date(2026, 1, 5),
        type_code=INVOICE,
        currency="USD",
        seller=seller,
        buyer=buyer,
        lines=(line,),
        taxes=(
            TaxSubtotal(
                "O", None, taxable=D("3000.00"), tax=D("0.00"), exemption_reason="Not subject to VAT"
            ),
        ),
        line_total=D("3000.00"),
        tax_exclusive=D("3000.00"),
        tax_total=D("0.00"),
        tax_inclusive=D("3000.00"),
        payable=D("3000.00"),
        due_date=dt.date(2026, 2, 4),
        buyer_reference="C-1042",
        payment_terms="Net 30",
        payment_means=(
            PaymentMeans(
                code="30", remittance="PA-1001", iban="000123456789", account_name="Prairie Analytics"
            ),
        ),
    )


def credit_note() -> EInvoice:
    """Credits the hosting line of RE-2026-0042 (BT-25/26), refunded by transfer."""
    base = german_invoice()
    line = base.lines[0]
    return replace(
        base,
        number="GS-2026-0007",
        issue_date=dt.date(2026, 4, 20),
        type_code=CREDIT_NOTE,
        lines=(line,),
        taxes=(TaxSubtotal("S", D("19"), taxable=D("100.00"), tax=D("19.00")),),
        line_total=D("100.00"),
        tax_exclusive=D("100.00"),
        tax_total=D("19.00"),
        tax_inclusive=D("119.00"),
        payable=D("119.00"),
        due_date=dt.date(2026, 4, 30),
        order_reference=None,
        preceding_invoice="RE-2026-0042",
        preceding_invoice_date=dt.date(2026, 4, 1),
        note="Hosting credited: service outage in March.",
        payment_terms="We will refund the amount to your account.",
        payment_means=(PaymentMeans(code="58", remittance="GS-2026-0007", iban="DE02120300000000202051"),),
    )


def direct_debit_invoice() -> EInvoice:
    """SEPA direct debit (59): mandate (BT-89), creditor id (BT-90), debited IBAN (BT-91)."""
    base = german_invoice()
    return replace(
        base,
        number="RE-2026-0043",
        payment_terms="The amount will be debited from your account on or after 2026-04-15.",
        payment_means=(
            PaymentMeans(
                code="59",
                remittance="RE-2026-0043",
                mandate_id="MNDT-C-1042",
                creditor_id="DE98ZZZ09999999999",
                debited_account="DE02120300000000202051",
            ),
        ),
    )


def usd_invoice() -> EInvoice:
    """A German seller billing in USD (BT-5), paid by non-SEPA transfer (30) with a prepayment."""
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
    return replace(
        german_invoice(),
        number="RE-2026-0044",
        currency="USD",
        lines=(line,),
        taxes=(TaxSubtotal("S", D("19.00"), taxable=D("500.00"), tax=D("95.00")),),
        line_total=D("500.00"),
        tax_exclusive=D("500.00"),
        tax_total=D("95.00"),
        tax_inclusive=D("595.00"),
        prepaid=D("95.00"),
        payable=D("500.00"),
        payment_means=(
            PaymentMeans(
                code="30",
                remittance="RE-2026-0044",
                iban="DE89370400440532013000",
                account_name="Nordlicht Software GmbH USD",
                bic="COBADEFFXXX",
            ),
        ),
    )


def card_invoice() -> EInvoice:
    """Paid by card (48): only the last digits of the card (BT-87, BR-51)."""
    return replace(
        german_invoice(),
        number="RE-2026-0045",
        payment_terms="Paid by card.",
        payment_means=(PaymentMeans(code="48", remittance="RE-2026-0045", card_last4="4242"),),
    )


FIXTURES = {
    "german": german_invoice,
    "us-seller-O": us_seller_invoice,
    "credit-note": credit_note,
    "direct-debit": direct_debit_invoice,
    "usd": usd_invoice,
    "card": card_invoice,
}


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def _text(root: etree._Element, path: str) -> list[str]:
    return [str(v) for v in root.xpath(path, namespaces=NS)]


# -- validity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", UBL_FORMATS)
@pytest.mark.parametrize("name", FIXTURES)
def test_written_document_passes_the_official_rules(name: str, fmt: UblFormat) -> None:
    data = write_ubl(FIXTURES[name](), format=fmt)

    report = validate(data, format=fmt, source=f"{name}.{fmt}.xml")

    assert report.ok, format_report(report)
    assert report.format == fmt
    assert not [f for f in report.failures if f.stage == "schema"], format_report(report)


# -- writer facts ---------------------------------------------------------------------------------


def test_invoice_root_namespaces_and_declaration() -> None:
    data = write_ubl(german_invoice())
    root = _parse(data)

    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Invoice ')
    assert root.tag == f"{{{INVOICE_NS}}}Invoice"
    assert root.nsmap == {None: INVOICE_NS, "cac": CAC, "cbc": CBC}
    assert _text(root, "cbc:InvoiceTypeCode/text()") == ["380"]
    assert _text(root, "cbc:DueDate/text()") == ["2026-04-15"]


@pytest.mark.parametrize("fmt", UBL_FORMATS)
def test_customization_and_profile_follow_the_format(fmt: UblFormat) -> None:
    root = _parse(write_ubl(german_invoice(), format=fmt))

    customization, profile = PROFILES[fmt]
    assert _text(root, "cbc:CustomizationID/text()") == [customization]
    assert _text(root, "cbc:ProfileID/text()") == ([profile] if profile else [])


def test_credit_note_root_lines_reference_and_due_date() -> None:
    root = _parse(write_ubl(credit_note(), format="xrechnung"))

    assert root.tag == f"{{{CREDIT_NOTE_NS}}}CreditNote"
    assert _text(root, "cbc:CreditNoteTypeCode/text()") == ["381"]
    assert not root.xpath("cac:InvoiceLine | cbc:InvoiceTypeCode | cbc:DueDate", namespaces=NS)
    assert _text(root, "cac:CreditNoteLine/cbc:CreditedQuantity/@unitCode") == ["MON"]
    ref = "cac:BillingReference/cac:InvoiceDocumentReference"
    assert _text(root, f"{ref}/cbc:ID/text()") == ["RE-2026-0042"]
    assert _text(root, f"{ref}/cbc:IssueDate/text()") == ["2026-04-01"]
    # UBL CreditNote has no DueDate: BT-9 is the payment means' due date
    assert _text(root, "cac:PaymentMeans/cbc:PaymentDueDate/text()") == ["2026-04-30"]


def test_amounts_have_two_decimals_and_the_currency() -> None:
    root = _parse(write_ubl(usd_invoice()))

    assert _text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount/text()") == ["500.00"]
    assert _text(root, "cac:LegalMonetaryTotal/cbc:PrepaidAmount/text()") == ["95.00"]
    assert _text(root, "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxableAmount/text()") == ["500.00"]
    currencies = set(_text(root, "//@currencyID"))
    assert currencies == {"USD"}
    # prices and quantities as given, never in exponent notation
    assert _text(root, "cac:InvoiceLine/cac:Price/cbc:PriceAmount/text()") == ["333.333333"]
    assert _text(root, "cac:InvoiceLine/cbc:InvoicedQuantity/text()") == ["1.5"]


def test_decimal_exponents_are_written_as_plain_numbers() -> None:
    invoice = german_invoice()
    line = replace(invoice.lines[1], quantity=D("1E+1"), net_price=D("1.2E+2"))
    root = _parse(write_ubl(replace(invoice, lines=(invoice.lines[0], line, invoice.lines[2]))))

    assert _text(root, "cac:InvoiceLine[2]/cbc:InvoicedQuantity/text()") == ["10"]
    assert _text(root, "cac:InvoiceLine[2]/cac:Price/cbc:PriceAmount/text()") == ["120"]
    assert b"E+" not in etree.tostring(root)


def test_amount_with_more_than_two_decimals_is_refused_not_rounded() -> None:
    invoice = replace(german_invoice(), payable=D("1430.955"))

    with pytest.raises(ValueError, match=r"BT-115 is 1430.955"):
        write_ubl(invoice)


def test_optional_totals_and_elements_are_omitted() -> None:
    root = _parse(write_ubl(german_invoice()))

    total = root.find(f"{{{CAC}}}LegalMonetaryTotal")
    assert total is not None
    assert [etree.QName(c).localname for c in total] == [
        "LineExtensionAmount",
        "TaxExclusiveAmount",
        "TaxInclusiveAmount",
        "PayableAmount",
    ]
    assert not root.xpath("cac:BillingReference | cbc:TaxCurrencyCode", namespaces=NS)
    # line 2 has no period, description, item id or base quantity
    line = "cac:InvoiceLine[2]"
    assert not root.xpath(
        f"{line}/cac:InvoicePeriod | {line}/cac:Item/cbc:Description"
        f" | {line}/cac:Item/cac:SellersItemIdentification | {line}/cac:Price/cbc:BaseQuantity",
        namespaces=NS,
    )
    assert not root.xpath("//*[not(*) and not(normalize-space())]")  # no empty element anywhere


def test_line_allowance_and_base_quantity() -> None:
    root = _parse(write_ubl(german_invoice()))

    charge = "cac:InvoiceLine[2]/cac:AllowanceCharge"
    assert _text(root, f"{charge}/cbc:ChargeIndicator/text()") == ["false"]
    assert _text(root, f"{charge}/cbc:AllowanceChargeReasonCode/text()") == ["95"]
    assert _text(root, f"{charge}/cbc:AllowanceChargeReason/text()") == ["Discount 10 %"]
    assert _text(root, f"{charge}/cbc:Amount/text()") == ["120.00"]
    price = "cac:InvoiceLine[3]/cac:Price"
    assert _text(root, f"{price}/cbc:BaseQuantity/text()") == ["3"]
    assert _text(root, f"{price}/cbc:BaseQuantity/@unitCode") == ["C62"]


def test_seller_tax_identifiers_and_endpoint() -> None:
    root = _parse(write_ubl(german_invoice()))

    party = "cac:AccountingSupplierParty/cac:Party"
    assert _text(root, f"{party}/cbc:EndpointID/@schemeID") == ["9930"]
    schemes = root.xpath(f"{party}/cac:PartyTaxScheme", namespaces=NS)
    assert [(_text(s, "cbc:CompanyID/text()"), _text(s, "cac:TaxScheme/cbc:ID/text()")) for s in schemes] == [
        (["DE123456789"], ["VAT"]),
        (["22/815/08150"], ["FC"]),
    ]
    assert _text(root, f"{party}/cac:PartyName/cbc:Name/text()") == ["Nordlicht Cloud"]
    assert _text(root, f"{party}/cac:PartyLegalEntity/cbc:RegistrationName/text()") == [
        "Nordlicht Software GmbH"
    ]


def test_not_subject_to_vat_has_no_rate_except_in_the_xrechnung_breakdown() -> None:
    plain = _parse(write_ubl(us_seller_invoice(), format="peppol"))
    xrechnung = _parse(write_ubl(us_seller_invoice(), format="xrechnung"))

    breakdown = "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory"
    assert not plain.xpath(
        f"{breakdown}/cbc:Percent | //cac:ClassifiedTaxCategory/cbc:Percent", namespaces=NS
    )
    assert _text(xrechnung, f"{breakdown}/cbc:Percent/text()") == ["0"]
    assert not xrechnung.xpath("//cac:ClassifiedTaxCategory/cbc:Percent", namespaces=NS)
    assert _text(plain, f"{breakdown}/cbc:TaxExemptionReason/text()") == ["Not subject to VAT"]
    assert not plain.xpath("//cac:PartyTaxScheme", namespaces=NS)


def test_direct_debit_mandate_and_creditor_id() -> None:
    root = _parse(write_ubl(direct_debit_invoice()))

    means = "cac:PaymentMeans"
    assert _text(root, f"{means}/cbc:PaymentMeansCode/text()") == ["59"]
    assert _text(root, f"{means}/cac:PaymentMandate/cbc:ID/text()") == ["MNDT-C-1042"]
    assert _text(root, f"{means}/cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID/text()") == [
        "DE02120300000000202051"
    ]
    assert not root.xpath(f"{means}/cac:PayeeFinancialAccount", namespaces=NS)
    assert _text(
        root, "cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID[@schemeID='SEPA']/text()"
    ) == ["DE98ZZZ09999999999"]


def test_card_account_carries_only_the_last_digits() -> None:
    root = _parse(write_ubl(card_invoice()))

    card = "cac:PaymentMeans/cac:CardAccount"
    assert _text(root, f"{card}/cbc:PrimaryAccountNumberID/text()") == ["4242"]
    assert _text(root, f"{card}/cbc:NetworkID/text()") == ["NA"]  # required by UBL, not in the model
    assert not root.xpath("cac:PaymentMeans/cac:PayeeFinancialAccount", namespaces=NS)


def test_text_is_escaped_by_the_xml_library() -> None:
    invoice = replace(german_invoice(), note='Fish & Chips <"special"> offer')
    root = _parse(write_ubl(invoice))

    assert _text(root, "cbc:Note/text()") == ['Fish & Chips <"special"> offer']


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="not 'cii'"):
        write_ubl(german_invoice(), format="cii")  # type: ignore[arg-type]
