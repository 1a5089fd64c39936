"""Dunning: remind customers of unpaid invoices on a schedule, each reminder decided exactly once.

Schedules are per customer group (``dunning.groups`` in billsync.yaml; the customer's
``dunning_group``, else ``default_group``): steps ``days`` after the due date (negative: before it),
each with a level (reminded, final_notice, suspended) and a template.

What a run (:func:`run_dunning`) does, for each finalised invoice with an amount due (open,
partially paid, overdue):

- Only the *latest* step that is due is sent. Earlier steps that never went out (billsync was down,
  or the invoice was created late) are recorded as ``skipped``: after an outage a customer gets one
  mail, not three. A step missed by more than ``max_lateness_days`` is skipped too.
- A customer without an e-mail address gets a ``failed`` reminder with the error
  "no e-mail address", where support sees it.
- Paid, voided or uncollectible invoices get nothing more: :func:`sync_engine.payments.record_payment`
  cancels their pending reminders, and the status is checked again right before each mail.
- A sent reminder raises the invoice's ``dunning_level`` to the step's level (never lowers it).

Delivery, honestly: the *decision* is exactly-once (one ``Reminder`` row per invoice and step,
unique in the database), the *delivery* is at-least-once. The row is committed as ``pending``,
with its Message-ID, before the mail is handed to SMTP, and marked ``sent`` after the server
accepted it. If billsync dies (or the connection drops) after the server accepted the mail but
before ``sent`` is committed, the next run sends it again, with the same Message-ID, so the
receiving side can recognise the duplicate (many mail systems drop it, a person sees the same
message twice at worst). It is never silently lost: a ``pending`` row is retried until it is
sent, fails for good (5xx: ``failed`` with the server's reason), becomes pointless (the invoice
is paid: ``cancelled``) or too late (``skipped``). Temporary failures (4xx, timeouts) leave it
``pending`` with ``attempts`` and the ``error`` recorded, for the next run. One run at a time per
process (a lock); two processes running dunning at the same moment cannot both claim the same
attempt (``attempts`` is compared and set), but a second process starting while the first is
still talking to the server could send a duplicate, again with the same Message-ID.

Templates: Jinja2, a ``.txt`` (``Subject:`` line, blank line, body) and an optional ``.html``
alternative (autoescaped); see ``sync_engine/templates/dunning/README.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Final

from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing import Currency
from sync_engine.documents import document_pdf, sample_invoice
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
)
from sync_engine.payments import amount_due
from sync_engine.runtime import Runtime
from sync_engine.settings import DunningStep, Settings
from sync_engine.store.models import CanonicalRecord, Invoice, Reminder, utcnow

__all__ = [
    "BUILTIN_TEMPLATES",
    "DunningResult",
    "DunningTemplateError",
    "RenderedMail",
    "check_templates",
    "dunning_overview",
    "render_reminder",
    "reminder_context",
    "run_dunning",
]

log = get_logger("billsync.dunning")

TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates" / "dunning"
BUILTIN_TEMPLATES: Final = ("upcoming", "reminder", "final_notice", "suspended")
#: Escalation order of ``Invoice.dunning_level``.
LEVELS: Final = ("none", "reminded", "final_notice", "suspended")
#: Invoices that are reminded: finalised and not settled.
DUNNABLE: Final = ("open", "partially_paid", "overdue")
#: The template of a reminder whose step is no longer configured.
_TEMPLATE_OF_LEVEL: Final = {"reminded": "reminder", "final_notice": "final_notice", "suspended": "suspended"}
NO_ADDRESS: Final = "no e-mail address"


class DunningTemplateError(MailTemplateError):
    """A reminder template cannot be found or rendered (the reminder stays pending)."""


@dataclass
class DunningResult:
    """What one run did. ``retrying``: still pending after a temporary failure, for the next run."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    retrying: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    #: One line per reminder that failed or waits for a retry: ``INV-000012 late-7: 550 ...``.
    errors: list[str] = field(default_factory=list)
    #: Why the run did nothing at all (dunning disabled, no mail settings), else None.
    note: str | None = None


# --------------------------------------------------------------------------------------------
# templates


def _environment(folders: tuple[str, ...]) -> SandboxedEnvironment:
    """The admin's ``folders``, then the built-in reminder templates."""
    return environment((*folders, str(TEMPLATES_DIR)))


def _template_files(settings: Settings, template: str) -> tuple[SandboxedEnvironment, str, str | None]:
    """``(environment, text template name, html template name or None)`` of a step's template."""
    if template in BUILTIN_TEMPLATES:
        return _environment(()), f"{template}.txt", f"{template}.html"
    path = Path(template).expanduser()
    path = path if path.is_absolute() else settings.base_dir / path
    if not path.is_file():
        raise DunningTemplateError(f"template {template!r}: no file {path}")
    html = path.with_suffix(".html")
    html_name = html.name if html != path and html.is_file() else None
    return _environment((str(path.parent),)), path.name, html_name


def render_reminder(settings: Settings, template: str, context: Mapping[str, Any]) -> RenderedMail:
    """Subject, text and HTML of ``template`` (a built-in name or a path) for ``context``."""
    try:
        env, text_name, html_name = _template_files(settings, template)
    except OSError as exc:
        raise DunningTemplateError(f"template {template!r}: {exc}") from exc
    return render_mail(env, text_name, html_name, context, label=template, error=DunningTemplateError)


def _display(value: Decimal, currency: Currency) -> str:
    """``1234.5`` -> ``1,234.50``: rounded half up to the currency's minor unit."""
    return f"{value.quantize(currency.quantum, rounding=ROUND_HALF_UP):,}"


def reminder_context(
    invoice: Invoice,
    customer: Mapping[str, Any] | None,
    settings: Settings,
    *,
    step: str,
    level: str,
    as_of: dt.date,
    pdf_attached: bool = False,
) -> dict[str, Any]:
    """The variables a reminder template sees (listed in templates/dunning/README.md)."""
    currency = Currency.of(invoice.currency)
    due = _display(amount_due(invoice), currency)
    seller = settings.seller
    days_overdue = (as_of - invoice.due_date).days
    instructions = (seller.payment_instructions if seller else None) or (
        f"Please pay {currency.code} {due}, quoting invoice {invoice.number}."
    )
    return {
        "number": invoice.number,
        "currency": currency.code,
        "amount_due": due,
        "total": _display(invoice.total, currency),
        "amount_paid": _display(invoice.amount_paid or Decimal(0), currency),
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "days_overdue": days_overdue,
        "days_until_due": max(0, -days_overdue),
        "customer_name": str((customer or {}).get("name") or invoice.customer_id),
        "seller_name": seller.name if seller else None,
        "seller_email": seller.email if seller else None,
        "payment_instructions": instructions,
        "step": step,
        "level": level,
        "as_of": as_of.isoformat(),
        "pdf_attached": pdf_attached,
    }


def check_templates(settings: Settings) -> list[str]:
    """Problems with the configured templates (missing files, syntax, undefined variables).

    Each template is rendered once for a sample invoice, so a typo shows before a customer is due.
    """
    sample = sample_invoice("overdue")
    problems: list[str] = []
    seen: set[str] = set()
    for group, steps in settings.dunning.groups.items():
        for step in steps:
            if step.template in seen:
                continue
            seen.add(step.template)
            context = reminder_context(
                sample,
                {"name": "Sample customer"},
                settings,
                step=step.name,
                level=step.level,
                as_of=sample.due_date + dt.timedelta(days=step.days),
                pdf_attached=settings.dunning.attach_pdf,
            )
            try:
                render_reminder(settings, step.template, context)
            except DunningTemplateError as exc:
                problems.append(f"dunning group {group!r}, step {step.name!r}: {exc}")
    return problems


# --------------------------------------------------------------------------------------------
# the run


def run_dunning(runtime: Runtime, *, as_of: dt.date, mailer: Mailer | None = None) -> DunningResult:
    """Plan the reminders due on ``as_of`` and send every pending one (see the module docstring).

    ``mailer``: defaults to one on ``settings.mail``. Without either, or with dunning disabled,
    nothing happens and ``note`` says why. Raises ``StopRequested`` at a checkpoint when asked to
    stop; everything decided and sent so far is committed.
    """
    settings = runtime.settings
    result = DunningResult()
    if not settings.dunning.enabled:
        result.note = "dunning is disabled (dunning.enabled: false)"
        return result
    if mailer is None:
        if settings.mail is None:
            result.note = "no mail settings (mail: in billsync.yaml): no reminders planned or sent"
            log.warning(result.note)
            return result
        mailer = Mailer(settings.mail)
    with runtime.lock("dunning"):
        for invoice_id in _candidates(runtime, as_of):
            runtime.checkpoint()
            try:
                _plan(runtime, invoice_id, as_of, mailer.sender_domain, result)
            except IntegrityError:  # another process planned this invoice at the same moment
                log.info("reminder planned concurrently elsewhere", invoice_id=invoice_id)
        with runtime.sessions() as session:
            pending = list(
                session.scalars(select(Reminder.id).where(Reminder.status == "pending").order_by(Reminder.id))
            )
        with mailer:
            for position, reminder_id in enumerate(pending):
                runtime.checkpoint()
                if not _deliver(runtime, reminder_id, as_of, mailer, result):
                    left = len(pending) - position - 1
                    result.retrying += left
                    if left:
                        result.errors.append(f"{left} more reminders wait for the mail server")
                    break
    log.info(
        "dunning finished",
        sent=result.sent,
        failed=result.failed,
        skipped=result.skipped,
        cancelled=result.cancelled,
        retrying=result.retrying,
    )
    return result


def _candidates(runtime: Runtime, as_of: dt.date) -> list[str]:
    """Ids of finalised unpaid invoices old enough for the earliest step of any group."""
    earliest = min(
        (s.days for steps in runtime.settings.dunning.groups.values() for s in steps), default=None
    )
    if earliest is None:
        return []
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(Invoice.id)
                .where(
                    Invoice.status.in_(DUNNABLE),
                    Invoice.number.is_not(None),
                    Invoice.due_date <= as_of - dt.timedelta(days=earliest),
                )
                .order_by(Invoice.due_date, Invoice.number)
            )
        )


def _customer(session: Session, customer_id: str) -> dict[str, Any] | None:
    record = session.get(CanonicalRecord, customer_id)
    return None if record is None or record.entity != "customer" else dict(record.data)


def _steps(settings: Settings, customer: Mapping[str, Any] | None) -> list[DunningStep]:
    groups = settings.dunning.groups
    group = (customer or {}).get("dunning_group") or settings.dunning.default_group
    if group not in groups:
        log.warning("unknown dunning group; using the default", group=group)
        group = settings.dunning.default_group
    return list(groups[group])


def _find_step(settings: Settings, customer: Mapping[str, Any] | None, name: str) -> DunningStep | None:
    for step in _steps(settings, customer):
        if step.name == name:
            return step
    for steps in settings.dunning.groups.values():
        for step in steps:
            if step.name == name:
                return step
    return None


def _plan(runtime: Runtime, invoice_id: str, as_of: dt.date, domain: str, result: DunningResult) -> None:
    """Record what is owed to one invoice: skipped earlier steps and the latest due one."""
    settings = runtime.settings
    with runtime.transaction() as session:
        invoice = session.get(Invoice, invoice_id, with_for_update=True)
        if invoice is None or invoice.status not in DUNNABLE or invoice.number is None:
            return
        if amount_due(invoice) <= 0:
            return
        customer = _customer(session, invoice.customer_id)
        due = [s for s in _steps(settings, customer) if invoice.due_date + dt.timedelta(days=s.days) <= as_of]
        if not due:
            return
        existing = {
            r.step: r for r in session.scalars(select(Reminder).where(Reminder.invoice_id == invoice.id))
        }
        latest = due[-1]

        def add(step: DunningStep, status: str, error: str | None, to: str | None = None) -> Reminder:
            reminder = Reminder(
                invoice_id=invoice.id,
                step=step.name,
                level=step.level,
                scheduled_for=invoice.due_date + dt.timedelta(days=step.days),
                status=status,
                to_address=to,
                attempts=0,
                error=error,
            )
            session.add(reminder)
            return reminder

        for step in due[:-1]:
            earlier = existing.get(step.name)
            if earlier is None:
                add(step, "skipped", f"superseded by {latest.name}")
                result.skipped += 1
            elif earlier.status == "pending":
                last = f" (last error: {earlier.error})" if earlier.error else ""
                earlier.status, earlier.error = "skipped", f"superseded by {latest.name}{last}"
                result.skipped += 1
        if latest.name in existing:
            return  # decided before; a pending one is (re)sent below
        scheduled = invoice.due_date + dt.timedelta(days=latest.days)
        late = (as_of - scheduled).days
        if late > settings.dunning.max_lateness_days:
            add(
                latest,
                "skipped",
                f"{late} days after its date {scheduled.isoformat()} "
                f"(more than max_lateness_days {settings.dunning.max_lateness_days})",
            )
            result.skipped += 1
            return
        addresses = customer_addresses(customer)
        if not addresses:
            add(latest, "failed", NO_ADDRESS)
            result.failed += 1
            result.errors.append(
                f"{invoice.number} {latest.name}: {NO_ADDRESS} (customer {invoice.customer_id})"
            )
            log.warning("reminder not sent: no e-mail address", invoice=invoice.number, step=latest.name)
            return
        to = ", ".join(addresses)
        if len(to) > 320:
            to = addresses[0]
        reminder = add(latest, "pending", None, to)
        reminder.message_id = message_id(f"reminder.{invoice.id}.{latest.name}", domain)


def _deliver(
    runtime: Runtime, reminder_id: int, as_of: dt.date, mailer: Mailer, result: DunningResult
) -> bool:
    """Send one pending reminder; False when the mail server is unavailable (stop the batch)."""
    settings = runtime.settings
    with runtime.transaction() as session:
        reminder = session.get(Reminder, reminder_id, with_for_update=True)
        if reminder is None or reminder.status != "pending":
            return True
        invoice_id = reminder.invoice_id
        invoice = session.get(Invoice, invoice_id)
        label = f"{invoice.number if invoice else reminder.invoice_id} {reminder.step}"
        if invoice is None or invoice.status not in DUNNABLE or amount_due(invoice) <= 0:
            reminder.status = "cancelled"
            reminder.error = f"invoice is {invoice.status if invoice else 'gone'}"
            result.cancelled += 1
            return True
        late = (as_of - reminder.scheduled_for).days
        if late > settings.dunning.max_lateness_days:
            last = f"; last error: {reminder.error}" if reminder.error else ""
            reminder.status = "skipped"
            reminder.error = (
                f"gave up {late} days after its date (max_lateness_days "
                f"{settings.dunning.max_lateness_days}){last}"
            )
            result.skipped += 1
            return True
        seen = reminder.attempts
        claimed = session.execute(
            update(Reminder)
            .where(Reminder.id == reminder.id, Reminder.status == "pending", Reminder.attempts == seen)
            .values(attempts=seen + 1)
        )
        if getattr(claimed, "rowcount", 1) != 1:
            return True  # another process took this attempt
    # built after the claim is committed: rendering a PDF must not hold the database's write lock
    try:
        with runtime.sessions() as session:
            invoice = session.get(Invoice, invoice_id)
            reminder = session.get(Reminder, reminder_id)
            assert invoice is not None and reminder is not None
            message = _message(session, settings, mailer, invoice, reminder, as_of)
    except Exception as exc:  # template, PDF: recorded, retried next run
        error = f"cannot build the message: {exc}"
        with runtime.transaction() as session:
            row = session.get(Reminder, reminder_id)
            assert row is not None
            row.error = error
        result.retrying += 1
        result.errors.append(f"{label}: {error}")
        log.error("reminder message failed", invoice=label, error=str(exc))
        return True
    try:
        mailer.send(message)
    except MailError as exc:
        with runtime.transaction() as session:
            row = session.get(Reminder, reminder_id)
            assert row is not None
            row.error = str(exc)
            if isinstance(exc, PermanentMailError):
                if row.status == "pending":
                    row.status = "failed"
                result.failed += 1
            else:
                result.retrying += 1
        result.errors.append(f"{label}: {exc}")
        log.warning(
            "reminder not sent",
            invoice=label,
            permanent=isinstance(exc, PermanentMailError),
            code=exc.code,
            error=exc.text,
        )
        return not isinstance(exc, MailUnavailableError)
    with runtime.transaction() as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        row.status = "sent"  # even if cancelled meanwhile: it went out
        row.sent_at = utcnow()
        row.error = None
        invoice = session.get(Invoice, row.invoice_id)
        if invoice is not None and invoice.status in DUNNABLE:
            if LEVELS.index(row.level) > LEVELS.index(invoice.dunning_level or "none"):
                invoice.dunning_level = row.level
        sent_level = row.level
    result.sent += 1
    result.by_level[sent_level] = result.by_level.get(sent_level, 0) + 1
    log.info("reminder sent", invoice=label, level=sent_level)
    return True


def _message(
    session: Session,
    settings: Settings,
    mailer: Mailer,
    invoice: Invoice,
    reminder: Reminder,
    as_of: dt.date,
) -> EmailMessage:
    customer = _customer(session, invoice.customer_id)
    step = _find_step(settings, customer, reminder.step)
    template = step.template if step is not None else _TEMPLATE_OF_LEVEL.get(reminder.level, "reminder")
    attach = settings.dunning.attach_pdf
    context = reminder_context(
        invoice,
        customer,
        settings,
        step=reminder.step,
        level=reminder.level,
        as_of=as_of,
        pdf_attached=attach,
    )
    mail = render_reminder(settings, template, context)
    attachments: list[Attachment] = []
    if attach:
        try:
            # The document the customer was sent (PDF/A-3b), rendered once while it is unchanged.
            pdf = document_pdf(invoice, customer, settings)
        except Exception as exc:
            raise RuntimeError(
                f"invoice PDF: {exc} (install Pango, or set dunning.attach_pdf: false)"
            ) from exc
        attachments.append(
            Attachment(f"{(invoice.number or invoice.id).replace('/', '-')}.pdf", pdf, "application/pdf")
        )
    addresses = [a for _, a in getaddresses([reminder.to_address or ""]) if a]
    name = str((customer or {}).get("name") or "")
    to: str | list[str] = mailbox(name, addresses[0]) if len(addresses) == 1 else addresses
    assert reminder.message_id is not None
    return mailer.compose(
        to=to,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=reminder.message_id,
        attachments=attachments,
        headers=[("References", message_id(f"invoice.{invoice.id}", mailer.sender_domain))],
    )


# --------------------------------------------------------------------------------------------
# overview


def dunning_overview(session: Session) -> list[dict[str, Any]]:
    """Per invoice that has reminders: where it stands and every reminder, for the CLI/console.

    Each item: ``invoice_id, number, customer_id, customer (name), status, level, currency,
    amount_due, due_date, sent`` (``[{step, level, date}]`` of the reminders sent) and
    ``reminders`` (every row: step, level, status, scheduled_for, sent_at, to, attempts, error).
    """
    rows = session.execute(
        select(Reminder, Invoice)
        .join(Invoice, Reminder.invoice_id == Invoice.id)
        .order_by(Invoice.due_date, Invoice.number, Reminder.scheduled_for, Reminder.id)
    ).all()
    customer_ids = sorted({invoice.customer_id for _, invoice in rows})
    names = {
        record.id: str(record.data.get("name") or record.id)
        for record in session.scalars(select(CanonicalRecord).where(CanonicalRecord.id.in_(customer_ids)))
    }
    overview: dict[str, dict[str, Any]] = {}
    for reminder, invoice in rows:
        item = overview.get(invoice.id)
        if item is None:
            item = overview[invoice.id] = {
                "invoice_id": invoice.id,
                "number": invoice.number,
                "customer_id": invoice.customer_id,
                "customer": names.get(invoice.customer_id, invoice.customer_id),
                "status": invoice.status,
                "level": invoice.dunning_level,
                "currency": invoice.currency,
                "amount_due": str(amount_due(invoice).quantize(Currency.of(invoice.currency).quantum)),
                "due_date": invoice.due_date.isoformat(),
                "sent": [],
                "reminders": [],
            }
        sent_at = reminder.sent_at.isoformat() if reminder.sent_at else None
        if reminder.status == "sent" and reminder.sent_at is not None:
            item["sent"].append(
                {"step": reminder.step, "level": reminder.level, "date": reminder.sent_at.date().isoformat()}
            )
        item["reminders"].append(
            {
                "step": reminder.step,
                "level": reminder.level,
                "status": reminder.status,
                "scheduled_for": reminder.scheduled_for.isoformat(),
                "sent_at": sent_at,
                "to": reminder.to_address,
                "attempts": reminder.attempts,
                "error": reminder.error,
            }
        )
    return list(overview.values())
