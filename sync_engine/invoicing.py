"""The billing run as a pipeline step: canonical orders -> missing invoices -> finalised invoices.

``billing.generate`` decides what is missing (it is pure and re-runnable); this step feeds it the
stored records and finalises its drafts in chunks: per chunk, in one transaction, each invoice takes
the next gapless number of its series (``billing.finalize``), is stored with its lines, discounts,
taxes and explanations, and is queued in the outbox for every destination. A crash between chunks
loses nothing: the next run finds the remaining charges still unbilled. ``invoice_lines.source_key``
is unique, so a charge can never be billed twice, even by two runs at once.

Everything a run finds for a customer and currency goes on one invoice dated ``as_of``
(``grouping="customer"``, Kill Bill's catch-up invoice), as the foundation's billing did.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from operator import itemgetter
from typing import Any, Final, cast

from sqlalchemy import Text, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from billing import (
    BillingSettings,
    Currency,
    Customer,
    Explanation,
    Money,
    NumberSeries,
    Order,
    OrderLine,
    PriceBook,
    Problem,
    TaxLine,
    finalize,
    generate,
)
from billing import Invoice as BillingInvoice
from billing import InvoiceLine as BillingLine
from billing.model import INVOICE_STATUSES, InvoiceStatus
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.delivery import DESTINATION as DELIVERY_DESTINATION
from sync_engine.delivery import ENTITY as DELIVERY_ENTITY
from sync_engine.delivery import delivery_wanted
from sync_engine.einvoices import FOLDER_DESTINATION, FOLDER_ENTITY, folder_wanted
from sync_engine.gc_pause import collector_paused
from sync_engine.invoice_status import STATUS_ENTITY
from sync_engine.outbox import Owed, enqueue_many
from sync_engine.payments import apply_credit
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.store.bulk import JSONText, insert_rows
from sync_engine.store.db import decode_json
from sync_engine.store.inlist import one_of
from sync_engine.store.models import (
    CanonicalRecord,
    DeadLetter,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
    Payment,
    SyncRun,
    utcnow,
)
from sync_engine.store.sequences import next_number
from sync_engine.store.types import MONEY_SCALE

BILLING_STREAM = "billing"
#: Invoices finalised per transaction: one commit (one fsync) and one bulk insert per table per
#: chunk; a crash rolls the chunk back whole, numbers included, so the series stays gapless. The
#: series' row stays locked while a chunk is written (about 0.1 s for 1,000 invoices with COPY).
FINALISE_CHUNK = 1000
#: How the sync engine bills: one catch-up invoice per customer and currency per run.
ENGINE_SETTINGS: Final = BillingSettings(grouping="customer")
_STORED: Final = Decimal(1).scaleb(-MONEY_SCALE)


@dataclass
class BillResult:
    invoices_created: int = 0
    lines: int = 0
    problems: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)


def _records(session: Any, entity: str) -> dict[str, dict[str, Any]]:
    """Every canonical record of ``entity``, read as plain rows (no ORM objects: a run reads them all)."""
    table = CanonicalRecord.__table__
    # the JSON read as text and decoded here: the same decoder the column type would call, without
    # three layers of result processors per row
    text = sql_cast(table.c.data, Text)
    rows = session.connection().execute(select(table.c.id, text).where(table.c.entity == entity))
    return {record_id: decode_json(data) for record_id, data in rows.all()}  # fetchall: one call


def _trim(value: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent (``1.0`` -> 1, ``20.000000`` -> 20).

    The CRM sends ``1.0`` and storage pads to six places; explanations should read ``2 x 49``.
    """
    return Decimal(f"{value.normalize():f}")


def billing_inputs(session: Any, default_terms: int) -> tuple[list[Order], dict[str, Customer]]:
    """Build the billing module's plain inputs from the canonical records."""
    customers = {
        cid: Customer(
            id=cid,
            currency=data["currency"],
            payment_terms_days=(
                default_terms if data.get("payment_terms_days") is None else int(data["payment_terms_days"])
            ),
        )
        for cid, data in _records(session, "customer").items()
    }
    products = _records(session, "product")
    lines_by_order: defaultdict[str, list[OrderLine]] = defaultdict(list)
    trimmed: dict[str, Decimal] = {}  # a few distinct quantities and prices recur on every line

    def number(text: str) -> Decimal:
        value = trimmed.get(text)
        if value is None:
            value = trimmed[text] = _trim(Decimal(text))
        return value

    for line_id, data in sorted(_records(session, "order_line").items(), key=itemgetter(0)):
        product = products.get(data["product_id"])
        lines_by_order[data["order_id"]].append(
            OrderLine(
                id=line_id,
                product_code=product["code"] if product else f"(unknown product {data['product_id']})",
                quantity=number(data["quantity"]),
                unit_price=number(data["unit_price"]) if data.get("unit_price") is not None else None,
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
        for order_id, data in sorted(_records(session, "order").items(), key=itemgetter(0))
        if data.get("status") == "activated" and lines_by_order.get(order_id)
    ]
    return orders, customers


def _letter_ids(orders: Iterable[Order]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Problem subject -> (dead-letter external id, payload).

    The engine names what it could not bill (``order O``, ``order O line L``, and ``subscription L``
    for a recurring line); the letters keep the canonical ids ``O`` and ``O/L`` they had before the
    engine existed, so letters already open in a database are still found and resolved, and support
    staff see which order to fix.
    """
    ids: dict[str, tuple[str, dict[str, Any]]] = {}
    for order in orders:
        ids[f"order {order.id}"] = (order.id, {"order_id": order.id, "line_id": None})
        for line in order.lines:
            letter = (f"{order.id}/{line.id}", {"order_id": order.id, "line_id": line.id})
            ids[f"order {order.id} line {line.id}"] = letter
            ids[f"subscription {line.id}"] = letter
    return ids


def _record_problems(session: Any, problems: list[Problem], orders: list[Order]) -> None:
    """Open (or bump) a dead letter per problem; close the letters whose problem is gone."""
    known = _letter_ids(orders) if problems else {}
    letters: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for problem in problems:
        external_id, payload = known.get(problem.subject, (problem.subject, {}))
        entry = letters.setdefault(external_id, ({**payload, "subject": problem.subject}, []))
        entry[1].append(problem.message)
    for external_id, (payload, messages) in letters.items():
        record_dead_letter(
            session,
            stream=BILLING_STREAM,
            system="billsync",
            entity="order",
            external_id=external_id,
            payload=payload,
            error="; ".join(messages),
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
        if letter.external_id not in letters and letter.external_id is not None
    ]
    resolve_dead_letters(session, stream=BILLING_STREAM, entity="order", external_ids=fixed)


def run_billing(
    runtime: Runtime, as_of: dt.date, progress: Callable[[int], None] | None = None
) -> BillResult:
    with collector_paused():  # bulk work on plain data: see sync_engine.gc_pause
        return _run_billing(runtime, as_of, progress)


def _run_billing(runtime: Runtime, as_of: dt.date, progress: Callable[[int], None] | None) -> BillResult:
    settings = runtime.settings.billing
    series = NumberSeries(name=settings.series, prefix=settings.number_prefix, width=settings.number_width)
    destinations = [d.name for d in runtime.settings.destinations if "invoice" in d.mappings]
    status_destinations = [d.name for d in runtime.settings.destinations if STATUS_ENTITY in d.mappings]
    prices = PriceBook.from_catalog(runtime.catalog())
    deliver = delivery_wanted(runtime.settings)
    to_folder = folder_wanted(runtime.settings)
    result = BillResult()

    with runtime.transaction() as session:
        run = SyncRun(kind="bill", stream=BILLING_STREAM)
        session.add(run)
        orders, customers = billing_inputs(session, settings.payment_terms_days)
        already = set(session.scalars(select(InvoiceLine.source_key)))
        outcome = generate(
            as_of=as_of,
            customers=customers,
            prices=prices,
            orders=orders,
            already_billed=already,
            taxes=runtime.catalog().taxes,
            settings=ENGINE_SETTINGS,
        )
        _record_problems(session, outcome.problems, orders)
        result.problems = len(outcome.problems)
        session.flush()
        run_id = run.id

    status = "failed"
    try:
        drafts = outcome.invoices
        for start in range(0, len(drafts), FINALISE_CHUNK):
            runtime.checkpoint()  # a stop request ends the run here, between chunks of invoices
            chunk = drafts[start : start + FINALISE_CHUNK]
            finals = []
            with runtime.transaction() as session:  # numbers, invoices and outbox rows: all or none
                # the chunk's numbers in one statement, its outbox rows in one batch: a query per
                # invoice would also flush the session once per invoice
                first = next_number(session, series.name, len(chunk))
                owed: list[Owed] = []
                stored: list[InvoiceRows] = []
                now = utcnow()
                for offset, draft in enumerate(chunk):
                    final = finalize(draft, series.format(first + offset))
                    finals.append(final)
                    rows = invoice_rows(final, series.name, now)
                    stored.append(rows)
                    if deliver:  # the customer is owed the invoice from the moment it exists
                        rows.invoice["delivery_status"] = "pending"
                        owed.append(Owed(DELIVERY_DESTINATION, DELIVERY_ENTITY, final.key, "deliver", "1"))
                    if to_folder:
                        owed.append(Owed(FOLDER_DESTINATION, FOLDER_ENTITY, final.key, "export", "1"))
                    owed.extend(Owed(d, "invoice", final.key, "create", "1") for d in destinations)
                    # the ERP / CRM learn it is open
                    owed.extend(
                        Owed(d, STATUS_ENTITY, final.key, "upsert", final.status) for d in status_destinations
                    )
                # the chunk's rows in one bulk insert per table (COPY on PostgreSQL)
                insert_rows(session, Invoice, [r.invoice for r in stored])
                insert_rows(session, InvoiceLine, [line for r in stored for line in r.lines])
                insert_rows(session, InvoiceTaxLine, [tax for r in stored for tax in r.tax_lines])
                enqueue_many(session, owed, fresh=[final.key for final in finals])
                # credit left from overpayments pays the new invoices at once
                session.flush()
                _apply_credit(session, runtime, {f.customer_id for f in finals}, as_of)
            for final, rows in zip(finals, stored, strict=True):
                assert final.number is not None
                result.invoices_created += 1
                result.lines += len(final.lines)
                result.numbers.append(final.number)
                code = final.currency.code
                result.totals[code] = result.totals.get(code, Decimal("0")) + rows.invoice["total"]
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


def _stored_unit_price(value: Decimal) -> Decimal:
    """The unit price as the column can hold it (6 decimals).

    Only the average unit price of a tiered, package or percentage charge has more digits (the
    engine keeps 10); its exact breakdown is in the explanation, so rounding this average loses
    nothing that the amount depends on.
    """
    return value if value == value.quantize(_STORED) else value.quantize(_STORED, ROUND_HALF_UP)


@dataclass(frozen=True)
class InvoiceRows:
    """A finalised invoice as the rows of ``invoices``, ``invoice_lines`` and ``invoice_tax_lines``."""

    invoice: dict[str, Any]
    lines: list[dict[str, Any]]
    tax_lines: list[dict[str, Any]]


def invoice_rows(final: BillingInvoice, series: str, finalized_at: dt.datetime) -> InvoiceRows:
    """The database rows of a finalised invoice, for a bulk insert (see ``store.bulk``)."""
    assert final.number is not None, "only finalised invoices are stored"
    key = final.key
    totals = final.totals()
    return InvoiceRows(
        invoice={
            "id": key,
            "customer_id": final.customer_id,
            "series": series,
            "number": final.number,
            "status": final.status,
            "currency": final.currency.code,
            "period_start": final.period_start,
            "period_end": final.period_end,
            "issue_date": final.issue_date,
            "due_date": final.due_date,
            "subtotal": totals.subtotal.amount,
            "discount_total": totals.discount_total.amount,
            "tax_total": totals.tax_total.amount,
            "total": totals.total.amount,
            "amount_paid": Decimal(0) if final.amount_paid is None else final.amount_paid.amount,
            "finalized_at": finalized_at,
            "delivery_status": None,
        },
        lines=[
            {
                "invoice_id": key,
                "position": i,
                "source_key": line.source_key,
                "product_code": line.product_code,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": _stored_unit_price(line.unit_price.amount),
                "amount": line.amount.amount,
                "discount_amount": Decimal(0) if line.discount is None else line.discount.amount,
                "tax_id": line.tax_id,
                "tax_rate": line.tax_rate,
                "tax_inclusive": line.tax_inclusive,
                "tax_amount": Decimal(0) if line.tax_amount is None else line.tax_amount.amount,
                "period_start": line.period_start,
                "period_end": line.period_end,
                # serialised by the explanation itself (to_dict's JSON, without building the dict)
                "explanation": None if line.explanation is None else JSONText(line.explanation.to_json()),
            }
            for i, line in enumerate(final.lines, start=1)
        ],
        tax_lines=[
            {
                "invoice_id": key,
                "position": i,
                "tax_id": tax.tax_id,
                "name": tax.name,
                "rate": tax.rate,
                "inclusive": tax.inclusive,
                "taxable": tax.taxable.amount,
                "amount": tax.amount.amount,
            }
            for i, tax in enumerate(final.tax_lines, start=1)
        ],
    )


def stored_invoice(final: BillingInvoice, series: str) -> Invoice:
    """A finalised invoice as an ORM object with its lines and tax lines (the same rows as the run's)."""
    rows = invoice_rows(final, series, utcnow())
    invoice = Invoice(**rows.invoice)
    invoice.lines = [
        InvoiceLine(
            **{k: v for k, v in row.items() if k not in ("invoice_id", "explanation")},
            explanation=None if line.explanation is None else line.explanation.to_dict(),
        )
        for row, line in zip(rows.lines, final.lines, strict=True)
    ]
    invoice.tax_lines = [
        InvoiceTaxLine(**{k: v for k, v in tax.items() if k != "invoice_id"}) for tax in rows.tax_lines
    ]
    return invoice


def money(value: Decimal, currency: Currency) -> Money:
    """A stored amount (six decimals) as Money on the currency's minor unit when that is exact."""
    quantized = value.quantize(currency.quantum)
    return Money(quantized if quantized == value else _trim(value), currency)


def billing_invoice(invoice: Invoice) -> BillingInvoice:
    """A stored invoice back as the billing module's value, explanations included.

    Lines billed before migration 0003 have no explanation; ``billing.explain`` then shows the plain
    quantity x unit price.
    """
    currency = Currency.of(invoice.currency)
    lines = tuple(
        BillingLine(
            source_key=line.source_key,
            product_code=line.product_code or "",
            description=line.description,
            quantity=_trim(line.quantity),
            unit_price=money(line.unit_price, currency),
            amount=money(line.amount, currency),
            period_start=line.period_start,
            period_end=line.period_end,
            discount=money(line.discount_amount, currency) if line.discount_amount else None,
            tax_id=line.tax_id,
            tax_rate=None if line.tax_rate is None else _trim(line.tax_rate),
            tax_inclusive=line.tax_inclusive,
            tax_amount=money(line.tax_amount, currency) if line.tax_id is not None else None,
            explanation=None if line.explanation is None else Explanation.from_dict(line.explanation),
        )
        for line in invoice.lines
    )
    tax_lines = tuple(
        TaxLine(
            tax_id=tax.tax_id,
            name=tax.name,
            rate=_trim(tax.rate),
            inclusive=tax.inclusive,
            taxable=money(tax.taxable, currency),
            amount=money(tax.amount, currency),
        )
        for tax in invoice.tax_lines
    )
    # "overdue" is the receivables' word for open and late: to the billing module it is open
    stored_status = "open" if invoice.status == "overdue" else invoice.status
    if stored_status not in INVOICE_STATUSES:
        raise ValueError(f"invoice {invoice.number}: unknown status {invoice.status!r}")
    status = cast(InvoiceStatus, stored_status)
    return BillingInvoice(
        key=invoice.id,
        customer_id=invoice.customer_id,
        currency=currency,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        period_start=invoice.period_start or invoice.issue_date,
        period_end=invoice.period_end or invoice.issue_date,
        lines=lines,
        tax_lines=tax_lines,
        status=status,
        number=invoice.number,
        amount_paid=money(invoice.amount_paid, currency) if invoice.amount_paid else None,
    )


def _document_quantity_and_price(line: InvoiceLine, currency: Currency) -> tuple[Decimal, Decimal]:
    """Quantity and unit price whose product is the line's amount at the minor unit.

    QuickBooks refuses a line whose Amount is not UnitPrice x Qty, and NAV computes the amount from
    them, so a prorated line (or a tiered charge's average) sends the effective unit price
    (amount / quantity); when no six-decimal price can reproduce the amount (a huge quantity), the
    line goes as quantity 1 at its amount. ``list_unit_price`` and ``billed_quantity`` keep the
    originals.
    """
    quantum = currency.quantum
    quantity, unit, amount = line.quantity, line.unit_price, line.amount

    def exact(q: Decimal, u: Decimal) -> bool:
        return (q * u).quantize(quantum, ROUND_HALF_UP) == amount.quantize(quantum, ROUND_HALF_UP)

    if exact(quantity, unit):
        return quantity, unit
    if quantity:
        effective = (amount / quantity).quantize(_STORED, ROUND_HALF_UP)
        if exact(quantity, effective):
            return quantity, effective
    return Decimal(1), amount


def invoice_document(invoice: Invoice, product_ids: dict[str, str]) -> dict[str, Any]:
    """The canonical invoice as outbound mappings see it (JSON-like; money as Decimal).

    Line ``amount`` is before discount (``discount_amount``); ``quantity`` x ``unit_price`` always
    equals ``amount`` (see ``_document_quantity_and_price``). ``taxes`` holds one entry per rate.
    """
    currency = Currency.of(invoice.currency)
    lines = []
    for line in invoice.lines:
        quantity, unit_price = _document_quantity_and_price(line, currency)
        lines.append(
            {
                "position": line.position,
                "description": line.description,
                "product_code": line.product_code,
                "product_id": product_ids.get(line.product_code or ""),
                "quantity": quantity,
                "unit_price": unit_price,
                "amount": line.amount,
                "period_start": line.period_start.isoformat() if line.period_start else None,
                "period_end": line.period_end.isoformat() if line.period_end else None,
                "source_key": line.source_key,
                "billed_quantity": line.quantity,
                "list_unit_price": line.unit_price,
                "discount_amount": line.discount_amount,
                "tax_id": line.tax_id,
                "tax_rate": line.tax_rate,
                "tax_inclusive": line.tax_inclusive,
                "tax_amount": line.tax_amount,
            }
        )
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
        "discount_total": invoice.discount_total,
        "tax_total": invoice.tax_total,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "amount_due": invoice.total - invoice.amount_paid,
        "status": invoice.status,
        "lines": lines,
        "taxes": [
            {
                "tax_id": tax.tax_id,
                "name": tax.name,
                "rate": tax.rate,
                "inclusive": tax.inclusive,
                "taxable": tax.taxable,
                "amount": tax.amount,
            }
            for tax in invoice.tax_lines
        ],
    }


def _apply_credit(session: Session, runtime: Runtime, customers: set[str], as_of: dt.date) -> None:
    """Spend the unapplied credit of these customers (if any) on their open invoices."""
    rows = session.execute(
        select(Payment.customer_id, Payment.unapplied).where(
            one_of(session, Payment.customer_id, sorted(customers))
        )
    )
    with_credit = {customer for customer, unapplied in rows if unapplied > 0}  # compared as Decimal
    if with_credit:
        apply_credit(session, runtime.settings, with_credit, as_of=as_of)
