"""Billing analytics reports: the one entry point behind ``billsync report NAME`` and the web API.

Why one entry point: the command line and the API must print the same figures for the same
database, so both call :func:`run_report` and print :meth:`Report.to_dict` (``--json`` is exactly
``json.dumps(report.to_dict())``). This module only loads facts from the state store and shapes
rows; every figure is computed by :mod:`billing.analytics` (definitions: docs/analytics.md).

Defaults, so that the same database gives the same report:

- ``as_of``: the later of today (UTC) and the books' own date (:func:`billing.analytics.books_date`:
  the latest issue, receipt, allocation or refund day, or the day after the due date of an invoice
  already marked overdue). The demo dates its company today and then moves 35 days on; its invoices
  are marked overdue as of then, and the reports see them overdue too.
- the window: ``months`` (default 12) calendar months ending with the month of ``date_to``
  (default ``as_of``); ``date_from`` overrides its start.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import analytics as an
from billing.money import Currency
from billing.periods import add_months
from sync_engine.runtime import Runtime
from sync_engine.store.models import (
    CanonicalRecord,
    CreditNote,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentAllocation,
    Refund,
)

REPORT_NAMES: tuple[str, ...] = (
    "mrr",
    "revenue",
    "invoiced-vs-collected",
    "ageing",
    "dso",
    "days-to-pay",
    "payment-methods",
    "retention",
    "top-overdue",
)
DEFAULT_MONTHS = 12
#: The window of DSO: net credit sales of the 90 days up to the day it is measured.
DSO_WINDOW_DAYS = 90
#: How many customers per currency ``top-overdue`` lists.
TOP_OVERDUE_LIMIT = 10


class UnknownReport(ValueError):
    """A report name that is not one of :data:`REPORT_NAMES` (the message lists them)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown report {name!r}; choose one of: {', '.join(REPORT_NAMES)}")
        self.name = name


@dataclass(frozen=True)
class Report:
    """One report: ``rows`` (one dict per row, keyed by ``columns``) and summary ``totals``, both
    JSON-able (amounts are exact decimal strings, dates ISO 8601, months ``YYYY-MM``); ``chart``
    tells a page how to draw it (see :meth:`to_dict`)."""

    name: str
    title: str
    params: dict[str, str]
    columns: list[str]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What ``billsync report NAME --json`` prints and the API returns.

        ``chart``: ``{"type": "bar" | "line" | "heatmap", "x": column, "series": [columns],
        "group": column or None (one line/bar set per value, e.g. per currency: amounts are never
        added across currencies), "stacked": bool, "data": "rows" or "totals.<key>" (where the
        points are)}``.
        """
        return {
            "name": self.name,
            "title": self.title,
            "params": dict(self.params),
            "columns": list(self.columns),
            "rows": [dict(row) for row in self.rows],
            "totals": dict(self.totals),
            "chart": dict(self.chart),
        }


def run_report(
    runtime: Runtime,
    name: str,
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    months: int | None = None,
    as_of: dt.date | None = None,
) -> Report:
    """Report ``name`` on the state store of ``runtime`` (read only). Raises :class:`UnknownReport`
    for an unknown name and ``ValueError`` for an empty window or ``months`` below 1."""
    build = _BUILDERS.get(name)
    if build is None:
        raise UnknownReport(name)
    with runtime.sessions() as session:
        books, names = load_books(session)
    today = dt.datetime.now(dt.UTC).date()
    day = as_of or max(today, an.books_date(books) or today)
    count = DEFAULT_MONTHS if months is None else months
    if count < 1:
        raise ValueError(f"months must be at least 1, got {count}")
    end = date_to or day
    start = date_from or add_months(an.month_of(end), 1 - count)
    if start > end:
        raise ValueError(f"the window is empty: from {start.isoformat()} is after to {end.isoformat()}")
    window = _Window(start, end, an.months_between(start, end), day)
    return build(books, names, window)


# --------------------------------------------------------------------------------------------
# loading the facts


def load_books(session: Session) -> tuple[an.Books, dict[str, str]]:
    """Every finalised invoice (voids included: the analytics leave them out), credit note,
    payment, allocation and refund of the store as plain facts, and the customers' names."""
    invoices = session.scalars(
        select(Invoice)
        .where(Invoice.number.is_not(None), Invoice.status != "draft")
        .options(selectinload(Invoice.lines))
        .order_by(Invoice.issue_date, Invoice.id)
    ).all()
    lines_by_key: dict[str, InvoiceLine] = {}
    invoice_facts: list[an.InvoiceFact] = []
    for invoice in invoices:
        for line in invoice.lines:
            lines_by_key[line.source_key] = line
        invoice_facts.append(
            an.InvoiceFact(
                id=invoice.id,
                customer_id=invoice.customer_id,
                currency=invoice.currency,
                status=invoice.status,
                issue_date=invoice.issue_date,
                due_date=invoice.due_date,
                total=invoice.total,
                lines=tuple(_line_fact(line) for line in invoice.lines),
                paid_on=invoice.paid_on,
            )
        )
    notes = session.scalars(
        select(CreditNote)
        .options(selectinload(CreditNote.lines))
        .order_by(CreditNote.issue_date, CreditNote.id)
    ).all()
    note_facts = []
    for note in notes:
        credited = []
        for cn_line in note.lines:
            original = lines_by_key.get(cn_line.source_key)
            kind, model = _kind(original) if original is not None else (_kind_of_key(cn_line.source_key), "")
            credited.append(
                an.LineFact(
                    kind=kind,
                    net=cn_line.amount,
                    product=cn_line.product_code or "",
                    model=model,
                    period_start=cn_line.period_start or (original.period_start if original else None),
                    period_end=cn_line.period_end or (original.period_end if original else None),
                )
            )
        note_facts.append(
            an.CreditNoteFact(
                id=note.id,
                invoice_id=note.invoice_id,
                customer_id=note.customer_id,
                currency=note.currency,
                issue_date=note.issue_date,
                total=note.total,
                lines=tuple(credited),
                status=note.status,
            )
        )
    payments = session.scalars(select(Payment).order_by(Payment.received_on, Payment.id)).all()
    by_id = {p.id: p for p in payments}
    payment_facts = tuple(
        an.PaymentFact(p.id, p.customer_id, p.currency, p.amount, p.received_on, p.method, p.source)
        for p in payments
    )
    allocations = tuple(
        an.AllocationFact(a.invoice_id, a.amount, a.applied_on, a.payment_id)
        for a in session.scalars(select(PaymentAllocation).order_by(PaymentAllocation.id))
    )
    refunds = tuple(
        an.RefundFact(
            r.payment_id,
            by_id[r.payment_id].customer_id,
            by_id[r.payment_id].currency,
            r.amount,
            r.refunded_on,
        )
        for r in session.scalars(select(Refund).order_by(Refund.id))
        if by_id[r.payment_id].source != "credit_note"
    )
    names = {
        record.id: str((record.data or {}).get("name") or record.id)
        for record in session.scalars(select(CanonicalRecord).where(CanonicalRecord.entity == "customer"))
    }
    books = an.Books(tuple(invoice_facts), tuple(note_facts), payment_facts, allocations, refunds)
    return books, names


def _kind_of_key(source_key: str) -> str:
    """The rule behind a line billed before explanations were stored (migration 0003), read from
    the source key the billing engine gave it."""
    if source_key.startswith("sub:"):
        if ":credit:" in source_key:
            return "proration_credit"
        return "proration_charge" if ":charge:" in source_key else "recurring"
    for prefix, kind in (("order-line:", "one_time"), ("usage:", "usage"), ("installment:", "installment")):
        if source_key.startswith(prefix):
            return kind
    return "other"


def _kind(line: InvoiceLine) -> tuple[str, str]:
    explanation = line.explanation or {}
    kind = str(explanation.get("kind") or _kind_of_key(line.source_key))
    return kind, str(explanation.get("model") or "")


def _line_fact(line: InvoiceLine) -> an.LineFact:
    kind, model = _kind(line)
    inclusive_tax = line.tax_amount if line.tax_inclusive else Decimal(0)
    return an.LineFact(
        kind=kind,
        net=line.amount - line.discount_amount - inclusive_tax,
        product=line.product_code or "",
        model=model,
        period_start=line.period_start,
        period_end=line.period_end,
    )


# --------------------------------------------------------------------------------------------
# the reports


@dataclass(frozen=True)
class _Window:
    start: dt.date
    end: dt.date
    months: list[dt.date]
    as_of: dt.date

    def params(self) -> dict[str, str]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "months": str(len(self.months)),
            "as_of": self.as_of.isoformat(),
        }


def _j(value: Any) -> Any:
    """One value as JSON: exact decimal strings, ISO dates; None, ints and strings as they are."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _m(value: Decimal, currency: str) -> str:
    """An amount as an exact string on its currency's minor unit ("1234.50", JPY "1234"). The store
    keeps six decimals; every amount summed here is already on the minor unit, so this only drops
    trailing zeros (half up, should a sub-unit amount ever appear)."""
    return str(value.quantize(Currency.of(currency).quantum, rounding=ROUND_HALF_UP))


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def _chart(
    kind: str,
    x: str,
    series: Sequence[str],
    *,
    group: str | None = "currency",
    stacked: bool = False,
    data: str = "rows",
) -> dict[str, Any]:
    return {"type": kind, "x": x, "series": list(series), "group": group, "stacked": stacked, "data": data}


def _sum_by_currency(rows: Sequence[dict[str, Any]], column: str) -> dict[str, str]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        sums[row["currency"]] += Decimal(row[column])
    return {currency: _m(sums[currency], currency) for currency in sorted(sums)}


def _mrr(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["month", "currency", "opening", "new", "expansion", "reactivation", "contraction", "churn", "mrr", "arr", "customers"]  # fmt: skip
    rows: list[dict[str, Any]] = [
        {
            "month": _month(r.month),
            "currency": r.currency,
            "opening": _m(r.opening, r.currency),
            "new": _m(r.new, r.currency),
            "expansion": _m(r.expansion, r.currency),
            "reactivation": _m(r.reactivation, r.currency),
            "contraction": _m(r.contraction, r.currency),
            "churn": _m(r.churn, r.currency),
            "mrr": _m(r.closing, r.currency),
            "arr": _m(r.arr, r.currency),
            "customers": r.customers,
        }
        for r in an.mrr(books, w.months)
    ]
    last = {row["currency"]: row for row in rows}
    totals = {
        "recurring_revenue": _sum_by_currency(rows, "mrr"),
        "mrr": {c: last[c]["mrr"] for c in sorted(last)},
        "arr": {c: last[c]["arr"] for c in sorted(last)},
        "customers": {c: last[c]["customers"] for c in sorted(last)},
    }
    return Report(
        "mrr",
        "MRR and ARR with movements",
        w.params(),
        columns,
        rows,
        totals,
        _chart("line", "month", ["mrr"]),
    )


def _revenue(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["currency", "product", "billing_model", "invoiced", "credited", "revenue"]
    found = an.revenue(books, w.start, w.end)
    rows: list[dict[str, Any]] = [
        {
            "currency": r.currency,
            "product": r.product,
            "billing_model": r.model,
            "invoiced": _m(r.invoiced, r.currency),
            "credited": _m(r.credited, r.currency),
            "revenue": _m(r.net, r.currency),
        }
        for r in found
    ]
    by_model: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in found:
        by_model[r.currency, r.model] += r.net
    totals = {
        "revenue": _sum_by_currency(rows, "revenue"),
        "by_billing_model": [
            {"currency": c, "billing_model": m, "revenue": _m(v, c)} for (c, m), v in sorted(by_model.items())
        ],
    }
    title = "Revenue by product and billing model (net of discounts and credit notes, without tax)"
    return Report("revenue", title, w.params(), columns, rows, totals, _chart("bar", "product", ["revenue"]))


def _invoiced_vs_collected(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = [
        "month",
        "currency",
        "invoiced",
        "credited",
        "net_invoiced",
        "collected",
        "refunded",
        "net_collected",
    ]
    rows: list[dict[str, Any]] = [
        {
            "month": _month(r.month),
            "currency": r.currency,
            "invoiced": _m(r.invoiced, r.currency),
            "credited": _m(r.credited, r.currency),
            "net_invoiced": _m(r.net_invoiced, r.currency),
            "collected": _m(r.collected, r.currency),
            "refunded": _m(r.refunded, r.currency),
            "net_collected": _m(r.net_collected, r.currency),
        }
        for r in an.invoiced_vs_collected(books, w.months)
    ]
    totals = {
        "net_invoiced": _sum_by_currency(rows, "net_invoiced"),
        "net_collected": _sum_by_currency(rows, "net_collected"),
    }
    chart = _chart("bar", "month", ["net_invoiced", "net_collected"])
    return Report(
        "invoiced-vs-collected", "Invoiced vs collected per month", w.params(), columns, rows, totals, chart
    )


def _ageing(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    buckets = list(an.AGEING_BUCKETS)
    columns = ["currency", *buckets, "total", "invoices"]
    found = an.ageing(books, w.as_of)
    rows: list[dict[str, Any]] = [
        {
            "currency": r.currency,
            **{b: _m(r.buckets[b], r.currency) for b in buckets},
            "total": _m(r.total, r.currency),
            "invoices": sum(r.invoices.values()),
        }
        for r in found
    ]
    totals = {
        "total": {r["currency"]: r["total"] for r in rows},
        "invoices_by_bucket": {b: sum(r.invoices[b] for r in found) for b in buckets},
    }
    params = {"as_of": w.as_of.isoformat()}
    chart = _chart("bar", "currency", buckets, group=None, stacked=True)
    return Report("ageing", "Receivables ageing by days past due", params, columns, rows, totals, chart)


def _dso(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["month", "currency", "measured_on", "receivables", "sales", "window_days", "dso"]
    rows: list[dict[str, Any]] = [
        {
            "month": _month(r.month),
            "currency": r.currency,
            "measured_on": _j(r.on),
            "receivables": _m(r.receivables, r.currency),
            "sales": _m(r.sales, r.currency),
            "window_days": r.days,
            "dso": _j(r.dso),
        }
        for r in an.dso(books, w.months, w.as_of, DSO_WINDOW_DAYS)
    ]
    last = {row["currency"]: row for row in rows}
    totals = {"dso": {c: last[c]["dso"] for c in sorted(last)}, "window_days": DSO_WINDOW_DAYS}
    title = f"Days sales outstanding ({DSO_WINDOW_DAYS}-day window)"
    return Report("dso", title, w.params(), columns, rows, totals, _chart("line", "month", ["dso"]))


def _days_to_pay(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["customer_id", "customer", "invoices_paid", "average_days_to_pay", "average_days_late", "recent_average", "previous_average", "trend"]  # fmt: skip
    rows: list[dict[str, Any]] = [
        {
            "customer_id": r.customer_id,
            "customer": names.get(r.customer_id, r.customer_id),
            "invoices_paid": r.invoices_paid,
            "average_days_to_pay": _j(r.average_days_to_pay),
            "average_days_late": _j(r.average_days_late),
            "recent_average": _j(r.recent_average),
            "previous_average": _j(r.previous_average),
            "trend": _j(r.trend),
        }
        for r in an.days_to_pay(books, w.start, w.end)
    ]
    overall = an.average_days_to_pay(books, w.start, w.end)
    totals = {
        "invoices_paid": overall.invoices_paid,
        "average_days_to_pay": _j(overall.average_days_to_pay),
        "by_month": [
            {
                "month": _month(m.month),
                "invoices_paid": m.invoices_paid,
                "average_days_to_pay": _j(m.average_days_to_pay),
            }
            for m in an.days_to_pay_trend(books, w.months)
        ],
    }
    chart = _chart("line", "month", ["average_days_to_pay"], group=None, data="totals.by_month")
    return Report("days-to-pay", "Average days to pay per customer", w.params(), columns, rows, totals, chart)


def _payment_methods(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["currency", "method", "payments", "amount", "share_percent"]
    rows: list[dict[str, Any]] = [
        {
            "currency": r.currency,
            "method": r.method,
            "payments": r.payments,
            "amount": _m(r.amount, r.currency),
            "share_percent": _j(r.share),
        }
        for r in an.payment_methods(books, w.start, w.end)
    ]
    totals = {"amount": _sum_by_currency(rows, "amount"), "payments": sum(r["payments"] for r in rows)}
    return Report("payment-methods", "Payment-method mix (cash received)", w.params(), columns, rows, totals, _chart("bar", "method", ["amount"]))  # fmt: skip


def _retention(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    found = an.retention(books, w.months, w.as_of)
    width = max((len(r.retained) for r in found), default=1)
    offsets = [f"month_{k}" for k in range(width)]
    rows = []
    for r in found:
        shares = [_j(s) for s in r.shares]
        rows.append({"cohort": _month(r.cohort), "customers": r.customers, **dict(zip(offsets, shares + [None] * width, strict=False))})  # fmt: skip
    totals = {"retained_customers": {_month(r.cohort): list(r.retained) for r in found}}
    chart = _chart("heatmap", "cohort", offsets, group=None)
    title = "Customer retention by monthly cohort (percent of the cohort active k months later)"
    return Report("retention", title, w.params(), ["cohort", "customers", *offsets], rows, totals, chart)


def _top_overdue(books: an.Books, names: dict[str, str], w: _Window) -> Report:
    columns = ["currency", "rank", "customer_id", "customer", "overdue", "invoices", "oldest_days_past_due"]
    rows: list[dict[str, Any]] = []
    rank: dict[str, int] = defaultdict(int)
    for r in an.top_overdue(books, w.as_of, TOP_OVERDUE_LIMIT):
        rank[r.currency] += 1
        rows.append(
            {
                "currency": r.currency,
                "rank": rank[r.currency],
                "customer_id": r.customer_id,
                "customer": names.get(r.customer_id, r.customer_id),
                "overdue": _m(r.overdue, r.currency),
                "invoices": r.invoices,
                "oldest_days_past_due": r.oldest_days_past_due,
            }
        )
    totals = {"overdue": _sum_by_currency(rows, "overdue"), "limit_per_currency": TOP_OVERDUE_LIMIT}
    params = {"as_of": w.as_of.isoformat()}
    title = f"Top {TOP_OVERDUE_LIMIT} overdue customers per currency"
    return Report("top-overdue", title, params, columns, rows, totals, _chart("bar", "customer", ["overdue"]))


_BUILDERS: dict[str, Callable[[an.Books, dict[str, str], _Window], Report]] = {
    "mrr": _mrr,
    "revenue": _revenue,
    "invoiced-vs-collected": _invoiced_vs_collected,
    "ageing": _ageing,
    "dso": _dso,
    "days-to-pay": _days_to_pay,
    "payment-methods": _payment_methods,
    "retention": _retention,
    "top-overdue": _top_overdue,
}
assert tuple(_BUILDERS) == REPORT_NAMES
