"""UBL 2.1 writer: an :class:`~connectors.einvoice.model.EInvoice` as a UBL Invoice or CreditNote.

One writer serves three formats that differ only in their specification identifier (BT-24),
business process (BT-23) and one XRechnung detail (below): plain EN 16931 (``ubl``), Peppol BIS
Billing 3.0 (``peppol``) and XRechnung 3.0 (``xrechnung``). What each CIUS additionally requires of
the *data* (contacts, electronic addresses, buyer reference ...) is the builder's job; this module
only serialises, so a value the model does not carry is simply not written.

Why it is built the way it is:

- lxml elements, never text templates: escaping is lxml's job, and a wrong nesting cannot happen.
- Elements are appended in the order of the UBL 2.1 XSD sequences; the schema check is strict and
  an element out of place makes the whole document invalid.
- Amounts (BT-106 ... BT-131, BT-136) are written with exactly two decimals and their
  ``currencyID``; an amount with more decimals raises :class:`ValueError` instead of being rounded
  here, because rounding one amount silently would break the totals rules (BR-CO-*) further down —
  the builder rounds. Prices (BT-146), quantities and percentages are written as given, always as
  plain decimals (``1E+1`` is ``10``).
- Optional values that are None or blank are left out: Peppol forbids empty elements
  (PEPPOL-EN16931-R008).

Syntax details EN 16931 fixes for UBL that are easy to get wrong:

- A CreditNote has no ``cbc:DueDate``: BT-9 goes to the first ``cac:PaymentMeans`` as
  ``cbc:PaymentDueDate`` (a credit note's due date without payment means is not written).
- BT-32 (seller tax registration) is a second ``cac:PartyTaxScheme`` whose scheme is not ``VAT``;
  ``FC`` (UNCL 5153 "fiscal code") as in the CEN and KoSIT examples.
- BT-90 (SEPA creditor id) is a seller ``cac:PartyIdentification`` with ``schemeID="SEPA"``.
- VAT category ``O`` carries no rate (BR-O-05), except in the VAT breakdown of an XRechnung, whose
  BR-DE-14 wants BT-119 on every breakdown: there it is ``0``.
- A card (BG-18) needs ``cbc:NetworkID`` in UBL although EN 16931 has no term for it; the model
  has no card network, so ``NA`` (not available) is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Final, Literal, get_args

from lxml import etree

from connectors.einvoice.model import PROFILES, EInvoice, Line, Party, PaymentMeans, TaxSubtotal

__all__ = ["UBL_FORMATS", "UblFormat", "write_ubl"]

UblFormat = Literal["ubl", "peppol", "xrechnung"]
#: The formats this writer produces (the CII ones are :mod:`connectors.einvoice.cii`'s).
UBL_FORMATS: Final[tuple[str, ...]] = get_args(UblFormat)

INVOICE_NS: Final = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS: Final = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC: Final = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC: Final = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"

_CENT: Final = Decimal("0.01")
_VAT: Final = "VAT"
_TAX_REGISTRATION_SCHEME: Final = "FC"  # BT-32: any TaxScheme id but VAT; FC as in the CEN examples
_NOT_SUBJECT_TO_VAT: Final = "O"
_CARD_NETWORK_UNKNOWN: Final = "NA"
#: lxml's own declaration uses single quotes; this is the form every official example has.
_DECLARATION: Final = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def write_ubl(invoice: EInvoice, *, format: UblFormat = "ubl") -> bytes:
    """The invoice as UBL 2.1 XML (UTF-8, with declaration) for ``format``'s CIUS.

    An ``Invoice`` for every type code but 381, which gives a ``CreditNote``. ``ValueError`` for an
    unknown format or an amount with more than two decimals.
    """
    if format not in UBL_FORMATS:
        raise ValueError(f"write_ubl writes {', '.join(UBL_FORMATS)}, not {format!r}")
    return _Writer(invoice, format).document()


class _Writer:
    """One document being written: keeps the invoice, its currency and the root kind at hand."""

    def __init__(self, invoice: EInvoice, format: UblFormat) -> None:
        self.inv = invoice
        self.format = format
        self.credit = invoice.is_credit_note
        self.currency = invoice.currency

    # -- document -----------------------------------------------------------------------------

    def document(self) -> bytes:
        inv = self.inv
        ns = CREDIT_NOTE_NS if self.credit else INVOICE_NS
        root = etree.Element(
            f"{{{ns}}}{'CreditNote' if self.credit else 'Invoice'}",
            nsmap={None: ns, "cac": CAC, "cbc": CBC},
        )
        customization, profile = PROFILES[self.format]
        _cbc(root, "CustomizationID", customization)  # BT-24
        _cbc(root, "ProfileID", profile)  # BT-23
        _cbc(root, "ID", inv.number)  # BT-1
        _cbc(root, "IssueDate", _date(inv.issue_date))  # BT-2
        if self.credit:
            _cbc(root, "CreditNoteTypeCode", inv.type_code)  # BT-3
        else:
            _cbc(root, "DueDate", _date(inv.due_date))  # BT-9
            _cbc(root, "InvoiceTypeCode", inv.type_code)  # BT-3
        _cbc(root, "Note", inv.note)  # BT-22
        _cbc(root, "DocumentCurrencyCode", inv.currency)  # BT-5
        # BT-6 is not written: a tax currency needs a second TaxTotal in it (BR-53), which the
        # model does not carry (VAT is accounted in the invoice currency).
        _cbc(root, "BuyerReference", inv.buyer_reference)  # BT-10
        _period(root, inv.period_start, inv.period_end)  # BG-14
        if _present(inv.order_reference):
            _cbc(_cac(root, "OrderReference"), "ID", inv.order_reference)  # BT-13
        if _present(inv.preceding_invoice):  # BG-3
            ref = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
            _cbc(ref, "ID", inv.preceding_invoice)  # BT-25
            _cbc(ref, "IssueDate", _date(inv.preceding_invoice_date))  # BT-26
        creditor_ids = _unique(m.creditor_id for m in inv.payment_means)
        self._party(_cac(root, "AccountingSupplierParty"), inv.seller, creditor_ids, seller=True)
        self._party(_cac(root, "AccountingCustomerParty"), inv.buyer, (), seller=False)
        for index, means in enumerate(inv.payment_means):
            # a UBL CreditNote has no DueDate: BT-9 is the first payment means' PaymentDueDate
            due = inv.due_date if self.credit and index == 0 else None
            self._payment_means(root, means, due)
        if _present(inv.payment_terms):
            _cbc(_cac(root, "PaymentTerms"), "Note", inv.payment_terms)  # BT-20
        self._tax_total(root)
        self._totals(root)
        for line in inv.lines:
            self._line(root, line)
        body: bytes = etree.tostring(root, encoding="UTF-8", pretty_print=True)
        return _DECLARATION + body

    # -- parties ------------------------------------------------------------------------------

    def _party(
        self, parent: etree._Element, party: Party, creditor_ids: Iterable[str], *, seller: bool
    ) -> None:
        node = _cac(parent, "Party")
        if _present(party.electronic_address):  # BT-34 / BT-49
            _cbc(node, "EndpointID", party.electronic_address, schemeID=party.electronic_address_scheme)
        if _present(party.identifier):  # BT-29 / BT-46
            _cbc(_cac(node, "PartyIdentification"), "ID", party.identifier)
        for creditor_id in creditor_ids:  # BT-90
            _cbc(_cac(node, "PartyIdentification"), "ID", creditor_id, schemeID="SEPA")
        if _present(party.trading_name):  # BT-28 / BT-45
            _cbc(_cac(node, "PartyName"), "Name", party.trading_name)
        address = _cac(node, "PostalAddress")  # BG-5 / BG-8
        _cbc(address, "StreetName", party.street)
        _cbc(address, "AdditionalStreetName", party.additional_street)
        _cbc(address, "CityName", party.city)
        _cbc(address, "PostalZone", party.postal_code)
        _cbc(address, "CountrySubentity", party.subdivision)
        _cbc(_cac(address, "Country"), "IdentificationCode", party.country)
        if _present(party.vat_id):  # BT-31 / BT-48
            scheme = _cac(node, "PartyTaxScheme")
            _cbc(scheme, "CompanyID", party.vat_id)
            _cbc(_cac(scheme, "TaxScheme"), "ID", _VAT)
        if seller and _present(party.tax_registration_id):  # BT-32 (the buyer has no such term)
            scheme = _cac(node, "PartyTaxScheme")
            _cbc(scheme, "CompanyID", party.tax_registration_id)
            _cbc(_cac(scheme, "TaxScheme"), "ID", _TAX_REGISTRATION_SCHEME)
        legal = _cac(node, "PartyLegalEntity")
        _cbc(legal, "RegistrationName", party.name)  # BT-27 / BT-44
        _cbc(legal, "CompanyID", party.legal_id)  # BT-30 / BT-47
        if any(_present(v) for v in (party.contact_name, party.contact_phone, party.contact_email)):
            contact = _cac(node, "Contact")  # BG-6 / BG-9
            _cbc(contact, "Name", party.contact_name)
            _cbc(contact, "Telephone", party.contact_phone)
            _cbc(contact, "ElectronicMail", party.contact_email)

    # -- payment ------------------------------------------------------------------------------

    def _payment_means(self, root: etree._Element, means: PaymentMeans, due: dt.date | None) -> None:
        node = _cac(root, "PaymentMeans")  # BG-16
        _cbc(node, "PaymentMeansCode", means.code)  # BT-81
        _cbc(node, "PaymentDueDate", _date(due))
        _cbc(node, "PaymentID", means.remittance)  # BT-83
        if _present(means.card_last4):  # BG-18
            card = _cac(node, "CardAccount")
            _cbc(card, "PrimaryAccountNumberID", means.card_last4)  # BT-87
            _cbc(card, "NetworkID", _CARD_NETWORK_UNKNOWN)  # required by UBL, no EN 16931 term
        if _present(means.iban):  # BG-17
            account = _cac(node, "PayeeFinancialAccount")
            _cbc(account, "ID", means.iban)  # BT-84
            _cbc(account, "Name", means.account_name)  # BT-85
            if _present(means.bic):
                _cbc(_cac(account, "FinancialInstitutionBranch"), "ID", means.bic)  # BT-86
        if _present(means.mandate_id) or _present(means.debited_account):  # BG-19
            mandate = _cac(node, "PaymentMandate")
            _cbc(mandate, "ID", means.mandate_id)  # BT-89
            if _present(means.debited_account):
                _cbc(_cac(mandate, "PayerFinancialAccount"), "ID", means.debited_account)  # BT-91

    # -- totals -------------------------------------------------------------------------------

    def _tax_total(self, root: etree._Element) -> None:
        total = _cac(root, "TaxTotal")
        self._amount(total, "TaxAmount", self.inv.tax_total, "BT-110")
        for subtotal in self.inv.taxes:
            self._tax_subtotal(total, subtotal)

    def _tax_subtotal(self, parent: etree._Element, subtotal: TaxSubtotal) -> None:
        node = _cac(parent, "TaxSubtotal")  # BG-23
        self._amount(node, "TaxableAmount", subtotal.taxable, "BT-116")
        self._amount(node, "TaxAmount", subtotal.tax, "BT-117")
        category = _cac(node, "TaxCategory")
        _cbc(category, "ID", subtotal.category)  # BT-118
        rate = subtotal.rate
        if subtotal.category == _NOT_SUBJECT_TO_VAT:
            # BR-O-05 vs BR-DE-14 (XRechnung) and DE-R-014 (Peppol between two German parties)
            german = self.inv.seller.country == self.inv.buyer.country == "DE"
            rate = (
                Decimal("0") if self.format == "xrechnung" or (self.format == "peppol" and german) else None
            )
        _cbc(category, "Percent", _plain(rate))  # BT-119
        _cbc(category, "TaxExemptionReasonCode", subtotal.exemption_code)  # BT-121
        _cbc(category, "TaxExemptionReason", subtotal.exemption_reason)  # BT-120
        _cbc(_cac(category, "TaxScheme"), "ID", _VAT)

    def _totals(self, root: etree._Element) -> None:
        inv = self.inv
        node = _cac(root, "LegalMonetaryTotal")  # BG-22
        self._amount(node, "LineExtensionAmount", inv.line_total, "BT-106")
        self._amount(node, "TaxExclusiveAmount", inv.tax_exclusive, "BT-109")
        self._amount(node, "TaxInclusiveAmount", inv.tax_inclusive, "BT-112")
        if inv.allowance_total:
            self._amount(node, "AllowanceTotalAmount", inv.allowance_total, "BT-107")
        if inv.charge_total:
            self._amount(node, "ChargeTotalAmount", inv.charge_total, "BT-108")
        if inv.prepaid:
            self._amount(node, "PrepaidAmount", inv.prepaid, "BT-113")
        self._amount(node, "PayableAmount", inv.payable, "BT-115")

    # -- lines --------------------------------------------------------------------------------

    def _line(self, root: etree._Element, line: Line) -> None:
        node = _cac(root, "CreditNoteLine" if self.credit else "InvoiceLine")  # BG-25
        _cbc(node, "ID", line.id)  # BT-126
        quantity = "CreditedQuantity" if self.credit else "InvoicedQuantity"
        _cbc(node, quantity, _plain(line.quantity), unitCode=line.unit_code)  # BT-129, BT-130
        self._amount(node, "LineExtensionAmount", line.net_amount, f"BT-131 of line {line.id}")
        _period(node, line.period_start, line.period_end)  # BG-26
        for allowance in line.allowances:  # BG-27
            charge = _cac(node, "AllowanceCharge")
            _cbc(charge, "ChargeIndicator", "false")
            _cbc(charge, "AllowanceChargeReasonCode", allowance.reason_code)  # BT-140
            _cbc(charge, "AllowanceChargeReason", allowance.reason)  # BT-139
            self._amount(charge, "Amount", allowance.amount, f"BT-136 of line {line.id}")
        item = _cac(node, "Item")
        _cbc(item, "Description", line.description)  # BT-154
        _cbc(item, "Name", line.name)  # BT-153
        if _present(line.seller_item_id):
            _cbc(_cac(item, "SellersItemIdentification"), "ID", line.seller_item_id)  # BT-155
        category = _cac(item, "ClassifiedTaxCategory")
        _cbc(category, "ID", line.vat_category)  # BT-151
        if line.vat_category != _NOT_SUBJECT_TO_VAT:  # BR-O-05
            _cbc(category, "Percent", _plain(line.vat_rate))  # BT-152
        _cbc(_cac(category, "TaxScheme"), "ID", _VAT)
        price = _cac(node, "Price")  # BG-29
        _cbc(price, "PriceAmount", _plain(line.net_price), currencyID=self.currency)  # BT-146
        if line.base_quantity is not None:  # BT-149, in the line's unit (BT-150 = BT-130)
            _cbc(price, "BaseQuantity", _plain(line.base_quantity), unitCode=line.unit_code)

    # -- values -------------------------------------------------------------------------------

    def _amount(self, parent: etree._Element, name: str, value: Decimal, term: str) -> None:
        _cbc(parent, name, _money(value, term), currencyID=self.currency)


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{CAC}}}{name}")


def _cbc(parent: etree._Element, name: str, text: str | None, **attributes: str | None) -> None:
    """Append ``cbc:name`` with ``text``; nothing at all when the text is None or blank."""
    if not _present(text):
        return
    node = etree.SubElement(parent, f"{{{CBC}}}{name}")
    node.text = text
    for key, value in attributes.items():
        if _present(value):
            node.set(key, value)


def _present(value: str | None) -> bool:
    return value is not None and bool(value.strip())


def _period(parent: etree._Element, start: dt.date | None, end: dt.date | None) -> None:
    if start is None and end is None:
        return
    period = _cac(parent, "InvoicePeriod")
    _cbc(period, "StartDate", _date(start))
    _cbc(period, "EndDate", _date(end))


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(value: Decimal | None) -> str | None:
    """A decimal without exponent (``1E+1`` -> ``10``), as given otherwise."""
    return f"{value:f}" if value is not None else None


def _money(value: Decimal, term: str) -> str:
    """An amount with exactly two decimals; more than two is the builder's rounding bug."""
    rounded = value.quantize(_CENT)
    if rounded != value:
        raise ValueError(f"{term} is {value}: EN 16931 amounts have at most two decimals (BR-DEC)")
    return f"{rounded:f}"


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value is not None and value.strip():
            seen.setdefault(value.strip(), None)
    return tuple(seen)
