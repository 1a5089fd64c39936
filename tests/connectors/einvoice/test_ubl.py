"""The UBL writer produces documents the official EN 16931, Peppol BIS 3 and XRechnung rules accept.

Each sample (``samples.py``, shared with the CII and Factur-X tests) is a realistic invoice as
billsync's builder makes it (``sync_engine.einvoices``: the seller's contact, addresses and
electronic address from config, the buyer reference from the customer record), written in each UBL
format and run through the real validator (XSD + compiled Schematron). A few writer facts a reader of the XML would notice are asserted directly.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from lxml import etree

from connectors.einvoice.model import PROFILES
from connectors.einvoice.ubl import CAC, CBC, CREDIT_NOTE_NS, INVOICE_NS, UBL_FORMATS, UblFormat, write_ubl
from connectors.einvoice.validation import format_report, validate
from tests.connectors.einvoice.samples import (
    NAMESPACES,
    UBL_SAMPLES,
    assert_valid,
    card_invoice,
    count,
    credit_note,
    direct_debit_invoice,
    german_invoice,
    parse,
    texts,
    us_invoice,
    usd_invoice,
)

D = Decimal


# -- validity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", UBL_FORMATS)
@pytest.mark.parametrize("name", UBL_SAMPLES)
def test_written_document_passes_the_official_rules(name: str, fmt: UblFormat) -> None:
    data = write_ubl(UBL_SAMPLES[name](), format=fmt)

    report = validate(data, format=fmt, source=f"{name}.{fmt}.xml")

    assert_valid(report)
    assert report.format == fmt
    assert not [f for f in report.failures if f.stage == "schema"], format_report(report)


# -- writer facts ---------------------------------------------------------------------------------


def test_invoice_root_namespaces_and_declaration() -> None:
    data = write_ubl(german_invoice())
    root = parse(data)

    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Invoice ')
    assert root.tag == f"{{{INVOICE_NS}}}Invoice"
    assert root.nsmap == {None: INVOICE_NS, "cac": CAC, "cbc": CBC}
    assert texts(root, "cbc:InvoiceTypeCode/text()") == ["380"]
    assert texts(root, "cbc:DueDate/text()") == ["2024-04-16"]


@pytest.mark.parametrize("fmt", UBL_FORMATS)
def test_customization_and_profile_follow_the_format(fmt: UblFormat) -> None:
    root = parse(write_ubl(german_invoice(), format=fmt))

    customization, profile = PROFILES[fmt]
    assert texts(root, "cbc:CustomizationID/text()") == [customization]
    assert texts(root, "cbc:ProfileID/text()") == ([profile] if profile else [])


def test_credit_note_root_lines_reference_and_due_date() -> None:
    root = parse(write_ubl(credit_note(), format="xrechnung"))

    assert root.tag == f"{{{CREDIT_NOTE_NS}}}CreditNote"
    assert texts(root, "cbc:CreditNoteTypeCode/text()") == ["381"]
    assert count(root, "cac:InvoiceLine | cbc:InvoiceTypeCode | cbc:DueDate") == 0
    assert texts(root, "cac:CreditNoteLine/cbc:CreditedQuantity/@unitCode") == ["HUR"]
    ref = "cac:BillingReference/cac:InvoiceDocumentReference"
    assert texts(root, f"{ref}/cbc:ID/text()") == ["RE-2024-0042"]
    assert texts(root, f"{ref}/cbc:IssueDate/text()") == ["2024-04-02"]
    # UBL CreditNote has no DueDate: BT-9 is the payment means' due date
    assert texts(root, "cac:PaymentMeans/cbc:PaymentDueDate/text()") == ["2024-05-04"]


def test_amounts_have_two_decimals_and_the_currency() -> None:
    root = parse(write_ubl(usd_invoice()))

    assert texts(root, "cac:LegalMonetaryTotal/cbc:PayableAmount/text()") == ["500.00"]
    assert texts(root, "cac:LegalMonetaryTotal/cbc:PrepaidAmount/text()") == ["95.00"]
    assert texts(root, "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxableAmount/text()") == ["500.00"]
    currencies = set(texts(root, "//@currencyID"))
    assert currencies == {"USD"}
    # prices and quantities as given, never in exponent notation
    assert texts(root, "cac:InvoiceLine/cac:Price/cbc:PriceAmount/text()") == ["333.333333"]
    assert texts(root, "cac:InvoiceLine/cbc:InvoicedQuantity/text()") == ["1.5"]


def test_decimal_exponents_are_written_as_plain_numbers() -> None:
    invoice = german_invoice()
    line = replace(invoice.lines[1], quantity=D("1E+1"), net_price=D("1.2E+2"))
    root = parse(write_ubl(replace(invoice, lines=(invoice.lines[0], line, invoice.lines[2]))))

    assert texts(root, "cac:InvoiceLine[2]/cbc:InvoicedQuantity/text()") == ["10"]
    assert texts(root, "cac:InvoiceLine[2]/cac:Price/cbc:PriceAmount/text()") == ["120"]
    assert b"E+" not in etree.tostring(root)


def test_amount_with_more_than_two_decimals_is_refused_not_rounded() -> None:
    invoice = replace(german_invoice(), payable=D("1430.955"))

    with pytest.raises(ValueError, match=r"BT-115 is 1430.955"):
        write_ubl(invoice)


def test_optional_totals_and_elements_are_omitted() -> None:
    root = parse(write_ubl(german_invoice(prepaid=D("0"))))

    total = root.find(f"{{{CAC}}}LegalMonetaryTotal")
    assert total is not None
    assert [etree.QName(c).localname for c in total] == [
        "LineExtensionAmount",
        "TaxExclusiveAmount",
        "TaxInclusiveAmount",
        "PayableAmount",
    ]
    assert count(root, "cac:BillingReference | cbc:TaxCurrencyCode") == 0
    # line 2 has no period, description, item id or base quantity
    line = "cac:InvoiceLine[2]"
    assert (
        count(
            root,
            f"{line}/cac:InvoicePeriod | {line}/cac:Item/cbc:Description"
            f" | {line}/cac:Item/cac:SellersItemIdentification | {line}/cac:Price/cbc:BaseQuantity",
        )
        == 0
    )
    assert not root.xpath("//*[not(*) and not(normalize-space())]")  # no empty element anywhere


def test_line_allowance_and_base_quantity() -> None:
    root = parse(write_ubl(german_invoice()))

    charge = "cac:InvoiceLine[1]/cac:AllowanceCharge"
    assert texts(root, f"{charge}/cbc:ChargeIndicator/text()") == ["false"]
    assert texts(root, f"{charge}/cbc:AllowanceChargeReasonCode/text()") == ["95"]
    assert texts(root, f"{charge}/cbc:AllowanceChargeReason/text()") == ["Rabatt 10 %"]
    assert texts(root, f"{charge}/cbc:Amount/text()") == ["120.00"]
    price = "cac:InvoiceLine[3]/cac:Price"
    assert texts(root, f"{price}/cbc:BaseQuantity/text()") == ["1000"]
    assert texts(root, f"{price}/cbc:BaseQuantity/@unitCode") == ["C62"]


def test_seller_tax_identifiers_and_endpoint() -> None:
    root = parse(write_ubl(german_invoice()))

    party = "cac:AccountingSupplierParty/cac:Party"
    assert texts(root, f"{party}/cbc:EndpointID/@schemeID") == ["9930"]
    schemes = root.xpath(f"{party}/cac:PartyTaxScheme", namespaces=NAMESPACES)
    assert [(texts(s, "cbc:CompanyID/text()"), texts(s, "cac:TaxScheme/cbc:ID/text()")) for s in schemes] == [
        (["DE123456789"], ["VAT"]),
        (["22/815/08154"], ["FC"]),
    ]
    assert texts(root, f"{party}/cac:PartyName/cbc:Name/text()") == ["Nordlicht Cloud"]
    assert texts(root, f"{party}/cac:PartyLegalEntity/cbc:RegistrationName/text()") == [
        "Nordlicht Software GmbH"
    ]


def test_not_subject_to_vat_has_no_rate_except_in_the_xrechnung_breakdown() -> None:
    plain = parse(write_ubl(us_invoice(), format="peppol"))
    xrechnung = parse(write_ubl(us_invoice(), format="xrechnung"))

    breakdown = "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory"
    assert count(plain, f"{breakdown}/cbc:Percent | //cac:ClassifiedTaxCategory/cbc:Percent") == 0
    assert texts(xrechnung, f"{breakdown}/cbc:Percent/text()") == ["0"]
    assert count(xrechnung, "//cac:ClassifiedTaxCategory/cbc:Percent") == 0
    assert texts(plain, f"{breakdown}/cbc:TaxExemptionReason/text()") == ["Not subject to VAT"]
    assert count(plain, "//cac:PartyTaxScheme") == 0


def test_direct_debit_mandate_and_creditor_id() -> None:
    root = parse(write_ubl(direct_debit_invoice()))

    means = "cac:PaymentMeans"
    assert texts(root, f"{means}/cbc:PaymentMeansCode/text()") == ["59"]
    assert texts(root, f"{means}/cac:PaymentMandate/cbc:ID/text()") == ["MANDAT-0815"]
    assert texts(root, f"{means}/cac:PaymentMandate/cac:PayerFinancialAccount/cbc:ID/text()") == [
        "DE02120300000000202051"
    ]
    assert count(root, f"{means}/cac:PayeeFinancialAccount") == 0
    assert texts(
        root, "cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID[@schemeID='SEPA']/text()"
    ) == ["DE98ZZZ09999999999"]


def test_card_account_carries_only_the_last_digits() -> None:
    root = parse(write_ubl(card_invoice()))

    card = "cac:PaymentMeans/cac:CardAccount"
    assert texts(root, f"{card}/cbc:PrimaryAccountNumberID/text()") == ["4242"]
    assert texts(root, f"{card}/cbc:NetworkID/text()") == ["NA"]  # required by UBL, not in the model
    assert count(root, "cac:PaymentMeans/cac:PayeeFinancialAccount") == 0


def test_text_is_escaped_by_the_xml_library() -> None:
    invoice = replace(german_invoice(), note='Fish & Chips <"special"> offer')
    root = parse(write_ubl(invoice))

    assert texts(root, "cbc:Note/text()") == ['Fish & Chips <"special"> offer']


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="not 'cii'"):
        write_ubl(german_invoice(), format="cii")  # type: ignore[arg-type]
