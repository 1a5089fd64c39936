"""What the console's pages and the JSON API show, as plain dicts: one read model for both, so a
page and its API route can never disagree. Money leaves as text (``"1234.50"``), never as float."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from billing import Currency, explain
from sync_engine.invoicing import billing_invoice, money
from sync_engine.runtime import Runtime
from sync_engine.store.models import (
    Binding,
    CanonicalRecord,
    CreditNote,
    DeadLetter,
    Invoice,
    InvoiceDelivery,
    OutboxItem,
    Payment,
    PaymentAllocation,
    Reminder,
    SyncRun,
)
from sync_engine.support import run_dict
from sync_engine.support import status as support_status


def _money(value: Decimal | None, currency: str) -> str | None:
    """On the currency's minor unit when that is exact (``119.00``), else every stored digit."""
    return None if value is None else f"{money(value, Currency.of(currency)).amount:f}"


def _number(value: Decimal | None) -> str | None:
    """A quantity or unit price without trailing zeros (``1``, ``0.125``)."""
    if value is None:
        return None
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- overview ----------------------------------------------------------------------------------------
def overview(runtime: Runtime) -> dict[str, Any]:
    """``billsync status`` plus the API budget used today per connection."""
    out = support_status(runtime)
    out["api_calls_today"] = api_calls_today(runtime)
    out["running"] = running_runs(runtime)
    return out


def api_calls_today(runtime: Runtime) -> dict[str, int]:
    """API calls recorded by today's runs (UTC), per connection: what the vendors' daily budgets count.

    A pull records ``{connection: calls}``; a push records its count under its destination's name.
    """
    start = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    calls: dict[str, int] = {}
    with runtime.sessions() as session:
        for stream, counts in session.execute(
            select(SyncRun.stream, SyncRun.counts).where(SyncRun.started_at >= start)
        ):
            found = (counts or {}).get("api_calls")
            per_system = found if isinstance(found, dict) else {stream: found}
            for system, n in per_system.items():
                if isinstance(n, int) and n:
                    calls[system] = calls.get(system, 0) + n
    return calls


def running_runs(runtime: Runtime) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    with runtime.sessions() as session:
        rows = session.scalars(select(SyncRun).where(SyncRun.status == "running").order_by(SyncRun.id))
        return [{**run_dict(r), "elapsed_s": round((now - r.started_at).total_seconds(), 1)} for r in rows]


def run_detail(runtime: Runtime, run_id: int) -> dict[str, Any] | None:
    with runtime.sessions() as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            return None
        letters = session.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id).limit(200))
        return {
            **run_dict(run),
            "dead_letters": [
                {"id": d.id, "entity": d.entity, "error": d.error, "status": d.status} for d in letters
            ],
        }


# -- customers ---------------------------------------------------------------------------------------
def _customer_row(record: CanonicalRecord) -> dict[str, Any]:
    data = record.data or {}
    return {
        "id": record.id,
        "name": data.get("name"),
        "account_number": data.get("account_number"),
        "email": data.get("billing_email") or data.get("email"),
        "currency": data.get("currency"),
        "active": data.get("active", True),
    }


def customers(runtime: Runtime, q: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(CanonicalRecord).where(CanonicalRecord.entity == "customer")
    if q:
        like = f"%{q.lower()}%"
        ids = select(Binding.canonical_id).where(Binding.entity == "customer", Binding.external_id == q)
        query = query.where(
            or_(
                func.lower(cast(CanonicalRecord.data, String)).like(like),
                CanonicalRecord.id == q,
                CanonicalRecord.id.in_(ids),
            )
        )
    with runtime.sessions() as session:
        rows = [_customer_row(r) for r in session.scalars(query.order_by(CanonicalRecord.id).limit(limit))]
    return sorted(rows, key=lambda r: str(r["name"] or "").lower())


def customer_detail(runtime: Runtime, customer_id: str) -> dict[str, Any] | None:
    with runtime.sessions() as session:
        record = session.get(CanonicalRecord, customer_id)
        if record is None or record.entity != "customer":
            return None
        invoices = list(
            session.scalars(
                select(Invoice).where(Invoice.customer_id == customer_id).order_by(Invoice.issue_date.desc())
            )
        )
        invoice_ids = [i.id for i in invoices]
        bindings = session.scalars(
            select(Binding)
            .where(Binding.canonical_id.in_([customer_id, *invoice_ids]))
            .order_by(Binding.entity, Binding.system)
        )
        payments = session.scalars(
            select(Payment).where(Payment.customer_id == customer_id).order_by(Payment.received_on.desc())
        )
        reminders = session.scalars(
            select(Reminder)
            .where(Reminder.invoice_id.in_(invoice_ids))
            .order_by(Reminder.scheduled_for.desc())
        )
        numbers = {i.id: i.number for i in invoices}
        history = session.scalars(
            select(OutboxItem)
            .where(OutboxItem.canonical_id.in_([customer_id, *invoice_ids]))
            .order_by(OutboxItem.id.desc())
            .limit(200)
        )
        external = select(Binding.external_id).where(Binding.canonical_id == customer_id)
        letters = session.scalars(
            select(DeadLetter)
            .where(or_(DeadLetter.external_id == customer_id, DeadLetter.external_id.in_(external)))
            .order_by(DeadLetter.id.desc())
        )
        return {
            **_customer_row(record),
            "data": record.data,
            "bindings": [
                {
                    "system": b.system,
                    "entity": b.entity,
                    "external_id": b.external_id,
                    "canonical_id": b.canonical_id,
                    "remote_version": b.remote_version,
                    "synced_at": _iso(b.synced_at),
                }
                for b in bindings
            ],
            "invoices": [invoice_row(i) for i in invoices],
            "payments": [payment_row(p) for p in payments],
            "reminders": [
                {
                    "invoice": numbers.get(r.invoice_id),
                    "step": r.step,
                    "level": r.level,
                    "scheduled_for": _iso(r.scheduled_for),
                    "status": r.status,
                    "sent_at": _iso(r.sent_at),
                }
                for r in reminders
            ],
            "sync_history": [
                {
                    "destination": o.destination,
                    "entity": o.entity,
                    "record": numbers.get(o.canonical_id) or o.canonical_id,
                    "action": o.action,
                    "status": o.status,
                    "attempts": o.attempts,
                    "queued_at": _iso(o.created_at),
                    "done_at": _iso(o.done_at),
                    "last_error": o.last_error,
                }
                for o in history
            ],
            "dead_letters": [
                {"id": d.id, "stream": d.stream, "error": d.error, "status": d.status} for d in letters
            ],
        }


def customer_external_id(runtime: Runtime, customer_id: str, system: str) -> str | None:
    with runtime.sessions() as session:
        return session.scalar(
            select(Binding.external_id).where(
                Binding.canonical_id == customer_id, Binding.entity == "customer", Binding.system == system
            )
        )


# -- invoices ----------------------------------------------------------------------------------------
def invoice_row(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "customer_id": invoice.customer_id,
        "status": invoice.status,
        "currency": invoice.currency,
        "issue_date": _iso(invoice.issue_date),
        "due_date": _iso(invoice.due_date),
        "total": _money(invoice.total, invoice.currency),
        "amount_paid": _money(invoice.amount_paid, invoice.currency),
        "amount_due": _money(invoice.total - invoice.amount_paid, invoice.currency),
        "delivery_status": invoice.delivery_status,
    }


INVOICE_STATUSES = ("draft", "open", "partially_paid", "overdue", "paid", "void", "uncollectible")


def invoices(
    runtime: Runtime,
    q: str | None = None,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    query = select(Invoice).order_by(Invoice.issue_date.desc(), Invoice.number.desc()).limit(limit)
    if q:
        query = query.where(or_(Invoice.number.ilike(f"%{q}%"), Invoice.customer_id == q))
    if status:
        query = query.where(Invoice.status == status)
    if customer_id:
        query = query.where(Invoice.customer_id == customer_id)
    with runtime.sessions() as session:
        names = _customer_names(session)
        return [{**invoice_row(i), "customer": names.get(i.customer_id)} for i in session.scalars(query)]


def _customer_names(session: Session) -> dict[str, str]:
    rows = session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "customer")
    )
    return {rid: str((data or {}).get("name") or rid) for rid, data in rows}


def invoice_detail(runtime: Runtime, number: str) -> dict[str, Any] | None:
    with runtime.sessions() as session:
        invoice = session.scalar(select(Invoice).where(Invoice.number == number))
        if invoice is None:
            return None
        customer = session.get(CanonicalRecord, invoice.customer_id)
        deliveries = session.scalars(
            select(InvoiceDelivery)
            .where(InvoiceDelivery.invoice_id == invoice.id)
            .order_by(InvoiceDelivery.id)
        )
        allocations = session.execute(
            select(PaymentAllocation, Payment)
            .join(Payment, Payment.id == PaymentAllocation.payment_id)
            .where(PaymentAllocation.invoice_id == invoice.id)
            .order_by(PaymentAllocation.id)
        )
        notes = session.scalars(select(CreditNote).where(CreditNote.invoice_id == invoice.id))
        return {
            **invoice_row(invoice),
            "customer": (customer.data or {}).get("name") if customer else None,
            "period_start": _iso(invoice.period_start),
            "period_end": _iso(invoice.period_end),
            "subtotal": _money(invoice.subtotal, invoice.currency),
            "discount_total": _money(invoice.discount_total, invoice.currency),
            "tax_total": _money(invoice.tax_total, invoice.currency),
            "voided_at": _iso(invoice.voided_at),
            "void_reason": invoice.void_reason,
            "voided_by": invoice.voided_by,
            "lines": [
                {
                    "position": line.position,
                    "description": line.description,
                    "product_code": line.product_code,
                    "quantity": _number(line.quantity),
                    "unit_price": _number(line.unit_price),
                    "discount": _money(line.discount_amount, invoice.currency),
                    "amount": _money(line.amount, invoice.currency),
                    "tax": _money(line.tax_amount, invoice.currency),
                    "period_start": _iso(line.period_start),
                    "period_end": _iso(line.period_end),
                    "explanation": text,
                }
                for line, text in zip(invoice.lines, _explanations(invoice), strict=True)
            ],
            "payments": [
                {
                    "payment": payment.number,
                    "method": payment.method,
                    "source": payment.source,
                    "amount": _money(allocation.amount, invoice.currency),
                    "applied_on": _iso(allocation.applied_on),
                }
                for allocation, payment in allocations
            ],
            "credit_notes": [
                {
                    "number": n.number,
                    "total": _money(n.total, n.currency),
                    "reason": n.reason,
                    "issue_date": _iso(n.issue_date),
                }
                for n in notes
            ],
            "deliveries": [
                {
                    "at": _iso(d.created_at),
                    "document": d.document_number,
                    "channel": d.channel,
                    "status": d.status,
                    "to": d.to_address,
                    "requested_by": d.requested_by,
                    "error": d.error,
                }
                for d in deliveries
            ],
        }


def _explanations(invoice: Invoice) -> list[str | None]:
    """Each line's explanation in the billing engine's own words (None for lines billed before 0003)."""
    lines = billing_invoice(invoice).lines
    return [
        explain(line) if stored.explanation else None
        for stored, line in zip(invoice.lines, lines, strict=True)
    ]


# -- payments ----------------------------------------------------------------------------------------
def payment_row(payment: Payment) -> dict[str, Any]:
    return {
        "number": payment.number,
        "customer_id": payment.customer_id,
        "received_on": _iso(payment.received_on),
        "source": payment.source,
        "method": payment.method,
        "amount": _money(payment.amount, payment.currency),
        "currency": payment.currency,
        "refunded": _money(payment.refunded, payment.currency),
        "credit": _money(payment.unapplied, payment.currency),
        "reference": payment.reference,
    }


def payments(runtime: Runtime, customer_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    query = select(Payment).order_by(Payment.received_on.desc(), Payment.number.desc()).limit(limit)
    if customer_id:
        query = query.where(Payment.customer_id == customer_id)
    with runtime.sessions() as session:
        return [payment_row(p) for p in session.scalars(query)]
