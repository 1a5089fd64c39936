"""The billing run as a pipeline step: canonical orders -> missing invoices -> finalised invoices.

``billing.billing_run`` decides what is missing (it is pure and re-runnable); this step feeds it the
stored records and, per invoice, in one transaction: stores it, assigns the next gapless number of
its series, and queues it in the outbox for every destination. A crash between invoices loses
nothing: the next run finds the remaining lines still unbilled. ``invoice_lines.source_key`` is
unique, so a line can never be billed twice, even by two runs at once.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from billing import Customer, NumberSeries, Order, OrderLine, billing_run
from billing import Invoice as DraftInvoice
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.outbox import enqueue
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, InvoiceLine, SyncRun, utcnow
from sync_engine.store.sequences import next_number

BILLING_STREAM = "billing"
#: Invoices finalised per transaction: one commit (one fsync) per chunk instead of per invoice; a
#: crash rolls the chunk back whole, numbers included, so the series stays gapless.
FINALISE_CHUNK = 100


@dataclass
class BillResult:
    invoices_created: int = 0
    lines: int = 0
    problems: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)


def _records(session: Any, entity: str) -> dict[str, dict[str, Any]]:
    rows = session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == entity)
    )
    return {row.id: row.data for row in rows}


def billing_inputs(session: Any, default_terms: int) -> tuple[list[Order], dict[str, Customer]]:
    """Build the billing module's plain inputs from the canonical records."""
    customers = {
        cid: Customer(
            id=cid,
            currency=data["currency"],
            payment_terms_days=data.get("payment_terms_days", default_terms),
        )
        for cid, data in _records(session, "customer").items()
    }
    products = _records(session, "product")
    lines_by_order: defaultdict[str, list[OrderLine]] = defaultdict(list)
    for line_id, data in sorted(_records(session, "order_line").items()):
        product = products.get(data["product_id"])
        lines_by_order[data["order_id"]].append(
            OrderLine(
                id=line_id,
                product_code=product["code"] if product else f"(unknown product {data['product_id']})",
                quantity=Decimal(data["quantity"]),
                unit_price=Decimal(data["unit_price"]) if data.get("unit_price") is not None else None,
                description=data.get("description") or (product["name"] if product else None),
            )
        )
    orders = [
        Order(
            id=order_id,
            customer_id=data["customer_id"],
            currency=data["currency"],
            effective_date=dt.date.fromisoformat(data["effective_date"]),
            end_date=dt.date.fromisoformat(data["end_date"]) if data.get("end_date") else None,
            lines=tuple(lines_by_order.get(order_id, ())),
        )
        for order_id, data in sorted(_records(session, "order").items())
        if data.get("status") == "activated" and lines_by_order.get(order_id)
    ]
    return orders, customers


def run_billing(
    runtime: Runtime, as_of: dt.date, progress: Callable[[int], None] | None = None
) -> BillResult:
    settings = runtime.settings.billing
    series = NumberSeries(name=settings.series, prefix=settings.number_prefix, width=settings.number_width)
    destinations = [d.name for d in runtime.settings.destinations if "invoice" in d.mappings]
    result = BillResult()

    with runtime.transaction() as session:
        run = SyncRun(kind="bill", stream="billing")
        session.add(run)
        orders, customers = billing_inputs(session, settings.payment_terms_days)
        already = set(session.scalars(select(InvoiceLine.source_key)))
        outcome = billing_run(
            orders=orders, customers=customers, catalog=runtime.catalog(), already_billed=already, as_of=as_of
        )
        still_wrong = set()
        for problem in outcome.problems:
            letter_id = (
                problem.order_id if problem.line_id is None else f"{problem.order_id}/{problem.line_id}"
            )
            still_wrong.add(letter_id)
            record_dead_letter(
                session,
                stream=BILLING_STREAM,
                system="billsync",
                entity="order",
                external_id=letter_id,
                payload={"order_id": problem.order_id, "line_id": problem.line_id},
                error=problem.message,
                error_type="BillingProblem",
            )
        # a problem that is gone (the product was added to the catalog...) closes its dead letter
        fixed = [
            letter.external_id
            for letter in session.scalars(
                select(DeadLetter).where(
                    DeadLetter.stream == BILLING_STREAM, DeadLetter.status.in_(("open", "replayed"))
                )
            )
            if letter.external_id not in still_wrong and letter.external_id is not None
        ]
        resolve_dead_letters(session, stream=BILLING_STREAM, entity="order", external_ids=fixed)
        result.problems = len(outcome.problems)
        session.flush()
        run_id = run.id

    status = "failed"
    try:
        drafts = outcome.invoices
        for start in range(0, len(drafts), FINALISE_CHUNK):
            runtime.checkpoint()  # a stop request ends the run here, between chunks of invoices
            chunk = drafts[start : start + FINALISE_CHUNK]
            numbers = []
            with runtime.transaction() as session:  # numbers, invoices and outbox rows: all or none
                for draft in chunk:
                    number = series.format(next_number(session, series.name))
                    numbers.append(number)
                    session.add(_stored_invoice(draft, series.name, number))
                    for destination in destinations:
                        enqueue(
                            session,
                            destination=destination,
                            entity="invoice",
                            canonical_id=draft.key,
                            action="create",
                            version="1",
                        )
            for draft, number in zip(chunk, numbers, strict=True):
                result.invoices_created += 1
                result.lines += len(draft.lines)
                result.numbers.append(number)
                code = draft.currency.code
                result.totals[code] = result.totals.get(code, Decimal("0")) + draft.total.amount
            if progress:
                progress(len(chunk))
        status = "partial" if result.problems else "ok"
    except StopRequested:
        status = "stopped"
        raise
    finally:  # the run row tells support staff how far it got, even after a crash or Ctrl-C
        with runtime.transaction() as session:
            run_row = session.get(SyncRun, run_id)
            assert run_row is not None
            run_row.status = status
            run_row.finished_at = utcnow()
            run_row.counts = {
                "invoices_created": result.invoices_created,
                "lines": result.lines,
                "problems": result.problems,
                "totals": {k: str(v) for k, v in result.totals.items()},
            }
    return result


def _stored_invoice(draft: DraftInvoice, series: str, number: str) -> Invoice:
    now = utcnow()
    invoice = Invoice(
        id=draft.key,
        customer_id=draft.customer_id,
        series=series,
        number=number,
        status="open",
        currency=draft.currency.code,
        period_start=draft.period_start,
        period_end=draft.period_end,
        issue_date=draft.issue_date,
        due_date=draft.due_date,
        subtotal=draft.subtotal.amount,
        tax_total=draft.tax_total.amount,
        total=draft.total.amount,
        finalized_at=now,
    )
    invoice.lines = [
        InvoiceLine(
            position=i,
            source_key=line.source_key,
            product_code=line.product_code,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price.amount,
            amount=line.amount.amount,
            period_start=line.period_start,
            period_end=line.period_end,
        )
        for i, line in enumerate(draft.lines, start=1)
    ]
    return invoice


def invoice_document(invoice: Invoice, product_ids: dict[str, str]) -> dict[str, Any]:
    """The canonical invoice as outbound mappings see it (JSON-like; money as Decimal)."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "customer_id": invoice.customer_id,
        "currency": invoice.currency,
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": invoice.period_end.isoformat() if invoice.period_end else None,
        "subtotal": invoice.subtotal,
        "tax_total": invoice.tax_total,
        "total": invoice.total,
        "status": invoice.status,
        "lines": [
            {
                "position": line.position,
                "description": line.description,
                "product_code": line.product_code,
                "product_id": product_ids.get(line.product_code or ""),
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
                "period_start": line.period_start.isoformat() if line.period_start else None,
                "period_end": line.period_end.isoformat() if line.period_end else None,
            }
            for line in invoice.lines
        ],
    }
