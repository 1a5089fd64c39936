"""Refusals and conveniences of the value types that the billing run relies on."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from billing.catalog import Catalog, Price, Product
from billing.model import Customer
from billing.money import Currency, Money


@pytest.mark.parametrize(
    ("code", "units", "error"),
    [
        ("usd", 2, ValueError),
        ("US1", 2, ValueError),
        ("USD", "2", TypeError),
        ("USD", True, TypeError),
        ("USD", 5, ValueError),
    ],
)
def test_currency_refuses_bad_codes_and_minor_units(code: str, units: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        Currency(code, units)


def test_money_operations_refuse_what_is_not_money() -> None:
    usd = Money("1.50", "USD")
    assert str(usd.currency) == "USD" and repr(usd) == "Money('1.50', 'USD')"
    with pytest.raises(TypeError, match="must be Decimal, int or str, not list"):
        Money([1], "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        usd - 1  # type: ignore[operator]
    with pytest.raises(TypeError, match="cannot compare Money with int"):
        usd < 1  # type: ignore[operator]  # noqa: B015
    assert usd <= Money("1.5", "USD") and usd >= Money("1.49", "USD") and -usd < usd


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"billing_model": "usage"}, ValueError, "billing_model must be one of"),
        ({"billing_model": "recurring"}, ValueError, "a recurring price needs interval"),
        ({"interval": "month"}, ValueError, "a one_time price has no interval"),
        ({"interval_count": "1"}, TypeError, "interval_count must be an int"),
        ({"interval_count": 0}, ValueError, "interval_count must be >= 1"),
        ({"amounts": {"USD": D(-1)}}, ValueError, "price in USD must be a finite Decimal >= 0"),
    ],
)
def test_catalog_prices_refuse_inconsistent_settings(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Price(**{"billing_model": "one_time", "amounts": {}, **kwargs})


def test_catalog_conveniences() -> None:
    catalog = Catalog([Product("A", "a", Price("one_time", {"USD": D(1)}))])
    assert len(catalog) == 1 and repr(catalog) == "Catalog(['A'])" and catalog.get("A").price.months == 0


def test_catalog_codes_with_surrounding_spaces_are_refused() -> None:
    from billing.catalog import CatalogError

    with pytest.raises(CatalogError, match="must not start or end with spaces"):
        Catalog.from_dict(
            {"products": [{"code": " A", "name": "a", "billing_model": "one_time", "prices": {"USD": "1"}}]}
        )


def test_customer_payment_terms_are_a_whole_number_of_days() -> None:
    with pytest.raises(TypeError, match="payment_terms_days must be an int"):
        Customer("c", "USD", payment_terms_days="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="payment_terms_days must be >= 0"):
        Customer("c", "USD", payment_terms_days=-1)


def test_an_order_line_refuses_a_float_quantity_or_price() -> None:
    from billing.model import OrderLine

    with pytest.raises(TypeError, match="quantity must be a Decimal, not float"):
        OrderLine("l1", "SEATS-M", 2.0, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unit_price must be a Decimal, not float"):
        OrderLine("l1", "SEATS-M", D("2"), 9.99)  # type: ignore[arg-type]


def test_an_invoice_knows_which_charges_it_bills() -> None:
    from datetime import date

    from billing import Customer as BillingCustomer
    from billing import Order, OrderLine, PriceBook, generate

    catalog = Catalog.from_dict(
        {
            "version": 1,
            "products": [{"code": "X", "name": "X", "billing_model": "one_time", "prices": {"USD": "5"}}],
        }
    )
    order = Order("o1", "c1", "USD", date(2026, 1, 5), None, (OrderLine("l1", "X", D("2"), None),))
    result = generate(
        as_of=date(2026, 1, 31),
        customers={"c1": BillingCustomer("c1", "USD")},
        prices=PriceBook.from_catalog(catalog),
        orders=[order],
    )
    [invoice] = result.invoices
    assert invoice.source_keys == frozenset({"order-line:l1"})
