from __future__ import annotations

import pytest

from billing.numbering import NumberSeries

INVOICES = NumberSeries("invoices", "INV-", 6)


def test_format_zero_pads_to_the_width() -> None:
    assert INVOICES.format(42) == "INV-000042"
    assert INVOICES.format(999_999) == "INV-999999"
    assert NumberSeries("credit notes", "", 4).format(7) == "0007"


@pytest.mark.parametrize("value", [0, -1])
def test_numbers_start_at_one(value: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        INVOICES.format(value)


def test_a_number_that_no_longer_fits_is_refused_not_widened() -> None:
    with pytest.raises(ValueError, match="exhausted"):
        INVOICES.format(1_000_000)


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_non_int_values_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        INVOICES.format(value)  # type: ignore[arg-type]


def test_parse_is_the_inverse_of_format() -> None:
    assert INVOICES.parse(INVOICES.format(42)) == 42


@pytest.mark.parametrize("number", ["INV-42", "CN-000042", "INV-000000", "INV-00004x", "INV-0000042"])
def test_parse_refuses_numbers_of_another_shape(number: str) -> None:
    with pytest.raises(ValueError, match="not a number of series 'invoices'"):
        INVOICES.parse(number)


@pytest.mark.parametrize(
    ("name", "prefix", "width"),
    [("", "INV-", 6), ("x", "INV 2024-", 6), ("x", "-INV", 6), ("x", "INV-", 0), ("x", "INV-", 19)],
)
def test_invalid_series_definitions_are_refused(name: str, prefix: str, width: int) -> None:
    with pytest.raises(ValueError):
        NumberSeries(name, prefix, width)
