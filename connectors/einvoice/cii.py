"""The UN/CEFACT CII D16B writer: one :class:`EInvoice` as an ``rsm:CrossIndustryInvoice``.

CII is the syntax of XRechnung-CII and of the XML inside a Factur-X / ZUGFeRD PDF. The writer only
serialises: the builder (``sync_engine.einvoices``) decides the values, rounds the amounts and
checks that the business terms a format needs are there (see :data:`XRECHNUNG_REQUIRED`).

Why the code is shaped like the schema: every complex type of the D16B XSD is a strict
``xsd:sequence``, so an element written one place too early makes the whole file schema-invalid.
Each ``_xxx`` function below writes one CII type and lists its children in the XSD's order; optional
values that are ``None`` are left out (an empty element breaks PEPPOL-EN16931-R008 in XRechnung).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Final, Literal

from lxml import etree

from connectors.einvoice.model import PROFILES, EInvoice, Line, Party, PaymentMeans, TaxSubtotal

__all__ = ["CII_FORMATS", "NSMAP", "XRECHNUNG_PAYMENT_FIELDS", "XRECHNUNG_REQUIRED", "CiiFormat", "write_cii"]

CiiFormat = Literal["cii", "xrechnung", "facturx"]
CII_FORMATS: Final[tuple[CiiFormat, ...]] = ("cii", "xrechnung", "facturx")

RSM: Final = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM: Final = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT: Final = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT: Final = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP: Final = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}

#: Business terms XRechnung 3.0 (CII) makes mandatory on top of EN 16931, as model field paths, with
#: the rule that demands each. The builder checks them before calling ``write_cii(.., "xrechnung")``.
XRECHNUNG_REQUIRED: Final[dict[str, str]] = {
    "buyer_reference": "BR-DE-15 (BT-10, the Leitweg-ID)",
    "payment_means": "BR-DE-1 (BG-16, at least one)",
    "seller.contact_name": "BR-DE-2/BR-DE-5 (BT-41)",
    "seller.contact_phone": "BR-DE-6 (BT-42; BR-DE-27 warns below three digits)",
    "seller.contact_email": "BR-DE-7 (BT-43; BR-DE-28 warns on a malformed address)",
    "seller.city": "BR-DE-3 (BT-37)",
    "seller.postal_code": "BR-DE-4 (BT-38)",
    "buyer.city": "BR-DE-8 (BT-52)",
    "buyer.postal_code": "BR-DE-9 (BT-53)",
    "seller.electronic_address": "PEPPOL-EN16931-R020 (BT-34, with its scheme: BR-62)",
    "buyer.electronic_address": "PEPPOL-EN16931-R010 (BT-49, with its scheme: BR-63)",
}

_CREDIT_TRANSFER_FIELDS: Final = (
    frozenset({"iban"}),
    frozenset({"mandate_id", "creditor_id", "debited_account", "card_last4"}),
)
_DIRECT_DEBIT_FIELDS: Final = (
    frozenset({"mandate_id", "creditor_id", "debited_account"}),
    frozenset({"iban", "account_name", "bic", "card_last4"}),
)
_CARD_FIELDS: Final = (
    frozenset({"card_last4"}),
    frozenset({"iban", "account_name", "mandate_id", "creditor_id", "debited_account"}),
)
#: Per payment means code (BT-81), the :class:`PaymentMeans` fields XRechnung requires and those it
#: forbids: BR-DE-23 (credit transfer), BR-DE-24 (card), BR-DE-25/30/31 and PEPPOL-EN16931-R061
#: (direct debit). Mandate and creditor id are document-wide in CII, so one XRechnung cannot mix
#: a direct debit with a credit transfer or a card payment.
XRECHNUNG_PAYMENT_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "30": _CREDIT_TRANSFER_FIELDS,
    "58": _CREDIT_TRANSFER_FIELDS,
    "59": _DIRECT_DEBIT_FIELDS,
    "48": _CARD_FIELDS,
    "54": _CARD_FIELDS,
    "55": _CARD_FIELDS,
}

_IBAN: Final = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\Z")
_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_DATE_FORMAT: Final = "102"  # UNTDID 2379: CCYYMMDD, the only format EN 16931 allows (CII-DT-097)


def write_cii(invoice: EInvoice, *, format: CiiFormat = "cii") -> bytes:
    """The invoice as CII D16B XML (UTF-8, with an XML declaration).

    ``format`` chooses the specification identifier (BT-24) and business process (BT-23) from
    :data:`~connectors.einvoice.model.PROFILES`; ``facturx`` is the Factur-X EN 16931 profile, whose
    identifier is plain ``urn:cen.eu:en16931:2017``. For ``xrechnung`` a VAT breakdown without a rate
    (category O) gets rate 0, because BR-DE-14 wants BT-119 in every breakdown.
    """
    if format not in CII_FORMATS:
        raise ValueError(f"unknown CII format {format!r}; expected one of {', '.join(CII_FORMATS)}")
    root = etree.Element(_rsm("CrossIndustryInvoice"), nsmap=NSMAP)
    _context(root, format)
    _document(root, invoice)
    transaction = _sub(root, _rsm("SupplyChainTradeTransaction"))
    for line in invoice.lines:
        _line(transaction, line)
    _agreement(transaction, invoice)
    _sub(transaction, _ram("ApplicableHeaderTradeDelivery"))  # mandatory in the XSD, empty here
    _settlement(transaction, invoice, format)
    body = etree.tostring(root, encoding="UTF-8", pretty_print=True)  # no declaration for UTF-8
    return _DECLARATION + bytes(body)


# -- document -------------------------------------------------------------------------------------


def _context(root: etree._Element, format: CiiFormat) -> None:
    specification, process = PROFILES[format]
    context = _sub(root, _rsm("ExchangedDocumentContext"))
    if process:  # BT-23; sequence: BusinessProcess before Guideline
        _text(_sub(context, _ram("BusinessProcessSpecifiedDocumentContextParameter")), "ID", process)
    _text(_sub(context, _ram("GuidelineSpecifiedDocumentContextParameter")), "ID", specification)


def _document(root: etree._Element, invoice: EInvoice) -> None:
    document = _sub(root, _rsm("ExchangedDocument"))
    _text(document, "ID", invoice.number)
    _text(document, "TypeCode", invoice.type_code)
    _date(document, "IssueDateTime", invoice.issue_date)
    if invoice.note:
        _text(_sub(document, _ram("IncludedNote")), "Content", invoice.note)


# -- lines ----------------------------------------------------------------------------------------


def _line(transaction: etree._Element, line: Line) -> None:
    item = _sub(transaction, _ram("IncludedSupplyChainTradeLineItem"))
    _text(_sub(item, _ram("AssociatedDocumentLineDocument")), "LineID", line.id)

    product = _sub(item, _ram("SpecifiedTradeProduct"))
    _opt(product, "SellerAssignedID", line.seller_item_id)
    _text(product, "Name", line.name)
    _opt(product, "Description", line.description)

    price = _sub(_sub(item, _ram("SpecifiedLineTradeAgreement")), _ram("NetPriceProductTradePrice"))
    _text(price, "ChargeAmount", _num(line.net_price))
    if line.base_quantity is not None:
        # the unit must be the invoiced quantity's (PEPPOL-EN16931-R130)
        _text(price, "BasisQuantity", _num(line.base_quantity), unitCode=line.unit_code)

    delivery = _sub(item, _ram("SpecifiedLineTradeDelivery"))
    _text(delivery, "BilledQuantity", _num(line.quantity), unitCode=line.unit_code)

    settlement = _sub(item, _ram("SpecifiedLineTradeSettlement"))
    tax = _sub(settlement, _ram("ApplicableTradeTax"))
    _text(tax, "TypeCode", "VAT")
    _text(tax, "CategoryCode", line.vat_category)
    if line.vat_rate is not None:  # category O: no rate at all (BR-O-05)
        _text(tax, "RateApplicablePercent", _num(line.vat_rate))
    _period(settlement, line.period_start, line.period_end)
    for allowance in line.allowances:
        charge = _sub(settlement, _ram("SpecifiedTradeAllowanceCharge"))
        _indicator(charge, "ChargeIndicator", False)
        _text(charge, "ActualAmount", _num(allowance.amount))
        _opt(charge, "ReasonCode", allowance.reason_code)
        _opt(charge, "Reason", allowance.reason)
    summation = _sub(settlement, _ram("SpecifiedTradeSettlementLineMonetarySummation"))
    _text(summation, "LineTotalAmount", _num(line.net_amount))


# -- header: agreement (parties) ------------------------------------------------------------------


def _agreement(transaction: etree._Element, invoice: EInvoice) -> None:
    agreement = _sub(transaction, _ram("ApplicableHeaderTradeAgreement"))
    _opt(agreement, "BuyerReference", invoice.buyer_reference)
    _party(agreement, "SellerTradeParty", invoice.seller, seller=True)
    _party(agreement, "BuyerTradeParty", invoice.buyer, seller=False)
    if invoice.order_reference:
        _text(
            _sub(agreement, _ram("BuyerOrderReferencedDocument")), "IssuerAssignedID", invoice.order_reference
        )


def _party(parent: etree._Element, tag: str, party: Party, *, seller: bool) -> None:
    node = _sub(parent, _ram(tag))
    _opt(node, "ID", party.identifier)  # BT-29 / BT-46
    _text(node, "Name", party.name)
    if party.legal_id or party.trading_name:
        legal = _sub(node, _ram("SpecifiedLegalOrganization"))
        _opt(legal, "ID", party.legal_id)  # BT-30 / BT-47
        _opt(legal, "TradingBusinessName", party.trading_name)  # BT-28 / BT-45
    if party.contact_name or party.contact_phone or party.contact_email:
        contact = _sub(node, _ram("DefinedTradeContact"))
        _opt(contact, "PersonName", party.contact_name)
        if party.contact_phone:
            phone = _sub(contact, _ram("TelephoneUniversalCommunication"))
            _text(phone, "CompleteNumber", party.contact_phone)
        if party.contact_email:
            _text(_sub(contact, _ram("EmailURIUniversalCommunication")), "URIID", party.contact_email)
    address = _sub(node, _ram("PostalTradeAddress"))
    _opt(address, "PostcodeCode", party.postal_code)
    _opt(address, "LineOne", party.street)
    _opt(address, "LineTwo", party.additional_street)
    _opt(address, "CityName", party.city)
    _text(address, "CountryID", party.country)
    _opt(address, "CountrySubDivisionName", party.subdivision)
    if party.electronic_address:
        uri = _sub(node, _ram("URIUniversalCommunication"))
        scheme = {"schemeID": party.electronic_address_scheme} if party.electronic_address_scheme else {}
        _text(uri, "URIID", party.electronic_address, **scheme)
    if party.vat_id:
        _text(_sub(node, _ram("SpecifiedTaxRegistration")), "ID", party.vat_id, schemeID="VA")
    if seller and party.tax_registration_id:  # BT-32 exists for the seller only
        _text(_sub(node, _ram("SpecifiedTaxRegistration")), "ID", party.tax_registration_id, schemeID="FC")


# -- header: settlement ---------------------------------------------------------------------------


def _settlement(transaction: etree._Element, invoice: EInvoice, format: CiiFormat) -> None:
    settlement = _sub(transaction, _ram("ApplicableHeaderTradeSettlement"))
    means = invoice.payment_means
    _opt(settlement, "CreditorReferenceID", _first(m.creditor_id for m in means))  # BT-90
    _opt(settlement, "PaymentReference", _first(m.remittance for m in means))  # BT-83
    _text(settlement, "InvoiceCurrencyCode", invoice.currency)
    for payment in means:
        _payment_means(settlement, payment)
    for subtotal in invoice.taxes:
        _tax_subtotal(settlement, subtotal, format)
    _period(settlement, invoice.period_start, invoice.period_end)
    _payment_terms(settlement, invoice)
    _totals(settlement, invoice)
    if invoice.preceding_invoice:  # BG-3: the invoice a credit note corrects
        reference = _sub(settlement, _ram("InvoiceReferencedDocument"))
        _text(reference, "IssuerAssignedID", invoice.preceding_invoice)
        if invoice.preceding_invoice_date:
            issued = _sub(reference, _ram("FormattedIssueDateTime"))
            _sub(issued, _qdt("DateTimeString"), format=_DATE_FORMAT).text = _yyyymmdd(
                invoice.preceding_invoice_date
            )


def _payment_means(settlement: etree._Element, payment: PaymentMeans) -> None:
    node = _sub(settlement, _ram("SpecifiedTradeSettlementPaymentMeans"))
    _text(node, "TypeCode", payment.code)
    if payment.card_last4:  # BG-18: only the last digits, never the full card number
        _text(_sub(node, _ram("ApplicableTradeSettlementFinancialCard")), "ID", payment.card_last4)
    if payment.debited_account:  # BT-91, direct debit
        _text(_sub(node, _ram("PayerPartyDebtorFinancialAccount")), "IBANID", payment.debited_account)
    if payment.iban or payment.account_name:  # BG-17
        account = _sub(node, _ram("PayeePartyCreditorFinancialAccount"))
        is_iban = payment.iban is not None and _IBAN.match(payment.iban.replace(" ", "")) is not None
        _opt(account, "IBANID", payment.iban if is_iban else None)
        _opt(account, "AccountName", payment.account_name)
        # BT-84 is any account identifier: one that is no IBAN (a US account number) is proprietary
        _opt(account, "ProprietaryID", None if is_iban else payment.iban)
    if payment.bic:
        _text(_sub(node, _ram("PayeeSpecifiedCreditorFinancialInstitution")), "BICID", payment.bic)


def _tax_subtotal(settlement: etree._Element, subtotal: TaxSubtotal, format: CiiFormat) -> None:
    tax = _sub(settlement, _ram("ApplicableTradeTax"))
    _text(tax, "CalculatedAmount", _num(subtotal.tax))
    _text(tax, "TypeCode", "VAT")
    _opt(tax, "ExemptionReason", subtotal.exemption_reason)
    _text(tax, "BasisAmount", _num(subtotal.taxable))
    _text(tax, "CategoryCode", subtotal.category)
    _opt(tax, "ExemptionReasonCode", subtotal.exemption_code)
    rate = subtotal.rate
    if rate is None and format == "xrechnung":
        rate = Decimal("0")  # BR-DE-14: XRechnung wants BT-119 even where EN 16931 has no rate (O)
    if rate is not None:
        _text(tax, "RateApplicablePercent", _num(rate))


def _payment_terms(settlement: etree._Element, invoice: EInvoice) -> None:
    mandates = [m.mandate_id for m in invoice.payment_means if m.mandate_id]
    if not (invoice.payment_terms or invoice.due_date or mandates):
        return
    terms = _sub(settlement, _ram("SpecifiedTradePaymentTerms"))
    _opt(terms, "Description", invoice.payment_terms)  # BT-20
    if invoice.due_date:
        _date(terms, "DueDateDateTime", invoice.due_date)  # BT-9
    for mandate in dict.fromkeys(mandates):  # BT-89, once each
        _text(terms, "DirectDebitMandateID", mandate)


def _totals(settlement: etree._Element, invoice: EInvoice) -> None:
    totals = _sub(settlement, _ram("SpecifiedTradeSettlementHeaderMonetarySummation"))
    _text(totals, "LineTotalAmount", _num(invoice.line_total))  # BT-106
    if invoice.charge_total:
        _text(totals, "ChargeTotalAmount", _num(invoice.charge_total))  # BT-108
    if invoice.allowance_total:
        _text(totals, "AllowanceTotalAmount", _num(invoice.allowance_total))  # BT-107
    _text(totals, "TaxBasisTotalAmount", _num(invoice.tax_exclusive))  # BT-109
    # BT-110 is the one amount that carries its currency: it tells it from BT-111 (tax currency)
    _text(totals, "TaxTotalAmount", _num(invoice.tax_total), currencyID=invoice.currency)
    _text(totals, "GrandTotalAmount", _num(invoice.tax_inclusive))  # BT-112
    if invoice.prepaid:
        _text(totals, "TotalPrepaidAmount", _num(invoice.prepaid))  # BT-113
    _text(totals, "DuePayableAmount", _num(invoice.payable))  # BT-115


# -- small helpers --------------------------------------------------------------------------------


def _rsm(name: str) -> str:
    return f"{{{RSM}}}{name}"


def _ram(name: str) -> str:
    return f"{{{RAM}}}{name}"


def _qdt(name: str) -> str:
    return f"{{{QDT}}}{name}"


def _sub(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, tag, attributes)


def _text(parent: etree._Element, name: str, value: str, **attributes: str) -> etree._Element:
    node = _sub(parent, _ram(name), **attributes)
    node.text = value
    return node


def _opt(parent: etree._Element, name: str, value: str | None) -> None:
    if value is not None and value.strip():
        _text(parent, name, value)


def _date(parent: etree._Element, name: str, value: dt.date) -> None:
    holder = _sub(parent, _ram(name))
    _sub(holder, f"{{{UDT}}}DateTimeString", format=_DATE_FORMAT).text = _yyyymmdd(value)


def _period(parent: etree._Element, start: dt.date | None, end: dt.date | None) -> None:
    if start is None and end is None:
        return
    period = _sub(parent, _ram("BillingSpecifiedPeriod"))
    if start is not None:
        _date(period, "StartDateTime", start)
    if end is not None:
        _date(period, "EndDateTime", end)


def _indicator(parent: etree._Element, name: str, value: bool) -> None:
    holder = _sub(parent, _ram(name))
    _sub(holder, f"{{{UDT}}}Indicator").text = "true" if value else "false"


def _yyyymmdd(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def _num(value: Decimal) -> str:
    """A decimal in plain notation (``1E+2`` -> ``100``): xs:decimal has no exponent."""
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    text = f"{value:f}"
    return text[1:] if text.startswith("-") and value.is_zero() else text


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)
