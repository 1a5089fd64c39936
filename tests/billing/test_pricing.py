from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.catalog import Catalog
from billing.money import Currency
from billing.pricing import (
    Aggregation,
    PriceBook,
    PriceSpec,
    Tier,
    UsageRecord,
    aggregate,
    rate_quantity,
    rate_transactions,
)

USD = Currency.of("USD")
STRIPE_TIERS = (Tier(D(5), D(7)), Tier(D(10), D("6.5")), Tier(None, D(6)))


def usage_price(**kwargs: Any) -> PriceSpec:
    return PriceSpec(**{"id": "p", "currency": USD, "model": "usage", **kwargs})


def rec(quantity: str = "1", minute: int = 0, value: str | None = None) -> UsageRecord:
    return UsageRecord("c", "p", datetime(2024, 1, 1, 0, minute, tzinfo=UTC), D(quantity), value)


@pytest.mark.parametrize(
    ("units", "volume", "graduated"), [(6, "39", "41.5"), (20, "120", "127.5"), (25, "150", "157.5")]
)
def test_stripe_tier_example(units: int, volume: str, graduated: str) -> None:
    assert rate_quantity(usage_price(charge="volume", tiers=STRIPE_TIERS), D(units)).amount == D(volume)
    assert rate_quantity(usage_price(charge="graduated", tiers=STRIPE_TIERS), D(units)).amount == D(graduated)


def test_graduated_breakdown_names_each_tier_and_its_flat_fee() -> None:
    tiers = (Tier(D(5), D(7), D(10)), Tier(None, D(6), D(1)))
    rating = rate_quantity(usage_price(charge="graduated", tiers=tiers), D(8))
    assert [(t.index, t.first_unit, t.up_to, t.units, t.amount) for t in rating.tiers] == [
        (1, D(1), D(5), D(5), D(45)), (2, D(6), None, D(3), D(19)),
    ]  # fmt: skip
    assert rating.amount == D(64)


def test_graduated_stops_at_the_tier_the_quantity_ends_in() -> None:
    tiers = (Tier(D(5), D(7), D(10)), Tier(None, D(6), D(100)))
    assert rate_quantity(usage_price(charge="graduated", tiers=tiers), D(5)).amount == D(45)
    assert rate_quantity(usage_price(charge="graduated", tiers=tiers), D(0)).amount == D(10)


def test_volume_adds_only_the_reached_tiers_flat_fee() -> None:
    tiers = (Tier(D(5), D(7), D(10)), Tier(None, D(6), D(100)))
    rating = rate_quantity(usage_price(charge="volume", tiers=tiers), D(6))
    assert rating.amount == D(136) and rating.tiers[0].index == 2 and rating.tiers[0].first_unit == D(6)


@pytest.mark.parametrize(
    ("quantity", "rounding", "free", "expected"),
    [("0", "up", "0", "0"), ("1", "up", "0", "5"), ("10", "up", "0", "5"), ("11", "up", "0", "10"),
     ("11", "down", "0", "5"), ("25", "up", "5", "10"), ("3", "up", "5", "0")],
)  # fmt: skip
def test_package_charges_whole_packages(quantity: str, rounding: str, free: str, expected: str) -> None:
    price = usage_price(
        charge="package", amount=D(5), package_size=D(10), package_rounding=rounding, free_units=D(free)
    )
    assert rate_quantity(price, D(quantity)).amount == D(expected)


@pytest.mark.parametrize(
    ("free_units", "free_amount", "expected"),
    [
        ("0", "0", "6.3"),  # 2 % of 300 + 3 x 0.1
        ("1", "0", "4.2"),  # first transaction free: 2 % of 200 + 2 x 0.1
        ("0", "150", "3.2"),  # 150 free: 2 % of 150 + fee on the crossing one and the last = 3 + 0.2
        ("5", "150", "3.2"),  # the amount runs out first
        ("1", "500", "4.2"),  # the count runs out first
    ],
)
def test_percentage_allowances_end_when_either_runs_out(
    free_units: str, free_amount: str, expected: str
) -> None:
    price = usage_price(
        charge="percentage",
        rate=D(2),
        fixed_fee=D("0.1"),
        free_units=D(free_units),
        free_amount=D(free_amount),
    )
    records = [rec("100", 1), rec("100", 2), rec("100", 3)]
    assert rate_transactions(price, records).amount == D(expected)


def test_percentage_cannot_be_rated_from_a_quantity_alone() -> None:
    with pytest.raises(ValueError, match="rate_transactions"):
        rate_quantity(usage_price(charge="percentage", rate=D(1)), D(5))


def test_per_unit_and_flat_prices_multiply() -> None:
    assert rate_quantity(usage_price(amount=D("0.25")), D(7)).amount == D("1.75")
    assert rate_quantity(PriceSpec("p", USD, "one_time", D(3)), D(2)).amount == D(6)


def test_aggregations() -> None:
    records = [rec("3", 1, "a"), rec("5", 2, "b"), rec("2", 3, "a")]
    kinds: tuple[Aggregation, ...] = ("count", "sum", "max", "last", "unique_count")
    assert [aggregate(a, records) for a in kinds] == [3, 10, 5, 2, 2]
    assert [aggregate(a, []) for a in kinds] == [0] * 5
    assert aggregate("unique_count", [rec("3"), rec("3"), rec("4")]) == 2


def test_usage_records_are_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    late = UsageRecord("c", "p", datetime(2024, 2, 1, 1, 0, tzinfo=paris))
    assert late.day.isoformat() == "2024-01-31"
    assert UsageRecord("c", "p", datetime(2024, 2, 1)).timestamp.tzinfo is UTC
    with pytest.raises(TypeError, match="datetime"):
        UsageRecord("c", "p", "2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        UsageRecord("c", "p", datetime(2024, 1, 1), D(-1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "id: required"),
        ({"model": "weekly"}, "model: must be one of"),
        ({"amount": D(-1)}, "amount: must be >= 0"),
        ({"model": "recurring"}, "interval: a recurring price needs"),
        ({"interval": "fortnight"}, "interval: must be one of"),
        ({"interval_count": 0}, "interval_count: must be a whole number"),
        ({"billing": "later"}, "billing: must be one of"),
        ({"proration": "exact"}, "proration: must be one of"),
        ({"minimum": D(5)}, "minimum: only usage prices"),
        ({"model": "usage", "charge": "flat"}, "charge: must be one of"),
        ({"model": "usage", "aggregation": "avg"}, "aggregation: must be one of"),
        ({"model": "usage", "charge": "graduated"}, "tiers: a graduated or volume charge needs"),
        ({"model": "usage", "tiers": STRIPE_TIERS}, "tiers: only graduated and volume"),
        ({"model": "usage", "charge": "volume", "tiers": (Tier(None, D(1)), Tier(None, D(1)))}, "only the last tier can be open"),
        ({"model": "usage", "charge": "volume", "tiers": (Tier(D(5), D(1)),)}, "the last tier must be open"),
        ({"model": "usage", "charge": "volume", "tiers": (Tier(D(5), D(1)), Tier(D(5), D(1)), Tier(None, D(1)))}, "must be greater than"),
        ({"model": "usage", "charge": "volume", "tiers": (Tier(None, D(-1)),)}, r"tiers\[0\]: amounts must be >= 0"),
        ({"model": "usage", "charge": "package", "package_size": D(0)}, "package_size: must be > 0"),
        ({"model": "usage", "charge": "percentage", "aggregation": "max"}, "must be sum"),
        ({"model": "usage", "charge": "percentage", "rate": D(101)}, "rate: must be a percentage"),
        ({"model": "usage", "fixed_fee": D(-1)}, "fixed_fee: must be >= 0"),
        ({"model": "usage", "minimum": D(-1)}, "minimum: must be >= 0"),
        ({"model": "installment", "interval": "month", "installments": 0}, "installments: must be a whole number"),
        ({"model": "installment", "interval": "month", "installments": 2, "schedule": (D(100),)}, "1 percentages for 2"),
        ({"model": "installment", "interval": "month", "installments": 2, "schedule": (D(60), D(30))}, "add up to 100"),
    ],
)  # fmt: skip
def test_invalid_prices_say_which_field_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceSpec(**{"id": "p", "currency": USD, "model": "one_time", **kwargs})


def test_a_usage_price_is_monthly_by_default_and_nonlinear_charges_are_flagged() -> None:
    assert usage_price().interval == "month" and usage_price().linear
    assert not usage_price(charge="package").linear and usage_price(name="Calls").label == "Calls"
    assert PriceSpec("p", USD, "one_time").label == "p"


def test_price_book_looks_prices_up_by_id_and_currency() -> None:
    eur = Currency.of("EUR")
    book = PriceBook([PriceSpec("p", USD, "one_time", D(1)), PriceSpec("p", eur, "one_time", D(2))])
    assert book.get("p", eur) is not None and book.get("q", USD) is None
    assert book.ids() == {"p"} and len(book) == 2 and len(list(book)) == 2
    with pytest.raises(ValueError, match="duplicate price 'p' in USD"):
        PriceBook([PriceSpec("p", USD, "one_time"), PriceSpec("p", USD, "one_time")])


def test_price_book_from_the_foundation_catalog() -> None:
    catalog = Catalog.from_dict(
        yaml.safe_load((Path(__file__).parents[2] / "config" / "catalog.yaml").read_text())
    )
    book = PriceBook.from_catalog(catalog)
    basic = book.get("PLAT-BASIC-M", Currency.of("EUR"))
    assert basic is not None and (basic.model, basic.interval, basic.amount) == ("recurring", "month", D(45))
    setup = book.get("SETUP-FEE", USD)
    assert setup is not None and (setup.model, setup.name) == ("one_time", "Onboarding and setup")
