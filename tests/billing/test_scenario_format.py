"""The scenario format: defaults, every key, and one clear problem per mistake (all at once)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest
import yaml

from billing.scenario import ScenarioError, invoices_json, parse_scenario, run_scenario

BASE = """
as_of: 2024-03-01
currency: USD
prices: [{id: p, model: recurring, amount: "10", interval: month}]
customers: [{id: c}]
"""


def scenario(extra: str = "", **replace: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(BASE + extra)
    data.update(replace)
    return data


def problems(data: object) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    assert str(caught.value).startswith("invalid scenario: ")
    return list(caught.value.problems)


def test_every_key_is_read() -> None:
    parsed = parse_scenario(
        scenario(
            """
description: all keys
series: {prefix: "F-", width: 3}
settings: {tax_rounding: per_invoice, line_rounding: half_even, grouping: customer}
taxes: [{id: vat, rate: "20", inclusive: true, name: VAT, jurisdiction: FR, tax_code: std}]
discounts:
  - {id: d1, kind: amount, value: "5", duration: repeating, periods: 2, prices: [p]}
  - {id: d2, kind: percent, value: "10", duration: forever}
subscriptions:
  - {id: s, customer: c, price: p, quantity: "2", start: 2024-01-01, end: "2025-01-01", trial_days: 14,
     anchor: calendar, discounts: [d1], unit_amount: "9", currency: USD, description: Deal,
     changes: [{date: 2024-02-10, quantity: 3, at_period_end: true}]}
  - {customer: c, price: p, start: 2024-01-01, trial_end: 2024-01-05, anchor: 15}
orders: [{id: o, customer: c, date: 2024-01-01, end_date: 2024-06-01, currency: USD, discounts: [d2],
          lines: [{id: l, price: p, quantity: 2, unit_amount: "8", description: Order line}]}]
usage: [{customer: c, price: p, quantity: "2.5", timestamp: 2024-01-05T10:00:00+02:00, value: 7, id: e1},
        {customer: c, price: p, timestamp: 2024-01-06}]
"""
        )
    )
    assert parsed.series.format(1) == "F-001"
    assert (parsed.settings.tax_rounding, parsed.settings.line_rounding, parsed.settings.grouping) == (
        "per_invoice",
        "half_even",
        "customer",
    )
    (tax,) = parsed.taxes
    assert (tax.rate, tax.inclusive, tax.name, tax.jurisdiction, tax.tax_code) == (
        D(20),
        True,
        "VAT",
        "FR",
        "std",
    )
    assert parsed.discounts[0].currency == "USD" and parsed.discounts[0].prices == {"p"}
    first, second = parsed.subscriptions
    assert (first.trial_end, first.anchor, first.unit_amount, first.changes[0].at_period_end) == (
        date(2024, 1, 15),
        "calendar",
        D(9),
        True,
    )
    assert (second.id, second.anchor, second.trial_end) == ("sub-2", 15, date(2024, 1, 5))
    assert parsed.orders[0].lines[0].unit_price == D(8) and parsed.orders[0].discounts == ("d2",)
    assert parsed.usage[0].timestamp == datetime(2024, 1, 5, 8, tzinfo=UTC) and parsed.usage[0].value == "7"
    assert parsed.usage[1].timestamp == datetime(2024, 1, 6, tzinfo=UTC)


def test_defaults_give_ids_and_the_scenario_currency() -> None:
    parsed = parse_scenario(
        scenario("orders: [{customer: c, date: 2024-01-01, lines: [{price: p}, {price: p}]}]\n")
    )
    assert [line.id for line in parsed.orders[0].lines] == ["order-1-1", "order-1-2"]
    assert parsed.orders[0].currency == "USD" and parsed.customers[0].currency == "USD"
    assert parsed.series.format(1) == "INV-000001" and parsed.prices[0].currency.code == "USD"


def test_a_price_in_another_currency_and_customers_billed_in_it() -> None:
    data = scenario(
        "customers: [{id: c, currency: EUR}]\norders: [{customer: c, date: 2024-01-01, lines: [{price: one}]}]\n",
        prices=[
            {"id": "one", "model": "one_time", "amount": "5"},
            {"id": "one", "model": "one_time", "amount": "4", "currency": "EUR"},
        ],
    )
    invoices, _ = run_scenario(parse_scenario(data))
    out: Any = invoices_json(invoices)
    assert [(i["currency"], i["total"], i["number"]) for i in out["invoices"]] == [
        ("EUR", "4.00", "INV-000001")
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], ["<root>: expected a mapping with as_of, prices, customers..., got list"]),
        ({}, ["as_of: required", "currency: required", "prices: required, a list", "customers: required, a list"]),
        (scenario(bogus=1), ["bogus: unknown key; allowed: as_of, currency, customers, description, discounts, expect, orders, prices, series, settings, subscriptions, taxes, usage"]),
        (scenario(as_of="someday"), ["as_of: expected a date YYYY-MM-DD, got 'someday'"]),
        (scenario(as_of=datetime(2024, 1, 1)), ["as_of: expected a date (YYYY-MM-DD), got a timestamp 2024-01-01T00:00:00"]),
        (scenario(as_of=5), ["as_of: expected a date YYYY-MM-DD, got 5"]),
        (scenario(currency="XYZ"), ["currency: unknown currency 'XYZ'; use an ISO 4217 code such as USD"]),
        (scenario(settings=[1]), ["settings: expected a mapping, got list"]),
        (scenario(settings={"tax_rounding": "sometimes"}), ["settings.tax_rounding: must be one of per_line, per_invoice (got 'sometimes')"]),
        (scenario(series={"prefix": "has space"}), ["series: prefix 'has space' must start with a letter or digit and contain only letters, digits and / _ . -"]),
        (scenario(prices="p"), ["prices: expected a list, got str"]),
        (scenario(prices=["p"]), ["prices[0]: expected a mapping, got str"]),
        (scenario(prices=[{"id": "p"}]), ["prices[0].model: required"]),
        (scenario(prices=[{"id": "p", "model": "one_time", "amount": 1.5}]), ['prices[0].amount: 1.5 was read as a float, which cannot hold money exactly; quote it: "1.5"']),
        (scenario(prices=[{"id": "p", "model": "one_time", "amount": True}]), ['prices[0].amount: expected a quoted decimal such as "24.95", got bool']),
        (scenario(prices=[{"id": "p", "model": "one_time", "amount": "ten"}]), ["prices[0].amount: not a decimal number: 'ten'"]),
        (scenario(prices=[{"id": "p", "model": "one_time", "amount": "1e99"}]), ["prices[0].amount: not a usable amount: '1e99'"]),
        (scenario(prices=[{"id": "p", "model": "one_time", "interval_count": "2"}]), ["prices[0].interval_count: expected a whole number, got '2'"]),
        (scenario(prices=[{"id": "p", "model": "recurring"}]), ["prices[0].interval: a recurring price needs one of day, week, month, quarter, year (got None)"]),
        (scenario(prices=[{"id": "p", "model": "one_time", "colour": "red"}]), ["prices[0].colour: unknown key; allowed: aggregation, amount, billing, charge, currency, fixed_fee, free_amount, free_units, id, installments, interval, interval_count, minimum, model, name, package_rounding, package_size, proration, rate, schedule, tax, tax_code, tiers"]),
        (scenario(prices=[{"id": "p", "model": "usage", "charge": "volume", "tiers": [{"up_to": 5, "unit_amount": "1", "size": 2}, {"unit_amount": "1"}]}]), ["prices[0].tiers[0].size: unknown key; allowed: flat_amount, unit_amount, up_to"]),
        (scenario(prices=[{"id": "p", "model": "installment", "interval": "month", "installments": 2, "schedule": "50/50"}]), ["prices[0].schedule: expected a list, got str"]),
        (scenario(prices=[{"id": "p", "model": "one_time"}, {"id": "p", "model": "one_time"}]), ["prices[1].id: duplicate price 'p' in USD"]),
        (scenario(prices=[{"id": "p", "model": "one_time", "tax": "vat"}]), ["prices[0].tax: unknown tax rate 'vat'; defined: none"]),
        (scenario(prices=[{"id": " ", "model": "one_time"}]), ["prices[0].id: expected a non-empty string, got str"]),
        (scenario(taxes=[{"id": "t", "rate": "120"}]), ["taxes[0]: tax rate 't': rate must be a percentage from 0 to 100, got Decimal('120')"]),
        (scenario(taxes=[{"id": "t", "rate": "1", "inclusive": "yes"}]), ["taxes[0].inclusive: expected true or false, got 'yes'"]),
        (scenario(discounts=[{"id": "d", "value": "5", "duration": "repeating"}]), ["discounts[0]: a repeating discount needs periods >= 1, got None"]),
        (scenario(discounts=[{"id": "d", "value": "5", "prices": "p"}]), ["discounts[0].prices: expected a list, got str"]),
        (scenario(customers=[{"id": "c"}, {"id": "c"}]), ["customers[1].id: duplicate customer 'c'"]),
        (scenario(customers=[{"id": "c", "bill_cycle_day": 32}]), ["customers[0]: bill_cycle_day must be a whole number from 1 to 31, got 32"]),
        (scenario(subscriptions=[{"customer": "x", "price": "q", "start": "2024-01-01", "anchor": "sometimes", "discounts": ["nope"]}]),
         ["subscriptions[0].customer: unknown customer 'x'; defined: c", "subscriptions[0].price: unknown price 'q'; defined: p",
          "subscriptions[0].anchor: expected anniversary, calendar or a bill-cycle day 1-31, got 'sometimes'",
          "subscriptions[0].discounts: unknown discount 'nope'"]),
        (scenario(subscriptions=[{"customer": "c", "price": "p"}]), ["subscriptions[0].start: required"]),
        (scenario(subscriptions=[{"customer": "c", "price": "p", "start": "2024-01-01", "changes": [{"price": "zz"}]}]),
         ["subscriptions[0].changes[0].date: required", "subscriptions[0].changes[0].price: unknown price 'zz'; defined: p"]),
        (scenario(orders=[{"customer": "c", "date": "2024-01-01"}]), ["orders[0].lines: required, a list"]),
        (scenario(usage=[{"customer": "c", "price": "p", "timestamp": "noon"}]), ["usage[0].timestamp: expected an ISO 8601 timestamp such as 2021-09-20T10:00:00Z, got 'noon'"]),
        (scenario(usage=[{"customer": "c", "price": "p", "timestamp": 5}]), ["usage[0].timestamp: expected an ISO 8601 timestamp, got int"]),
        (scenario(usage=[{"customer": "c", "price": "p", "timestamp": "2024-01-01T00:00:00Z", "quantity": "-1"}]), ["usage[0]: usage quantity must be a Decimal >= 0, got Decimal('-1')"]),
        (scenario(usage=[{"customer": "c", "price": "p", "timestamp": "2024-01-01T00:00:00Z", "value": [1]}]), ["usage[0].value: expected a string or whole number, got list"]),
    ],
)  # fmt: skip
def test_each_mistake_is_reported_with_its_key_path(data: object, expected: list[str]) -> None:
    assert problems(data) == expected


def test_all_problems_are_reported_at_once() -> None:
    data = scenario(
        prices=[{"id": "p", "model": "one_time", "amount": 1.5}], customers=[{"id": "c", "tax_exempt": 1}]
    )
    assert len(problems(data)) == 2
