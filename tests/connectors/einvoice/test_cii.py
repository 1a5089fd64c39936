"""The CII writer produces invoices the official EN 16931 and XRechnung rules accept.

Each realistic invoice (``samples.py``, shared with the UBL and Factur-X tests) is written for every
CII format (plain EN 16931, XRechnung 3.0, Factur-X EN 16931) and run through billsync's own
validator (XSD + Schematron): no fatal or error failure may remain. The other tests pin what the XML says (identifiers, codes, omitted elements),
and that each business term XRechnung demands beyond EN 16931 really is demanded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from connectors.einvoice.cii import (
    CII_FORMATS,
    NSMAP,
    XRECHNUNG_PAYMENT_FIELDS,
    XRECHNUNG_REQUIRED,
    CiiFormat,
    write_cii,
)
from connectors.einvoice.model import EInvoice
from connectors.einvoice.validation import format_report, validate
from tests.connectors.einvoice.samples import (
    CII_SAMPLES,
    LEITWEG_ID,
    assert_valid,
    card_invoice,
    count,
    credit_note,
    direct_debit_invoice,
    german_invoice,
    parse,
    text,
    texts,
    us_invoice,
)

D = Decimal
EN16931_ID = "urn:cen.eu:en16931:2017"
XRECHNUNG_ID = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PEPPOL_PROCESS = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"

SETTLEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
AGREEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
LINE = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem"
GUIDELINE = "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID/text()"
PROCESS = "//ram:BusinessProcessSpecifiedDocumentContextParameter/ram:ID/text()"


# -- the official rules accept every invoice in every CII format ---------------------------------


@pytest.mark.parametrize("fmt", CII_FORMATS)
@pytest.mark.parametrize("name", list(CII_SAMPLES))
def test_written_invoice_passes_the_official_rules(name: str, fmt: CiiFormat) -> None:
    report = validate(write_cii(CII_SAMPLES[name](), format=fmt), format=fmt, source=f"{name}.{fmt}.xml")
    assert report.syntax == "cii"
    assert_valid(report)


@pytest.mark.parametrize("field", list(XRECHNUNG_REQUIRED))
def test_each_xrechnung_requirement_is_enforced_beyond_en16931(field: str) -> None:
    """Blanking one listed field keeps the invoice EN 16931-valid but breaks XRechnung."""
    invoice = _without(german_invoice(), field)
    en16931 = validate(write_cii(invoice, format="cii"), format="cii")
    xrechnung = validate(write_cii(invoice, format="xrechnung"), format="xrechnung")
    assert_valid(en16931)
    assert not xrechnung.ok, f"{field} missing but XRechnung accepted it"
    expected = XRECHNUNG_REQUIRED[field].split(" ")[0].split("/")[-1]  # e.g. BR-DE-15
    assert expected in xrechnung.failed_rules(), format_report(xrechnung)


def _without(invoice: EInvoice, field: str) -> EInvoice:
    if "." not in field:
        empty: Any = () if field == "payment_means" else None
        return dataclasses.replace(invoice, **{field: empty})
    party_name, attribute = field.split(".")
    party = dataclasses.replace(getattr(invoice, party_name), **{attribute: None})
    if attribute == "electronic_address":
        party = dataclasses.replace(party, electronic_address_scheme=None)
    return dataclasses.replace(invoice, **{party_name: party})


COMPLETE_MEANS: dict[str, Callable[[], EInvoice]] = {
    "58": german_invoice,
    "59": direct_debit_invoice,
    "48": card_invoice,
}
SAMPLE_VALUES = {
    "iban": "DE89370400440532013000",
    "account_name": "Nordlicht Software GmbH",
    "bic": "COBADEFFXXX",
    "mandate_id": "MANDAT-0815",
    "creditor_id": "DE98ZZZ09999999999",
    "debited_account": "DE02120300000000202051",
    "card_last4": "4242",
}
PAYMENT_CASES = [
    (code, field, change)
    for code in COMPLETE_MEANS
    for change, fields in zip(("drop", "add"), XRECHNUNG_PAYMENT_FIELDS[code], strict=True)
    for field in sorted(fields)
]


@pytest.mark.parametrize(("code", "field", "change"), PAYMENT_CASES)
def test_xrechnung_payment_means_fields_per_code(code: str, field: str, change: str) -> None:
    """A required field dropped, or a forbidden one added, breaks XRechnung (and, but for the
    transfer's account, not EN 16931)."""
    invoice = COMPLETE_MEANS[code]()
    assert_valid(validate(write_cii(invoice, format="xrechnung"), format="xrechnung"))
    value: Any = None if change == "drop" else SAMPLE_VALUES[field]
    means = dataclasses.replace(invoice.payment_means[0], **{field: value})
    invoice = dataclasses.replace(invoice, payment_means=(means,))
    en16931 = validate(write_cii(invoice, format="cii"), format="cii")
    if (code, field, change) == ("58", "iban", "drop"):
        assert "BR-61" in en16931.failed_rules()  # EN 16931 itself wants BT-84 for a transfer
    else:
        assert_valid(en16931)
    report = validate(write_cii(invoice, format="xrechnung"), format="xrechnung")
    assert not report.ok, f"{change} {field} on payment means {code} but XRechnung accepted it"


# -- what the XML says ----------------------------------------------------------------------------


def test_root_namespaces_and_declaration() -> None:
    xml = write_cii(german_invoice())
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<rsm:CrossIndustryInvoice ')
    root = parse(xml)
    assert root.tag == "{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice"
    assert {root.nsmap[p] for p in ("rsm", "ram", "udt", "qdt")} == set(NSMAP.values())


@pytest.mark.parametrize(
    ("fmt", "guideline", "process"),
    [("cii", EN16931_ID, []), ("facturx", EN16931_ID, []), ("xrechnung", XRECHNUNG_ID, [PEPPOL_PROCESS])],
)
def test_specification_identifier_per_format(fmt: CiiFormat, guideline: str, process: list[str]) -> None:
    root = parse(write_cii(german_invoice(), format=fmt))
    assert texts(root, GUIDELINE) == [guideline]
    assert texts(root, PROCESS) == process


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown CII format 'peppol'"):
        write_cii(german_invoice(), format="peppol")  # type: ignore[arg-type]


def test_document_header_and_totals() -> None:
    root = parse(write_cii(german_invoice()))
    assert text(root, "//rsm:ExchangedDocument/ram:ID/text()") == "RE-2024-0042"
    assert text(root, "//rsm:ExchangedDocument/ram:TypeCode/text()") == "380"
    assert text(root, "//rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString/@format") == "102"
    assert text(root, "//rsm:ExchangedDocument/ram:IssueDateTime/udt:DateTimeString/text()") == "20240402"
    assert text(root, "//rsm:ExchangedDocument/ram:IncludedNote/ram:Content/text()").startswith("Vielen Dank")
    assert text(root, f"{AGREEMENT}/ram:BuyerReference/text()") == LEITWEG_ID
    assert (
        text(root, f"{AGREEMENT}/ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID/text()") == "PO-7781"
    )
    totals = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
    assert [
        (e.tag.split("}")[1], e.text, e.get("currencyID"))
        for e in root.xpath(f"{totals}/*", namespaces=NSMAP)
    ] == [
        ("LineTotalAmount", "1161.75", None),
        ("TaxBasisTotalAmount", "1161.75", None),
        ("TaxTotalAmount", "211.73", "EUR"),
        ("GrandTotalAmount", "1373.48", None),
        ("TotalPrepaidAmount", "373.48", None),
        ("DuePayableAmount", "1000.00", None),
    ]
    assert text(
        root, f"{SETTLEMENT}/ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString/text()"
    ) == ("20240416")
    assert texts(root, f"{SETTLEMENT}/ram:ApplicableTradeTax/ram:RateApplicablePercent/text()") == ["19", "7"]


def test_seller_party_identifiers_contact_and_address() -> None:
    root = parse(write_cii(german_invoice()))
    seller = f"{AGREEMENT}/ram:SellerTradeParty"
    assert texts(root, f"{seller}/ram:SpecifiedTaxRegistration/ram:ID/@schemeID") == ["VA", "FC"]
    assert texts(root, f"{seller}/ram:SpecifiedTaxRegistration/ram:ID/text()") == [
        "DE123456789",
        "22/815/08154",
    ]
    assert text(root, f"{seller}/ram:SpecifiedLegalOrganization/ram:ID/text()") == "HRB 123456"
    assert text(root, f"{seller}/ram:URIUniversalCommunication/ram:URIID/@schemeID") == "9930"
    contact = f"{seller}/ram:DefinedTradeContact"
    assert text(root, f"{contact}/ram:PersonName/text()") == "Jana Petersen"
    assert (
        text(root, f"{contact}/ram:TelephoneUniversalCommunication/ram:CompleteNumber/text()")
        == "+49 40 1234567"
    )
    assert text(root, f"{contact}/ram:EmailURIUniversalCommunication/ram:URIID/text()") == (
        "jana.petersen@nordlicht.example"
    )
    buyer_address = f"{AGREEMENT}/ram:BuyerTradeParty/ram:PostalTradeAddress/*"
    assert [e.text for e in root.xpath(buyer_address, namespaces=NSMAP)] == [
        "12345",
        "Am Markt 1",
        "Gebäude B",
        "Musterstadt",
        "DE",
    ]


def test_line_with_discount_and_line_with_base_quantity() -> None:
    root = parse(write_cii(german_invoice()))
    discount = f"{LINE}[1]/ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeAllowanceCharge"
    assert text(root, f"{discount}/ram:ChargeIndicator/udt:Indicator/text()") == "false"
    assert text(root, f"{discount}/ram:ActualAmount/text()") == "120.00"
    assert text(root, f"{discount}/ram:ReasonCode/text()") == "95"
    assert text(root, f"{discount}/ram:Reason/text()") == "Rabatt 10 %"
    assert text(root, f"{LINE}[1]//ram:LineTotalAmount/text()") == "1080.00"
    assert text(root, f"{LINE}[1]/ram:SpecifiedTradeProduct/ram:SellerAssignedID/text()") == "CONS-H"
    assert text(root, f"{LINE}[1]//ram:BilledQuantity/@unitCode") == "HUR"

    price = f"{LINE}[3]/ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice"
    assert text(root, f"{price}/ram:ChargeAmount/text()") == "4.50"
    assert text(root, f"{price}/ram:BasisQuantity/text()") == "1000"
    assert text(root, f"{price}/ram:BasisQuantity/@unitCode") == "C62"  # = the billed unit (R130)
    assert text(root, f"{LINE}[3]//ram:BilledQuantity/text()") == "1500"


def test_optional_elements_are_left_out_not_written_empty() -> None:
    root = parse(write_cii(german_invoice()))
    plain_line = f"{LINE}[2]"
    for absent in (
        "ram:SpecifiedTradeProduct/ram:SellerAssignedID",
        "ram:SpecifiedTradeProduct/ram:Description",
        ".//ram:BasisQuantity",
        ".//ram:BillingSpecifiedPeriod",
        ".//ram:SpecifiedTradeAllowanceCharge",
    ):
        assert count(root, f"{plain_line}/{absent}") == 0, absent
    totals = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
    assert count(root, f"{totals}/ram:ChargeTotalAmount | {totals}/ram:AllowanceTotalAmount") == 0
    assert (
        count(root, f"{SETTLEMENT}/ram:InvoiceReferencedDocument | {SETTLEMENT}/ram:CreditorReferenceID") == 0
    )
    assert count(root, f"{SETTLEMENT}/ram:TaxCurrencyCode | {AGREEMENT}/ram:SellerTradeParty/ram:ID") == 0
    # the one empty element is the one the XSD requires and the rules allow empty
    empty = [e.tag.split("}")[1] for e in root.iter() if len(e) == 0 and not (e.text or "").strip()]
    assert empty == ["ApplicableHeaderTradeDelivery"]

    no_prepayment = parse(write_cii(credit_note()))
    assert (
        count(
            no_prepayment,
            "//ram:TotalPrepaidAmount | //ram:IncludedNote | //ram:BuyerOrderReferencedDocument",
        )
        == 0
    )


def test_not_subject_to_vat_has_no_vat_ids_and_no_line_rate() -> None:
    invoice = us_invoice()
    root = parse(write_cii(invoice, format="cii"))
    assert count(root, "//ram:SpecifiedTaxRegistration") == 0
    assert count(root, f"{LINE}//ram:ApplicableTradeTax/ram:RateApplicablePercent") == 0
    assert text(root, f"{LINE}//ram:ApplicableTradeTax/ram:CategoryCode/text()") == "O"
    tax = f"{SETTLEMENT}/ram:ApplicableTradeTax"
    assert text(root, f"{tax}/ram:ExemptionReason/text()") == "Not subject to VAT"
    assert text(root, f"{tax}/ram:ExemptionReasonCode/text()") == "VATEX-EU-O"
    assert count(root, f"{tax}/ram:RateApplicablePercent") == 0
    assert text(root, f"{AGREEMENT}/ram:SellerTradeParty/ram:ID/text()") == "ACME-001"
    assert text(root, f"{AGREEMENT}/ram:SellerTradeParty//ram:CountrySubDivisionName/text()") == "CA"
    # XRechnung's BR-DE-14 wants a rate in every breakdown: 0 there, on the header only
    xrechnung = parse(write_cii(invoice, format="xrechnung"))
    assert text(xrechnung, f"{tax}/ram:RateApplicablePercent/text()") == "0"
    assert count(xrechnung, f"{LINE}//ram:RateApplicablePercent") == 0


def test_usd_invoice_states_its_currency_and_a_non_iban_account() -> None:
    root = parse(write_cii(us_invoice()))
    account = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans/ram:PayeePartyCreditorFinancialAccount"
    assert text(root, f"{account}/ram:ProprietaryID/text()") == "000123456789"
    assert count(root, f"{account}/ram:IBANID") == 0
    assert text(root, f"{SETTLEMENT}/ram:InvoiceCurrencyCode/text()") == "USD"
    assert text(root, "//ram:TaxTotalAmount/@currencyID") == "USD"
    assert text(root, "//ram:TaxTotalAmount/text()") == "0.00"


def test_credit_note_type_and_preceding_invoice() -> None:
    root = parse(write_cii(credit_note()))
    assert text(root, "//rsm:ExchangedDocument/ram:TypeCode/text()") == "381"
    reference = f"{SETTLEMENT}/ram:InvoiceReferencedDocument"
    assert text(root, f"{reference}/ram:IssuerAssignedID/text()") == "RE-2024-0042"
    assert text(root, f"{reference}/ram:FormattedIssueDateTime/qdt:DateTimeString/text()") == "20240402"
    assert text(root, f"{reference}/ram:FormattedIssueDateTime/qdt:DateTimeString/@format") == "102"
    # a credit note states positive amounts; the type code says which way the money goes
    assert text(root, "//ram:GrandTotalAmount/text()") == "285.60"


def test_direct_debit_mandate_creditor_id_and_debited_account() -> None:
    root = parse(write_cii(direct_debit_invoice()))
    assert text(root, f"{SETTLEMENT}/ram:CreditorReferenceID/text()") == "DE98ZZZ09999999999"
    assert text(root, f"{SETTLEMENT}/ram:PaymentReference/text()") == "RE-2024-0051"
    means = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans"
    assert text(root, f"{means}/ram:TypeCode/text()") == "59"
    assert (
        text(root, f"{means}/ram:PayerPartyDebtorFinancialAccount/ram:IBANID/text()")
        == "DE02120300000000202051"
    )
    assert count(root, f"{means}/ram:PayeePartyCreditorFinancialAccount") == 0
    assert (
        text(root, f"{SETTLEMENT}/ram:SpecifiedTradePaymentTerms/ram:DirectDebitMandateID/text()")
        == "MANDAT-0815"
    )


def test_credit_transfer_account_and_bic() -> None:
    root = parse(write_cii(german_invoice()))
    means = f"{SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans"
    assert text(root, f"{means}/ram:TypeCode/text()") == "58"
    assert (
        text(root, f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:IBANID/text()")
        == "DE89370400440532013000"
    )
    assert text(root, f"{means}/ram:PayeePartyCreditorFinancialAccount/ram:AccountName/text()") == (
        "Nordlicht Software GmbH"
    )
    assert (
        text(root, f"{means}/ram:PayeeSpecifiedCreditorFinancialInstitution/ram:BICID/text()")
        == "COBADEFFXXX"
    )


def test_decimals_are_written_without_exponent() -> None:
    invoice = german_invoice()
    line = dataclasses.replace(
        invoice.lines[1], quantity=D("3E+0"), net_price=D("2.5E+1"), net_amount=D("7.5E+1")
    )
    root = parse(write_cii(dataclasses.replace(invoice, lines=(invoice.lines[0], line, invoice.lines[2]))))
    assert text(root, f"{LINE}[2]//ram:BilledQuantity/text()") == "3"
    assert text(root, f"{LINE}[2]//ram:ChargeAmount/text()") == "25"
    assert text(root, f"{LINE}[2]//ram:LineTotalAmount/text()") == "75"
    big = dataclasses.replace(invoice.lines[1], quantity=D("1E+3"))
    root = parse(write_cii(dataclasses.replace(invoice, lines=(big,))))
    assert text(root, f"{LINE}//ram:BilledQuantity/text()") == "1000"
