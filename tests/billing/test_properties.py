"""Invariants that must hold for any input (hypothesis), not just the examples we thought of."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal as D
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.discounts import Discount
from billing.engine import BillingSettings, Change, GenerationResult, Subscription, generate
from billing.model import Customer, Order, OrderLine
from billing.money import Currency, Money
from billing.pricing import PriceSpec
from billing.tax import TaxRate

USD = Currency.of("USD")
START = date(2024, 1, 1)
AS_OF = date(2024, 9, 1)

amounts = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=3)
prices = st.builds(
    lambda i, amount, interval, count, billing, proration, tax: PriceSpec(
        f"p{i}", USD, "recurring", amount, interval=interval, interval_count=count,
        billing=billing, proration=proration, tax=tax,
    ),
    st.integers(0, 2), amounts, st.sampled_from(["day", "week", "month", "quarter", "year"]), st.integers(1, 3).map(lambda n: n),
    st.sampled_from(["in_advance", "in_arrears"]), st.sampled_from(["actual_days", "thirty_day_months", "seconds", "none"]),
    st.sampled_from([None, "vat", "incl"]),
)  # fmt: skip
changes = st.builds(
    lambda offset, price, quantity, cancel, deferred: (offset, Change(
        START, price=price, quantity=quantity, cancel=cancel, at_period_end=deferred
    )),
    st.integers(0, 200), st.sampled_from([None, "p0", "p1", "p2"]), st.sampled_from([None, D(1), D(2), D("2.5")]),
    st.booleans(), st.booleans(),
).filter(lambda c: c[1].cancel or c[1].price is not None or c[1].quantity is not None)  # fmt: skip


def subscription(
    i: int, price: str, quantity: D, anchor: Any, trial: int | None, end: int | None,
    chs: list[tuple[int, Change]], discounted: bool,
) -> Subscription:  # fmt: skip
    start = START + timedelta(days=i * 7)
    return Subscription(
        f"s{i}", "c", price, start, quantity=quantity, anchor=anchor,
        trial_end=None if trial is None else start + timedelta(days=trial),
        end=None if end is None else start + timedelta(days=end),
        changes=tuple(replace(c, date=start + timedelta(days=offset)) for offset, c in chs),
        discounts=("half", "five") if discounted else (),
    )  # fmt: skip


subscriptions = st.builds(
    subscription,
    st.integers(0, 3), st.sampled_from(["p0", "p1", "p2"]), st.sampled_from([D(1), D(3), D("0.5")]),
    st.one_of(st.none(), st.sampled_from(["anniversary", "calendar"]), st.integers(1, 31)),
    st.one_of(st.none(), st.integers(1, 40)), st.one_of(st.none(), st.integers(41, 300)),
    st.lists(changes, max_size=3), st.booleans(),
)  # fmt: skip


def price_book(drawn: list[PriceSpec]) -> list[PriceSpec]:
    """One price per id (hypothesis may draw an id twice); every id exists."""
    by_id = {p.id: p for p in drawn}
    for i in range(3):
        by_id.setdefault(f"p{i}", PriceSpec(f"p{i}", USD, "recurring", D(10), interval="month"))
    return list(by_id.values())


def run(
    book: list[PriceSpec], subs: list[Subscription], as_of: date = AS_OF, **kwargs: Any
) -> GenerationResult:
    unique = list({s.id: s for s in subs}.values())
    return generate(
        as_of=as_of, customers=[Customer("c", "USD", bill_cycle_day=15)], prices=book, subscriptions=unique,
        taxes=[TaxRate("vat", D(20)), TaxRate("incl", D("7.7"), inclusive=True)],
        discounts=[Discount("half", "percent", D(50), "repeating", 2), Discount("five", "amount", D(5), "forever", currency="USD")],
        **kwargs,
    )  # fmt: skip


SETTINGS = settings(max_examples=int(os.environ.get("BILLING_EXAMPLES", "60")), deadline=None)


@SETTINGS
@given(
    st.lists(prices, min_size=1, max_size=3),
    st.lists(subscriptions, min_size=1, max_size=3),
    st.sampled_from(["per_line", "per_invoice"]),
)
def test_totals_equal_the_sum_of_the_lines(
    book: list[PriceSpec], subs: list[Subscription], rounding: Any
) -> None:
    result = run(price_book(book), subs, settings=BillingSettings(tax_rounding=rounding))
    assert result.problems == []
    for inv in result.invoices:
        zero = Money.zero(USD)
        lines_total = sum((ln.discounted_amount for ln in inv.lines), zero)
        exclusive = sum((ln.tax_amount for ln in inv.lines if ln.tax_amount and not ln.tax_inclusive), zero)
        taxes = sum((ln.tax_amount for ln in inv.lines if ln.tax_amount), zero)
        assert inv.total == lines_total + exclusive
        assert inv.tax_total == taxes == sum((t.amount for t in inv.tax_lines), zero)
        assert inv.net_total == sum((ln.net_amount for ln in inv.lines), zero)
        totals = inv.totals()  # what a billing run stores: the same four totals, taken at once
        assert (totals.subtotal, totals.discount_total, totals.tax_total, totals.total) == (
            inv.subtotal,
            inv.discount_total,
            inv.tax_total,
            lines_total + exclusive,
        )
        assert all(
            ln.amount.is_rounded and (ln.tax_amount is None or ln.tax_amount.is_rounded) for ln in inv.lines
        )
        assert all(abs(ln.discounted_amount.amount) <= abs(ln.amount.amount) for ln in inv.lines)


@SETTINGS
@given(st.lists(prices, min_size=1, max_size=3), st.lists(subscriptions, min_size=1, max_size=3))
def test_proration_credits_never_exceed_what_was_billed_for_the_period(
    book: list[PriceSpec], subs: list[Subscription]
) -> None:
    result = run(price_book(book), subs)
    charged: defaultdict[str, Money] = defaultdict(lambda: Money.zero(USD))
    credited: defaultdict[str, Money] = defaultdict(lambda: Money.zero(USD))
    for inv in result.invoices:
        for ln in inv.lines:
            period = ":".join(ln.source_key.split(":")[:3])  # sub:<id>:<period start>
            target = credited if ":credit:" in ln.source_key else charged
            target[period] = target[period] + ln.discounted_amount
    for period, credit in credited.items():
        assert credit.amount <= 0
        assert -credit <= charged[period], period


@SETTINGS
@given(
    st.lists(prices, min_size=1, max_size=3),
    st.lists(subscriptions, min_size=1, max_size=3),
    st.lists(st.integers(0, (AS_OF - START).days), max_size=3),  # catch-up runs never pass AS_OF
)
def test_rerunning_adds_nothing_and_catching_up_in_steps_bills_the_same(
    book: list[PriceSpec], subs: list[Subscription], steps: list[int]
) -> None:
    book = price_book(book)
    once = run(book, subs)
    assert run(book, subs, existing_invoices=once.invoices).invoices == []
    seen: list[Any] = []
    for offset in sorted(steps):
        seen.extend(run(book, subs, as_of=START + timedelta(days=offset), existing_invoices=seen).invoices)
    seen.extend(run(book, subs, existing_invoices=seen).invoices)

    def lines(invoices: list[Any]) -> set[tuple[str, str, str]]:
        return {(ln.source_key, str(ln.amount), str(ln.tax_amount)) for inv in invoices for ln in inv.lines}

    assert lines(seen) == lines(once.invoices)
    assert len(lines(once.invoices)) == sum(len(inv.lines) for inv in once.invoices)  # keys are unique


@settings(max_examples=300, deadline=None)
@given(
    amounts,
    st.integers(1, 36),
    st.sampled_from(["USD", "JPY", "KWD"]),
    st.one_of(st.none(), st.lists(st.integers(1, 50), min_size=1, max_size=6)),
)
def test_installments_add_up_to_the_total(
    amount: D, count: int, code: str, weights: list[int] | None
) -> None:
    currency = Currency.of(code)
    schedule: tuple[D, ...] = ()
    if weights is not None:
        count = len(weights)
        raw = [D(w) * 100 / sum(weights) for w in weights]
        schedule = tuple(r.quantize(D("0.01")) for r in raw[:-1])
        schedule += (100 - sum(schedule),)
        if schedule[-1] <= 0:
            schedule, count = (), len(weights)
    price = PriceSpec(
        "x", currency, "installment", amount, interval="month", installments=count, schedule=schedule
    )
    order = Order("o", "c", code, date(2024, 1, 31), None, (OrderLine("l", "x", D(1), None),))
    result = generate(as_of=date(2030, 1, 1), customers=[Customer("c", code)], prices=[price], orders=[order])
    parts = [ln.amount for inv in result.invoices for ln in inv.lines]
    assert len(parts) == count and all(p.is_rounded and p.amount >= 0 for p in parts)
    assert sum((p for p in parts), Money.zero(currency)) == Money(amount, currency).rounded()
