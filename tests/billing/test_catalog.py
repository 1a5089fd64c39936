from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.catalog import Catalog, CatalogError, Price, Product, UnknownProductError
from billing.engine import generate
from billing.model import Customer, Invoice, Order, OrderLine
from billing.money import Currency, Money
from billing.pricing import PriceBook, PriceSpec, UsageRecord
from billing.tax import TaxRate

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
        if p.price is not None
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

    def floats(value: object) -> list[object]:
        if isinstance(value, dict):
            return [f for v in value.values() for f in floats(v)]
        if isinstance(value, list):
            return [f for v in value for f in floats(v)]
        return [value] if isinstance(value, float) else []

    data = yaml.safe_load(CATALOG_YAML.read_text())
    for product in data["products"]:
        assert not floats(product), product["code"]
        if "prices" in product:
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
        "prodcuts: unknown key; allowed: products, taxes, version",
        "products[1].code: required, a non-empty string (got str)",
        "products[1].name: required, a non-empty string (got nothing)",
        "products[2].billing_model: must be one of one_time, recurring (got 'usage'); "
        "for usage, installment or other intervals write a price: block instead",
        "products[3].interval: a recurring product needs one of month, year (got 'week')",
        "products[3].interval_count: must be a whole number >= 1 (got 0)",
        "products[4].prices.EUR: not a decimal amount: '12,50'; write it like \"49.00\"",
        "products[4].prices.XXX: unknown currency code 'XXX'; use an ISO 4217 code such as USD or EUR",
        "products[4].prices.USD: a list price cannot be negative (got -1)",
        'products[4].prices.GBP: not a decimal amount: expected a quoted string like "49.00", got bool',
        "products[5].interval: a one_time product has no interval; remove it",
        "products[5].interval_count: a one_time product has no interval_count; remove it",
        'products[5].prices: required, a mapping of currency code to amount, e.g. USD: "49.00" (got dict)',
        "products[6].extra: unknown key; allowed: billing_model, code, interval, interval_count, name, "
        "price, prices, tax, tax_code",
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


# --- price: blocks (the scenario price format) ------------------------------------------------

D = Decimal


def _shipped() -> Catalog:
    return Catalog.from_dict(yaml.safe_load(CATALOG_YAML.read_text()))


def _bill(catalog: Catalog, as_of: date, **inputs: Any) -> list[Invoice]:
    result = generate(
        as_of=as_of,
        customers=[Customer("acme", "USD")],
        prices=PriceBook.from_catalog(catalog),
        taxes=catalog.taxes,
        **inputs,
    )
    assert list(result.problems) == []
    return sorted(result.invoices, key=lambda inv: inv.issue_date)


def test_shipped_api_calls_are_billed_on_graduated_tiers() -> None:
    usage = [
        UsageRecord("acme", "API-CALLS", datetime(2026, 1, 10, tzinfo=UTC), D(20000)),
        UsageRecord("acme", "API-CALLS", datetime(2026, 1, 20, tzinfo=UTC), D(5000)),
    ]
    [invoice] = _bill(_shipped(), date(2026, 2, 1), usage=usage)
    # 10,000 x 0.0020 + 15,000 x 0.0015
    assert [(line.product_code, line.amount) for line in invoice.lines] == [
        ("API-CALLS", Money("42.50", "USD"))
    ]
    eur = PriceBook.from_catalog(_shipped()).get("API-CALLS", Currency.of("EUR"))
    assert eur is not None and (eur.charge, eur.aggregation, eur.name) == ("graduated", "sum", "API calls")


def test_shipped_hardware_kit_is_invoiced_in_three_monthly_installments() -> None:
    order = Order("o1", "acme", "USD", date(2026, 1, 5), None, (OrderLine("l1", "HARDWARE-KIT", D(1), None),))
    invoices = _bill(_shipped(), date(2026, 12, 31), orders=[order])
    assert [(inv.issue_date, inv.total) for inv in invoices] == [
        (date(2026, 1, 5), Money("333.33", "USD")),
        (date(2026, 2, 5), Money("333.33", "USD")),
        (date(2026, 3, 5), Money("333.34", "USD")),
    ]
    eur = PriceBook.from_catalog(_shipped()).get("HARDWARE-KIT", Currency.of("EUR"))
    assert eur is not None and (eur.amount, eur.installments) == (D("920.00"), 3)


def test_a_single_price_mapping_reaches_every_recurring_setting() -> None:
    catalog = Catalog.from_dict(
        {
            "products": [
                {
                    "code": "Q",
                    "name": "Quarterly",
                    "price": {
                        "currency": "EUR",
                        "model": "recurring",
                        "amount": "30",
                        "interval": "quarter",
                        "billing": "in_arrears",
                        "proration": "none",
                        "name": "Quarterly service",
                    },
                }
            ]
        }
    )
    [spec] = PriceBook.from_catalog(catalog)
    assert (spec.id, spec.currency.code, spec.interval, spec.billing, spec.proration, spec.label) == (
        "Q",
        "EUR",
        "quarter",
        "in_arrears",
        "none",
        "Quarterly service",
    )
    assert catalog.get("Q").price is None and catalog.taxes == ()


def test_taxes_are_exposed_and_a_products_tax_applies_to_its_prices() -> None:
    catalog = Catalog.from_dict(
        {
            "taxes": [{"id": "vat20", "rate": "20"}, {"id": "vat5", "rate": "5"}],
            "products": [
                _product(code="SHORT", tax="vat20", tax_code="std"),
                {
                    "code": "BLOCK",
                    "name": "Block",
                    "tax": "vat20",
                    "price": [
                        {"currency": "USD", "model": "one_time", "amount": "10"},
                        {"currency": "EUR", "model": "one_time", "amount": "10", "tax": "vat5"},
                    ],
                },
            ],
        }
    )
    assert [t.id for t in catalog.taxes] == ["vat20", "vat5"]
    book = PriceBook.from_catalog(catalog)
    taxed = {(s.id, s.currency.code): (s.tax, s.tax_code) for s in book}
    assert taxed == {
        ("SHORT", "USD"): ("vat20", "std"),
        ("SHORT", "EUR"): ("vat20", "std"),
        ("BLOCK", "USD"): ("vat20", None),
        ("BLOCK", "EUR"): ("vat5", None),  # the price's own tax wins over the product's
    }
    order = Order("o1", "acme", "USD", date(2026, 1, 5), None, (OrderLine("l1", "BLOCK", D(1), None),))
    [invoice] = _bill(catalog, date(2026, 1, 31), orders=[order])
    assert (invoice.tax_total, invoice.total) == (Money("2.00", "USD"), Money("12.00", "USD"))


def test_price_block_problems_are_listed_with_their_key_paths() -> None:
    data = yaml.safe_load(
        """
taxes:
  - {id: vat20, rate: "20"}
  - {id: vat20, rate: "10"}
  - {rate: 5.5}
products:
  - {code: A, name: A, tax: gst, price: {currency: USD, model: one_time, amount: "1"}}
  - code: B
    name: B
    billing_model: one_time
    prices: {USD: "1"}
    price: {currency: USD, model: usage, charge: graduated, tiers: [{up_to: 5.5, unit_amount: "1"}, {up_to: null, unit_amount: "1"}]}
  - code: C
    name: C
    price:
      - {id: other, model: usage, charge: graduated, tiers: [{up_to: 10, unit_amount: "1"}, {up_to: 5, unit_amount: "1"}, {up_to: null, unit_amount: "1"}]}
      - {currency: USD, model: one_time, amount: "1", tax: gst, colour: red}
      - {currency: USD, model: one_time, amount: "1"}
      - {currency: USD, model: one_time, amount: "2"}
      - not a mapping
  - {code: D, name: D, price: []}
  - {code: E, name: E, price: "10"}
  - {name: F, price: {currency: USD, model: one_time, amount: "1"}}
"""
    )
    assert _problems(data) == (
        "taxes[1].id: duplicate tax rate 'vat20'",
        "taxes[2].id: required",
        'taxes[2].rate: 5.5 was read as a float, which cannot hold money exactly; quote it: "5.5"',
        "products[0].tax: unknown tax rate 'gst'; defined: vat20",
        "products[1].billing_model: remove it: a product with a price: block takes its billing from there",
        "products[1].prices: remove it: a product with a price: block takes its billing from there",
        'products[1].price.tiers[0].up_to: 5.5 was read as a float, which cannot hold money exactly; quote it: "5.5"',
        "products[2].price[4]: expected a mapping, got str",
        "products[2].price[0].id: must be the product code 'C', or left out (got 'other')",
        "products[2].price[0].currency: required",
        "products[2].price[1].colour: unknown key; allowed: aggregation, amount, billing, charge, currency, "
        "fixed_fee, free_amount, free_units, id, installments, interval, interval_count, minimum, model, "
        "name, package_rounding, package_size, proration, rate, schedule, tax, tax_code, tiers",
        "products[2].price[1].tax: unknown tax rate 'gst'; defined: vat20",
        "products[2].price[3].currency: a second price in USD (first at products[2].price[2])",
        "products[3].price: expected a price mapping or a non-empty list of them (one per currency), got list",
        "products[4].price: expected a price mapping or a non-empty list of them (one per currency), got str",
        "products[5].code: required, a non-empty string (got nothing)",
    )


def test_a_price_the_engine_refuses_is_reported_at_its_path() -> None:
    price = {
        "currency": "USD",
        "model": "usage",
        "charge": "graduated",
        "tiers": [{"up_to": 10, "unit_amount": "1"}, {"up_to": 5, "unit_amount": "1"}, {"unit_amount": "1"}],
    }
    problems = _problems({"taxes": [], "products": [{"code": "A", "name": "A", "price": price}]})
    assert problems == ("products[0].price.tiers[1].up_to: must be greater than the previous tier's (10)",)
    unknown_tax = {"currency": "USD", "model": "one_time", "amount": "1", "tax": "gst"}
    problems = _problems({"products": [{"code": "A", "name": "A", "price": unknown_tax}]})
    assert problems == ("products[0].price.tax: unknown tax rate 'gst'; defined: none",)


# --- building products and catalogs in code ---------------------------------------------------


def _spec(code: str = "A", currency: str = "USD", tax: str | None = None) -> PriceSpec:
    return PriceSpec(code, Currency.of(currency), "one_time", D(1), tax=tax)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either price or price_block"),
        (
            {"price": Price("one_time", {"USD": D(1)}), "price_block": (_spec(),)},
            "either price or price_block",
        ),
        ({"price_block": (_spec("B"),)}, "price id must be the code"),
        ({"price_block": (_spec(), _spec())}, "two prices in USD"),
    ],
)
def test_a_product_needs_exactly_one_consistent_price(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Product("A", "a", **kwargs)


def test_a_catalog_refuses_unknown_and_duplicate_tax_rates() -> None:
    product = Product("A", "a", price_block=(_spec(tax="vat"),))
    with pytest.raises(ValueError, match="unknown tax rate 'vat'"):
        Catalog([product])
    with pytest.raises(ValueError, match="duplicate tax rate"):
        Catalog([product], [TaxRate("vat", D(20)), TaxRate("vat", D(10))])
    assert Catalog([product], [TaxRate("vat", D(20))]).taxes == (TaxRate("vat", D(20)),)
