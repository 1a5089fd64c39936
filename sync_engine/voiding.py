"""Voiding an invoice: cancel a finalised invoice nobody has paid anything on, everywhere, at once.

Why a void and not a credit note: an invoice issued by mistake (wrong customer, duplicate, an order
cancelled before anyone paid) should not look like revenue given back; it never counted. The rule
is billing's (:func:`billing.lifecycle.void`): only an open (or overdue, which is open and late) or
uncollectible invoice with nothing paid or credited on it. Once money came in, the correction is a
credit note (``billsync invoices credit``), which keeps the money's trail.

What voiding does, in one transaction (all or nothing), with the invoice's row locked so a payment,
a credit note or a second void of the same invoice waits for it or sees it:

- status ``void`` with when (``voided_at``), why (``void_reason``) and who asked (``voided_by``);
  the number stays used (numbers are gapless and never reused);
- the ERP and the CRM learn the new status through the outbox (``invoice_status``, the CRM orders
  billed on it and the customer's balance), as a payment's status change does;
- an accounting system that maps ``invoice_void`` (QuickBooks: ``builtin:quickbooks/invoice_void.out``)
  voids its copy: after the invoice itself, so one not pushed yet is created and then voided and
  the number shows there as a voided invoice too;
- automatic work still owed is closed: the e-mail delivery if it has not gone, pending reminders,
  a card charge not attempted yet. A card charge in flight (its outcome unknown) refuses the void
  until the next run learns whether money was taken;
- a :class:`SyncRun` of kind ``void`` records who asked, for ``billsync runs`` and the console.

The ledger export reverses the invoice on the day it was voided.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import Currency
from billing.lifecycle import InvalidTransitionError
from billing.lifecycle import void as billing_void
from sync_engine.card_collection import ENTITY as CARD_COLLECTION
from sync_engine.delivery import ENTITY as DELIVERY
from sync_engine.invoicing import billing_invoice
from sync_engine.outbox import OPEN_STATUSES, enqueue
from sync_engine.payments import orders_of_invoices, queue_invoice_change
from sync_engine.runtime import Runtime
from sync_engine.store.models import CreditNote, Invoice, OutboxItem, Reminder, SyncRun, utcnow

__all__ = ["ENTITY", "VoidRefused", "VoidResult", "invoice_void_documents", "void_invoice"]

#: The outbox entity of a void for accounting systems (mapping ``invoice_void``).
ENTITY: Final = "invoice_void"
_MAX_BY: Final = 120  # Invoice.voided_by
#: What other systems learn of a void through.
_NEWS: Final = (ENTITY, "invoice_status", "customer_balance", "order_balance")


class VoidRefused(ValueError):
    """The invoice cannot be voided; the message says why and what to do instead."""


@dataclass(frozen=True)
class VoidResult:
    """What a void did, for the CLI and the console."""

    invoice_id: str
    number: str
    status: str
    voided_at: dt.datetime
    reason: str
    voided_by: str
    customer_id: str
    currency: str
    total: Decimal
    #: ``destination:entity`` of every outbox row queued (the systems that will learn of it)
    queued: tuple[str, ...]
    #: automatic work closed: ``delivery``, ``reminder:<step>``, ``card_collection``
    cancelled: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (amounts exact strings, times ISO 8601)."""
        data = asdict(self)
        data["voided_at"] = self.voided_at.isoformat()
        data["total"] = str(self.total.quantize(Currency.of(self.currency).quantum))
        data["queued"], data["cancelled"] = list(self.queued), list(self.cancelled)
        return data


def void_invoice(
    runtime: Runtime, number: str, *, reason: str, requested_by: str, now: dt.datetime | None = None
) -> VoidResult:
    """Void invoice ``number`` (see the module docstring); raises :class:`VoidRefused`."""
    reason, requested_by = reason.strip(), requested_by.strip()
    if not reason:
        raise VoidRefused("a void needs a reason (it is kept with the invoice and shown to auditors)")
    if not requested_by:
        raise VoidRefused("a void needs the name of who asks for it")
    if len(requested_by) > _MAX_BY:
        raise VoidRefused(f"the name of who asks is longer than {_MAX_BY} characters")
    moment = now or utcnow()
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    settings = runtime.settings
    with runtime.transaction() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.number == number).with_for_update()).first()
        if invoice is None:
            raise VoidRefused(f"no invoice {number}")
        _check(session, invoice, number)
        invoice.status = "void"
        invoice.voided_at = moment
        invoice.void_reason = reason
        invoice.voided_by = requested_by
        cancelled = _close_owed_work(session, invoice)
        queue_invoice_change(session, settings, invoice)
        for destination in settings.destinations:
            if ENTITY in destination.mappings:
                enqueue(
                    session,
                    destination=destination.name,
                    entity=ENTITY,
                    canonical_id=invoice.id,
                    action="void",
                    version="1",
                )
        session.flush()
        queued = _queued(session, invoice)
        result = VoidResult(
            invoice_id=invoice.id,
            number=number,
            status=invoice.status,
            voided_at=moment,
            reason=reason,
            voided_by=requested_by,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            total=invoice.total,
            queued=queued,
            cancelled=cancelled,
        )
        session.add(
            SyncRun(
                kind="void",
                stream="invoices",
                status="ok",
                started_at=moment,
                finished_at=moment,
                counts={
                    "requested_by": requested_by,
                    "invoice": number,
                    "reason": reason,
                    "queued": list(queued),
                    "cancelled": list(cancelled),
                },
            )
        )
    return result


def _check(session: Session, invoice: Invoice, number: str) -> None:
    """Refuse with what to do instead; the lifecycle rule itself is billing's."""
    if invoice.status == "void":
        when = invoice.voided_at.date().isoformat() if invoice.voided_at else "earlier"
        who = f" by {invoice.voided_by}" if invoice.voided_by else ""
        why = f": {invoice.void_reason}" if invoice.void_reason else ""
        raise VoidRefused(f"invoice {number} is void already (voided {when}{who}{why})")
    if invoice.status == "draft":
        raise VoidRefused(f"invoice {number} is a draft: only finalised invoices are voided")
    paid = invoice.amount_paid or Decimal(0)
    credited = list(session.scalars(select(CreditNote.number).where(CreditNote.invoice_id == invoice.id)))
    if paid > 0 or credited:
        quantum = Currency.of(invoice.currency).quantum
        what = (
            f"{invoice.currency} {paid.quantize(quantum)} was received or credited on it"
            if paid > 0
            else f"it has credit notes ({', '.join(sorted(credited))})"
        )
        raise VoidRefused(
            f"cannot void invoice {number}: {what}; issue a credit note instead "
            f"(billsync invoices credit {number} --reason ...)"
        )
    in_flight = session.scalar(
        select(OutboxItem.id).where(
            OutboxItem.entity == CARD_COLLECTION,
            OutboxItem.canonical_id == invoice.id,
            OutboxItem.status == "unknown",
        )
    )
    if in_flight is not None:
        raise VoidRefused(
            f"cannot void invoice {number} now: a card charge for it is in flight (its outcome is not "
            "known yet); run billsync sync to learn whether money was taken, then try again"
        )
    try:
        billing_void(billing_invoice(invoice))
    except InvalidTransitionError as exc:
        raise VoidRefused(str(exc)) from None


def _queued(session: Session, invoice: Invoice) -> tuple[str, ...]:
    """``destination:entity`` of the open outbox rows that carry the void to other systems."""
    about = {invoice.id, invoice.customer_id, *orders_of_invoices(session, [invoice.id])}
    rows = session.execute(
        select(OutboxItem.destination, OutboxItem.entity)
        .where(
            OutboxItem.canonical_id.in_(sorted(about)),
            OutboxItem.entity.in_(_NEWS),
            OutboxItem.status.in_(OPEN_STATUSES),
        )
        .order_by(OutboxItem.id)
    )
    return tuple(dict.fromkeys(f"{destination}:{entity}" for destination, entity in rows))


def _close_owed_work(session: Session, invoice: Invoice) -> tuple[str, ...]:
    """Close the delivery, reminders and card charge still owed to the invoice (not yet begun)."""
    closed: list[str] = []
    now = utcnow()
    for row in session.scalars(
        select(OutboxItem)
        .where(
            OutboxItem.canonical_id == invoice.id,
            OutboxItem.entity.in_((DELIVERY, CARD_COLLECTION)),
            OutboxItem.status == "pending",
        )
        .order_by(OutboxItem.id)
    ):
        row.status, row.done_at = "cancelled", now
        row.last_error = (
            f"invoice {invoice.number} was voided: not {'sent' if row.entity == DELIVERY else 'charged'}"
        )
        closed.append("delivery" if row.entity == DELIVERY else row.entity)
    if invoice.delivery_status == "pending" and "delivery" in closed:
        invoice.delivery_status = None  # nothing is owed any more
    for reminder in session.scalars(
        select(Reminder)
        .where(Reminder.invoice_id == invoice.id, Reminder.status == "pending")
        .order_by(Reminder.id)
    ):
        reminder.status, reminder.error = "cancelled", "invoice voided"
        closed.append(f"reminder:{reminder.step}")
    return tuple(closed)


def invoice_void_documents(session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Canonical voids by invoice id (``mappings.canonical.InvoiceVoid``), for void invoices only."""
    documents = {}
    for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(ids), Invoice.status == "void")):
        voided = invoice.voided_at or dt.datetime.combine(invoice.issue_date, dt.time(), dt.UTC)
        documents[invoice.id] = {
            "invoice_id": invoice.id,
            "number": invoice.number or invoice.id,
            "voided_on": voided.astimezone(dt.UTC).date().isoformat(),
            "reason": invoice.void_reason or "",
        }
    return documents
