"""Stripe amounts are integers in the currency's smallest unit, and Stripe's unit is not always ISO's.

Stripe documents its own table (https://docs.stripe.com/currencies#minor-units): most currencies have
two decimals; the zero-decimal ones are sent as whole units (``JPY 500`` -> ``500``); the three-decimal
ones (BHD, JOD, KWD, OMR, TND) are sent in thousandths and the last digit must be 0 (``KWD 5.12`` ->
``5120``). ISK, HUF and TWD keep Stripe's two-decimal representation even though ISO says otherwise
(ISK is zero-decimal at ISO but Stripe wants ``ISK 100`` as ``10000``), so only the documented tables
decide here, never ``Currency.of(code).minor_units``.

This module converts both ways without ever rounding: an amount that Stripe cannot represent exactly
raises :class:`ValueError` instead of silently losing a fraction.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "THREE_DECIMAL_CURRENCIES",
    "ZERO_DECIMAL_CURRENCIES",
    "exponent",
    "from_minor_units",
    "to_minor_units",
]

#: Stripe's zero-decimal currencies: the API amount is the amount itself.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
#: Stripe's three-decimal currencies: the API amount is in thousandths and must end in 0.
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _code(currency: str) -> str:
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return code


def exponent(currency: str) -> int:
    """Decimal places of Stripe's minor unit for ``currency`` (case-insensitive): 0, 2 or 3."""
    code = _code(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def from_minor_units(value: int, currency: str) -> Decimal:
    """A Stripe integer amount as a Decimal with the currency's scale: ``(1099, "usd")`` -> ``10.99``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Stripe amounts are integers, got {value!r}")
    return Decimal(value).scaleb(-exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """The integer Stripe expects for ``amount``; raises ValueError when it is not exactly representable.

    ``Decimal("10.99"), "USD"`` -> 1099; ``Decimal("500"), "JPY"`` -> 500; ``Decimal("5.12"), "KWD"`` ->
    5120; ``Decimal("5.125"), "KWD"`` and ``Decimal("0.5"), "JPY"`` raise (no silent rounding).
    """
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {amount!r}")
    places = exponent(currency)
    scaled = amount.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency.upper()} has more decimals than Stripe's {places}")
    minor = int(scaled)
    if places == 3 and minor % 10:
        raise ValueError(
            f"{amount} {currency.upper()}: Stripe requires three-decimal amounts to end in 0 (at most 2 decimals)"
        )
    return minor
