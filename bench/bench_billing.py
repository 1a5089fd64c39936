"""Billing speed: one monthly run over 100,000 subscriptions, in memory, on one core.

The workload: 50,000 customers (bill-cycle days 1-28, a third of them in EUR), each with two
subscriptions started this month (a monthly plan and per-seat add-ons, some with a leading
proration, some discounted, all taxed at 20 %), so the run prices 100,000 lines onto 50,000+
invoices with their explanations. The baseline, timed in the same run, is a bare loop doing only
the arithmetic of the same lines (amount x quantity, rounding, tax): what no billing engine can beat.

Goal (issue 4): at most 10 s. Run: ``.venv/bin/python -m bench.bench_billing`` (prints its results as JSON); ``make bench`` runs it with the others.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from bench.common import Result, emit
from billing import Customer, Discount, PriceSpec, Subscription, TaxRate, generate
from billing.money import Currency

AS_OF = date(2024, 12, 31)
GOAL_SECONDS = 10.0


def workload(n: int) -> tuple[list[Customer], list[PriceSpec], list[Subscription]]:
    prices = [
        PriceSpec(f"plan-{tier}", Currency.of(code), "recurring", Decimal(amount) * (tier + 1), interval="month", tax="vat")
        for tier in range(5)
        for code, amount in (("USD", "49.90"), ("EUR", "45.00"))
    ] + [
        PriceSpec("seat", Currency.of(code), "recurring", Decimal(amount), interval="month", tax="vat")
        for code, amount in (("USD", "12.50"), ("EUR", "11.50"))
    ]  # fmt: skip
    customers = [
        Customer(f"c{i}", "EUR" if i % 3 == 0 else "USD", bill_cycle_day=1 + i % 28 if i % 2 else None)
        for i in range(n // 2)
    ]
    subscriptions: list[Subscription] = []
    for i, customer in enumerate(customers):
        start = date(2024, 12, 1) + timedelta(days=i % 28)
        subscriptions.append(Subscription(f"s{i}a", customer.id, f"plan-{i % 5}", start))
        subscriptions.append(
            Subscription(
                f"s{i}b",
                customer.id,
                "seat",
                start,
                quantity=Decimal(1 + i % 20),
                discounts=("annual10",) if i % 4 == 0 else (),
            )
        )
    return customers, prices, subscriptions


def baseline(subscriptions: list[Subscription], prices: list[PriceSpec]) -> float:
    """The arithmetic alone: amount x quantity rounded, 20 % tax rounded, summed per subscription."""
    amounts = {p.id: p.amount for p in prices}
    cent, rate = Decimal("0.01"), Decimal("0.2")
    start = time.perf_counter()
    total = Decimal(0)
    for sub in subscriptions:
        amount = (amounts[sub.price] * sub.quantity).quantize(cent, ROUND_HALF_UP)
        total += amount + (amount * rate).quantize(cent, ROUND_HALF_UP)
    assert total > 0
    return time.perf_counter() - start


def run(n: int = 100_000) -> list[Result]:
    customers, prices, subscriptions = workload(n)
    start = time.perf_counter()
    result = generate(
        as_of=AS_OF,
        customers=customers,
        prices=prices,
        subscriptions=subscriptions,
        taxes=[TaxRate("vat", Decimal(20))],
        discounts=[Discount("annual10", "percent", Decimal(10), "forever")],
    )
    seconds = time.perf_counter() - start
    assert not result.problems, result.problems[:3]
    lines = sum(len(invoice.lines) for invoice in result.invoices)
    assert lines == n, lines
    floor = baseline(subscriptions, prices)
    return [
        {
            "name": f"billing: one run over {n:,} subscriptions in memory (seconds)",
            "goal": f"<= {GOAL_SECONDS:g}",
            "measured": round(seconds, 2),
            "baseline": round(floor, 3),
            "unit": "s (baseline: the bare arithmetic of the same lines)",
            "pass": seconds <= GOAL_SECONDS,
        },
        {
            "name": "billing: invoices/s on one core",
            "goal": f">= {len(result.invoices) / GOAL_SECONDS:.0f}",
            "measured": round(len(result.invoices) / seconds),
            "baseline": round(len(result.invoices) / floor),
            "unit": f"invoices/s ({len(result.invoices):,} invoices, {lines:,} lines)",
            "pass": seconds <= GOAL_SECONDS,
        },
    ]


if __name__ == "__main__":
    emit(run())
