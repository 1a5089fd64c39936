from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.catalog import Catalog, CatalogError, Price, Product, UnknownProductError
from billing.money import Currency, Money

CATALOG_YAML = Path(__file__).resolve().parents[2] / "config" / "catalog.yaml"


def _product(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "PLAT-BASIC-M",
        "name": "Platform Basic (monthly)",
        "billing_model": "recurring",
        "interval": "month",
        "interval_count": 1,
        "prices": {"USD": "49.00", "EUR": "45.00"},
    }
    base.update(overrides)
    return base


def _problems(data: Any) -> tuple[str, ...]:
    with pytest.raises(CatalogError) as info:
        Catalog.from_dict(data)
    return info.value.problems


# --- the shipped catalog ----------------------------------------------------------------------


def test_shipped_catalog_loads_with_the_demo_products() -> None:
    catalog = Catalog.from_dict(yaml.safe_load(CATALOG_YAML.read_text()))
    summary = {
        p.code: (
            p.name,
            p.price.billing_model,
            p.price.interval,
            p.price.interval_count,
            dict(p.price.amounts),
        )
        for p in catalog
    }
    assert summary == {
        "SETUP-FEE": (
            "Onboarding and setup",
            "one_time",
            None,
            1,
            {"USD": Decimal("500.00"), "EUR": Decimal("450.00")},
        ),
        "TRAINING-DAY": (
            "Training day",
            "one_time",
            None,
            1,
            {"USD": Decimal("1200.00"), "EUR": Decimal("1100.00")},
        ),
        "PLAT-BASIC-M": (
            "Platform Basic (monthly)",
            "recurring",
            "month",
            1,
            {"USD": Decimal("49.00"), "EUR": Decimal("45.00")},
        ),
        "PLAT-PRO-M": (
            "Platform Pro (monthly)",
            "recurring",
            "month",
            1,
            {"USD": Decimal("199.00"), "EUR": Decimal("179.00")},
        ),
        "SEATS-M": (
            "Additional seat (monthly)",
            "recurring",
            "month",
            1,
            {"USD": Decimal("12.50"), "EUR": Decimal("11.50")},
        ),
        "SUPPORT-PREM-Y": (
            "Premium support (annual)",
            "recurring",
            "year",
            1,
            {"USD": Decimal("2400.00"), "EUR": Decimal("2200.00")},
        ),
    }


def test_shipped_catalog_quotes_every_amount() -> None:
    """A float that happens to parse exactly today would still teach admins the wrong habit."""
    data = yaml.safe_load(CATALOG_YAML.read_text())
    for product in data["products"]:
        assert all(isinstance(v, str) for v in product["prices"].values()), product["code"]


# --- lookups ----------------------------------------------------------------------------------


def test_get_unknown_code_raises_a_key_error_naming_the_code() -> None:
    catalog = Catalog.from_dict({"products": [_product()]})
    with pytest.raises(UnknownProductError, match="'NOPE'") as info:
        catalog.get("NOPE")
    assert isinstance(info.value, KeyError)
    assert "NOPE" not in catalog and "PLAT-BASIC-M" in catalog


def test_price_for_a_currency() -> None:
    product = Catalog.from_dict({"products": [_product()]}).get("PLAT-BASIC-M")
    assert product.price.amount_for(Currency.of("EUR")) == Money("45.00", "EUR")
    assert product.price.amount_for(Currency.of("GBP")) is None
    assert product.price.months == 1


def test_int_amounts_are_accepted() -> None:
    catalog = Catalog.from_dict({"products": [_product(prices={"USD": 500})]})
    assert catalog.get("PLAT-BASIC-M").price.amounts["USD"] == Decimal(500)


def test_yearly_interval_count_gives_months() -> None:
    catalog = Catalog.from_dict({"products": [_product(interval="year", interval_count=2)]})
    assert catalog.get("PLAT-BASIC-M").price.months == 24


def test_price_amounts_cannot_be_changed_through_the_callers_dict() -> None:
    amounts = {"EUR": Decimal("1")}
    price = Price("one_time", amounts)
    amounts["EUR"] = Decimal("999")
    assert price.amounts["EUR"] == Decimal("1")
    with pytest.raises(TypeError):
        price.amounts["EUR"] = Decimal("2")  # type: ignore[index]


def test_catalog_rejects_duplicate_products_built_in_code() -> None:
    p = Product("X", "x", Price("one_time", {"EUR": Decimal(1)}))
    with pytest.raises(ValueError, match="duplicate"):
        Catalog([p, p])


# --- validation -------------------------------------------------------------------------------


def test_float_amount_is_rejected_with_advice_to_quote_it() -> None:
    # This is what yaml.safe_load gives for an unquoted `EUR: 45.90`.
    data = yaml.safe_load("products:\n- {code: A, name: A, billing_model: one_time, prices: {EUR: 45.90}}")
    assert _problems(data) == (
        "products[0].prices.EUR: not a decimal amount: 45.9 was read as a float, which cannot hold money "
        'exactly; quote it as a string, e.g. "45.9"',
    )


def test_every_problem_is_listed_with_its_key_path() -> None:
    data = {
        "version": 1,
        "prodcuts": [],
        "products": [
            _product(),
            _product(code="", name=None),
            _product(code="B", billing_model="usage"),
            _product(code="C", interval="week", interval_count=0),
            _product(code="D", prices={"EUR": "12,50", "XXX": "1", "USD": -1, "GBP": True}),
            _product(code="E", billing_model="one_time", prices={}),
            _product(code="PLAT-BASIC-M", extra="x"),
            "not a mapping",
        ],
    }
    problems = _problems(data)
    assert problems == (
        "prodcuts: unknown key; allowed: products, version",
        "products[1].code: required, a non-empty string (got str)",
        "products[1].name: required, a non-empty string (got nothing)",
        "products[2].billing_model: must be one of one_time, recurring (got 'usage')",
        "products[3].interval: a recurring product needs one of month, year (got 'week')",
        "products[3].interval_count: must be a whole number >= 1 (got 0)",
        "products[4].prices.EUR: not a decimal amount: '12,50'; write it like \"49.00\"",
        "products[4].prices.XXX: unknown currency code 'XXX'; use an ISO 4217 code such as USD or EUR",
        "products[4].prices.USD: a list price cannot be negative (got -1)",
        'products[4].prices.GBP: not a decimal amount: expected a quoted string like "49.00", got bool',
        "products[5].interval: a one_time product has no interval; remove it",
        "products[5].interval_count: a one_time product has no interval_count; remove it",
        'products[5].prices: required, a mapping of currency code to amount, e.g. USD: "49.00" (got dict)',
        "products[6].extra: unknown key; allowed: billing_model, code, interval, interval_count, name, prices",
        "products[7]: expected a mapping, got str",
    )
    # The message a user sees lists every problem, too.
    with pytest.raises(CatalogError) as info:
        Catalog.from_dict(data)
    assert all(p in str(info.value) for p in problems)
    assert "15 problem(s)" in str(info.value)


def test_duplicate_codes_name_the_first_definition() -> None:
    problems = _problems({"products": [_product(), _product(name="again")]})
    assert problems == (
        "products[1].code: duplicate product code 'PLAT-BASIC-M' (first defined at products[0])",
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "products: expected a list of products, got nothing"),
        ({"products": {"A": {}}}, "products: expected a list of products, got dict"),
        ([], "<root>: expected a mapping with a 'products' list, got list"),
    ],
)
def test_wrong_shapes(data: Any, problem: str) -> None:
    assert _problems(data) == (problem,)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "1e999999999999", "1e15", "0.00000000001"])
def test_non_finite_or_absurd_amounts_are_rejected(amount: str) -> None:
    problems = _problems({"products": [_product(prices={"EUR": amount})]})
    assert len(problems) == 1 and problems[0].startswith("products[0].prices.EUR: not a decimal amount")
