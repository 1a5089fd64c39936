"""The billing run: from orders, the catalog and what was already billed, the invoices still missing.

It is a pure function of its inputs (``as_of`` stands in for the clock), so a preview is the same
call without saving, and re-running with the source keys it returned adds nothing. Every charge
carries a ``source_key`` naming exactly what it bills:

- ``order-line:<line id>`` for a one-time line, due on the order's effective date;
- ``sub:<line id>:<period start>`` for each period of a recurring line, billed in advance.

Recurring periods are anchored on the subscription start (the anniversary): period *n* starts
*n* intervals after the start, clamped to the month's last day, so Jan 31 gives Feb 28 (or 29),
then Mar 31 again; the day never drifts. A period is billed when its start is on or before
``as_of`` and before the order's end date. A period that runs past the end date is billed in full:
there is no proration yet.

Bad input (unknown product, unpriced currency, missing customer, ...) becomes a ``BillingProblem``
for that order or line and the run goes on with the rest.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from billing.catalog import Catalog, Product, UnknownProductError
from billing.model import Customer, Invoice, InvoiceLine, Order, OrderLine
from billing.money import Currency, Money, UnknownCurrencyError

__all__ = ["BillingProblem", "BillingResult", "add_months", "billing_run"]


@dataclass(frozen=True, slots=True)
class BillingProblem:
    """Why an order (``line_id`` None) or one of its lines was not billed in this run."""

    order_id: str
    line_id: str | None
    message: str


@dataclass(frozen=True, slots=True)
class BillingResult:
    """Invoices sorted by (customer, currency) and the problems in input order."""

    invoices: list[Invoice]
    problems: list[BillingProblem]

    @property
    def source_keys(self) -> frozenset[str]:
        """Every charge billed by this result; pass them as ``already_billed`` next time."""
        return frozenset(key for invoice in self.invoices for key in invoice.source_keys)


class _LineProblem(Exception):
    """Internal: the line cannot be billed; the message goes into a BillingProblem."""


def add_months(anchor: date, months: int) -> date:
    """``anchor`` moved by ``months``, on the same day or the month's last day if that is shorter."""
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return date(year, month0 + 1, day)


def _periods(start: date, months: int, as_of: date, end: date | None) -> Iterator[tuple[date, date]]:
    """The in-advance periods (start, exclusive end) due by ``as_of``, all computed from ``start``."""
    n = 0
    while True:
        period_start = add_months(start, n * months)
        if period_start > as_of or (end is not None and period_start >= end):
            return
        n += 1
        yield period_start, add_months(start, n * months)


def _product(catalog: Catalog, line: OrderLine) -> Product:
    try:
        return catalog.get(line.product_code)
    except UnknownProductError:
        raise _LineProblem(f"unknown product code {line.product_code!r}") from None


def _unit_price(line: OrderLine, product: Product, currency: Currency) -> Money:
    if line.unit_price is not None:
        if not line.unit_price.is_finite() or line.unit_price < 0:
            raise _LineProblem(f"negotiated unit_price must be a finite amount >= 0, got {line.unit_price}")
        return Money(line.unit_price, currency)
    listed = product.price.amount_for(currency)
    if listed is None:
        priced = ", ".join(sorted(product.price.amounts)) or "none"
        raise _LineProblem(
            f"product {product.code!r} has no {currency.code} price in the catalog (priced in: {priced}) "
            "and the order line has no negotiated unit_price"
        )
    return listed


def _line_charges(
    order: Order, line: OrderLine, catalog: Catalog, currency: Currency, as_of: date
) -> list[InvoiceLine]:
    """Every charge of ``line`` due by ``as_of`` (already-billed ones included; the caller filters)."""
    if not line.quantity.is_finite() or line.quantity <= 0:
        raise _LineProblem(f"quantity must be a positive number, got {line.quantity}")
    product = _product(catalog, line)
    unit_price = _unit_price(line, product, currency)
    try:
        amount = (unit_price * line.quantity).rounded()
    except ArithmeticError:  # decimal.InvalidOperation: an absurd magnitude such as 1E+60
        raise _LineProblem(f"amount {unit_price.amount} x {line.quantity} is too large to invoice") from None
    description = line.description or product.name

    def charge(source_key: str, start: date | None, end: date | None) -> InvoiceLine:
        return InvoiceLine(
            source_key=source_key,
            product_code=product.code,
            description=description,
            quantity=line.quantity,
            unit_price=unit_price,
            amount=amount,
            period_start=start,
            period_end=end,
        )

    if product.price.billing_model == "one_time":
        return [charge(f"order-line:{line.id}", None, None)]
    return [
        charge(f"sub:{line.id}:{start.isoformat()}", start, end)
        for start, end in _periods(order.effective_date, product.price.months, as_of, order.end_date)
    ]


def _invoice_key(customer_id: str, currency: Currency, as_of: date, source_keys: list[str]) -> str:
    """Deterministic, so the same run yields the same key (the outbox uses it for idempotency)."""
    payload = json.dumps(
        [customer_id, currency.code, as_of.isoformat(), sorted(source_keys)], separators=(",", ":")
    )
    return "inv-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def _invoice(
    customer: Customer, customer_id: str, currency: Currency, as_of: date, lines: list[InvoiceLine]
) -> Invoice:
    lines = sorted(lines, key=lambda line: line.source_key)
    starts = [line.period_start or as_of for line in lines]
    ends = [line.period_end or as_of for line in lines]
    return Invoice(
        key=_invoice_key(customer_id, currency, as_of, [line.source_key for line in lines]),
        customer_id=customer_id,
        currency=currency,
        issue_date=as_of,
        due_date=as_of + timedelta(days=customer.payment_terms_days),
        period_start=min(starts),
        period_end=max(ends),
        lines=tuple(lines),
    )


def billing_run(
    *,
    orders: Iterable[Order],
    customers: Mapping[str, Customer],
    catalog: Catalog,
    already_billed: Collection[str],
    as_of: date,
) -> BillingResult:
    """The invoices due by ``as_of`` that are not yet billed: one per (customer, currency).

    Orders effective after ``as_of`` are not looked at yet. Charges whose source key is in
    ``already_billed`` are skipped, so running twice with the first result's keys adds nothing.
    """
    billed = frozenset(already_billed)
    problems: list[BillingProblem] = []
    line_owner: dict[str, str] = {}
    groups: defaultdict[tuple[str, Currency], list[InvoiceLine]] = defaultdict(list)

    for order in orders:
        if order.effective_date > as_of:
            continue
        customer = customers.get(order.customer_id)
        if customer is None:
            problems.append(BillingProblem(order.id, None, f"customer {order.customer_id!r} not found"))
            continue
        try:
            currency = Currency.of(order.currency)
        except UnknownCurrencyError as exc:
            problems.append(BillingProblem(order.id, None, str(exc)))
            continue
        if order.end_date is not None and order.end_date < order.effective_date:
            problems.append(
                BillingProblem(
                    order.id,
                    None,
                    f"end_date {order.end_date} is before effective_date {order.effective_date}",
                )
            )
            continue
        for line in order.lines:
            if line.id in line_owner:
                problems.append(
                    BillingProblem(
                        order.id,
                        line.id,
                        f"duplicate order line id {line.id!r} (already on order {line_owner[line.id]!r}); "
                        "line ids name the charges, so they must be unique",
                    )
                )
                continue
            line_owner[line.id] = order.id
            try:
                charges = _line_charges(order, line, catalog, currency, as_of)
            except _LineProblem as exc:
                problems.append(BillingProblem(order.id, line.id, str(exc)))
                continue
            groups[(order.customer_id, currency)].extend(c for c in charges if c.source_key not in billed)

    invoices = [
        _invoice(customers[customer_id], customer_id, currency, as_of, lines)
        for (customer_id, currency), lines in sorted(
            groups.items(), key=lambda item: (item[0][0], item[0][1].code)
        )
        if lines
    ]
    return BillingResult(invoices=invoices, problems=problems)
