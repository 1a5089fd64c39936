"""Discounts (coupons): a percentage or a fixed amount off, for one, N or every period, before tax.

A subscription's periods are numbered from 0; ``once`` applies to period 0, ``repeating`` to
periods 0..N-1, ``forever`` to all. Order lines are period 0. Proration lines count as the period
they fall in, so a credit for unused time is discounted like the charge it gives back; a fixed
amount off is scaled by the line's proration fraction for the same reason. Several discounts apply
in the order listed, each to what the previous ones left; a discount never turns a charge into a
credit (or a credit into a charge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal, get_args

from billing.money import Currency, Money

__all__ = ["DISCOUNT_DURATIONS", "DISCOUNT_KINDS", "Discount", "discount_line"]

DiscountKind = Literal["percent", "amount"]
DiscountDuration = Literal["once", "repeating", "forever"]
DISCOUNT_KINDS: Final[tuple[str, ...]] = get_args(DiscountKind)
DISCOUNT_DURATIONS: Final[tuple[str, ...]] = get_args(DiscountDuration)
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class Discount:
    """``value`` is a percentage (``percent``) or an amount in ``currency`` (``amount``).

    ``prices`` limits it to those price ids (empty: every price).
    """

    id: str
    kind: DiscountKind
    value: Decimal
    duration: DiscountDuration = "once"
    periods: int | None = None
    currency: str | None = None
    prices: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a discount needs an id")
        if self.kind not in DISCOUNT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DISCOUNT_KINDS)}, got {self.kind!r}")
        if self.duration not in DISCOUNT_DURATIONS:
            raise ValueError(
                f"duration must be one of {', '.join(DISCOUNT_DURATIONS)}, got {self.duration!r}"
            )
        if not isinstance(self.value, Decimal) or not self.value.is_finite() or self.value < 0:
            raise ValueError(f"value must be a Decimal >= 0, got {self.value!r}")
        if self.kind == "percent" and self.value > _HUNDRED:
            raise ValueError(f"a percent discount is at most 100, got {self.value}")
        if self.kind == "amount":
            if self.currency is None:
                raise ValueError("an amount discount needs a currency")
            Currency.of(self.currency)
        if self.duration == "repeating":
            if isinstance(self.periods, bool) or not isinstance(self.periods, int) or self.periods < 1:
                raise ValueError(f"a repeating discount needs periods >= 1, got {self.periods!r}")
        elif self.periods is not None:
            raise ValueError(f"periods is only for repeating discounts (duration is {self.duration})")

    def applies(self, price_id: str, period_index: int, currency: Currency) -> bool:
        """True when this discount covers that price in that period and currency."""
        if self.prices and price_id not in self.prices:
            return False
        if self.kind == "amount" and self.currency != currency.code:
            return False
        if self.duration == "once":
            return period_index == 0
        if self.duration == "repeating":
            assert self.periods is not None
            return period_index < self.periods
        return True


def discount_line(
    amount: Money,
    discounts: Sequence[Discount],
    price_id: str,
    period_index: int,
    share: Decimal,
    rounding: str = ROUND_HALF_UP,
) -> tuple[Money | None, tuple[str, ...]]:
    """The total discount on a line of ``amount`` (same sign as it) and the ids that applied.

    ``share`` is the line's proration fraction, which scales fixed-amount discounts.
    """
    remaining = amount
    applied: list[str] = []
    sign = -1 if amount.amount < 0 else 1
    for discount in discounts:
        if not remaining.amount or not discount.applies(price_id, period_index, amount.currency):
            continue
        if discount.kind == "percent":
            off = Money(remaining.amount * discount.value / _HUNDRED, amount.currency).rounded(rounding)
        else:
            # The cap is on the currency's grid, so rounding never takes ``off`` past the line.
            cap = abs(remaining.amount)
            off = Money(sign * min(cap, discount.value * share), amount.currency).rounded(rounding)
        remaining = remaining - off
        applied.append(discount.id)
    if not applied:
        return None, ()
    return amount - remaining, tuple(applied)
