"""Payments entered by accountants in QuickBooks Online, pulled into billsync.

Incremental by ``MetaData.LastUpdatedTime`` (no 30-day window, unlike Change Data Capture): the
cursor is the newest time seen, re-read inclusively, and a payment already recorded (keyed by its
QBO Id) is recorded once. Each payment is mapped with ``quickbooks/payment.in`` (customer and invoices
found through the bindings billsync made when it pushed them) and recorded with the accountant's own
allocations. Payments billsync itself wrote to QBO come back in the same query: they are recognised
by their binding or by their reference (billsync's payment number) and skipped. A payment that
cannot be placed (an invoice billsync did not issue, an unknown customer) goes to the dead letters
with the reason, and the rest of the pull continues.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connectors.quickbooks.schema import applies_credit_only
from mappings.engine import Mapper, MappingError
from sync_engine.bindings import BindingLookups, bind, bindings_by_external
from sync_engine.dead_letters import record_dead_letter
from sync_engine.payments import PaymentError, Receipt, record_payment
from sync_engine.runtime import Runtime
from sync_engine.store.models import Payment, StreamCursor, SyncRun, utcnow

SPEC = "builtin:quickbooks/payment.in"
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass
class QboPaymentsResult:
    read: int = 0
    recorded: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    api_calls: int = 0


def pull_quickbooks_payments(runtime: Runtime, *, as_of: dt.date) -> QboPaymentsResult:
    connection = runtime.settings.payments.quickbooks
    if connection is None:
        return QboPaymentsResult()
    stream = f"payments:{connection}"
    # Bindings of what billsync pushed live under the destination's name; pulls under the connection's.
    system = next((d.name for d in runtime.settings.destinations if d.connection == connection), connection)
    connector = runtime.quickbooks(connection)
    calls_before = connector.api_calls
    spec = runtime.spec(SPEC)
    result = QboPaymentsResult()
    with runtime.sessions() as session:
        cursor = session.scalar(select(StreamCursor.value).where(StreamCursor.stream == stream))
    since = dt.datetime.fromisoformat(cursor) if cursor else EPOCH
    with runtime.transaction() as session:
        run = SyncRun(kind="pull", stream=stream)
        session.add(run)
        session.flush()
        run_id = run.id
    status = "failed"
    try:
        for page in connector.query_changed("Payment", since):
            runtime.checkpoint()
            with runtime.transaction() as session:
                newest = _record_page(session, runtime, spec, system, page, run_id, as_of, result)
                if newest is not None:
                    row = session.get(StreamCursor, stream)
                    if row is None:
                        session.add(StreamCursor(stream=stream, value=newest))
                    elif row.value is None or newest > row.value:
                        row.value = newest
        status = "partial" if result.dead_lettered else "ok"
    finally:
        result.api_calls = connector.api_calls - calls_before
        with runtime.transaction() as session:
            run_row = session.get(SyncRun, run_id)
            assert run_row is not None
            run_row.status, run_row.finished_at = status, utcnow()
            run_row.counts = {
                "read": result.read,
                "recorded": result.recorded,
                "skipped": result.skipped,
                "dead_lettered": result.dead_lettered,
                "api_calls": result.api_calls,
            }
    return result


def _record_page(
    session: Any,
    runtime: Runtime,
    spec: Any,
    system: str,
    page: list[dict[str, Any]],
    run_id: int,
    as_of: dt.date,
    result: QboPaymentsResult,
) -> str | None:
    mapper = Mapper(spec, BindingLookups(session, {spec.system: system}))
    ids = [str(p.get("Id")) for p in page]
    # billsync's own writes: its payments, and the zero-total payments that apply its credit notes
    known = {
        **bindings_by_external(session, system, "payment", ids),
        **bindings_by_external(session, system, "credit_application", ids),
    }
    ours = set(
        session.scalars(
            select(Payment.number).where(Payment.number.in_([str(p.get("PaymentRefNum")) for p in page]))
        )
    )
    newest: str | None = None
    for remote in page:
        result.read += 1
        updated = _last_updated(remote)
        if updated is not None and (newest is None or updated > newest):
            newest = updated
        qbo_id = str(remote.get("Id"))
        if qbo_id in known or str(remote.get("PaymentRefNum")) in ours or remote.get("status") == "Deleted":
            result.skipped += 1
            continue
        if applies_credit_only(remote):  # a credit memo set against an invoice: no money came in
            result.skipped += 1
            continue
        try:
            data = mapper.map(remote)
            allocations = [(a["invoice_id"], Decimal(str(a["amount"]))) for a in data.get("allocations", [])]
            recorded = record_payment(
                session,
                runtime.settings,
                Receipt(
                    source="quickbooks",
                    source_ref=qbo_id,
                    customer_id=str(data["customer_id"]),
                    amount=Decimal(str(data["amount"])),
                    currency=str(data["currency"]),
                    received_on=dt.date.fromisoformat(str(data["received_on"])),
                    method=str(data.get("method") or "other"),
                    reference=data.get("reference"),
                    allocations=allocations,
                    details={"quickbooks_id": qbo_id},
                ),
                as_of=as_of,
            )
        except (MappingError, PaymentError) as exc:
            record_dead_letter(
                session,
                stream=f"payments:{system}",
                system=system,
                entity="payment",
                external_id=qbo_id,
                payload=remote,
                error=str(exc),
                error_type=type(exc).__name__,
                run_id=run_id,
            )
            result.dead_lettered += 1
            continue
        bind(
            session,
            system=system,
            entity="payment",
            external_id=qbo_id,
            canonical_id=recorded.payment_id,
            remote_version=str(remote.get("SyncToken") or ""),
        )
        result.recorded += 1 if recorded.created else 0
    return newest


def _last_updated(remote: dict[str, Any]) -> str | None:
    meta = remote.get("MetaData") or {}
    value = meta.get("LastUpdatedTime")
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC).isoformat()
