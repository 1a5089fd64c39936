"""Structured e-invoices of stored invoices: build the EN 16931 model, write it, prove it valid.

The path of one invoice: :func:`build_einvoice` turns the stored invoice, the customer record and
the seller settings into :class:`connectors.einvoice.model.EInvoice` (every amount exactly what the
customer was billed, as on the PDF); a writer serialises it in the asked format; the validator
checks the XML schema, the EN 16931 rules and the format's own rules (Peppol BIS 3, XRechnung).
:func:`export_einvoice` returns only a file that passed; anything else raises
:class:`EInvoiceInvalidError` with the failed rules, so an invalid file never leaves billsync.

What the norm asks of the data, and where it comes from:

- seller (BG-4): ``seller:`` in billsync.yaml: name, street/city/postal_code/country, vat_id or
  tax_number, email/phone/contact_name (XRechnung requires a contact), electronic_address;
- buyer (BG-7): the customer record: name, billing_address (the country name or code becomes
  ISO 3166 alpha-2), vat_id, buyer_reference (else the account number), electronic_address (else
  the billing e-mail, scheme ``EM``);
- VAT (BG-23): each billing tax id's category from ``einvoice.tax_categories`` (default ``S``);
  untaxed lines get ``einvoice.untaxed_category`` (default ``O``, not subject to VAT) with its
  exemption reason. EN 16931 forbids VAT identifiers on an invoice with category ``O``
  (BR-O-02), so they are left out of such invoices;
- payment means (BG-16): the customer's SEPA mandate (59), else the seller's bank account from
  ``payments.bank_account`` (58 SEPA credit transfer in EUR, else 30), else ``1`` (not defined)
  with the payment instructions as the note.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

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
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.outbox import OPEN_STATUSES, enqueue
from sync_engine.runtime import Runtime
from sync_engine.settings import Settings
from sync_engine.store.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, OutboxItem, utcnow

__all__ = [
    "FORMATS",
    "EInvoiceConfigError",
    "EInvoiceInvalidError",
    "ExportedInvoice",
    "build_einvoice",
    "country_code",
    "export_einvoice",
    "validate_files",
    "validated_einvoice",
    "write_einvoice",
]

#: The formats billsync writes (``billsync invoices export --format``).
FORMATS: Final = ("ubl", "peppol", "xrechnung", "cii", "facturx")
_CENT: Final = Decimal("0.01")
_UNTAXED_REASONS: Final = {
    "O": "Not subject to VAT",
    "E": "Exempt from VAT",
    "AE": "Reverse charge",
    "K": "Intra-community supply",
    "G": "Export outside the EU",
    "Z": None,
}


#: Names CRMs hold that ISO 3166 does not: common usage and the German/French names of neighbours.
_COUNTRY_ALIASES: Final = {
    "uk": "GB",
    "england": "GB",
    "great britain": "GB",
    "deutschland": "DE",
    "österreich": "AT",
    "schweiz": "CH",
    "suisse": "CH",
    "frankreich": "FR",
    "niederlande": "NL",
    "belgien": "BE",
    "belgique": "BE",
    "italien": "IT",
    "spanien": "ES",
    "allemagne": "DE",
    "autriche": "AT",
    "pays-bas": "NL",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
}


class EInvoiceConfigError(ValueError):
    """The configuration or the customer record lacks what EN 16931 requires (says which key)."""


def country_code(value: object) -> str | None:
    """``Germany`` / ``DE`` / ``deu`` -> ``DE`` (ISO 3166-1 alpha-2); None if it is no country."""
    import pycountry

    text = str(value or "").strip()
    if not text:
        return None
    text = _COUNTRY_ALIASES.get(text.casefold(), text)
    if len(text) == 2:
        found = pycountry.countries.get(alpha_2=text.upper())
        return str(found.alpha_2) if found is not None else None
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return None


def _text(value: object) -> str | None:
    text = " ".join(str(value or "").split())
    return text or None


def _seller(settings: Settings, *, vat_ids: bool, email_address: bool) -> Party:
    seller = settings.seller
    if seller is None:
        raise EInvoiceConfigError(
            "e-invoices need a seller block in billsync.yaml (seller: name, country ...)"
        )
    if not seller.country:
        raise EInvoiceConfigError("seller.country is required for e-invoices (ISO 3166 code, e.g. DE)")
    return Party(
        name=seller.name,
        country=seller.country,
        street=_text(seller.street),
        city=_text(seller.city),
        postal_code=_text(seller.postal_code),
        vat_id=_text(seller.vat_id) if vat_ids else None,
        tax_registration_id=_text(seller.tax_number),
        legal_id=_text(seller.legal_id),
        electronic_address=_text(seller.electronic_address or (seller.email if email_address else None)),
        electronic_address_scheme=seller.electronic_address_scheme
        if seller.electronic_address
        else ("EM" if seller.email and email_address else None),
        contact_name=_text(seller.contact_name or seller.name),
        contact_phone=_text(seller.phone),
        contact_email=_text(seller.email),
    )


def _buyer(
    invoice: Invoice | CreditNote, customer: Mapping[str, Any] | None, *, vat_ids: bool, email_address: bool
) -> Party:
    data = customer or {}
    address = data.get("billing_address") or {}
    country = country_code(address.get("country")) if isinstance(address, Mapping) else None
    if country is None:
        raise EInvoiceConfigError(
            f"customer {invoice.customer_id}: the billing address has no country EN 16931 knows "
            f"({address.get('country') if isinstance(address, Mapping) else None!r})"
        )
    street = str(address.get("street") or "").splitlines()
    email = _text(data.get("billing_email") or data.get("email"))
    if email and "," in email:
        email = email.split(",")[0].strip()
    electronic = _text(data.get("electronic_address")) or (email if email_address else None)
    scheme = data.get("electronic_address_scheme") if data.get("electronic_address") else "EM"
    return Party(
        name=str(data.get("name") or invoice.customer_id),
        country=country,
        street=_text(street[0]) if street else None,
        additional_street=_text(" ".join(street[1:])) if len(street) > 1 else None,
        city=_text(address.get("city")),
        postal_code=_text(address.get("postal_code")),
        subdivision=_text(address.get("state")),
        vat_id=_text(data.get("vat_id")) if vat_ids else None,
        electronic_address=electronic,
        electronic_address_scheme=str(scheme) if electronic and scheme else None,
        contact_email=email,
        contact_phone=_text(data.get("phone")),
        identifier=_text(data.get("account_number")),
    )


def _category(settings: Settings, line: InvoiceLine | CreditNoteLine) -> tuple[str, Decimal | None]:
    """BT-151/152 of a stored invoice or credit-note line."""
    if line.tax_id is not None and line.tax_rate is not None:
        category = settings.einvoice.tax_categories.get(line.tax_id, "S")
        return category, line.tax_rate
    category = settings.einvoice.untaxed_category
    return category, None if category == "O" else Decimal("0")


def _exemption(settings: Settings, category: str) -> str | None:
    """BT-120 for the categories that need a reason (every exempt or out-of-scope one, not Z)."""
    if category in _UNTAXED_REASONS and category != "Z":
        return settings.einvoice.exemption_reason or _UNTAXED_REASONS[category]
    return None


def _line(settings: Settings, line: InvoiceLine) -> Line:
    category, rate = _category(settings, line)
    amount = line.amount
    discount = line.discount_amount or Decimal("0")
    if line.tax_inclusive:  # EN 16931 lines are net: take the tax out, the discount with it
        net = amount - discount - (line.tax_amount or Decimal("0"))
        gross, allowances = net, tuple[Allowance, ...]()
    else:
        net = amount - discount
        gross = amount
        allowances = (Allowance(discount.quantize(_CENT)),) if discount else ()
    quantity = line.quantity.normalize() if line.quantity else Decimal("1")
    price = (gross / quantity) if quantity else gross
    base_quantity = None
    if quantity and (price.quantize(Decimal("0.000001")) * quantity).quantize(_CENT) != gross.quantize(_CENT):
        # exact: the price of all of them (a price is never negative: the sign stays on the quantity)
        price, base_quantity = abs(gross), abs(quantity)
    elif quantity:
        price = price.quantize(Decimal("0.000001")).normalize()
    period_end = line.period_end - dt.timedelta(days=1) if line.period_end else None
    description = " ".join(line.description.split()) or (line.product_code or "Item")
    return Line(
        id=str(line.position),
        name=description[:200],
        quantity=quantity,
        net_price=price,
        net_amount=net.quantize(_CENT),
        vat_category=category,
        vat_rate=rate,
        unit_code=settings.einvoice.unit_code,
        seller_item_id=line.product_code,
        period_start=line.period_start,
        period_end=period_end
        if period_end and line.period_start and period_end >= line.period_start
        else None,
        allowances=allowances,
        base_quantity=base_quantity,
    )


def _taxes(settings: Settings, invoice: Invoice, lines: list[Line]) -> tuple[TaxSubtotal, ...]:
    """BG-23 from the stored tax lines (what was billed), one per category and rate."""
    groups: dict[tuple[str, Decimal | None], Decimal] = {}
    for line in lines:
        key = (line.vat_category, line.vat_rate)
        groups[key] = groups.get(key, Decimal("0")) + line.net_amount
    stored: dict[Decimal, Decimal] = {}
    for tax in invoice.tax_lines:
        stored[tax.rate.normalize()] = stored.get(tax.rate.normalize(), Decimal("0")) + tax.amount
    subtotals = []
    for (category, rate), taxable in groups.items():
        if rate is None or rate == 0:
            amount = Decimal("0")
        else:
            amount = stored.get(rate.normalize(), (taxable * rate / 100).quantize(_CENT))
        reason = _exemption(settings, category)
        subtotals.append(
            TaxSubtotal(
                category=category,
                rate=rate,
                taxable=taxable.quantize(_CENT),
                tax=amount.quantize(_CENT),
                exemption_reason=reason,
            )
        )
    return tuple(subtotals)


def _payment_means(
    settings: Settings, invoice: Invoice, customer: Mapping[str, Any] | None
) -> tuple[PaymentMeans, ...]:
    data = customer or {}
    payments = settings.payments
    if data.get("payment_method") == "direct_debit" and data.get("sepa_mandate_id") and data.get("iban"):
        return (
            PaymentMeans(
                code="59",
                remittance=invoice.number,
                mandate_id=str(data["sepa_mandate_id"]),
                creditor_id=payments.sepa.creditor_id if payments.sepa else None,
                debited_account=str(data["iban"]),
            ),
        )
    account = payments.bank_account
    if account is not None:
        sepa = invoice.currency == "EUR"
        return (
            PaymentMeans(
                code="58" if sepa else "30",
                remittance=invoice.number,
                iban=account.iban.replace(" ", ""),
                bic=account.bic,
                account_name=account.name,
            ),
        )
    return (PaymentMeans(code="1", remittance=invoice.number),)


def build_einvoice(
    invoice: Invoice, customer: Mapping[str, Any] | None, settings: Settings, fmt: str = "ubl"
) -> EInvoice:
    """The EN 16931 model of a stored, finalised invoice (lines and tax lines loaded).

    Without an electronic address of its own, a party is reached by e-mail (scheme ``EM``), except
    in Peppol, whose code list has no e-mail scheme: there the address must be configured.
    """
    email_address = fmt != "peppol"
    if invoice.number is None:
        raise EInvoiceConfigError(f"invoice {invoice.id} is not finalised: it has no number")
    categories = {_category(settings, line)[0] for line in invoice.lines}
    vat_ids = "O" not in categories  # BR-O-02: no VAT identifiers next to "not subject to VAT"
    lines = [_line(settings, line) for line in invoice.lines]
    taxes = _taxes(settings, invoice, lines)
    instructions = settings.seller.payment_instructions if settings.seller else None
    period_end = invoice.period_end - dt.timedelta(days=1) if invoice.period_end else None
    return _assemble(
        settings,
        invoice,
        customer,
        lines,
        taxes,
        vat_ids=vat_ids,
        email_address=email_address,
        number=invoice.number,
        issue_date=invoice.issue_date,
        type_code=INVOICE,
        due_date=invoice.due_date,
        payment_terms=f"Due {invoice.due_date.isoformat()}. {instructions or ''}".strip(),
        period_start=invoice.period_start,
        period_end=period_end
        if period_end and invoice.period_start and period_end >= invoice.period_start
        else None,
    )


def _assemble(
    settings: Settings,
    invoice: Invoice,
    customer: Mapping[str, Any] | None,
    lines: list[Line],
    taxes: tuple[TaxSubtotal, ...],
    *,
    vat_ids: bool,
    email_address: bool,
    **document: Any,
) -> EInvoice:
    """What invoices and credit notes share: the parties, the totals from the lines and the VAT
    breakdown, the buyer's reference and the payment means (of the invoice, for a credit note)."""
    line_total = sum((line.net_amount for line in lines), Decimal("0"))
    tax_total = sum((t.tax for t in taxes), Decimal("0"))
    data = customer or {}
    return EInvoice(
        currency=invoice.currency,
        seller=_seller(settings, vat_ids=vat_ids, email_address=email_address),
        buyer=_buyer(invoice, customer, vat_ids=vat_ids, email_address=email_address),
        lines=tuple(lines),
        taxes=taxes,
        line_total=line_total,
        tax_exclusive=line_total,
        tax_total=tax_total,
        tax_inclusive=line_total + tax_total,
        payable=line_total + tax_total,
        buyer_reference=_text(
            data.get("buyer_reference") or data.get("account_number") or invoice.customer_id
        ),
        payment_means=_payment_means(settings, invoice, customer),
        **document,
    )


def build_credit_note_einvoice(
    note: CreditNote, customer: Mapping[str, Any] | None, settings: Settings, fmt: str = "ubl"
) -> EInvoice:
    """The EN 16931 model of a stored credit note (type 381), referring to the invoice it credits
    (BT-25/26). Amounts are positive, as EN 16931 wants them on a credit note."""
    email_address = fmt != "peppol"
    invoice = note.invoice
    category_of = {line.position: _category(settings, line) for line in note.lines}
    vat_ids = "O" not in {category for category, _ in category_of.values()}
    lines = []
    groups: dict[tuple[str, Decimal | None], tuple[Decimal, Decimal]] = {}
    for line in note.lines:
        category, rate = category_of[line.position]
        net = line.amount.quantize(_CENT)
        lines.append(
            Line(
                id=str(line.position),
                name=" ".join(line.description.split())[:200] or "Credit",
                quantity=Decimal("1"),
                net_price=line.amount,
                net_amount=net,
                vat_category=category,
                vat_rate=rate,
                unit_code=settings.einvoice.unit_code,
                seller_item_id=line.product_code,
            )
        )
        taxable, tax = groups.get((category, rate), (Decimal("0"), Decimal("0")))
        groups[(category, rate)] = (taxable + net, tax + line.tax_amount)
    taxes = tuple(
        TaxSubtotal(
            category=category,
            rate=rate,
            taxable=taxable.quantize(_CENT),
            tax=tax.quantize(_CENT),
            exemption_reason=_exemption(settings, category),
        )
        for (category, rate), (taxable, tax) in groups.items()
    )
    return _assemble(
        settings,
        invoice,
        customer,
        lines,
        taxes,
        vat_ids=vat_ids,
        email_address=email_address,
        number=note.number,
        issue_date=note.issue_date,
        type_code=CREDIT_NOTE,
        preceding_invoice=invoice.number,
        preceding_invoice_date=invoice.issue_date,
        note=_text(note.reason),
        payment_terms=f"Credited against invoice {invoice.number}.",
    )


# --------------------------------------------------------------------------------------------
# export and validation


class EInvoiceInvalidError(ValueError):
    """The file billsync wrote does not pass the rules: it is not delivered. ``failures``: the
    failed rules (id, location, text), ``document``: the file, for support to inspect."""

    def __init__(self, number: str, fmt: str, failures: list[Any], document: bytes) -> None:
        self.number, self.format, self.failures, self.document = number, fmt, failures, document
        rules = ", ".join(sorted({f.rule_id for f in failures})) or "?"
        super().__init__(f"invoice {number} as {fmt} fails {len(failures)} rule(s): {rules}")


@dataclass(frozen=True)
class ExportedInvoice:
    """One validated file: its bytes, the name to give it, and its media type."""

    number: str
    format: str
    filename: str
    content: bytes
    mime_type: str


_EXTENSIONS: Final = {
    "ubl": ("-ubl.xml", "application/xml"),
    "peppol": ("-peppol.xml", "application/xml"),
    "xrechnung": ("-xrechnung.xml", "application/xml"),
    "cii": ("-cii.xml", "application/xml"),
    "facturx": ("-facturx.pdf", "application/pdf"),
}


def write_einvoice(model: EInvoice, fmt: str, pdf: Callable[[], bytes]) -> bytes:
    """``model`` in format ``fmt``; ``pdf`` renders the PDF/A-3 a Factur-X file is built on."""
    if fmt in ("ubl", "peppol"):
        from connectors.einvoice.ubl import write_ubl

        return write_ubl(model, format=fmt)  # type: ignore[arg-type]
    if fmt in ("cii", "xrechnung"):
        from connectors.einvoice.cii import write_cii

        return write_cii(model, format=fmt)  # type: ignore[arg-type]
    if fmt == "facturx":
        from connectors.einvoice.facturx import write_facturx

        return write_facturx(model, pdf())
    raise ValueError(f"unknown e-invoice format {fmt!r} (allowed: {', '.join(FORMATS)})")


def validated_einvoice(
    document: Invoice | CreditNote, customer: Mapping[str, Any] | None, settings: Settings, fmt: str
) -> ExportedInvoice:
    """Build, write and validate an invoice or credit note in ``fmt``; raises
    :class:`EInvoiceInvalidError` (with the failed rules) or :class:`EInvoiceConfigError` (missing
    seller/customer data)."""
    from connectors.einvoice.facturx import FacturXError
    from connectors.einvoice.validation import RuleFailure, validate
    from sync_engine.documents import document_pdf

    if isinstance(document, CreditNote):
        model = build_credit_note_einvoice(document, customer, settings, fmt)
    else:
        model = build_einvoice(document, customer, settings, fmt)
    try:
        content = write_einvoice(
            model, fmt, lambda: document_pdf(document, customer, settings, variant="pdf/a-3b")
        )
    except FacturXError as exc:  # the factur-x library refused the XML or the PDF: never sent
        failure = RuleFailure("FACTURX", "fatal", "file", str(exc), "schema")
        raise EInvoiceInvalidError(model.number, fmt, [failure], b"") from exc
    report = validate(_xml_of(content), format=fmt, source=model.number)
    if not report.ok:
        raise EInvoiceInvalidError(model.number, fmt, list(report.errors), content)
    suffix, mime = _EXTENSIONS[fmt]
    return ExportedInvoice(model.number, fmt, f"{model.number.replace('/', '-')}{suffix}", content, mime)


def export_einvoice(runtime: Runtime, number: str, fmt: str) -> ExportedInvoice:
    """Stored invoice or credit note ``number`` as a validated e-invoice in ``fmt``."""
    from sync_engine.documents import customer_of, find_document

    with runtime.sessions() as session:
        document = find_document(session, number)
        if document is None:
            raise EInvoiceConfigError(f"no invoice or credit note {number}")
        return validated_einvoice(document, customer_of(session, document), runtime.settings, fmt)


def _xml_of(content: bytes) -> bytes:
    """The XML of a file: itself, or the invoice embedded in a Factur-X PDF."""
    if content.startswith(b"%PDF"):
        from connectors.einvoice.facturx import extract_xml

        return extract_xml(content)
    return content


def validate_files(paths: list[Path], fmt: str | None = None) -> list[Any]:
    """Validate files (XML, or Factur-X PDFs: their embedded XML); one report per file."""
    from connectors.einvoice.facturx import FacturXError
    from connectors.einvoice.validation import RuleFailure, ValidationReport, validate

    reports = []
    for path in paths:
        content = path.read_bytes()
        pdf = content.startswith(b"%PDF")
        try:
            xml = _xml_of(content)
        except FacturXError as exc:  # a PDF that carries no invoice: reported, the others go on
            failure = RuleFailure("XML", "fatal", "file", f"not a Factur-X / ZUGFeRD PDF: {exc}", "schema")
            reports.append(ValidationReport(str(path), None, None, (failure,)))
            continue
        reports.append(validate(xml, format=fmt or ("facturx" if pdf else None), source=str(path)))
    return reports


# --------------------------------------------------------------------------------------------
# the folder destination

FOLDER_DESTINATION: Final = "einvoice-folder"
FOLDER_ENTITY: Final = "einvoice"
FOLDER_STREAM: Final = "export:einvoice"


def folder_wanted(settings: Settings) -> bool:
    return settings.einvoice.folder is not None and bool(settings.einvoice.folder_formats)


def queue_folder_export(session: Session, document_id: str) -> None:
    """Owe an invoice's (or credit note's) e-invoice files to the folder, in the issuing transaction."""
    enqueue(
        session,
        destination=FOLDER_DESTINATION,
        entity=FOLDER_ENTITY,
        canonical_id=document_id,
        action="export",
        version="1",
    )


@dataclass
class FolderExportResult:
    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _folder(settings: Settings) -> Path:
    folder = Path(settings.einvoice.folder or ".").expanduser()
    return folder if folder.is_absolute() else settings.base_dir / folder


def run_folder_exports(runtime: Runtime) -> FolderExportResult:
    """Write every owed invoice to ``einvoice.folder`` in each of ``folder_formats``, validated.

    A file is written under a temporary name and renamed, so the folder never shows half a file
    (a program watching it may pick files up at any moment). An invoice whose file fails the rules
    is not written at all: its row fails, and a dead letter (stream ``export:einvoice``) carries
    the failed rules.
    """
    settings = runtime.settings
    result = FolderExportResult()
    if not folder_wanted(settings):
        return result
    folder = _folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with runtime.lock("einvoice-folder"):
        with runtime.sessions() as session:
            row_ids = list(
                session.scalars(
                    select(OutboxItem.id)
                    .where(
                        OutboxItem.destination == FOLDER_DESTINATION,
                        OutboxItem.entity == FOLDER_ENTITY,
                        OutboxItem.status.in_(OPEN_STATUSES),
                    )
                    .order_by(OutboxItem.id)
                )
            )
        for row_id in row_ids:
            runtime.checkpoint()
            _export_row(runtime, row_id, folder, result)
    return result


def _export_row(runtime: Runtime, row_id: int, folder: Path, result: FolderExportResult) -> None:
    from sync_engine.documents import customer_of, load_document

    settings = runtime.settings
    with runtime.sessions() as session:
        row = session.get(OutboxItem, row_id)
        if row is None or row.status not in OPEN_STATUSES:
            return
        document = load_document(session, row.canonical_id)
        if document is None or document.number is None:
            return
        customer = customer_of(session, document)
        try:
            files = [
                validated_einvoice(document, customer, settings, fmt)
                for fmt in settings.einvoice.folder_formats
            ]
            error = None
        except (EInvoiceInvalidError, EInvoiceConfigError) as exc:
            files, error = [], exc
        number = document.number
    if error is not None:
        with runtime.transaction() as session:
            stored = session.get(OutboxItem, row_id)
            assert stored is not None
            stored.status, stored.last_error, stored.done_at = "failed", str(error), utcnow()
            record_dead_letter(
                session,
                stream=FOLDER_STREAM,
                system="einvoice",
                entity="invoice",
                external_id=number,
                payload={"invoice_id": stored.canonical_id, "number": number, "rules": _rules(error)},
                error=str(error),
                error_type=type(error).__name__,
            )
        result.failed += 1
        result.errors.append(str(error))
        return
    for exported in files:
        target = folder / exported.filename
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(exported.content)
        partial.replace(target)
    with runtime.transaction() as session:
        stored = session.get(OutboxItem, row_id)
        assert stored is not None
        stored.status, stored.done_at, stored.last_error = "sent", utcnow(), None
        resolve_dead_letters(session, stream=FOLDER_STREAM, entity="invoice", external_ids=[number])
    result.written += len(files)


def _rules(error: Exception) -> list[dict[str, str]]:
    if not isinstance(error, EInvoiceInvalidError):
        return []
    return [{"rule": f.rule_id, "location": f.short_location, "text": f.text} for f in error.failures]
