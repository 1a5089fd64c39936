from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from billing.model import Customer, InvoiceLine
from billing.money import Currency, Money
from billing.tax import TaxRate, TaxTable, allocate, apply_taxes

USD = Currency.of("USD")
CUSTOMER = Customer("c", "USD", jurisdiction="FR")


def line(amount: str, key: str = "k") -> InvoiceLine:
    money = Money(amount, USD)
    return InvoiceLine(key, "p", "d", D(1), money, money, date(2024, 1, 1), date(2024, 2, 1))


def test_rate_selection_prefers_the_most_specific_match() -> None:
    table = TaxTable(
        [
            TaxRate("plain", D(20)),
            TaxRate("fr", D(20), jurisdiction="FR"),
            TaxRate("books", D("5.5"), tax_code="book"),
            TaxRate("fr-books", D("5.5"), jurisdiction="FR", tax_code="book"),
            TaxRate("de", D(19), jurisdiction="DE"),
        ]
    )
    assert table.resolve(CUSTOMER, None, "book").id == "fr-books"  # type: ignore[union-attr]
    assert table.resolve(CUSTOMER, None, "software").id == "fr"  # type: ignore[union-attr]
    assert table.resolve(Customer("d", "USD", jurisdiction="US"), None, "book").id == "books"  # type: ignore[union-attr]
    assert table.resolve(Customer("d", "USD"), None, None) is None  # "plain" applies only when named
    assert table.resolve(CUSTOMER, "plain", "book").id == "plain"  # type: ignore[union-attr]
    assert table.resolve(Customer("x", "USD", tax_exempt=True, jurisdiction="FR"), "plain", None) is None
    assert "fr" in table and "xx" not in table


def test_invalid_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="needs an id"):
        TaxRate("", D(1))
    with pytest.raises(ValueError, match="percentage from 0 to 100"):
        TaxRate("t", D(101))
    with pytest.raises(ValueError, match="duplicate tax rate id 't'"):
        TaxTable([TaxRate("t", D(1)), TaxRate("t", D(2))])


def test_per_line_and_per_invoice_rounding_differ_as_documented() -> None:
    vat = TaxRate("vat", D(10))
    lines = [(line("0.05", f"k{i}"), vat) for i in range(3)]
    per_line, per_line_taxes = apply_taxes(lines, USD, "per_line")
    per_invoice, per_invoice_taxes = apply_taxes(lines, USD, "per_invoice")
    assert per_line_taxes[0].amount == Money("0.03", USD)
    assert per_invoice_taxes[0].amount == Money("0.02", USD)
    # Per invoice, the lines share the rounded tax and still add up to it.
    assert [ln.tax_amount for ln in per_invoice] == [
        Money("0.01", USD),
        Money("0.01", USD),
        Money("0.00", USD),
    ]
    assert per_line_taxes[0].taxable == Money("0.15", USD)


def test_inclusive_tax_is_taken_out_of_the_price() -> None:
    lines, taxes = apply_taxes(
        [(line("1000.00"), TaxRate("vat", D(10), inclusive=True, name="VAT 10%"))], USD
    )
    assert lines[0].tax_amount == Money("90.91", USD) and lines[0].net_amount == Money("909.09", USD)
    assert (taxes[0].name, taxes[0].taxable, taxes[0].amount) == (
        "VAT 10%",
        Money("909.09", USD),
        Money("90.91", USD),
    )


def test_untaxed_lines_stay_untaxed_and_make_no_tax_line() -> None:
    lines, taxes = apply_taxes([(line("5.00"), None)], USD, "per_invoice")
    assert lines[0].tax_amount is None and taxes == ()


def test_allocate_keeps_the_total_with_mixed_signs() -> None:
    assert allocate(D("0.02"), [D("0.005")] * 3, D("0.01")) == [D("0.01"), D("0.01"), D("0.00")]
    parts = allocate(D("-0.50"), [D("-1.004"), D("0.504")], D("0.01"))
    assert sum(parts) == D("-0.50") and parts == [D("-1.00"), D("0.50")]
    assert allocate(D("-0.02"), [D("-0.006"), D("-0.006"), D("-0.006")], D("0.01")) == [
        D("-0.01"),
        D("-0.01"),
        D("0.00"),
    ]


def test_a_less_specific_rate_listed_later_does_not_win() -> None:
    table = TaxTable(
        [
            TaxRate("fr-books", D("5.5"), jurisdiction="FR", tax_code="book"),
            TaxRate("fr", D(20), jurisdiction="FR"),
        ]
    )
    assert table.resolve(CUSTOMER, None, "book").id == "fr-books"  # type: ignore[union-attr]
