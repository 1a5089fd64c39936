"""Billing periods: intervals, anchors and day-count conventions.

A subscription's periods are a *grid*: every date ``anchor + k x interval`` for all integers k. The
grid is computed from the anchor each time (never by adding one interval to the previous date), so a
month-based grid anchored on the 31st falls on Feb 28/29 and comes back to Mar 31: the day never
drifts. A subscription that starts between two grid dates gets a short first period (the *leading
proration* of Kill Bill, Stripe's ``billing_cycle_anchor``); its charge is the fraction of the full
period that *contains* it, e.g. start Sep 16 on a grid of the 25th -> 9 days of Aug 25 - Sep 25 (31).

Periods are half-open: ``end`` is the first day not covered (the next period's start).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Final, Literal, get_args

__all__ = [
    "DAY_COUNTS",
    "UNITS",
    "Anchor",
    "Cycle",
    "DayCount",
    "Fraction",
    "Unit",
    "add_months",
    "cycle_for",
    "days360",
    "prorate",
]

Unit = Literal["day", "week", "month", "quarter", "year"]
DayCount = Literal["actual_days", "thirty_day_months", "seconds", "none"]
#: ``"anniversary"`` (the start date), ``"calendar"`` (1st of the month/quarter/year, Monday for
#: weeks) or a bill-cycle day of the month (1-31; 29-31 fall on the last day of shorter months).
Anchor = Literal["anniversary", "calendar"] | int

UNITS: Final[tuple[str, ...]] = get_args(Unit)
DAY_COUNTS: Final[tuple[str, ...]] = get_args(DayCount)
_MONTHS: Final = {"month": 1, "quarter": 3, "year": 12}
_DAYS: Final = {"day": 1, "week": 7}


_MONTH_DAYS: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def add_months(anchor: date, months: int, day: int | None = None) -> date:
    """``anchor`` moved by ``months`` on ``day`` (default: anchor's day), clamped to the month's end."""
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    wanted = anchor.day if day is None else day
    last = _MONTH_DAYS[month0] + (month0 == 1 and calendar.isleap(year))
    return date(year, month0 + 1, min(wanted, last))


@dataclass(frozen=True, slots=True)
class Fraction:
    """The share ``numerator / denominator`` of a full period that a partial period is charged.

    Kept as two integers (days, or 30/360 days) so explanations show "9/31", not 0.2903225806...
    """

    numerator: int
    denominator: int
    convention: DayCount

    @property
    def is_whole(self) -> bool:
        return self.numerator == self.denominator


WHOLE: Final = Fraction(1, 1, "none")


@dataclass(frozen=True, slots=True)
class Cycle:
    """The grid of period boundaries ``anchor + k x count units`` (k any integer)."""

    unit: Unit
    count: int
    anchor: date
    day: int

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"interval must be one of {', '.join(UNITS)}, got {self.unit!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"interval_count must be a whole number >= 1, got {self.count!r}")

    @property
    def _step_months(self) -> int:
        return _MONTHS.get(self.unit, 0) * self.count

    def boundary(self, k: int) -> date:
        """The k-th grid date (k = 0 is the anchor)."""
        months = self._step_months
        if months:
            return add_months(self.anchor, k * months, self.day)
        return self.anchor + timedelta(days=k * _DAYS[self.unit] * self.count)

    def index_at(self, when: date) -> int:
        """The k of the period containing ``when``: ``boundary(k) <= when < boundary(k + 1)``."""
        months = self._step_months
        if not months:
            return (when - self.anchor).days // (_DAYS[self.unit] * self.count)
        elapsed = (when.year - self.anchor.year) * 12 + when.month - self.anchor.month
        k = elapsed // months
        # boundary(k + 1) lies in a later month than ``when``; only boundary(k), in the same month
        # when the months divide evenly, can fall after it (its day is later in that month).
        return k - 1 if self.boundary(k) > when else k

    def containing(self, when: date) -> tuple[date, date]:
        """The full grid period that contains ``when`` (memoised: a billing run asks for the same
        few periods of the same few grids for every subscription)."""
        return _containing(self, when)

    def next_boundary(self, when: date) -> date:
        """The first grid date strictly after ``when``."""
        return self.containing(when)[1]

    @property
    def month_based(self) -> bool:
        return self._step_months > 0


@lru_cache(maxsize=65536)
def _containing(cycle: Cycle, when: date) -> tuple[date, date]:
    k = cycle.index_at(when)
    return cycle.boundary(k), cycle.boundary(k + 1)


@lru_cache(maxsize=65536)
def cycle_for(unit: Unit, count: int, start: date, anchor: Anchor = "anniversary") -> Cycle:
    """The grid for a subscription starting on ``start`` with the given anchor.

    A bill-cycle day only makes sense for month-based intervals; day and week intervals use the
    anniversary instead (documented in docs/billing.md).
    """
    if anchor == "calendar":
        if unit == "week":
            return Cycle(unit, count, start - timedelta(days=start.weekday()), 1)
        if unit == "day":
            return Cycle(unit, count, start, start.day)
        first_month = {"year": 1, "quarter": (start.month - 1) // 3 * 3 + 1}.get(unit, start.month)
        return Cycle(unit, count, date(start.year, first_month, 1), 1)
    if isinstance(anchor, int) and unit in _MONTHS:
        if not 1 <= anchor <= 31:
            raise ValueError(f"bill cycle day must be from 1 to 31, got {anchor}")
        return Cycle(unit, count, add_months(start, 0, anchor), anchor)
    return Cycle(unit, count, start, start.day)


def days360(start: date, end: date) -> int:
    """Days from ``start`` to ``end`` counting every month as 30 days (30E/360: day 31 counts as 30)."""
    return (
        (end.year - start.year) * 360 + (end.month - start.month) * 30 + min(end.day, 30) - min(start.day, 30)
    )


def prorate(
    convention: DayCount,
    start: date,
    end: date,
    cycle_start: date,
    cycle_end: date,
    *,
    month_based: bool = True,
) -> Fraction:
    """The share of the full period ``[cycle_start, cycle_end)`` that ``[start, end)`` is charged.

    ``seconds`` counts elapsed time; billsync's events are dated (midnight UTC), so it equals
    ``actual_days`` today and is kept so imported per-second prices keep their setting.
    ``thirty_day_months`` applies to month-based periods; day and week periods count actual days.
    """
    if convention == "none":
        return WHOLE
    if convention == "thirty_day_months" and month_based:
        num, den = days360(start, end), days360(cycle_start, cycle_end)
    else:
        num, den = (end - start).days, (cycle_end - cycle_start).days
    return Fraction(num, den, convention)
