"""Every line says how its amount came about, in a structured record and in words."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from billing.discounts import Discount
from billing.engine import Change, Subscription, generate
from billing.explain import Explanation, explain
from billing.model import Customer, InvoiceLine, Order, OrderLine
from billing.money import Currency, Money
from billing.pricing import PriceSpec, Tier, UsageRecord
from billing.tax import TaxRate

USD = Currency.of("USD")


def all_lines() -> list[InvoiceLine]:
    prices = [
        PriceSpec("basic", USD, "recurring", D("24.95"), name="Basic", interval="month", tax="vat"),
        PriceSpec(
            "calls", USD, "usage", charge="graduated", tiers=(Tier(D(5), D(7), D(1)), Tier(None, D("6.5")))
        ),
        PriceSpec("seats", USD, "usage", D(5), charge="package", package_size=D(10), minimum=D(100)),
        PriceSpec("laptop", USD, "installment", D(1000), interval="month", installments=3),
        PriceSpec("setup", USD, "one_time", D(100), tax="incl"),
    ]
    result = generate(
        as_of=date(2021, 11, 30),
        customers=[Customer("acme", "USD", bill_cycle_day=25)],
        prices=prices,
        subscriptions=[
            Subscription("s1", "acme", "basic", date(2021, 9, 16), changes=(Change(date(2021, 10, 10), quantity=D(2)),), discounts=("ten",)),
            Subscription("s2", "acme", "seats", date(2021, 9, 25)),
        ],
        orders=[Order("o", "acme", "USD", date(2021, 9, 16), None, (OrderLine("l1", "laptop", D(1), None), OrderLine("l2", "setup", D(1), None)))],
        usage=[UsageRecord("acme", "calls", datetime(2021, 9, 20, tzinfo=UTC), D(6)), UsageRecord("acme", "seats", datetime(2021, 9, 26, tzinfo=UTC), D(11))],
        taxes=[TaxRate("vat", D(10)), TaxRate("incl", D(20), inclusive=True)],
        discounts=[Discount("ten", "percent", D(10), "forever")],
    )  # fmt: skip
    assert result.problems == []
    return [line for inv in result.invoices for line in inv.lines]


LINES = all_lines()


def by_key(key: str) -> InvoiceLine:
    return next(line for line in LINES if line.source_key == key)


def test_every_line_carries_an_explanation_whose_rounding_gives_its_amount() -> None:
    kinds = set()
    for line in LINES:
        ex = line.explanation
        assert ex is not None and ex.rounded == line.amount.amount
        assert Money(ex.unrounded, USD).rounded() == line.amount
        kinds.add(ex.kind)
    assert kinds == {
        "recurring",
        "proration_credit",
        "proration_charge",
        "usage",
        "minimum_true_up",
        "installment",
        "one_time",
    }


def test_leading_proration_is_explained_with_its_fraction_and_rounding() -> None:
    text = explain(by_key("sub:s1:2021-09-16"))
    assert text.splitlines() == [
        "Basic: USD 7.24",
        "  price basic (recurring), rule: recurring",
        "  period 2021-09-16 to 2021-09-25 (end exclusive)",
        "  prorated 9/31 (actual_days) of the period 2021-08-25 to 2021-09-25",
        "  billed: in advance",
        "  1 x 24.95 x 9/31 = 7.2435483870967741935483870967741935483870967741935",
        "  rounded HALF_UP to 0.01: 7.2435483870967741935483870967741935483870967741935 -> USD 7.24",
        "  discounts: ten",
        "  discount -USD 0.72",
        "  tax vat: USD 0.65 (added)",
    ]


def test_tiers_packages_minimums_installments_and_inclusive_tax_are_explained() -> None:
    tiers = explain(by_key("usage:acme:calls:2021-08-25"))
    assert "tier 1 (units 1 to 5): 5 x 7 + flat 1 = 36" in tiers
    assert "tier 2 (units 6 and above): 1 x 6.5 = 6.5" in tiers
    assert "quantity 6, exact amount 42.5" in tiers
    assert "packages: 2 (rounded up)" in explain(by_key("usage:s2:2021-09-25"))
    minimum = explain(by_key("usage:s2:2021-09-25:minimum"))
    assert "minimum commitment: 100" in minimum and "usage charged: 10.00" in minimum
    assert "installment: 1 of 3" in explain(by_key("installment:l1:1"))
    assert "tax incl: USD 16.67 (included in the price)" in explain(by_key("order-line:l2"))


def test_credit_lines_explain_the_unused_part() -> None:
    credit = explain(by_key("sub:s1:2021-09-25:credit:2021-10-10"))
    assert "Unused time on Basic from 2021-10-10: USD -12.48" in credit
    assert "-1 x 24.95 x 15/30" in credit


def test_explanations_round_trip_through_json() -> None:
    for line in LINES:
        assert line.explanation is not None
        stored = json.loads(json.dumps(line.explanation.to_dict()))
        assert Explanation.from_dict(stored) == line.explanation


def test_the_stored_json_text_is_exactly_the_dict_serialised() -> None:
    """``to_json`` (what a billing run stores) writes the text itself: it must say what ``to_dict``
    says, key for key, for every kind of line (tiers, proration, details, discounts, no unit)."""
    odd = Explanation(
        kind="one_time", price_id='caf\u00e9 "special"\n', model="flat", currency="EUR", quantity=D("1E+3"),
        unit_amount=None, unrounded=D("-0.005"), rounded=D("-0.01"), rounding="HALF_EVEN to 0.01",
        charge="per_unit", details=(("note", "tab\there \\ back"),), discounts=("dix %",),
    )  # fmt: skip
    explanations = [line.explanation for line in LINES if line.explanation is not None] + [odd]
    assert {e.kind for e in explanations} >= {
        "recurring",
        "usage",
        "installment",
        "one_time",
        "proration_credit",
    }
    assert any(e.tiers for e in explanations) and any(e.proration for e in explanations)
    for explanation in explanations:
        text = explanation.to_json()
        assert json.loads(text) == explanation.to_dict()
        assert text == json.dumps(explanation.to_dict(), ensure_ascii=False)


def test_an_unknown_day_count_in_stored_json_is_refused() -> None:
    data = by_key("sub:s1:2021-09-16").explanation.to_dict()  # type: ignore[union-attr]
    data["proration"] = {"numerator": 1, "denominator": 2, "convention": "lunar"}
    with pytest.raises(ValueError, match="unknown day-count convention 'lunar'"):
        Explanation.from_dict(data)


def test_a_line_without_explanation_still_explains_its_arithmetic() -> None:
    line = InvoiceLine("k", "p", "Thing", D(3), Money("2.5", USD), Money("7.50", USD), None, None)
    assert explain(line) == "Thing: USD 7.50\n  3 x USD 2.50 = USD 7.50 (rounded to the currency)"
