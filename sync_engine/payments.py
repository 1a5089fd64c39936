"""Payments: record money received, allocate it to invoices, keep the rest as credit, and tell everyone.

Every source (QBO payments, Stripe webhooks, bank statements, a person) ends in
:func:`record_payment`, so the rules live in one place:

- ``(source, source_ref)`` identifies a receipt: seeing it again records nothing (webhook
  redeliveries, re-imported statements, re-pulled QBO payments).
- Allocation: explicit allocations (an accountant's in QBO) are applied as given; otherwise the
  invoices the payer named (remittance information) first, then the customer's oldest due invoices.
  Never more than an invoice's amount due, never across currencies.
- What is left is the customer's credit (``Payment.unapplied``), applied to their open invoices and
  to each new invoice when it is finalised, oldest credit first. Credit from a QBO payment stays
  with the accountant (QBO keeps it as the payment's unapplied amount), so it is not applied here.
- A refund comes out of the unapplied credit first, then out of the newest allocations, so the
  invoices it reopens are the ones paid last.
- An invoice's status follows from its allocations and due date (:func:`settled_status`); each
  change is queued in the outbox for the ERP and the CRM (``invoice_status``), the customer's
  balance for the CRM (``customer_balance``) and the payment for the accounting system (``payment``),
  in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sync_engine.outbox import enqueue
from sync_engine.settings import Settings
from sync_engine.store.models import (
    CanonicalRecord,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentAllocation,
    Refund,
    Reminder,
)
from sync_engine.store.sequences import next_number

PAYMENT_SERIES = "PAY"
SOURCES = ("quickbooks", "stripe", "bank", "manual", "credit_note")
METHODS = ("card", "bank_transfer", "direct_debit", "cash", "cheque", "gateway", "credit_note", "other")
#: Statuses an invoice can be paid in; ``overdue`` is ``open``/``partially_paid`` past its due date.
PAYABLE = ("open", "partially_paid", "overdue", "uncollectible")
ZERO = Decimal("0")


class PaymentError(ValueError):
    """A receipt that cannot be recorded as given (unknown customer, bad amount...)."""


@dataclass(frozen=True)
class Receipt:
    """Money received, as a source reports it."""

    source: str
    source_ref: str
    customer_id: str
    amount: Decimal
    currency: str
    received_on: dt.date
    method: str = "other"
    reference: str | None = None
    #: ``(invoice id, amount)`` as the payer's accountant allocated it; None: billsync allocates.
    allocations: Sequence[tuple[str, Decimal]] | None = None
    #: Invoices the payer named (e.g. in the remittance information): paid first.
    invoice_ids: Sequence[str] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recorded:
    payment_id: str
    number: str
    created: bool
    allocated: dict[str, Decimal] = field(default_factory=dict)
    unapplied: Decimal = ZERO
    #: Invoice id -> (status before, status after), for each invoice whose status changed.
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)


def payment_id_for(source: str, source_ref: str) -> str:
    """Deterministic id, so a crash between steps finds the same payment again."""
    return "pay_" + hashlib.sha256(f"{source}\x1f{source_ref}".encode()).hexdigest()[:24]


def settled_status(invoice: Invoice, as_of: dt.date) -> str:
    """The status that follows from what is paid and the due date."""
    if invoice.status in ("draft", "void"):
        return invoice.status
    if invoice.total - (invoice.amount_paid or ZERO) <= 0:
        return "paid"
    if invoice.status == "uncollectible":
        return "uncollectible"
    if invoice.due_date < as_of:
        return "overdue"
    return "partially_paid" if (invoice.amount_paid or ZERO) > 0 else "open"


def amount_due(invoice: Invoice) -> Decimal:
    return max(invoice.total - (invoice.amount_paid or ZERO), ZERO)


# --------------------------------------------------------------------------------------------
# recording


def record_payment(session: Session, settings: Settings, receipt: Receipt, *, as_of: dt.date) -> Recorded:
    """Record ``receipt`` once, allocate it, and queue what the other systems must learn."""
    _check(receipt)
    existing = session.scalar(
        select(Payment).where(Payment.source == receipt.source, Payment.source_ref == receipt.source_ref)
    )
    if existing is not None:
        return Recorded(existing.id, existing.number, created=False, unapplied=existing.unapplied)
    if session.get(CanonicalRecord, receipt.customer_id) is None:
        raise PaymentError(f"customer {receipt.customer_id} is not known to billsync")
    payment = Payment(
        id=payment_id_for(receipt.source, receipt.source_ref),
        number=f"{PAYMENT_SERIES}-{next_number(session, PAYMENT_SERIES):06d}",
        customer_id=receipt.customer_id,
        source=receipt.source,
        source_ref=receipt.source_ref,
        method=receipt.method,
        amount=receipt.amount,
        currency=receipt.currency,
        received_on=receipt.received_on,
        reference=receipt.reference,
        refunded=ZERO,
        unapplied=receipt.amount,
        details=dict(receipt.details),
    )
    session.add(payment)
    session.flush()
    recorded = Recorded(payment.id, payment.number, created=True)
    if receipt.allocations is not None:
        wanted = list(receipt.allocations)
        invoices = _invoices(session, [invoice_id for invoice_id, _ in wanted])
        for invoice_id, amount in wanted:
            invoice = invoices.get(invoice_id)
            if invoice is None:
                raise PaymentError(
                    f"payment {receipt.source_ref} is allocated to unknown invoice {invoice_id}"
                )
            _allocate(session, settings, payment, invoice, min(amount, payment.unapplied), as_of, recorded)
    else:
        named = _invoices(session, receipt.invoice_ids)
        ordered = [named[i] for i in receipt.invoice_ids if i in named]
        ordered += [
            inv
            for inv in _open_invoices(session, payment.customer_id, payment.currency)
            if inv.id not in named
        ]
        for invoice in ordered:
            if payment.unapplied <= 0:
                break
            _allocate(session, settings, payment, invoice, payment.unapplied, as_of, recorded)
    recorded.unapplied = payment.unapplied
    _queue_payment(session, settings, payment)
    _queue_customer(session, settings, payment.customer_id)
    return recorded


def apply_credit(
    session: Session, settings: Settings, customer_ids: Iterable[str], *, as_of: dt.date
) -> dict[str, tuple[str, str]]:
    """Apply the customers' unapplied credit to their open invoices, oldest credit to oldest invoice.

    Called after new invoices are finalised, so credit from an overpayment pays the next invoice."""
    changed: dict[str, tuple[str, str]] = {}
    for customer_id in sorted(set(customer_ids)):
        credits = list(
            session.scalars(
                select(Payment)
                .where(Payment.customer_id == customer_id, Payment.source != "quickbooks")
                .order_by(Payment.received_on, Payment.id)
            )
        )
        credits = [p for p in credits if p.unapplied > 0]
        if not credits:
            continue
        for payment in credits:
            recorded = Recorded(payment.id, payment.number, created=False)
            for invoice in _open_invoices(session, customer_id, payment.currency):
                if payment.unapplied <= 0:
                    break
                _allocate(
                    session, settings, payment, invoice, payment.unapplied, as_of, recorded, applied_on=as_of
                )
            if recorded.allocated:
                changed.update(recorded.changed)
                _queue_payment(session, settings, payment)
        _queue_customer(session, settings, customer_id)
    return changed


def record_refund(
    session: Session,
    settings: Settings,
    *,
    payment_id: str,
    source: str,
    source_ref: str,
    amount: Decimal,
    refunded_on: dt.date,
    reason: str | None = None,
    as_of: dt.date,
) -> bool:
    """Give back ``amount`` of a payment (once per ``(source, source_ref)``); False if seen before."""
    if amount <= 0:
        raise PaymentError(f"a refund must be positive, got {amount}")
    seen = session.scalar(select(Refund.id).where(Refund.source == source, Refund.source_ref == source_ref))
    if seen is not None:
        return False
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise PaymentError(f"no payment {payment_id} to refund")
    refundable = payment.amount - payment.refunded
    if amount > refundable:
        raise PaymentError(f"refund {amount} exceeds what is left of payment {payment.number} ({refundable})")
    session.add(
        Refund(
            payment_id=payment.id,
            source=source,
            source_ref=source_ref,
            amount=amount,
            refunded_on=refunded_on,
            reason=reason,
        )
    )
    payment.refunded += amount
    from_credit = min(amount, payment.unapplied)
    payment.unapplied -= from_credit
    rest = amount - from_credit
    for allocation in sorted(payment.allocations, key=lambda a: a.id, reverse=True):
        if rest <= 0:
            break
        taken = min(rest, allocation.amount)
        invoice = session.get(Invoice, allocation.invoice_id)
        assert invoice is not None
        allocation.amount -= taken
        if allocation.amount == 0:
            session.delete(allocation)
        invoice.amount_paid -= taken
        invoice.paid_on = None
        rest -= taken
        _settle(session, settings, invoice, as_of)
    session.flush()
    _queue_payment(session, settings, payment)
    _queue_customer(session, settings, payment.customer_id)
    return True


def refresh_overdue(session: Session, settings: Settings, *, as_of: dt.date) -> int:
    """Mark invoices past their due date overdue (and queue the news); returns how many changed."""
    late = session.scalars(  # locked: an invoice voided meanwhile is not made overdue again
        select(Invoice)
        .where(Invoice.status.in_(("open", "partially_paid")), Invoice.due_date < as_of)
        .with_for_update()
    )
    count = 0
    customers: set[str] = set()
    for invoice in late:
        if _settle(session, settings, invoice, as_of):
            count += 1
            customers.add(invoice.customer_id)
    for customer_id in sorted(customers):
        _queue_customer(session, settings, customer_id)
    return count


# --------------------------------------------------------------------------------------------
# documents for the outbox


def payment_document(payment: Payment) -> dict[str, Any]:
    """The canonical payment as the accounting system gets it: ``reference`` is billsync's number
    (short and unique: QBO's PaymentRefNum holds 21 characters and is looked up by it)."""
    return {
        "customer_id": payment.customer_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "received_on": payment.received_on.isoformat(),
        "method": payment.method,
        "reference": payment.number,
        "allocations": [
            {"invoice_id": a.invoice_id, "amount": a.amount} for a in payment.allocations if a.amount > 0
        ],
    }


def customer_balance_document(
    session: Session, customer_id: str, *, as_of: dt.date | None = None
) -> dict[str, Any]:
    """Where a customer stands: what is due, what is overdue, the worst status, the last payment."""
    invoices = list(
        session.scalars(
            select(Invoice).where(
                Invoice.customer_id == customer_id, Invoice.status.not_in(("draft", "void"))
            )
        )
    )
    payments = list(session.scalars(select(Payment).where(Payment.customer_id == customer_id)))
    doc = _balance(invoices, [p.received_on for p in payments])
    if doc["currency"] is None and payments:
        doc["currency"] = sorted({p.currency for p in payments})[0]
    return {
        "customer_id": customer_id,
        **doc,
        "credit": sum((p.unapplied for p in payments), ZERO),
        "open_invoices": sum(1 for i in invoices if i.status not in ("paid", "uncollectible")),
    }


# --------------------------------------------------------------------------------------------
# internals


def _check(receipt: Receipt) -> None:
    if receipt.source not in SOURCES:
        raise PaymentError(f"unknown payment source {receipt.source!r} (one of {', '.join(SOURCES)})")
    if receipt.method not in METHODS:
        raise PaymentError(f"unknown payment method {receipt.method!r} (one of {', '.join(METHODS)})")
    if not isinstance(receipt.amount, Decimal) or not receipt.amount.is_finite() or receipt.amount <= 0:
        raise PaymentError(f"a payment must be a positive Decimal amount, got {receipt.amount!r}")
    if not receipt.source_ref:
        raise PaymentError("a payment needs its source reference (what makes it unique at the source)")


def _invoices(session: Session, ids: Iterable[str]) -> dict[str, Invoice]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    return {inv.id: inv for inv in session.scalars(select(Invoice).where(Invoice.id.in_(wanted)))}


def _open_invoices(session: Session, customer_id: str, currency: str) -> list[Invoice]:
    return list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.customer_id == customer_id,
                Invoice.currency == currency,
                Invoice.status.in_(PAYABLE),
            )
            .order_by(Invoice.due_date, Invoice.issue_date, Invoice.number)
        )
    )


def _allocate(
    session: Session,
    settings: Settings,
    payment: Payment,
    invoice: Invoice,
    amount: Decimal,
    as_of: dt.date,
    recorded: Recorded,
    *,
    applied_on: dt.date | None = None,
) -> None:
    """``applied_on``: when the money went to this invoice (the receipt's date; later for credit)."""
    # Locked and read again: a void or another payment committed since the invoice was read counts
    # (PostgreSQL; SQLite has one writer at a time anyway).
    session.flush()
    session.refresh(invoice, with_for_update=True)
    if invoice.status not in PAYABLE or invoice.currency != payment.currency:
        return
    if invoice.customer_id != payment.customer_id:
        raise PaymentError(
            f"payment {payment.number} of customer {payment.customer_id} cannot pay invoice "
            f"{invoice.number} of customer {invoice.customer_id}"
        )
    amount = min(amount, amount_due(invoice), payment.unapplied)
    if amount <= 0:
        return
    allocation = PaymentAllocation(
        invoice_id=invoice.id, amount=amount, applied_on=applied_on or payment.received_on
    )
    payment.allocations.append(allocation)
    if payment.source == "credit_note":  # accounting systems set the credit against the invoice too
        session.flush()
        for destination in _destinations(settings, "credit_application"):
            enqueue(
                session,
                destination=destination,
                entity="credit_application",
                canonical_id=str(allocation.id),
                action="create",
                version="1",
            )
    payment.unapplied -= amount
    invoice.amount_paid = (invoice.amount_paid or ZERO) + amount
    recorded.allocated[invoice.id] = recorded.allocated.get(invoice.id, ZERO) + amount
    before = invoice.status
    if _settle(session, settings, invoice, as_of, paid_on=payment.received_on):
        recorded.changed[invoice.id] = (before, invoice.status)
    else:  # same status, less due: the ERP and the CRM show what is due, so they learn it too
        _queue_status(session, settings, invoice)
        _queue_orders(session, settings, [invoice.id])
    session.flush()


def _settle(
    session: Session,
    settings: Settings | None,
    invoice: Invoice,
    as_of: dt.date,
    *,
    paid_on: dt.date | None = None,
) -> bool:
    """Recompute the invoice's status; on a change, queue it and (when paid) stop its reminders."""
    status = settled_status(invoice, as_of)
    if status == "paid" and invoice.paid_on is None:
        invoice.paid_on = paid_on or as_of
    if status == invoice.status:
        return False
    invoice.status = status
    if status == "paid":
        invoice.dunning_level = "none"
        for reminder in session.scalars(
            select(Reminder).where(Reminder.invoice_id == invoice.id, Reminder.status == "pending")
        ):
            reminder.status = "cancelled"
    if settings is not None:
        _queue_status(session, settings, invoice)
        _queue_orders(session, settings, [invoice.id])
    return True


def queue_invoice_change(session: Session, settings: Settings, invoice: Invoice) -> None:
    """Tell every system an invoice's new status (a void): the ERP and the CRM (``invoice_status``),
    the CRM orders billed on it and the customer's balance; in the caller's transaction."""
    _queue_status(session, settings, invoice)
    _queue_orders(session, settings, [invoice.id])
    _queue_customer(session, settings, invoice.customer_id)


def _destinations(settings: Settings, entity: str) -> list[str]:
    return [d.name for d in settings.destinations if entity in d.mappings]


def _queue_status(session: Session, settings: Settings, invoice: Invoice) -> None:
    for destination in _destinations(settings, "invoice_status"):
        enqueue(
            session,
            destination=destination,
            entity="invoice_status",
            canonical_id=invoice.id,
            action="upsert",
            version=f"{invoice.status}:{invoice.amount_paid}",
        )


def _queue_payment(session: Session, settings: Settings, payment: Payment) -> None:
    """The payment goes to every accounting destination except the one it came from. A credit note
    is not money received: it is not pushed as a payment (the invoice's status and balance are)."""
    if payment.source == "credit_note":
        return
    source_connection = settings.payments.quickbooks if payment.source == "quickbooks" else None
    for d in settings.destinations:
        if "payment" in d.mappings and d.connection != source_connection:
            enqueue(
                session,
                destination=d.name,
                entity="payment",
                canonical_id=payment.id,
                action="upsert",
                version=f"{payment.amount - payment.refunded}:{payment.unapplied}",
            )


def _queue_orders(session: Session, settings: Settings, invoice_ids: Sequence[str]) -> None:
    """The CRM orders billed on these invoices learn their new payment status."""
    destinations = _destinations(settings, "order_balance")
    if not destinations:
        return
    for order_id in sorted(orders_of_invoices(session, invoice_ids)):
        for destination in destinations:
            enqueue(
                session,
                destination=destination,
                entity="order_balance",
                canonical_id=order_id,
                action="upsert",
                version="balance",
            )


def _order_line_id(source_key: str) -> str | None:
    """``order-line:<id>[:...]`` -> the order line's canonical id (other charges have none)."""
    kind, _, rest = source_key.partition(":")
    return rest.split(":", 1)[0] if kind == "order-line" and rest else None


def orders_of_invoices(session: Session, invoice_ids: Sequence[str]) -> set[str]:
    keys = session.scalars(
        select(InvoiceLine.source_key).where(InvoiceLine.invoice_id.in_(list(invoice_ids)))
    )
    line_ids = {lid for lid in map(_order_line_id, keys) if lid}
    if not line_ids:
        return set()
    rows = session.scalars(select(CanonicalRecord.data).where(CanonicalRecord.id.in_(sorted(line_ids))))
    return {str(data["order_id"]) for data in rows if isinstance(data, dict) and data.get("order_id")}


def order_balance_documents(session: Session, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per CRM order: the worst status of the invoices billing it, what is due and overdue on them."""
    wanted = set(order_ids)
    line_to_order = {
        str(cid): str(data["order_id"])
        for cid, data in session.execute(
            select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "order_line")
        )
        if isinstance(data, dict) and data.get("order_id") in wanted
    }
    invoices_of: dict[str, set[str]] = {order_id: set() for order_id in wanted}
    if line_to_order:
        pattern = [InvoiceLine.source_key.like(f"order-line:{lid}%") for lid in sorted(line_to_order)]
        for start in range(0, len(pattern), 200):
            for invoice_id, key in session.execute(
                select(InvoiceLine.invoice_id, InvoiceLine.source_key).where(
                    or_(*pattern[start : start + 200])
                )
            ):
                line_id = _order_line_id(key)
                if line_id in line_to_order:
                    invoices_of[line_to_order[line_id]].add(invoice_id)
    all_ids = sorted({i for ids in invoices_of.values() for i in ids})
    invoices = _invoices(session, all_ids)
    last_paid: dict[str, dt.date] = {}
    if all_ids:
        for invoice_id, applied_on in session.execute(
            select(PaymentAllocation.invoice_id, PaymentAllocation.applied_on).where(
                PaymentAllocation.invoice_id.in_(all_ids)
            )
        ):
            last_paid[invoice_id] = max(applied_on, last_paid.get(invoice_id, applied_on))
    docs: dict[str, dict[str, Any]] = {}
    for order_id, ids in invoices_of.items():
        billed = [
            invoices[i] for i in sorted(ids) if i in invoices and invoices[i].status not in ("draft", "void")
        ]
        docs[order_id] = _balance(billed, [last_paid[i.id] for i in billed if i.id in last_paid]) | {
            "order_id": order_id
        }
    return docs


def _balance(invoices: Sequence[Invoice], payment_dates: Sequence[dt.date]) -> dict[str, Any]:
    rank = ["paid", "open", "partially_paid", "overdue", "uncollectible"]
    statuses = [i.status for i in invoices if i.status in rank]
    currencies = sorted({i.currency for i in invoices})
    return {
        "payment_status": max(statuses, key=rank.index) if statuses else "none",
        "currency": currencies[0] if currencies else None,
        "balance": sum((amount_due(i) for i in invoices if i.status != "paid"), ZERO),
        "overdue_amount": sum((amount_due(i) for i in invoices if i.status == "overdue"), ZERO),
        "last_payment_date": max(payment_dates, default=None),
    }


def _queue_customer(session: Session, settings: Settings, customer_id: str) -> None:
    for destination in _destinations(settings, "customer_balance"):
        enqueue(
            session,
            destination=destination,
            entity="customer_balance",
            canonical_id=customer_id,
            action="upsert",
            version="balance",
        )
