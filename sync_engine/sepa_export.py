"""SEPA Direct Debit export (pain.008.001.02): collect what direct-debit customers owe, once.

A bank rejects a whole pain.008 file for one bad field, and a wrong collection is money taken from
a customer without a right to it; so only what can be collected goes in, and everything that looked
collectable but was left out is listed with the reason (a bad IBAN, no mandate, not EUR...).

Collected: finalised invoices that are ``open``, ``overdue`` or ``partially_paid``, in EUR, with an
amount due, due on or before the collection date (default: ``as_of`` + ``payments.sepa.lead_days``),
of customers whose ``payment_method`` is ``direct_debit`` and who have an IBAN and a mandate (id and
signing date). The end-to-end id is the invoice number, so the bank statement's return or booking
line names the invoice it belongs to.

There is no table of past exports. Instead the file is a pure function of what is due: the message
id is derived from (creditor id, collection date, sorted invoice numbers), and the creation time is
``as_of``, so running the export again before the collections are booked produces the same file,
byte for byte, and the bank refuses the second upload as a duplicate message id rather than
collecting twice. (A re-export after a partial payment keeps the message id as long as the set of
invoices is the same: the bank refuses it as well, which is the safe side.)

The XML is built with ``sepaxml`` (which validates it with ``xmlschema``) and validated again here
with lxml against the pain.008.001.02 XSD that ``sepaxml`` ships; an invalid file is never returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import sepaxml
from lxml import etree
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaDD
from sqlalchemy import select
from sqlalchemy.orm import Session
from text_unidecode import unidecode

from sync_engine.settings import Settings
from sync_engine.store.models import CanonicalRecord, Invoice

__all__ = [
    "COLLECTABLE",
    "SCHEMA",
    "SepaExport",
    "SepaExportError",
    "creditor_id_problem",
    "message_id_for",
    "schema_path",
    "sepa_export",
    "validate_pain008",
    "write_sepa_export",
]

SCHEMA = "pain.008.001.02"
NAMESPACE = f"urn:iso:std:iso:20022:tech:xsd:{SCHEMA}"
COLLECTABLE = ("open", "overdue", "partially_paid")
CENT = Decimal("0.01")
#: The Latin character set every SEPA bank accepts in names, ids and remittance text.
_SEPA_TEXT = re.compile(r"[^A-Za-z0-9/\-?:().,'+ ]")
_SEPA_ID = re.compile(r"^[A-Za-z0-9/\-?:().,'+]{1,35}$")
_MANDATE_ID = re.compile(r"^[A-Za-z0-9/\-?:().,'+ ]{1,35}$")


class SepaExportError(ValueError):
    """The export cannot be made as configured (no creditor id, a bad creditor IBAN...)."""


@dataclass(frozen=True)
class SepaExport:
    """One pain.008 file and what went into it.

    ``xml`` is empty when nothing is due (a pain.008 needs at least one transaction). ``invoices``
    are the numbers collected, in file order; ``skipped`` the ``(invoice number, reason)`` of
    invoices of direct-debit customers that are due but cannot be collected.
    """

    xml: bytes
    invoices: list[str]
    skipped: list[tuple[str, str]]
    total: Decimal
    count: int
    message_id: str | None = None
    collection_date: dt.date | None = None
    amounts: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class _Creditor:
    name: str
    iban: str
    bic: str
    creditor_id: str
    scheme: str
    sequence: str


@dataclass(frozen=True)
class _Debtor:
    name: str
    iban: str
    bic: str | None
    mandate_id: str
    mandate_date: dt.date


def sepa_export(
    session: Session,
    settings: Settings,
    *,
    as_of: dt.date,
    collection_date: dt.date | None = None,
) -> SepaExport:
    """Build the pain.008 for what is due by ``collection_date``; see the module docstring."""
    creditor = _creditor(settings)
    sepa = settings.payments.sepa
    assert sepa is not None  # _creditor checked it
    when = collection_date or as_of + dt.timedelta(days=sepa.lead_days)
    if when <= as_of:
        raise SepaExportError(
            f"the collection date {when.isoformat()} must be after the export date {as_of.isoformat()}"
        )

    invoices = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.status.in_(COLLECTABLE),
                Invoice.number.is_not(None),
                Invoice.due_date <= when,
            )
            .order_by(Invoice.due_date, Invoice.number)
        )
    )
    customer_ids = sorted({invoice.customer_id for invoice in invoices})
    customers: dict[str, dict[str, Any]] = {}
    if customer_ids:
        customers = {
            record.id: record.data
            for record in session.scalars(
                select(CanonicalRecord).where(
                    CanonicalRecord.entity == "customer", CanonicalRecord.id.in_(customer_ids)
                )
            )
        }

    chosen: list[tuple[Invoice, _Debtor, int]] = []
    skipped: list[tuple[str, str]] = []
    debtors: dict[str, _Debtor | str] = {}
    for invoice in invoices:
        number = invoice.number or ""
        data = customers.get(invoice.customer_id)
        if data is None or data.get("payment_method") != "direct_debit":
            continue  # not a direct-debit customer: nothing to collect, nothing to report
        due = invoice.total - (invoice.amount_paid or Decimal("0"))
        if due <= 0:
            continue
        if invoice.customer_id not in debtors:
            debtors[invoice.customer_id] = _debtor(data, when)
        debtor = debtors[invoice.customer_id]
        if isinstance(debtor, str):
            skipped.append((number, debtor))
            continue
        reason = _invoice_problem(invoice, due)
        if reason is not None:
            skipped.append((number, reason))
            continue
        chosen.append((invoice, debtor, int(due.scaleb(2))))

    if not chosen:
        return SepaExport(
            xml=b"", invoices=[], skipped=skipped, total=Decimal("0.00"), count=0, collection_date=when
        )

    numbers = [invoice.number or "" for invoice, _, _ in chosen]
    message_id = message_id_for(creditor.creditor_id, when, numbers)
    xml = _build(creditor, chosen, when, message_id, as_of)
    total = sum((Decimal(cents).scaleb(-2) for _, _, cents in chosen), Decimal("0.00"))
    return SepaExport(
        xml=xml,
        invoices=numbers,
        skipped=skipped,
        total=total,
        count=len(chosen),
        message_id=message_id,
        collection_date=when,
        amounts={inv.number or "": Decimal(cents).scaleb(-2) for inv, _, cents in chosen},
    )


def write_sepa_export(
    settings: Settings,
    session: Session,
    out: Path,
    as_of: dt.date,
    collection_date: dt.date | None = None,
) -> SepaExport:
    """Build the export and write it to ``out``; nothing is written when nothing is due."""
    export = sepa_export(session, settings, as_of=as_of, collection_date=collection_date)
    if export.count:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(export.xml)
    return export


def message_id_for(creditor_id: str, collection_date: dt.date, invoice_numbers: list[str]) -> str:
    """The deterministic MsgId: the same collections for the same day always get the same one."""
    key = "\x1f".join([creditor_id, collection_date.isoformat(), *sorted(invoice_numbers)])
    return "BSDD-" + hashlib.sha256(key.encode()).hexdigest()[:28]  # 33 of the 35 allowed


def schema_path() -> Path:
    """The pain.008.001.02 XSD shipped inside the sepaxml package."""
    return Path(sepaxml.__file__).parent / "schemas" / f"{SCHEMA}.xsd"


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_path())))


def validate_pain008(xml: bytes) -> None:
    """Raise :class:`SepaExportError` unless ``xml`` is valid against the pain.008.001.02 XSD."""
    schema = _schema()
    try:
        document = etree.fromstring(xml)
    except etree.XMLSyntaxError as exc:
        raise SepaExportError(f"the SEPA file is not well-formed XML: {exc}") from exc
    if not schema.validate(document):
        errors = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:5])
        raise SepaExportError(f"the SEPA file does not validate against {SCHEMA}: {errors}")


def creditor_id_problem(creditor_id: str) -> str | None:
    """Why a SEPA creditor identifier is wrong (ISO 7064 MOD 97-10 over the national id), or None.

    Layout: country (2), check digits (2), business code (3, not checked), national id.
    """
    cid = creditor_id.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{3}[A-Z0-9]{1,28}", cid):
        return "must look like DE98ZZZ09999999999 (country, check digits, business code, national id)"
    digits = "".join(str(int(ch, 36)) for ch in cid[7:] + cid[:2] + "00")
    if 98 - int(digits) % 97 != int(cid[2:4]):
        return "its check digits are wrong"
    return None


# --------------------------------------------------------------------------------------------
# internals


def _creditor(settings: Settings) -> _Creditor:
    sepa = settings.payments.sepa
    account = settings.payments.bank_account
    if sepa is None:
        raise SepaExportError("payments.sepa is not configured (the creditor identifier is needed)")
    if account is None:
        raise SepaExportError("payments.bank_account is not configured (the account collections credit)")
    if account.currency != "EUR":
        raise SepaExportError(f"payments.bank_account is in {account.currency}; SEPA collects EUR only")
    problem = creditor_id_problem(sepa.creditor_id)
    if problem is not None:
        raise SepaExportError(f"payments.sepa.creditor_id {sepa.creditor_id!r}: {problem}")
    try:
        iban = IBAN(account.iban)
    except SchwiftyException as exc:
        raise SepaExportError(f"payments.bank_account.iban is not a valid IBAN: {exc}") from exc
    bic_text = account.bic
    if bic_text is None:
        derived = iban.bic
        if derived is None:
            raise SepaExportError(
                "payments.bank_account.bic is needed (pain.008.001.02 requires the creditor's BIC "
                "and none is known for this IBAN)"
            )
        bic_text = str(derived)
    try:
        bic = BIC(bic_text)
    except SchwiftyException as exc:
        raise SepaExportError(f"payments.bank_account.bic is not a valid BIC: {exc}") from exc
    name = _sepa_text(settings.seller.name if settings.seller else account.name, 70)
    if not name:
        raise SepaExportError("the creditor name (seller.name or payments.bank_account.name) is empty")
    return _Creditor(
        name=name,
        iban=iban.compact,
        bic=bic.compact,
        creditor_id=sepa.creditor_id.replace(" ", "").upper(),
        scheme=sepa.scheme,
        sequence=sepa.sequence,
    )


def _debtor(data: dict[str, Any], collection_date: dt.date) -> _Debtor | str:
    """The customer's account and mandate, or the reason their invoices cannot be collected."""
    raw_iban = data.get("iban")
    if not raw_iban:
        return "the customer has no IBAN"
    try:
        iban = IBAN(str(raw_iban))
    except SchwiftyException as exc:
        return f"the customer's IBAN is not valid ({exc})"
    bic: str | None = None
    if data.get("bic"):
        try:
            bic = BIC(str(data["bic"])).compact
        except SchwiftyException as exc:
            return f"the customer's BIC is not valid ({exc})"
    mandate_id = str(data.get("sepa_mandate_id") or "").strip()
    if not mandate_id:
        return "the customer has no SEPA mandate id"
    if not _MANDATE_ID.fullmatch(mandate_id):
        return f"the mandate id {mandate_id!r} is longer than 35 characters or has characters SEPA forbids"
    signed = data.get("sepa_mandate_signed_on")
    if not signed:
        return "the customer's SEPA mandate has no signing date"
    try:
        signed_on = signed if isinstance(signed, dt.date) else dt.date.fromisoformat(str(signed))
    except ValueError:
        return f"the mandate signing date {signed!r} is not a date (YYYY-MM-DD)"
    if signed_on > collection_date:
        return f"the mandate is signed on {signed_on.isoformat()}, after the collection date"
    name = _sepa_text(str(data.get("name") or ""), 70)
    if not name:
        return "the customer has no name"
    return _Debtor(name=name, iban=iban.compact, bic=bic, mandate_id=mandate_id, mandate_date=signed_on)


def _invoice_problem(invoice: Invoice, due: Decimal) -> str | None:
    if invoice.currency != "EUR":
        return f"the invoice is in {invoice.currency}; SEPA collects EUR only"
    if not _SEPA_ID.fullmatch(invoice.number or ""):
        return "the invoice number cannot be the end-to-end id (at most 35 SEPA characters, no spaces)"
    if due != due.quantize(CENT):
        return f"the amount due {due} is not in whole cents"
    if due > Decimal("999999999.99"):
        return f"the amount due {due} is more than one SEPA transaction may carry"
    return None


def _sepa_text(text: str, limit: int) -> str:
    """Transliterate to Latin and drop what SEPA banks refuse (``Müller & Söhne`` -> ``Muller + Sohne``)."""
    cleaned = _SEPA_TEXT.sub(" ", unidecode(text).replace("&", "+"))
    return " ".join(cleaned.split())[:limit].strip()


def _build(
    creditor: _Creditor,
    chosen: list[tuple[Invoice, _Debtor, int]],
    when: dt.date,
    message_id: str,
    as_of: dt.date,
) -> bytes:
    config: dict[str, Any] = {
        "name": creditor.name,
        "IBAN": creditor.iban,
        "BIC": creditor.bic,
        "batch": True,
        "creditor_id": creditor.creditor_id,
        "currency": "EUR",
        "instrument": creditor.scheme,
    }
    document = SepaDD(config, schema=SCHEMA, clean=False)
    for invoice, debtor, cents in chosen:
        payment: dict[str, Any] = {
            "name": debtor.name,
            "IBAN": debtor.iban,
            "amount": cents,
            "type": creditor.sequence,
            "collection_date": when,
            "mandate_id": debtor.mandate_id,
            "mandate_date": debtor.mandate_date,
            "description": _sepa_text(f"Invoice {invoice.number}", 140),
            "endtoend_id": invoice.number,
        }
        if debtor.bic is not None:
            payment["BIC"] = debtor.bic
        document.add_payment(payment)
    try:
        raw = document.export(validate=True)
    except Exception as exc:  # sepaxml raises its own ValidationError (or xmlschema's)
        raise SepaExportError(f"sepaxml could not build a valid {SCHEMA} file: {exc}") from exc
    # sepaxml stamps a random MsgId, the wall-clock time and random PmtInfIds: make them a function
    # of the content, so the same collections always give the same file.
    root = etree.fromstring(raw)
    ns = {"p": NAMESPACE}
    header = root.find("p:CstmrDrctDbtInitn/p:GrpHdr", ns)
    assert header is not None
    _set(header, "p:MsgId", ns, message_id)
    _set(header, "p:CreDtTm", ns, f"{as_of.isoformat()}T00:00:00")
    for index, info in enumerate(root.iterfind("p:CstmrDrctDbtInitn/p:PmtInf", ns), start=1):
        _set(info, "p:PmtInfId", ns, f"{message_id}-{index}")
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    validate_pain008(xml)
    return xml


def _set(parent: Any, path: str, ns: dict[str, str], text: str) -> None:
    node = parent.find(path, ns)
    if node is None:
        raise SepaExportError(f"sepaxml produced no {path} element")
    node.text = text
