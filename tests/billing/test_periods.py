from __future__ import annotations

from datetime import date

import pytest

from billing.periods import Cycle, Fraction, add_months, cycle_for, days360, prorate


def test_bill_cycle_day_31_falls_on_the_last_day_of_short_months_and_comes_back() -> None:
    cycle = cycle_for("month", 1, date(2024, 1, 10), 31)
    assert [cycle.boundary(k) for k in range(4)] == [
        date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30),
    ]  # fmt: skip
    assert cycle.containing(date(2024, 3, 5)) == (date(2024, 2, 29), date(2024, 3, 31))
    assert cycle.containing(date(2024, 2, 29)) == (date(2024, 2, 29), date(2024, 3, 31))
    assert cycle.containing(date(2024, 2, 28)) == (date(2024, 1, 31), date(2024, 2, 29))


def test_the_grid_extends_before_its_anchor() -> None:
    cycle = cycle_for("month", 1, date(2021, 9, 16), 25)
    assert cycle.anchor == date(2021, 9, 25)
    assert cycle.containing(date(2021, 9, 16)) == (date(2021, 8, 25), date(2021, 9, 25))
    assert cycle.next_boundary(date(2021, 9, 16)) == date(2021, 9, 25)
    assert cycle.next_boundary(date(2021, 9, 25)) == date(2021, 10, 25)


@pytest.mark.parametrize(
    ("unit", "start", "expected"),
    [
        ("month", date(2024, 5, 17), (date(2024, 5, 1), date(2024, 6, 1))),
        ("quarter", date(2024, 5, 17), (date(2024, 4, 1), date(2024, 7, 1))),
        ("year", date(2024, 5, 17), (date(2024, 1, 1), date(2025, 1, 1))),
        ("week", date(2024, 5, 17), (date(2024, 5, 13), date(2024, 5, 20))),  # a Friday -> Monday
        ("day", date(2024, 5, 17), (date(2024, 5, 17), date(2024, 5, 18))),
    ],
)
def test_calendar_anchor_aligns_on_the_calendar(unit: str, start: date, expected: tuple[date, date]) -> None:
    assert cycle_for(unit, 1, start, "calendar").containing(start) == expected  # type: ignore[arg-type]


def test_day_and_week_grids_ignore_a_bill_cycle_day_and_count_days() -> None:
    cycle = cycle_for("week", 2, date(2024, 1, 3), 25)
    assert cycle.anchor == date(2024, 1, 3) and not cycle.month_based
    assert cycle.containing(date(2024, 1, 20)) == (date(2024, 1, 17), date(2024, 1, 31))
    assert cycle.containing(date(2023, 12, 25)) == (date(2023, 12, 20), date(2024, 1, 3))


def test_anniversary_keeps_the_start_day() -> None:
    cycle = cycle_for("year", 1, date(2024, 2, 29))
    assert [cycle.boundary(k) for k in range(-1, 3)] == [
        date(2023, 2, 28), date(2024, 2, 29), date(2025, 2, 28), date(2026, 2, 28),
    ]  # fmt: skip
    assert cycle_for("quarter", 2, date(2024, 1, 31)).boundary(1) == date(2024, 7, 31)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Cycle("fortnight", 1, date(2024, 1, 1), 1), "interval must be one of"),  # type: ignore[arg-type]
        (lambda: Cycle("month", 0, date(2024, 1, 1), 1), "interval_count must be"),
        (lambda: Cycle("month", True, date(2024, 1, 1), 1), "interval_count must be"),
        (lambda: cycle_for("month", 1, date(2024, 1, 1), 32), "bill cycle day must be from 1 to 31"),
    ],
)
def test_invalid_grids_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_add_months_on_a_given_day() -> None:
    assert add_months(date(2024, 1, 15), 1, 31) == date(2024, 2, 29)
    assert add_months(date(2024, 1, 31), -2) == date(2023, 11, 30)


def test_days360_counts_every_month_as_30_days() -> None:
    assert days360(date(2021, 8, 25), date(2021, 9, 25)) == 30
    assert days360(date(2024, 1, 31), date(2024, 3, 31)) == 60
    assert days360(date(2024, 2, 28), date(2024, 3, 1)) == 3


def test_day_count_conventions() -> None:
    args = (date(2021, 9, 16), date(2021, 9, 25), date(2021, 8, 25), date(2021, 9, 25))
    assert prorate("actual_days", *args) == Fraction(9, 31, "actual_days")
    assert prorate("seconds", *args) == Fraction(9, 31, "seconds")
    assert prorate("thirty_day_months", *args) == Fraction(9, 30, "thirty_day_months")
    assert prorate("thirty_day_months", *args, month_based=False) == Fraction(9, 31, "thirty_day_months")
    assert prorate("none", *args).is_whole
