"""Invoice delivery: every finalised invoice reaches its customer once, and support can prove it.

How an invoice travels:

- **Queued with the invoice.** :func:`queue_delivery` runs in the billing run's transaction that
  finalises the invoice: one outbox row (destination ``customer``, entity ``invoice_delivery``) and
  ``Invoice.delivery_status = "pending"``. An invoice cannot exist without its delivery owed.
- **The channel is chosen when it goes**, from the customer record as it is then (an address fixed in
  the CRM meanwhile counts): ``invoice_delivery: post`` or no e-mail address -> *post*: the invoice is
  listed for printing and its PDF added to the run's merged print file (``delivery.print_folder``);
  otherwise *email* by SMTP with the PDF attached, a subject and body from the template of the
  customer's language (and of the seller, see ``templates/delivery/README.md``), reply-to and Bcc of
  the finance mailbox (``delivery.reply_to``/``bcc``).
- **One sender at a time.** A run holds a lock every billsync process on the state store sees
  (:func:`sync_engine.store.process_lock.process_lock`); a daemon and a support engineer's command
  never send the same invoice at the same moment.
- **Exactly once per invoice and channel.** The outbox row is claimed (``unknown``, attempt counted)
  in a committed transaction before the mail is handed to SMTP and closed (``sent``) after the server
  accepted it. The Message-ID is fixed per invoice (``<invoice.<id>@domain>``, the id reminders refer
  to). A sender killed before the server accepted the message sends it on restart; the one case
  SMTP cannot settle, killed in the instant between the server's "250" and billsync's commit, sends
  it again with the same Message-ID, which receiving systems use to drop the copy.
- **Failures.** A temporary one (4xx, a dropped connection, a timeout) is retried with exponential
  backoff (``delivery.retry_seconds`` doubling up to ``retry_max_seconds``; the run itself waits for
  retries due within ``wait_seconds``); after ``max_attempts`` it counts as permanent. A permanent
  one (5xx, an address that cannot be valid) marks the invoice ``failed``, records why, and puts a
  dead letter (stream ``deliver:email``) where support sees it; replaying the letter (after fixing
  the address) or ``billsync invoices resend`` sends it again. A mail server that cannot be reached
  at all stops the batch without using up anyone's attempts.
- **Proof.** Every attempt that ended somewhere is an :class:`InvoiceDelivery` row: when, to whom,
  channel, Message-ID, outcome, and who asked (resends). ``billsync invoices deliveries NUMBER``.

No network call runs inside a database transaction (on SQLite a transaction holds the write lock).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import Currency
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.documents import (
    Document,
    document_pdf,
    find_document,
    invoice_id_of,
    kind_of,
    load_document,
    sample_credit_note,
    sample_invoice,
)
from sync_engine.logging import get_logger
from sync_engine.mail_templates import MailTemplateError, RenderedMail, environment, render_mail
from sync_engine.mailer import (
    Attachment,
    Mailer,
    MailError,
    MailUnavailableError,
    PermanentMailError,
    customer_addresses,
    mailbox,
    message_id,
    valid_address,
)
from sync_engine.outbox import OPEN_STATUSES, enqueue
from sync_engine.payments import amount_due
from sync_engine.runtime import Runtime
from sync_engine.settings import MailSettings, Settings
from sync_engine.store.models import CanonicalRecord, CreditNote, Invoice, InvoiceDelivery, OutboxItem, utcnow
from sync_engine.store.process_lock import process_lock

__all__ = [
    "DESTINATION",
    "ENTITY",
    "STREAM",
    "DeliveryError",
    "DeliveryResult",
    "delivery_history",
    "delivery_wanted",
    "invoice_mail_settings",
    "print_queue",
    "queue_delivery",
    "render_invoice_mail",
    "requeue_deliveries",
    "resend_invoice",
    "run_deliveries",
]

log = get_logger("billsync.delivery")

DESTINATION: Final = "customer"
ENTITY: Final = "invoice_delivery"
STREAM: Final = "deliver:email"
TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates" / "delivery"
_LANGUAGE_TAG: Final = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
#: The Message-ID of a document's mail: ``<invoice.<id>@domain>`` (what reminders refer to),
#: ``<creditnote.<id>@domain>``.
_ID_PREFIX: Final = {"invoice": "invoice", "credit_note": "creditnote"}
#: Invoices never sent: not finalised, or voided before they went.
_NOT_SENT: Final = ("draft", "void")


class DeliveryError(RuntimeError):
    """A resend could not be done (unknown invoice, no address, the server refused it)."""


@dataclass
class DeliveryResult:
    """What one run did. ``retrying``: left for a later attempt after a temporary failure."""

    delivered: int = 0
    failed: int = 0
    for_print: int = 0
    retrying: int = 0
    cancelled: int = 0
    #: merged PDFs written for printing by this run
    print_files: list[str] = field(default_factory=list)
    #: one line per invoice that failed or waits: ``INV-000012 to x@y: 550 ...``
    errors: list[str] = field(default_factory=list)
    #: why nothing (or not everything) was done, else None
    note: str | None = None


# --------------------------------------------------------------------------------------------
# settings and queueing


def delivery_wanted(settings: Settings) -> bool:
    """Invoices are queued for delivery when delivery is on and a mail server is configured."""
    return settings.delivery.enabled and settings.mail is not None


def invoice_mail_settings(settings: Settings) -> MailSettings:
    """The mail settings for invoices: the finance mailbox as reply-to and as an extra Bcc."""
    if settings.mail is None:
        raise DeliveryError("no mail settings (mail: in billsync.yaml)")
    mail, delivery = settings.mail, settings.delivery
    return mail.model_copy(
        update={
            "reply_to": delivery.reply_to or mail.reply_to,
            "bcc": list(dict.fromkeys([*mail.bcc, *delivery.bcc])),
        }
    )


def queue_delivery(session: Session, invoice: Invoice) -> None:
    """Owe ``invoice``'s delivery, in the caller's transaction (the one that finalises it)."""
    queue_document_delivery(session, invoice.id)
    invoice.delivery_status = "pending"


def queue_document_delivery(session: Session, document_id: str) -> None:
    """Owe the delivery of an invoice or credit note (by id), in the caller's transaction."""
    enqueue(
        session,
        destination=DESTINATION,
        entity=ENTITY,
        canonical_id=document_id,
        action="deliver",
        version="1",
    )


def _about(document: Document) -> dict[str, Any]:
    """The columns of an :class:`InvoiceDelivery` that say which document it is."""
    return {
        "invoice_id": invoice_id_of(document),
        "document_kind": kind_of(document),
        "document_number": document.number,
    }


def requeue_deliveries(session: Session, document_ids: Sequence[str]) -> int:
    """Owe the delivery of these invoices / credit notes again (a replayed dead letter)."""
    queued = 0
    found = [load_document(session, document_id) for document_id in document_ids]
    for invoice in [d for d in found if d is not None]:
        if invoice.status in _NOT_SENT or invoice.delivery_status == "delivered":
            continue
        if enqueue(
            session,
            destination=DESTINATION,
            entity=ENTITY,
            canonical_id=invoice.id,
            action="deliver",
            version="1",
        ):
            queued += 1
        invoice.delivery_status = "pending"
    return queued


# --------------------------------------------------------------------------------------------
# templates


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _languages(language: str | None, default: str) -> list[str]:
    """``de-CH`` -> ``["de-ch", "de", <default>]``: the most specific first. Anything that is not
    a language tag (``German``, ``../x``) is ignored: it never becomes part of a file name."""
    found: list[str] = []
    for tag in (language, default):
        tag = (tag or "").strip().lower().replace("_", "-")
        if not _LANGUAGE_TAG.match(tag):
            continue
        found += [tag, tag.split("-")[0]]
    return list(dict.fromkeys(found))


def _template_folders(settings: Settings) -> list[Path]:
    """The admin's folder for this seller, the admin's folder, the built-ins: first found wins."""
    folders: list[Path] = []
    if settings.delivery.templates:
        base = Path(settings.delivery.templates).expanduser()
        base = base if base.is_absolute() else settings.base_dir / base
        if settings.seller is not None:
            folders.append(base / _slug(settings.seller.name))
        folders.append(base)
    folders.append(TEMPLATES_DIR)
    return folders


def _find_template(settings: Settings, kind: str, language: str | None) -> tuple[Path, str, str | None]:
    """``(folder, text name, html name or None)`` of the template for ``kind`` in ``language``."""
    names = [f"{kind}.{lang}" for lang in _languages(language, settings.delivery.default_language)]
    names.append(kind)
    for folder in _template_folders(settings):
        # language tags are case-insensitive: invoice.de-CH.txt serves de-ch
        files = {p.name.lower(): p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
        for name in names:
            text = files.get(f"{name}.txt")
            if text is not None:
                return folder, text, files.get(f"{name}.html")
    raise MailTemplateError(
        f"no template {kind}.txt in {', '.join(str(f) for f in _template_folders(settings))}"
    )


def _display(value: Decimal, currency: Currency) -> str:
    """``1234.5`` -> ``1,234.50``: rounded half up to the currency's minor unit."""
    return f"{value.quantize(currency.quantum, rounding=ROUND_HALF_UP):,}"


def invoice_mail_context(
    invoice: Invoice, customer: Mapping[str, Any] | None, settings: Settings, language: str
) -> dict[str, Any]:
    """The variables an invoice template sees (listed in templates/delivery/README.md)."""
    currency = Currency.of(invoice.currency)
    seller = settings.seller
    period_end = invoice.period_end - dt.timedelta(days=1) if invoice.period_end else None
    return {
        "kind": "invoice",
        "number": invoice.number,
        "currency": currency.code,
        "total": _display(invoice.total, currency),
        "amount_due": _display(amount_due(invoice), currency),
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": period_end.isoformat() if period_end else None,
        "customer_name": str((customer or {}).get("name") or invoice.customer_id),
        "seller_name": seller.name if seller else None,
        "seller_email": seller.email if seller else None,
        "payment_instructions": seller.payment_instructions if seller else None,
        "language": language,
        "pdf_filename": _pdf_name(invoice),
    }


def credit_note_mail_context(
    note: CreditNote, customer: Mapping[str, Any] | None, settings: Settings, language: str
) -> dict[str, Any]:
    """The variables a credit-note template sees (listed in templates/delivery/README.md)."""
    currency = Currency.of(note.currency)
    seller = settings.seller
    return {
        "kind": "credit_note",
        "number": note.number,
        "invoice_number": note.invoice.number,
        "invoice_date": note.invoice.issue_date.isoformat(),
        "reason": note.reason,
        "currency": currency.code,
        "total": _display(note.total, currency),
        "issue_date": note.issue_date.isoformat(),
        "customer_name": str((customer or {}).get("name") or note.customer_id),
        "seller_name": seller.name if seller else None,
        "seller_email": seller.email if seller else None,
        "language": language,
        "pdf_filename": _pdf_name(note),
    }


def render_invoice_mail(
    settings: Settings, invoice: Document, customer: Mapping[str, Any] | None
) -> RenderedMail:
    """Subject, text and HTML of the mail carrying an invoice or credit note, in the customer's
    language."""
    language = str((customer or {}).get("language") or settings.delivery.default_language)
    if isinstance(invoice, CreditNote):
        folder, text_name, html_name = _find_template(settings, "credit_note", language)
        context = credit_note_mail_context(invoice, customer, settings, language)
    else:
        folder, text_name, html_name = _find_template(settings, "invoice", language)
        context = invoice_mail_context(invoice, customer, settings, language)
    folders = (str(folder),) if folder == TEMPLATES_DIR else (str(folder), str(TEMPLATES_DIR))
    return render_mail(environment(folders), text_name, html_name, context, label=str(folder / text_name))


def check_delivery_templates(settings: Settings) -> list[str]:
    """Problems with the invoice templates, found by rendering each language once for a sample."""
    sample, note = sample_invoice(), sample_credit_note()
    languages = {settings.delivery.default_language}
    for folder in _template_folders(settings):
        for path in (
            [*folder.glob("invoice.*.txt"), *folder.glob("credit_note.*.txt")] if folder.is_dir() else []
        ):
            languages.add(path.name.split(".")[1])
    problems: list[str] = []
    for language in sorted(languages):
        for document in (sample, note):
            try:
                render_invoice_mail(settings, document, {"name": "Sample customer", "language": language})
            except MailTemplateError as exc:
                problems.append(f"delivery template ({kind_of(document)}, {language}): {exc}")
    return problems


# --------------------------------------------------------------------------------------------
# the run


def _pdf_name(invoice: Document) -> str:
    return f"{(invoice.number or invoice.id).replace('/', '-')}.pdf"


def _customer(session: Session, customer_id: str) -> dict[str, Any] | None:
    record = session.get(CanonicalRecord, customer_id)
    return None if record is None or record.entity != "customer" else dict(record.data)


def _postal(customer: Mapping[str, Any] | None) -> str:
    """One line of the customer's postal address, for the print list."""
    address = (customer or {}).get("billing_address") or {}
    parts = [str((customer or {}).get("name") or "")]
    if isinstance(address, Mapping):
        parts += [str(address.get(k)) for k in ("street", "postal_code", "city", "country") if address.get(k)]
    return ", ".join(p.replace("\n", " ") for p in parts if p)[:320]


def _backoff(settings: Settings, attempts: int) -> float:
    delivery = settings.delivery
    return float(min(delivery.retry_max_seconds, delivery.retry_seconds * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class _Claim:
    """One row claimed for sending, as plain values (no ORM object outlives its transaction)."""

    row_id: int
    document_id: str
    number: str
    to: tuple[str, ...]
    message_id: str
    attempt: int


def run_deliveries(
    runtime: Runtime,
    *,
    mailer: Mailer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Send every invoice whose delivery is owed and due (see the module docstring).

    ``mailer`` defaults to one on ``mail`` with the finance mailbox of ``delivery``. Raises
    ``StopRequested`` at a checkpoint between invoices; what was sent so far is committed.
    """
    settings = runtime.settings
    result = DeliveryResult()
    if not settings.delivery.enabled:
        result.note = "invoice delivery is off (delivery.enabled: false)"
        return result
    if mailer is None and settings.mail is not None:
        mailer = Mailer(invoice_mail_settings(settings))
    with runtime.lock("delivery"), process_lock(runtime.engine, "delivery") as taken:
        if not taken:
            result.note = "another billsync process is delivering invoices now; nothing done"
            log.info(result.note)
            return result
        if mailer is None:
            result.note = "no mail settings (mail: in billsync.yaml): only invoices to post are handled"
            _drain(runtime, None, result, sleep)
        else:
            with mailer:
                _drain(runtime, mailer, result, sleep)
        _print_batch(runtime, result)
    if result.delivered or result.failed or result.for_print or result.retrying:
        log.info(
            "invoice delivery finished",
            delivered=result.delivered,
            failed=result.failed,
            for_print=result.for_print,
            retrying=result.retrying,
        )
    return result


def _due_rows(session: Session, now: dt.datetime) -> list[int]:
    return list(
        session.scalars(
            select(OutboxItem.id)
            .where(
                OutboxItem.destination == DESTINATION,
                OutboxItem.entity == ENTITY,
                OutboxItem.status.in_(OPEN_STATUSES),
                (OutboxItem.not_before.is_(None)) | (OutboxItem.not_before <= now),
            )
            .order_by(OutboxItem.id)
        )
    )


def _next_due(session: Session, row_ids: set[int]) -> dt.datetime | None:
    """When the earliest of ``row_ids`` (retried in this pass) is due again."""
    return session.scalar(
        select(func.min(OutboxItem.not_before)).where(
            OutboxItem.id.in_(row_ids), OutboxItem.status.in_(OPEN_STATUSES)
        )
    )


def _drain(
    runtime: Runtime, mailer: Mailer | None, result: DeliveryResult, sleep: Callable[[float], None]
) -> None:
    """Send what is due; wait for retries due within ``wait_seconds``; leave the rest for later."""
    wait = runtime.settings.delivery.wait_seconds
    down = None if mailer is not None else "no mail settings (mail: in billsync.yaml)"
    while True:
        retried: set[int] = set()
        with runtime.sessions() as session:
            rows = _due_rows(session, utcnow())
        for row_id in rows:
            runtime.checkpoint()  # a stop request ends the run here, between invoices
            outcome = _deliver_row(runtime, None if down else mailer, row_id, result, down)
            if outcome == "retry":
                retried.add(row_id)
            elif outcome == "unavailable":  # e-mails wait for the next run; posting goes on
                down = "the mail server is unavailable"
                result.errors.append(f"{down}: the e-mails wait for the next run")
        if not retried or down:
            break
        with runtime.sessions() as session:
            upcoming = _next_due(session, retried)
        if upcoming is None:
            break
        delay = (upcoming - utcnow()).total_seconds()
        if delay > wait:
            break
        sleep(max(0.0, delay))
    _count_waiting(runtime, result)


def _count_waiting(runtime: Runtime, result: DeliveryResult) -> None:
    with runtime.sessions() as session:
        result.retrying = (
            session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(
                    OutboxItem.destination == DESTINATION,
                    OutboxItem.entity == ENTITY,
                    OutboxItem.status.in_(OPEN_STATUSES),
                )
            )
            or 0
        )


def _deliver_row(
    runtime: Runtime, mailer: Mailer | None, row_id: int, result: DeliveryResult, down: str | None = None
) -> str:
    """Deliver one owed invoice; returns ``done``, ``retry``, ``waiting`` (no mail now: ``down``
    says why) or ``unavailable`` (the server cannot be reached: no e-mail goes in this run)."""
    settings = runtime.settings
    with runtime.transaction() as session:
        row = session.get(OutboxItem, row_id, with_for_update=True)
        if row is None or row.status not in OPEN_STATUSES:
            return "done"
        invoice = load_document(session, row.canonical_id)
        if invoice is None or invoice.status in _NOT_SENT or invoice.number is None:
            row.status, row.done_at = "cancelled", utcnow()
            row.last_error = f"invoice is {invoice.status if invoice else 'gone'}: not delivered"
            if invoice is not None:
                invoice.delivery_status = None  # nothing is owed any more
            result.cancelled += 1
            return "done"
        customer = _customer(session, invoice.customer_id)
        addresses = customer_addresses(customer)
        if row.status == "unknown" and row.sent_match_key:
            # the last attempt may have reached the server: repeat it exactly (same recipients)
            addresses = [a for _, a in getaddresses([row.sent_match_key]) if a]
        if (customer or {}).get("invoice_delivery") == "post" or not addresses:
            session.add(
                InvoiceDelivery(
                    **_about(invoice),
                    channel="post",
                    purpose="initial",
                    status="print",
                    to_address=_postal(customer) or None,
                    attempt=row.attempts + 1,
                    error=None if addresses else "no e-mail address",
                )
            )
            row.attempts += 1
            row.status, row.done_at, row.last_error = "sent", utcnow(), None
            invoice.delivery_status = "print"
            result.for_print += 1
            return "done"
        good = [a for a in addresses if valid_address(a)]
        bad = [a for a in addresses if a not in good]
        if not good:
            row.attempts += 1
            _failed(
                session,
                row,
                invoice,
                ", ".join(addresses),
                f"not a valid e-mail address: {', '.join(bad)}",
                result,
            )
            return "done"
        if bad:
            log.warning("invalid address left out", invoice=invoice.number, address=", ".join(bad))
        if mailer is None:
            row.last_error = down or "no mail settings (mail: in billsync.yaml)"
            return "waiting"
        to = ", ".join(good)
        if len(to) > 255:
            to = good[0]
        row.attempts += 1
        row.status, row.sent_match_key = "unknown", to
        claim = _Claim(
            row_id=row.id,
            document_id=invoice.id,
            number=invoice.number,
            to=tuple(a for _, a in getaddresses([to]) if a),
            message_id=message_id(f"{_ID_PREFIX[kind_of(invoice)]}.{invoice.id}", mailer.sender_domain),
            attempt=row.attempts,
        )
    # built after the claim is committed: rendering a PDF must not hold the database's write lock
    try:
        with runtime.sessions() as session:
            invoice = load_document(session, claim.document_id)
            assert invoice is not None
            message = _message(
                settings, mailer, invoice, _customer(session, invoice.customer_id), claim.to, claim.message_id
            )
    except _InvalidEInvoiceError as exc:  # never sent: support sees the failed rules
        with runtime.transaction() as session:
            row = session.get(OutboxItem, claim.row_id)
            invoice = load_document(session, claim.document_id)
            assert row is not None and invoice is not None
            _failed(session, row, invoice, ", ".join(claim.to), str(exc), result, message_id=claim.message_id)
        return "done"
    except Exception as exc:  # a template or PDF problem: recorded, retried with backoff
        return _temporary(runtime, claim, f"cannot build the message: {exc}", result)
    try:
        mailer.send(message)
    except MailUnavailableError as exc:
        _unavailable(runtime, claim, str(exc))
        return "unavailable"
    except PermanentMailError as exc:
        with runtime.transaction() as session:
            row = session.get(OutboxItem, claim.row_id)
            invoice = load_document(session, claim.document_id)
            assert row is not None and invoice is not None
            _failed(session, row, invoice, ", ".join(claim.to), str(exc), result, message_id=claim.message_id)
        return "done"
    except MailError as exc:
        return _temporary(runtime, claim, str(exc), result)
    with runtime.transaction() as session:
        row = session.get(OutboxItem, claim.row_id)
        invoice = load_document(session, claim.document_id)
        assert row is not None and invoice is not None
        row.status, row.done_at, row.last_error, row.not_before = "sent", utcnow(), None, None
        invoice.delivery_status = "delivered"
        session.add(
            InvoiceDelivery(
                **_about(invoice),
                channel="email",
                purpose="initial",
                status="sent",
                to_address=", ".join(claim.to),
                message_id=claim.message_id,
                attempt=claim.attempt,
                document_format=str(
                    (_customer(session, invoice.customer_id) or {}).get("invoice_format") or "pdf"
                ),
            )
        )
        resolve_dead_letters(session, stream=STREAM, entity="invoice", external_ids=[claim.number])
    result.delivered += 1
    log.info("invoice delivered", invoice=claim.number, attempt=claim.attempt)
    return "done"


def _failed(
    session: Session,
    row: OutboxItem,
    invoice: Document,
    to: str,
    error: str,
    result: DeliveryResult,
    *,
    message_id: str | None = None,
) -> None:
    """A permanent failure: the invoice shows ``failed``, support finds a dead letter."""
    row.status, row.done_at, row.last_error, row.not_before = "failed", utcnow(), error, None
    invoice.delivery_status = "failed"
    session.add(
        InvoiceDelivery(
            **_about(invoice),
            channel="email",
            purpose="initial",
            status="failed",
            to_address=to[:320] or None,
            message_id=message_id,
            attempt=row.attempts,
            error=error,
        )
    )
    record_dead_letter(
        session,
        stream=STREAM,
        system="smtp",
        entity="invoice",
        external_id=invoice.number,
        payload={
            "invoice_id": invoice.id,
            "number": invoice.number,
            "customer_id": invoice.customer_id,
            "to": to,
        },
        error=error,
        error_type="delivery_failed",
    )
    result.failed += 1
    result.errors.append(f"{invoice.number} to {to}: {error}")
    log.warning("invoice not delivered", invoice=invoice.number, error=error)


def _temporary(runtime: Runtime, claim: _Claim, error: str, result: DeliveryResult) -> str:
    """Retry later with backoff, or give up after ``max_attempts``."""
    settings = runtime.settings
    with runtime.transaction() as session:
        row = session.get(OutboxItem, claim.row_id)
        invoice = load_document(session, claim.document_id)
        assert row is not None and invoice is not None
        if claim.attempt >= settings.delivery.max_attempts:
            _failed(
                session,
                row,
                invoice,
                ", ".join(claim.to),
                f"gave up after {claim.attempt} attempts; last: {error}",
                result,
                message_id=claim.message_id,
            )
            return "done"
        row.status, row.last_error = "pending", error
        row.not_before = utcnow() + dt.timedelta(seconds=_backoff(settings, claim.attempt))
        session.add(
            InvoiceDelivery(
                **_about(invoice),
                channel="email",
                purpose="initial",
                status="retrying",
                to_address=", ".join(claim.to),
                message_id=claim.message_id,
                attempt=claim.attempt,
                error=error,
            )
        )
    result.errors.append(f"{claim.number} to {', '.join(claim.to)}: {error} (will retry)")
    log.warning("invoice delivery will be retried", invoice=claim.number, attempt=claim.attempt, error=error)
    return "retry"


def _unavailable(runtime: Runtime, claim: _Claim, error: str) -> None:
    """The server cannot be reached: nothing went out, the attempt does not count."""
    with runtime.transaction() as session:
        row = session.get(OutboxItem, claim.row_id)
        assert row is not None
        row.status, row.last_error = "pending", error
        row.attempts = max(0, row.attempts - 1)
    log.warning("mail server unavailable: invoice delivery paused", error=error)


def _message(
    settings: Settings,
    mailer: Mailer,
    invoice: Document,
    customer: Mapping[str, Any] | None,
    to: Sequence[str],
    msg_id: str,
    *,
    references: str | None = None,
) -> EmailMessage:
    mail = render_invoice_mail(settings, invoice, customer)
    attachments = _attachments(settings, invoice, customer)
    name = str((customer or {}).get("name") or "")
    recipient: str | list[str] = mailbox(name, to[0]) if len(to) == 1 else list(to)
    headers = [("References", references)] if references else []
    return mailer.compose(
        to=recipient,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=msg_id,
        attachments=attachments,
        headers=headers,
    )


class _InvalidEInvoiceError(Exception):
    """The customer's e-invoice cannot be produced valid: sending it again will not help."""


def _attachments(
    settings: Settings, invoice: Document, customer: Mapping[str, Any] | None
) -> list[Attachment]:
    """The PDF, and the e-invoice in the customer's ``invoice_format`` (validated first): a Factur-X
    PDF replaces the plain one; an XML format goes next to it (the PDF is the readable copy)."""
    from sync_engine.einvoices import EInvoiceConfigError, EInvoiceInvalidError, validated_einvoice

    fmt = str((customer or {}).get("invoice_format") or "pdf")
    einvoice = None
    if fmt != "pdf":
        try:
            einvoice = validated_einvoice(invoice, customer, settings, fmt)
        except (EInvoiceInvalidError, EInvoiceConfigError) as exc:
            rules = ""
            if isinstance(exc, EInvoiceInvalidError):
                rules = "; ".join(f"{f.rule_id} {f.short_location}: {f.text}" for f in exc.failures[:20])
            raise _InvalidEInvoiceError(f"{exc}{': ' + rules if rules else ''}") from exc
    files = []
    if einvoice is None or einvoice.format != "facturx":
        files.append(
            Attachment(_pdf_name(invoice), document_pdf(invoice, customer, settings), "application/pdf")
        )
    if einvoice is not None:
        files.append(Attachment(einvoice.filename, einvoice.content, einvoice.mime_type))
    return files


# --------------------------------------------------------------------------------------------
# printing


def _print_batch(runtime: Runtime, result: DeliveryResult) -> None:
    """Merge the PDFs of invoices listed for printing and not yet in a print file into one file.

    The file is named for the first and last delivery it holds, so a run that dies after writing it
    and before recording it writes the same file again rather than a second one.
    """
    with runtime.sessions() as session:
        rows = list(
            session.scalars(
                select(InvoiceDelivery)
                .where(InvoiceDelivery.status == "print", InvoiceDelivery.print_file.is_(None))
                .order_by(InvoiceDelivery.id)
            )
        )
        if not rows:
            return
        from pypdf import PdfWriter

        writer = PdfWriter()
        for row in rows:
            invoice = _document_of(session, row)
            writer.append(
                _pdf_reader(document_pdf(invoice, _customer(session, invoice.customer_id), runtime.settings))
            )
        ids = [row.id for row in rows]
    folder = Path(runtime.settings.delivery.print_folder).expanduser()
    folder = folder if folder.is_absolute() else runtime.settings.base_dir / folder
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"invoices-to-print-{ids[0]:06d}-{ids[-1]:06d}.pdf"
    partial = target.with_suffix(".pdf.part")
    with partial.open("wb") as handle:
        writer.write(handle)
    partial.replace(target)
    with runtime.transaction() as session:
        for row_id in ids:
            listed = session.get(InvoiceDelivery, row_id)
            assert listed is not None
            listed.print_file = str(target)
    result.print_files.append(str(target))
    log.info("invoices listed for printing", invoices=len(ids), file=str(target))


def _pdf_reader(pdf: bytes) -> Any:
    from io import BytesIO

    from pypdf import PdfReader

    return PdfReader(BytesIO(pdf))


def _document_of(session: Session, row: InvoiceDelivery) -> Document:
    """The document an attempt was about (its number; the invoice for rows without one)."""
    found = find_document(session, row.document_number) if row.document_number else None
    document = found or session.get(Invoice, row.invoice_id)
    assert document is not None
    return document


def print_queue(session: Session) -> list[dict[str, Any]]:
    """Invoices and credit notes listed for printing and posting, with the merged file each is in."""
    rows = session.scalars(
        select(InvoiceDelivery).where(InvoiceDelivery.status == "print").order_by(InvoiceDelivery.id)
    )
    listed = []
    for delivery in rows:
        document = _document_of(session, delivery)
        listed.append(
            {
                "number": document.number,
                "kind": kind_of(document),
                "customer_id": document.customer_id,
                "address": delivery.to_address,
                "reason": delivery.error or "the customer asked for post",
                "print_file": delivery.print_file,
                "listed_at": delivery.created_at.isoformat(),
            }
        )
    return listed


# --------------------------------------------------------------------------------------------
# proof and resending


def _document_by_number(session: Session, number: str) -> Document:
    document = find_document(session, number)
    if document is None:
        raise DeliveryError(f"no invoice or credit note {number}")
    return document


def delivery_history(session: Session, number: str) -> dict[str, Any]:
    """A document's delivery status and every attempt (oldest first), for the CLI and the console."""
    document = _document_by_number(session, number)
    rows = session.scalars(
        select(InvoiceDelivery)
        .where(InvoiceDelivery.document_number == document.number)
        .order_by(InvoiceDelivery.id)
    )
    return {
        "number": document.number,
        "kind": kind_of(document),
        "status": document.status,
        "delivery_status": document.delivery_status,
        "deliveries": [
            {
                "at": row.created_at.isoformat(),
                "channel": row.channel,
                "purpose": row.purpose,
                "to": row.to_address,
                "status": row.status,
                "message_id": row.message_id,
                "attempt": row.attempt,
                "requested_by": row.requested_by,
                "error": row.error,
                "print_file": row.print_file,
                "format": row.document_format,
            }
            for row in rows
        ],
    }


def resend_invoice(
    runtime: Runtime, number: str, *, requested_by: str, to: str | None = None, mailer: Mailer | None = None
) -> dict[str, Any]:
    """Send invoice ``number`` again, now, to ``to`` or the customer's current address.

    Recorded with ``requested_by`` whatever the outcome; a failure raises :class:`DeliveryError`.
    A successful resend clears a ``failed`` delivery (and its dead letter).
    """
    settings = runtime.settings
    if mailer is None:
        mailer = Mailer(invoice_mail_settings(settings))
    with runtime.sessions() as session:
        invoice = _document_by_number(session, number)
        if invoice.status in _NOT_SENT:
            raise DeliveryError(f"invoice {number} is {invoice.status}: it is not sent")
        customer = _customer(session, invoice.customer_id)
        addresses = [a for _, a in getaddresses([to])] if to else customer_addresses(customer)
        addresses = [a for a in addresses if a]
        if not addresses:
            raise DeliveryError(f"invoice {number}: the customer has no e-mail address; give one with --to")
        bad = [a for a in addresses if not valid_address(a)]
        if bad:
            raise DeliveryError(f"not a valid e-mail address: {', '.join(bad)}")
        earlier = session.scalar(
            select(func.count())
            .select_from(InvoiceDelivery)
            .where(InvoiceDelivery.document_number == invoice.number, InvoiceDelivery.purpose == "resend")
        )
        prefix = f"{_ID_PREFIX[kind_of(invoice)]}.{invoice.id}"
        msg_id = message_id(f"{prefix}.resend.{(earlier or 0) + 1}", mailer.sender_domain)
        original = message_id(prefix, mailer.sender_domain)
        try:
            message = _message(settings, mailer, invoice, customer, addresses, msg_id, references=original)
        except _InvalidEInvoiceError as exc:
            raise DeliveryError(f"invoice {number} not resent: {exc}") from exc
        document_id, about = invoice.id, _about(invoice)
    error: str | None = None
    try:
        mailer.send(message)
    except MailError as exc:
        error = str(exc)
    with runtime.transaction() as session:
        session.add(
            InvoiceDelivery(
                **about,
                channel="email",
                purpose="resend",
                status="failed" if error else "sent",
                to_address=", ".join(addresses)[:320],
                message_id=msg_id,
                requested_by=requested_by,
                attempt=1,
                error=error,
                document_format=str((customer or {}).get("invoice_format") or "pdf"),
            )
        )
        if error is None:
            stored = load_document(session, document_id)
            assert stored is not None
            stored.delivery_status = "delivered"
            for row in session.scalars(  # the automatic delivery still owed is done: not twice
                select(OutboxItem).where(
                    OutboxItem.destination == DESTINATION,
                    OutboxItem.entity == ENTITY,
                    OutboxItem.canonical_id == document_id,
                    OutboxItem.status.in_(OPEN_STATUSES),
                )
            ):
                row.status, row.done_at, row.last_error = (
                    "sent",
                    utcnow(),
                    f"delivered by a resend ({msg_id})",
                )
            resolve_dead_letters(session, stream=STREAM, entity="invoice", external_ids=[number])
    log.info("invoice resent", invoice=number, requested_by=requested_by, ok=error is None)
    if error is not None:
        raise DeliveryError(f"invoice {number} not resent: {error}")
    return {"number": number, "to": addresses, "message_id": msg_id, "requested_by": requested_by}
