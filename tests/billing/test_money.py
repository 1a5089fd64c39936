from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.money import CURRENCIES, Currency, CurrencyMismatchError, Money, UnknownCurrencyError

EUR = Currency.of("EUR")
JPY = Currency.of("JPY")
KWD = Currency.of("KWD")


# --- currencies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "minor_units"),
    [("USD", 2), ("EUR", 2), ("GBP", 2), ("CHF", 2), ("JPY", 0), ("SEK", 2), ("NOK", 2), ("DKK", 2)]
    + [("CAD", 2), ("AUD", 2), ("KWD", 3), ("BHD", 3)],
)
def test_currency_table_has_iso_minor_units(code: str, minor_units: int) -> None:
    assert Currency.of(code) == Currency(code, minor_units)


def test_currency_lookup_ignores_case_and_spaces() -> None:
    assert Currency.of(" eur ") is CURRENCIES["EUR"]


def test_unknown_currency_error_names_the_code() -> None:
    with pytest.raises(UnknownCurrencyError, match="'XYZ'") as info:
        Currency.of("XYZ")
    assert isinstance(info.value, ValueError)
    assert info.value.code == "XYZ"


def test_unknown_currency_in_money_constructor_is_rejected() -> None:
    with pytest.raises(UnknownCurrencyError, match="'EURO'"):
        Money("1", "EURO")


# --- construction -----------------------------------------------------------------------------


def test_float_amount_is_rejected() -> None:
    with pytest.raises(TypeError, match="float"):
        Money(0.1, "EUR")  # type: ignore[arg-type]


def test_bool_amount_is_rejected() -> None:
    with pytest.raises(TypeError):
        Money(True, "EUR")


@pytest.mark.parametrize("amount", [Decimal("12.50"), "12.50", " 12.5 "])
def test_decimal_str_and_int_are_accepted(amount: Decimal | str) -> None:
    assert Money(amount, "EUR").amount == Decimal("12.5")
    assert Money(12, EUR).amount == Decimal(12)


@pytest.mark.parametrize("amount", ["abc", "", "NaN", "Infinity", Decimal("NaN")])
def test_non_numbers_and_non_finite_amounts_are_rejected(amount: Decimal | str) -> None:
    with pytest.raises(ValueError):
        Money(amount, "EUR")


def test_money_is_frozen() -> None:
    m = Money("1", "EUR")
    with pytest.raises(AttributeError):
        m.amount = Decimal(2)  # type: ignore[misc]


# --- arithmetic -------------------------------------------------------------------------------


def test_add_and_subtract_same_currency() -> None:
    assert Money("10.10", "EUR") + Money("0.205", "EUR") == Money("10.305", "EUR")
    assert Money("10.10", "EUR") - Money("0.10", "EUR") == Money("10", "EUR")


@pytest.mark.parametrize("op", ["add", "sub", "lt"])
def test_mixing_currencies_is_rejected(op: str) -> None:
    eur, usd = Money("1", "EUR"), Money("1", "USD")
    with pytest.raises(CurrencyMismatchError, match="USD"):
        if op == "add":
            eur + usd
        elif op == "sub":
            eur - usd
        else:
            eur < usd  # noqa: B015


def test_adding_a_bare_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money("1", "EUR") + Decimal(1)  # type: ignore[operator]


def test_multiply_by_quantity_keeps_full_precision() -> None:
    assert Money("12.50", "EUR") * Decimal("0.333") == Money("4.1625", "EUR")
    assert 3 * Money("0.125", "EUR") == Money("0.375", "EUR")


def test_multiply_by_float_or_money_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Money("1", "EUR") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money("1", "EUR") * Money("1", "EUR")  # type: ignore[operator]


def test_arithmetic_ignores_a_low_precision_caller_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        assert Money("1234.56", "EUR") + Money("0.01", "EUR") == Money("1234.57", "EUR")


# --- rounding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code", "expected"),
    [
        ("2.345", "EUR", "2.35"),  # HALF_UP, not banker's (2.34)
        ("2.344999", "EUR", "2.34"),
        ("-2.345", "EUR", "-2.35"),  # ties go away from zero
        ("0.5", "JPY", "1"),
        ("1.5", "JPY", "2"),
        ("2.5", "JPY", "3"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344", "KWD", "1.234"),
        ("-0.001", "EUR", "0.00"),  # no negative zero
    ],
)
def test_rounded_half_up_to_minor_units(amount: str, code: str, expected: str) -> None:
    result = Money(amount, code).rounded()
    assert str(result.amount) == expected


def test_rounded_accepts_another_mode() -> None:
    assert Money("2.345", "EUR").rounded(ROUND_HALF_EVEN).amount == Decimal("2.34")


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money("12.5", "EUR"), "EUR 12.50"),
        (Money("1000", "JPY"), "JPY 1000"),
        (Money("1.2", "KWD"), "KWD 1.200"),
        (Money("0.125", "EUR"), "EUR 0.125"),  # unrounded precision is shown, not hidden
        (Money("1E+3", "EUR"), "EUR 1000.00"),
        (Money("1E+60", "JPY"), "JPY 1" + "0" * 60),  # printing never fails, even for absurd amounts
    ],
)
def test_str(money: Money, text: str) -> None:
    assert str(money) == text


# --- properties -------------------------------------------------------------------------------

codes = st.sampled_from(["EUR", "JPY", "KWD"])
amounts = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False)


@given(amounts, codes)
def test_rounding_moves_at_most_half_a_minor_unit_and_is_idempotent(amount: Decimal, code: str) -> None:
    money = Money(amount, code)
    rounded = money.rounded()
    assert abs(rounded.amount - amount) <= money.currency.quantum / 2
    assert rounded.is_rounded
    assert rounded.rounded() == rounded


@given(amounts, codes)
def test_half_up_is_symmetric_around_zero(amount: Decimal, code: str) -> None:
    assert (-Money(amount, code)).rounded() == -Money(amount, code).rounded()


@given(st.lists(st.tuples(st.integers(1, 1000), amounts.map(lambda d: d.quantize(Decimal("0.01"))))))
def test_lines_on_the_minor_unit_sum_to_the_rounded_total(lines: list[tuple[int, Decimal]]) -> None:
    """Whole quantities of cent prices: rounding per line loses nothing, so both totals agree."""
    total_of_rounded = Money.zero("EUR")
    exact_total = Money.zero("EUR")
    for quantity, price in lines:
        total_of_rounded = total_of_rounded + (Money(price, "EUR") * quantity).rounded()
        exact_total = exact_total + Money(price, "EUR") * quantity
    assert total_of_rounded == exact_total.rounded()


@given(st.lists(st.tuples(amounts.filter(lambda d: d > 0), amounts.filter(lambda d: d > 0)), max_size=20))
def test_sum_of_rounded_lines_is_within_half_a_cent_per_line(lines: list[tuple[Decimal, Decimal]]) -> None:
    """Fractional quantities or prices: per-line rounding may drift, but never by more than n/2 cents."""
    total_of_rounded = Money.zero("EUR")
    exact_total = Money.zero("EUR")
    for quantity, price in lines:
        total_of_rounded = total_of_rounded + (Money(price, "EUR") * quantity).rounded()
        exact_total = exact_total + Money(price, "EUR") * quantity
    assert abs((total_of_rounded - exact_total).amount) <= Decimal("0.005") * len(lines)


def test_per_line_rounding_can_differ_from_rounding_the_sum() -> None:
    """Why invoices round each line: the printed lines must add up to the printed total."""
    lines = [Money("0.005", "EUR")] * 3
    assert sum((m.rounded() for m in lines), Money.zero("EUR")) == Money("0.03", "EUR")
    assert sum(lines, Money.zero("EUR")).rounded() == Money("0.02", "EUR")


@given(amounts, amounts, codes)
def test_addition_is_exact(a: Decimal, b: Decimal, code: str) -> None:
    assert (Money(a, code) + Money(b, code)) - Money(b, code) == Money(a, code)


def test_a_total_adds_amounts_of_its_currency_and_refuses_any_other() -> None:
    eur = Currency.of("EUR")
    assert Money.sum([Money("1.10", "EUR"), Money("2.25", eur)], eur) == Money("3.35", "EUR")
    assert Money.sum([], eur) == Money("0", "EUR")
    with pytest.raises(CurrencyMismatchError, match="cannot add USD to a EUR total"):
        Money.sum([Money("1", "EUR"), Money("1", "USD")], eur)
