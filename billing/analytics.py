"""Billing analytics: MRR and its movements, revenue, collections, ageing, DSO, days to pay,
payment methods, cohort retention and overdue customers, from plain facts and an explicit ``as_of``.

Why pure: the CLI (``billsync report``) and the web API must show the same figures, and the figures
must be provable (MRR adds up exactly to recurring revenue); plain frozen facts in, plain rows out
make both testable without a database. ``sync_engine.reports`` loads the facts. The definitions of
every figure are in docs/analytics.md; each function's docstring says which one it implements.

Money stays ``Decimal`` per ISO 4217 currency and is never added across currencies. Ratios (days,
percentages) are rounded once, ``ROUND_HALF_UP`` to one decimal (:data:`RATIO`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Final

from billing.money import EXACT, Currency
from billing.periods import add_months

__all__ = [
    "AGEING_BUCKETS",
    "NOT_COUNTED",
    "RATIO",
    "RECURRING_KINDS",
    "AgeingRow",
    "AllocationFact",
    "Books",
    "CohortRow",
    "CollectionMonth",
    "CreditNoteFact",
    "CustomerDaysToPay",
    "DaysToPayMonth",
    "DsoRow",
    "InvoiceFact",
    "LineFact",
    "MethodRow",
    "MrrMonth",
    "OverdueRow",
    "PaymentFact",
    "RefundFact",
    "RevenueRow",
    "ageing",
    "average_days_to_pay",
    "billing_model",
    "books_date",
    "days_to_pay",
    "days_to_pay_trend",
    "dso",
    "invoiced_vs_collected",
    "month_of",
    "months_between",
    "mrr",
    "mrr_by_customer",
    "outstanding",
    "payment_methods",
    "retention",
    "revenue",
    "spread",
    "top_overdue",
]

ZERO: Final = Decimal(0)
#: The quantum of every ratio (days, percentages): one decimal, rounded half up.
RATIO: Final = Decimal("0.1")
#: Explanation kinds that make up recurring revenue (and so MRR): the period charges and the
#: proration credits and charges of plan changes. Usage, minimum true-ups, one-time charges and
#: installments are not recurring.
RECURRING_KINDS: Final = frozenset({"recurring", "proration_credit", "proration_charge"})
#: Invoice statuses that are not revenue or receivables: not finalised, or cancelled.
NOT_COUNTED: Final = frozenset({"draft", "void"})
#: The ageing buckets by days past due: 0 or less (not yet due), 1-30, 31-60, 61-90, over 90.
AGEING_BUCKETS: Final = ("current", "1-30", "31-60", "61-90", "90+")
_BUCKET_LAST_DAYS: Final = (0, 30, 60, 90)  # the last day past due of each bucket but the last
_MODELS: Final = {
    "recurring": "recurring",
    "proration_credit": "recurring",
    "proration_charge": "recurring",
    "usage": "usage",
    "minimum_true_up": "usage",
    "one_time": "one_time",
    "installment": "installment",
}


# --------------------------------------------------------------------------------------------
# facts


@dataclass(frozen=True, slots=True)
class LineFact:
    """One invoice or credit note line: ``net`` is after discounts and without tax.

    ``kind`` is the explanation's rule; ``period_end`` is exclusive, as on invoices. On a credit
    note line ``net`` is what was credited (positive) and ``kind`` that of the line it credits.
    """

    kind: str
    net: Decimal
    product: str = ""
    model: str = ""
    period_start: date | None = None
    period_end: date | None = None

    @property
    def recurring(self) -> bool:
        return self.kind in RECURRING_KINDS


@dataclass(frozen=True, slots=True)
class InvoiceFact:
    """A finalised invoice as analytics needs it; ``total`` includes tax, ``paid_on`` is the day
    the last allocation made it paid (None while anything is due)."""

    id: str
    customer_id: str
    currency: str
    status: str
    issue_date: date
    due_date: date
    total: Decimal
    lines: tuple[LineFact, ...] = ()
    paid_on: date | None = None

    @property
    def counted(self) -> bool:
        """Revenue and a receivable: finalised and not void."""
        return self.status not in NOT_COUNTED


@dataclass(frozen=True, slots=True)
class CreditNoteFact:
    """A credit note: ``total`` (with tax) and its lines' ``net`` are positive amounts credited."""

    id: str
    invoice_id: str
    customer_id: str
    currency: str
    issue_date: date
    total: Decimal
    lines: tuple[LineFact, ...] = ()
    status: str = "issued"

    @property
    def counted(self) -> bool:
        return self.status != "void"


@dataclass(frozen=True, slots=True)
class PaymentFact:
    """Money received. ``source`` ``credit_note`` marks the receipt a credit note records: it
    settles invoices but is not cash, so it is never *collected*."""

    id: str
    customer_id: str
    currency: str
    amount: Decimal
    received_on: date
    method: str
    source: str

    @property
    def cash(self) -> bool:
        return self.source != "credit_note"


@dataclass(frozen=True, slots=True)
class AllocationFact:
    """Part of a payment (or a credit note's receipt) applied to an invoice on ``applied_on``."""

    invoice_id: str
    amount: Decimal
    applied_on: date
    payment_id: str = ""


@dataclass(frozen=True, slots=True)
class RefundFact:
    """Money given back on a cash payment."""

    payment_id: str
    customer_id: str
    currency: str
    amount: Decimal
    refunded_on: date


@dataclass(frozen=True, slots=True)
class Books:
    """Everything the analytics read: the store's invoices, credit notes, payments, allocations
    and refunds (drafts and voids may be included: every figure leaves them out itself)."""

    invoices: tuple[InvoiceFact, ...] = ()
    credit_notes: tuple[CreditNoteFact, ...] = ()
    payments: tuple[PaymentFact, ...] = ()
    allocations: tuple[AllocationFact, ...] = ()
    refunds: tuple[RefundFact, ...] = ()

    @property
    def counted_invoices(self) -> tuple[InvoiceFact, ...]:
        return tuple(i for i in self.invoices if i.counted)

    @property
    def counted_credit_notes(self) -> tuple[CreditNoteFact, ...]:
        counted = {i.id for i in self.counted_invoices}
        return tuple(n for n in self.credit_notes if n.counted and n.invoice_id in counted)

    @property
    def cash_payments(self) -> tuple[PaymentFact, ...]:
        return tuple(p for p in self.payments if p.cash)


def books_date(books: Books) -> date | None:
    """The latest day the books have reached: the latest issue, receipt, allocation, refund or
    payment day, or the day after the due date of an invoice already marked overdue (its status
    proves the books were kept up to then). None for empty books.

    Why: reports default to the later of today and this day, so a store dated ahead of the clock
    (the demo moves 35 days on) is reported as its own statuses describe it."""
    days = [
        *(i.issue_date for i in books.invoices if i.counted),
        *(i.paid_on for i in books.invoices if i.paid_on is not None),
        *(i.due_date + timedelta(days=1) for i in books.invoices if i.status == "overdue"),
        *(n.issue_date for n in books.credit_notes),
        *(p.received_on for p in books.payments),
        *(a.applied_on for a in books.allocations),
        *(r.refunded_on for r in books.refunds),
    ]
    return max(days, default=None)


def billing_model(kind: str, model: str = "") -> str:
    """The billing model of a line: the explanation's ``model`` when known, else the kind's."""
    return model or _MODELS.get(kind, "other")


# --------------------------------------------------------------------------------------------
# months


def month_of(day: date) -> date:
    """The first day of ``day``'s month: how every monthly figure is keyed."""
    return day.replace(day=1)


def months_between(first: date, last: date) -> list[date]:
    """The months from ``first``'s to ``last``'s, both included (empty if ``last`` is earlier)."""
    months: list[date] = []
    current, end = month_of(first), month_of(last)
    while current <= end:
        months.append(current)
        current = add_months(current, 1)
    return months


def _month_end(month: date) -> date:
    """The last day of ``month``."""
    return add_months(month, 1) - timedelta(days=1)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    with localcontext(EXACT):
        return (numerator / denominator).quantize(RATIO, rounding=ROUND_HALF_UP)


def _percent(part: Decimal | int, whole: Decimal | int) -> Decimal:
    return _ratio(Decimal(part) * 100, Decimal(whole))


def _mean(values: Sequence[int]) -> Decimal | None:
    return _ratio(Decimal(sum(values)), Decimal(len(values))) if values else None


# --------------------------------------------------------------------------------------------
# MRR


def spread(amount: Decimal, currency: str, start: date, end: date | None) -> dict[date, Decimal]:
    """``amount`` spread over the months of the service period ``start``..``end`` (exclusive) by
    days, each part rounded half up to the currency's minor unit and the remainder on the last
    month, so the parts add up to ``amount`` exactly. Without an end (or with an empty period) it
    falls wholly in the month of ``start``."""
    if end is None or end <= start:
        return {month_of(start): amount}
    quantum = Currency.of(currency).quantum
    total_days = Decimal((end - start).days)
    parts: dict[date, Decimal] = {}
    months = months_between(start, end - timedelta(days=1))
    left = amount
    with localcontext(EXACT):
        for month in months[:-1]:
            days = (add_months(month, 1) - max(month, start)).days
            part = (amount * days / total_days).quantize(quantum, rounding=ROUND_HALF_UP)
            parts[month] = part
            left -= part
    parts[months[-1]] = left
    return parts


def mrr_by_customer(books: Books) -> dict[tuple[str, str], dict[date, Decimal]]:
    """Recurring revenue of each ``(customer, currency)`` per month: every recurring line of a
    counted invoice :func:`spread` over its service period, less what credit notes gave back of
    recurring lines (spread over the credited line's period). A line without a period falls in
    the month of its document's issue date, so nothing recurring is ever left out."""
    result: dict[tuple[str, str], dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def add(customer: str, currency: str, issued: date, line: LineFact, sign: int) -> None:
        if line.recurring:
            start = line.period_start or issued
            for month, part in spread(sign * line.net, currency, start, line.period_end).items():
                result[customer, currency][month] += part

    for invoice in books.counted_invoices:
        for line in invoice.lines:
            add(invoice.customer_id, invoice.currency, invoice.issue_date, line, 1)
    for note in books.counted_credit_notes:
        for line in note.lines:
            add(note.customer_id, note.currency, note.issue_date, line, -1)
    return {key: dict(months) for key, months in result.items()}


@dataclass(frozen=True, slots=True)
class MrrMonth:
    """MRR of one month in one currency and how it moved from the month before.

    ``opening + new + reactivation + expansion - contraction - churn == closing`` always.
    """

    month: date
    currency: str
    opening: Decimal
    new: Decimal
    reactivation: Decimal
    expansion: Decimal
    contraction: Decimal
    churn: Decimal
    closing: Decimal
    customers: int

    @property
    def arr(self) -> Decimal:
        return self.closing * 12


def mrr(books: Books, months: Sequence[date]) -> list[MrrMonth]:
    """MRR per month and currency over ``months`` (consecutive, ascending), with the movements of
    each ``(customer, currency)`` between a month and the one before it:

    - new: from 0 (or less) to more than 0, never above 0 in any earlier month;
    - reactivation: the same, after having been above 0 in an earlier month;
    - churn: from above 0 to 0 (or less);
    - expansion / contraction: any other rise / fall.
    """
    by_customer = mrr_by_customer(books)
    currencies = sorted({currency for _, currency in by_customer})
    rows: list[MrrMonth] = []
    for month in months:
        previous = add_months(month, -1)
        for currency in currencies:
            moves: dict[str, Decimal] = defaultdict(Decimal)
            opening = closing = ZERO
            customers = 0
            for (_, cur), series in by_customer.items():
                if cur != currency:
                    continue
                before, now = series.get(previous, ZERO), series.get(month, ZERO)
                opening += before
                closing += now
                customers += now > 0
                if now > 0 >= before:
                    earlier = any(m < previous and v > 0 for m, v in series.items())
                    moves["reactivation" if earlier else "new"] += now - before
                elif before > 0 >= now:
                    moves["churn"] += before - now
                elif now > before:
                    moves["expansion"] += now - before
                else:
                    moves["contraction"] += before - now
            rows.append(
                MrrMonth(
                    month,
                    currency,
                    opening,
                    moves["new"],
                    moves["reactivation"],
                    moves["expansion"],
                    moves["contraction"],
                    moves["churn"],
                    closing,
                    customers,
                )
            )
    return rows


# --------------------------------------------------------------------------------------------
# revenue and collections


@dataclass(frozen=True, slots=True)
class RevenueRow:
    """Net revenue (after discounts, without tax) of one product and billing model in a currency:
    what was invoiced less what credit notes gave back."""

    currency: str
    product: str
    model: str
    invoiced: Decimal
    credited: Decimal

    @property
    def net(self) -> Decimal:
        return self.invoiced - self.credited


def revenue(books: Books, start: date, end: date) -> list[RevenueRow]:
    """Revenue by product and billing model of invoices issued from ``start`` to ``end`` (both
    included), less credit notes issued in the same days; sorted by currency, net desc, product."""
    totals: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])

    def add(currency: str, lines: Iterable[LineFact], column: int) -> None:
        for line in lines:
            totals[currency, line.product, billing_model(line.kind, line.model)][column] += line.net

    for invoice in books.counted_invoices:
        if start <= invoice.issue_date <= end:
            add(invoice.currency, invoice.lines, 0)
    for note in books.counted_credit_notes:
        if start <= note.issue_date <= end:
            add(note.currency, note.lines, 1)
    rows = [RevenueRow(c, p, m, invoiced, credited) for (c, p, m), (invoiced, credited) in totals.items()]
    return sorted(rows, key=lambda r: (r.currency, -r.net, r.product, r.model))


@dataclass(frozen=True, slots=True)
class CollectionMonth:
    """What was invoiced (totals with tax) and collected (cash received) in a month and currency."""

    month: date
    currency: str
    invoiced: Decimal
    credited: Decimal
    collected: Decimal
    refunded: Decimal

    @property
    def net_invoiced(self) -> Decimal:
        return self.invoiced - self.credited

    @property
    def net_collected(self) -> Decimal:
        return self.collected - self.refunded


def invoiced_vs_collected(books: Books, months: Sequence[date]) -> list[CollectionMonth]:
    """Per month and currency: invoice totals by issue date, credit note totals by issue date,
    cash payments by the day received and refunds by the day refunded. Credit notes' receipts
    are not cash and count only as *credited*."""
    wanted = set(months)
    sums: dict[tuple[date, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO, ZERO])
    facts: list[tuple[date, str, int, Decimal]] = [
        *((i.issue_date, i.currency, 0, i.total) for i in books.counted_invoices),
        *((n.issue_date, n.currency, 1, n.total) for n in books.counted_credit_notes),
        *((p.received_on, p.currency, 2, p.amount) for p in books.cash_payments),
        *((r.refunded_on, r.currency, 3, r.amount) for r in books.refunds),
    ]
    currencies: set[str] = set()
    for day, currency, column, amount in facts:
        currencies.add(currency)
        if month_of(day) in wanted:
            sums[month_of(day), currency][column] += amount
    return [
        CollectionMonth(month, currency, *sums[month, currency])
        for month in months
        for currency in sorted(currencies)
    ]


# --------------------------------------------------------------------------------------------
# receivables


def outstanding(books: Books, as_of: date) -> dict[str, Decimal]:
    """What is still due on ``as_of`` of each counted, collectible invoice issued by then: its
    total less the allocations (payments and credit notes) applied on or before ``as_of``.
    Uncollectible invoices are written off and not receivables; paid ones are left out."""
    applied: dict[str, Decimal] = defaultdict(Decimal)
    for allocation in books.allocations:
        if allocation.applied_on <= as_of:
            applied[allocation.invoice_id] += allocation.amount
    due: dict[str, Decimal] = {}
    for invoice in books.counted_invoices:
        if invoice.status != "uncollectible" and invoice.issue_date <= as_of:
            left = invoice.total - applied[invoice.id]
            if left > 0:
                due[invoice.id] = left
    return due


def _bucket(days_past_due: int) -> str:
    for name, last in zip(AGEING_BUCKETS, _BUCKET_LAST_DAYS, strict=False):
        if days_past_due <= last:
            return name
    return AGEING_BUCKETS[-1]


@dataclass(frozen=True, slots=True)
class AgeingRow:
    """Receivables of one currency on a day by days past due: ``buckets`` in the order of
    :data:`AGEING_BUCKETS`, with the number of invoices in each."""

    currency: str
    buckets: dict[str, Decimal]
    invoices: dict[str, int]

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), ZERO)


def ageing(books: Books, as_of: date) -> list[AgeingRow]:
    """Receivables ageing per currency on ``as_of``: each invoice's :func:`outstanding` amount in
    the bucket of its days past due (``as_of - due_date``; 0 or less is *current*)."""
    due = outstanding(books, as_of)
    rows: dict[str, AgeingRow] = {}
    for invoice in books.counted_invoices:
        if invoice.id not in due:
            continue
        row = rows.get(invoice.currency)
        if row is None:
            row = rows[invoice.currency] = AgeingRow(
                invoice.currency, dict.fromkeys(AGEING_BUCKETS, ZERO), dict.fromkeys(AGEING_BUCKETS, 0)
            )
        name = _bucket((as_of - invoice.due_date).days)
        row.buckets[name] += due[invoice.id]
        row.invoices[name] += 1
    return [rows[currency] for currency in sorted(rows)]


@dataclass(frozen=True, slots=True)
class DsoRow:
    """DSO of one currency at the end of a month (or ``as_of``): ``receivables`` / ``sales`` x
    ``days``; None when nothing was sold in the window."""

    month: date
    currency: str
    on: date
    receivables: Decimal
    sales: Decimal
    days: int
    dso: Decimal | None


def dso(books: Books, months: Sequence[date], as_of: date, window_days: int = 90) -> list[DsoRow]:
    """Days sales outstanding per month and currency, measured on the month's last day (``as_of``
    for its own month; months after it are left out): receivables then (:func:`outstanding`) over
    the net credit sales (invoice totals less credit notes) of the ``window_days`` days ending
    then, times ``window_days``."""
    currencies = sorted({i.currency for i in books.counted_invoices})
    rows: list[DsoRow] = []
    for month in months:
        if month > as_of:
            continue
        on = min(_month_end(month), as_of)
        first = on - timedelta(days=window_days - 1)
        due = outstanding(books, on)
        for currency in currencies:
            receivables = sum(
                (due.get(i.id, ZERO) for i in books.counted_invoices if i.currency == currency), ZERO
            )
            sales = sum(
                (
                    i.total
                    for i in books.counted_invoices
                    if i.currency == currency and first <= i.issue_date <= on
                ),
                ZERO,
            ) - sum(
                (
                    n.total
                    for n in books.counted_credit_notes
                    if n.currency == currency and first <= n.issue_date <= on
                ),
                ZERO,
            )
            value = _ratio(receivables * window_days, sales) if sales > 0 else None
            rows.append(DsoRow(month, currency, on, receivables, sales, window_days, value))
    return rows


@dataclass(frozen=True, slots=True)
class OverdueRow:
    """A customer's overdue receivables in one currency on a day."""

    currency: str
    customer_id: str
    overdue: Decimal
    invoices: int
    oldest_days_past_due: int


def top_overdue(books: Books, as_of: date, limit: int = 10) -> list[OverdueRow]:
    """The ``limit`` customers per currency with the most :func:`outstanding` past its due date on
    ``as_of``; sorted by currency, amount desc, customer."""
    due = outstanding(books, as_of)
    found: dict[tuple[str, str], list[Decimal | int]] = {}
    for invoice in books.counted_invoices:
        late = (as_of - invoice.due_date).days
        if invoice.id in due and late > 0:
            entry = found.setdefault((invoice.currency, invoice.customer_id), [ZERO, 0, 0])
            entry[0] += due[invoice.id]
            entry[1] += 1
            entry[2] = max(int(entry[2]), late)
    rows = sorted(
        (
            OverdueRow(c, customer, Decimal(a), int(n), int(days))
            for (c, customer), (a, n, days) in found.items()
        ),
        key=lambda r: (r.currency, -r.overdue, r.customer_id),
    )
    kept: dict[str, int] = defaultdict(int)
    result: list[OverdueRow] = []
    for row in rows:
        kept[row.currency] += 1
        if kept[row.currency] <= limit:
            result.append(row)
    return result


# --------------------------------------------------------------------------------------------
# payment behaviour


@dataclass(frozen=True, slots=True)
class _Paid:
    customer_id: str
    paid_on: date
    days: int  # paid on - issue date
    late: int  # paid on - due date


def _paid_invoices(books: Books, start: date, end: date) -> list[_Paid]:
    """Invoices paid from ``start`` to ``end`` with at least some cash (not only credit notes)."""
    cash = {p.id for p in books.cash_payments}
    with_cash = {a.invoice_id for a in books.allocations if a.payment_id in cash}
    return [
        _Paid(i.customer_id, i.paid_on, (i.paid_on - i.issue_date).days, (i.paid_on - i.due_date).days)
        for i in books.counted_invoices
        if i.paid_on is not None and start <= i.paid_on <= end and i.total > 0 and i.id in with_cash
    ]


@dataclass(frozen=True, slots=True)
class CustomerDaysToPay:
    """How long one customer takes to pay: means over the invoices paid in the window, and the
    ``trend``, the mean of the last ``recent_months`` less that of the months before them
    (negative: paying faster); None where there is nothing to compare."""

    customer_id: str
    invoices_paid: int
    average_days_to_pay: Decimal
    average_days_late: Decimal
    recent_average: Decimal | None
    previous_average: Decimal | None

    @property
    def trend(self) -> Decimal | None:
        if self.recent_average is None or self.previous_average is None:
            return None
        return self.recent_average - self.previous_average


def days_to_pay(books: Books, start: date, end: date, recent_months: int = 3) -> list[CustomerDaysToPay]:
    """Per customer, over the invoices paid from ``start`` to ``end`` (:func:`_paid_invoices`):
    days to pay = paid on - issue date, days late = paid on - due date (negative: early). The
    recent window is the last ``recent_months`` calendar months up to ``end``, the previous one the
    same number of months before it. Sorted by average days to pay desc, then customer."""
    split = add_months(month_of(end), 1 - recent_months)
    before = add_months(split, -recent_months)
    per_customer: dict[str, list[_Paid]] = defaultdict(list)
    for paid in _paid_invoices(books, start, end):
        per_customer[paid.customer_id].append(paid)
    rows: list[CustomerDaysToPay] = []
    for customer, invoices in per_customer.items():
        rows.append(
            CustomerDaysToPay(
                customer,
                len(invoices),
                _ratio(Decimal(sum(p.days for p in invoices)), Decimal(len(invoices))),
                _ratio(Decimal(sum(p.late for p in invoices)), Decimal(len(invoices))),
                _mean([p.days for p in invoices if p.paid_on >= split]),
                _mean([p.days for p in invoices if before <= p.paid_on < split]),
            )
        )
    return sorted(rows, key=lambda r: (-r.average_days_to_pay, r.customer_id))


@dataclass(frozen=True, slots=True)
class DaysToPayMonth:
    """The mean days to pay of the invoices paid in a month (all customers; None if none)."""

    month: date
    invoices_paid: int
    average_days_to_pay: Decimal | None


def average_days_to_pay(books: Books, start: date, end: date) -> DaysToPayMonth:
    """The mean days to pay of all invoices paid from ``start`` to ``end`` (keyed by ``start``'s
    month)."""
    days = [p.days for p in _paid_invoices(books, start, end)]
    return DaysToPayMonth(month_of(start), len(days), _mean(days))


def days_to_pay_trend(books: Books, months: Sequence[date]) -> list[DaysToPayMonth]:
    """Mean days to pay per month of payment (the trend of :func:`days_to_pay`)."""
    return [average_days_to_pay(books, month, _month_end(month)) for month in months]


@dataclass(frozen=True, slots=True)
class MethodRow:
    """Cash received by one payment method in a currency, and its share of that currency's cash."""

    currency: str
    method: str
    payments: int
    amount: Decimal
    share: Decimal


def payment_methods(books: Books, start: date, end: date) -> list[MethodRow]:
    """The payment-method mix of cash received from ``start`` to ``end`` per currency (share of
    the amount, in percent); sorted by currency, amount desc, method."""
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for payment in books.cash_payments:
        if start <= payment.received_on <= end:
            entry = sums[payment.currency, payment.method]
            entry[0] += 1
            entry[1] += payment.amount
    per_currency: dict[str, Decimal] = defaultdict(Decimal)
    for (currency, _), (_, amount) in sums.items():
        per_currency[currency] += amount
    rows = [
        MethodRow(
            currency,
            method,
            int(count),
            amount,
            _percent(amount, per_currency[currency]) if per_currency[currency] else ZERO,
        )
        for (currency, method), (count, amount) in sums.items()
    ]
    return sorted(rows, key=lambda r: (r.currency, -r.amount, r.method))


# --------------------------------------------------------------------------------------------
# retention


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One monthly cohort: its size and how many of it were active ``k`` months later
    (``retained[k]``; ``retained[0] == customers``), up to the month of ``as_of``."""

    cohort: date
    customers: int
    retained: tuple[int, ...]

    @property
    def shares(self) -> tuple[Decimal, ...]:
        """``retained`` in percent of the cohort."""
        return tuple(_percent(n, self.customers) for n in self.retained)


def _active_months(books: Books) -> dict[str, set[date]]:
    active: dict[str, set[date]] = defaultdict(set)
    for invoice in books.counted_invoices:
        active[invoice.customer_id].add(month_of(invoice.issue_date))
    for (customer, _), series in mrr_by_customer(books).items():
        active[customer].update(month for month, value in series.items() if value > 0)
    return active


def retention(books: Books, months: Sequence[date], as_of: date) -> list[CohortRow]:
    """Retention of the cohorts of ``months`` (a customer's cohort is the month of its first
    counted invoice): a customer is active in a month when it has a counted invoice issued in it or
    MRR above 0 in it; offsets run up to the month of ``as_of``."""
    first: dict[str, date] = {}
    for invoice in sorted(books.counted_invoices, key=lambda i: i.issue_date):
        first.setdefault(invoice.customer_id, month_of(invoice.issue_date))
    active = _active_months(books)
    last = month_of(as_of)
    cohorts: defaultdict[date, list[str]] = defaultdict(list)
    for customer, month in first.items():
        cohorts[month].append(customer)
    rows: list[CohortRow] = []
    # only the months that have a cohort: a window of centuries costs no more than the data in it
    for cohort in sorted(set(months) & cohorts.keys()):
        if cohort > last:
            continue
        members = cohorts[cohort]
        offsets = (last.year - cohort.year) * 12 + last.month - cohort.month + 1
        retained = tuple(sum(add_months(cohort, k) in active[c] for c in members) for k in range(offsets))
        rows.append(CohortRow(cohort, len(members), retained))
    return rows
