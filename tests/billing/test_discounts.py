from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from billing.discounts import Discount, discount_line
from billing.money import Currency, Money

USD = Currency.of("USD")


def off(
    amount: str, *discounts: Discount, index: int = 0, share: str = "1"
) -> tuple[Money | None, tuple[str, ...]]:
    return discount_line(Money(amount, USD), discounts, "p", index, D(share))


def test_percent_then_amount_apply_in_order_on_what_is_left() -> None:
    ten = Discount("ten", "percent", D(10), "forever")
    five = Discount("five", "amount", D(5), "forever", currency="USD")
    assert off("100.00", ten, five) == (Money("15.00", USD), ("ten", "five"))
    assert off("100.00", five, ten) == (Money("14.50", USD), ("five", "ten"))


def test_amount_off_is_capped_scaled_by_proration_and_follows_the_sign() -> None:
    five = Discount("five", "amount", D(5), "forever", currency="USD")
    assert off("3.00", five)[0] == Money("3.00", USD)
    assert off("10.00", five, share="0.5")[0] == Money("2.50", USD)
    assert off("-10.00", five, share="0.5")[0] == Money("-2.50", USD)
    assert off("-10.00", Discount("h", "percent", D(50), "forever"))[0] == Money("-5.00", USD)


@pytest.mark.parametrize(
    ("duration", "periods", "applies"),
    [
        ("once", None, [True, False, False]),
        ("repeating", 2, [True, True, False]),
        ("forever", None, [True] * 3),
    ],
)
def test_durations_count_periods(duration: Any, periods: int | None, applies: list[bool]) -> None:
    d = Discount("d", "percent", D(10), duration, periods)
    assert [off("10.00", d, index=i)[0] is not None for i in range(3)] == applies


def test_a_discount_limited_to_prices_or_a_currency_skips_the_others() -> None:
    assert off("10.00", Discount("d", "percent", D(10), "forever", prices=frozenset({"other"}))) == (None, ())
    assert off("10.00", Discount("d", "amount", D(1), "forever", currency="EUR")) == (None, ())
    assert off("0.00", Discount("d", "percent", D(10), "forever")) == (None, ())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "needs an id"),
        ({"kind": "bogo"}, "kind must be one of"),
        ({"duration": "sometimes"}, "duration must be one of"),
        ({"value": D(-1)}, "value must be a Decimal >= 0"),
        ({"value": D(101)}, "at most 100"),
        ({"kind": "amount"}, "needs a currency"),
        ({"kind": "amount", "currency": "XXX"}, "unknown currency"),
        ({"duration": "repeating"}, "needs periods >= 1"),
        ({"periods": 2}, "only for repeating"),
    ],
)
def test_invalid_discounts_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Discount(**{"id": "d", "kind": "percent", "value": D(10), **kwargs})
