"""Money and currencies: exact Decimal amounts tied to an ISO 4217 currency.

Why a dedicated type: a bare Decimal forgets its currency and a float cannot hold 0.10 exactly, so
both are refused at the boundary. Amounts keep full precision (a negotiated unit price of 0.125 is
legal) until ``rounded()`` is called, which the billing run does once per invoice line.

Arithmetic runs in a private Decimal context, so the result never depends on whatever context the
calling thread happens to have set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "CURRENCIES",
    "EXACT",
    "Currency",
    "CurrencyMismatchError",
    "Money",
    "UnknownCurrencyError",
]

# 50 significant digits: far beyond any real amount x quantity, so sums and products stay exact.
_CTX: Final = Context(prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
#: The same context for other billing modules (``with localcontext(EXACT):``), so a whole billing
#: run computes with 50 digits whatever context the calling thread has set.
EXACT: Final = _CTX


class UnknownCurrencyError(ValueError):
    """A currency code that is not in the table (a typo, or a currency we do not bill in yet)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown currency code {code!r}; known: {', '.join(sorted(CURRENCIES))}")
        self.code = code


class CurrencyMismatchError(ValueError):
    """Two amounts in different currencies were combined; converting silently would be wrong."""


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: its code and how many minor units (decimals) it is invoiced in."""

    code: str
    minor_units: int

    def __post_init__(self) -> None:
        if (
            len(self.code) != 3
            or not self.code.isascii()
            or not self.code.isalpha()
            or not self.code.isupper()
        ):
            raise ValueError(f"currency code must be three upper-case letters, got {self.code!r}")
        if isinstance(self.minor_units, bool) or not isinstance(self.minor_units, int):
            raise TypeError(f"minor_units must be an int, got {type(self.minor_units).__name__}")
        if not 0 <= self.minor_units <= 4:
            raise ValueError(f"minor_units must be between 0 and 4, got {self.minor_units}")

    @classmethod
    def of(cls, code: str) -> Currency:
        """The table's currency for ``code`` (case-insensitive); raises ``UnknownCurrencyError``."""
        found = CURRENCIES.get(code.strip().upper()) if isinstance(code, str) else None
        if found is None:
            raise UnknownCurrencyError(str(code))
        return found

    @property
    def quantum(self) -> Decimal:
        """The smallest invoiceable amount, e.g. ``Decimal("0.01")`` for EUR, ``Decimal("1")`` for JPY."""
        return _QUANTA[self.minor_units]

    def __str__(self) -> str:
        return self.code


_QUANTA: Final = tuple(Decimal(1).scaleb(-units) for units in range(5))


def _table(*entries: tuple[str, int]) -> Mapping[str, Currency]:
    return MappingProxyType({code: Currency(code, units) for code, units in entries})


#: Currencies billsync can invoice in. Minor units follow ISO 4217 (JPY has none, KWD/BHD have 3).
CURRENCIES: Final[Mapping[str, Currency]] = _table(
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("JPY", 0),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("NZD", 2),
    ("SGD", 2),
    ("HKD", 2),
    ("CNY", 2),
    ("INR", 2),
    ("BRL", 2),
    ("MXN", 2),
    ("ZAR", 2),
    ("KRW", 0),
    ("ISK", 0),
    ("KWD", 3),
    ("BHD", 3),
    ("OMR", 3),
    ("JOD", 3),
)

AmountLike = Decimal | int | str


def _to_decimal(value: object, what: str) -> Decimal:
    """Exact conversion; floats (and bools) are refused because they are not exact amounts."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(
            f"{what} must be Decimal, int or str, not {type(value).__name__} (floats are inexact)"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{what} is not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"{what} must be Decimal, int or str, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return result


@dataclass(frozen=True, slots=True, init=False)
class Money:
    """An exact amount in one currency. ``Money("12.50", "EUR")`` or ``Money(Decimal("12.5"), eur)``."""

    amount: Decimal
    currency: Currency

    def __init__(self, amount: AmountLike, currency: Currency | str) -> None:
        cur = currency if isinstance(currency, Currency) else Currency.of(currency)
        object.__setattr__(self, "amount", _to_decimal(amount, "amount"))
        object.__setattr__(self, "currency", cur)

    @classmethod
    def zero(cls, currency: Currency | str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def _exact(cls, amount: Decimal, currency: Currency) -> Money:
        """Internal fast path for results of Money arithmetic (already a finite Decimal)."""
        money = object.__new__(cls)
        _SET_AMOUNT(money, amount)
        _SET_CURRENCY(money, currency)
        return money

    @classmethod
    def sum(cls, amounts: Iterable[Money], currency: Currency) -> Money:
        """The total of ``amounts``, all in ``currency`` (zero when there are none)."""
        total = Decimal(0)
        for money in amounts:
            if money.currency is not currency and money.currency != currency:
                raise CurrencyMismatchError(f"cannot add {money.currency.code} to a {currency.code} total")
            total = _CTX.add(total, money.amount)
        return cls._exact(total, currency)

    def rounded(self, rounding: str = ROUND_HALF_UP) -> Money:
        """This amount on the currency's minor unit (HALF_UP by default: ties go away from zero)."""
        value = self.amount.quantize(self.currency.quantum, rounding=rounding, context=_CTX)
        if value.is_zero():
            value = value.copy_abs()  # never print "EUR -0.00"
        return Money._exact(value, self.currency)

    @property
    def is_rounded(self) -> bool:
        """True when the amount has no digits below the currency's minor unit."""
        return self.amount == self.amount.quantize(self.currency.quantum, context=_CTX)

    def _same_currency(self, other: Money, op: str) -> None:
        if other.currency is not self.currency and other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot {op} {other.currency.code} and {self.currency.code} amounts: {self} vs {other}"
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money._exact(_CTX.add(self.amount, other.amount), self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money._exact(_CTX.subtract(self.amount, other.amount), self.currency)

    def __mul__(self, quantity: Decimal | int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, Decimal | int):
            return NotImplemented
        return Money(_CTX.multiply(self.amount, _to_decimal(quantity, "quantity")), self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money._exact(_CTX.minus(self.amount), self.currency)

    def _compare(self, other: object) -> int:
        if not isinstance(other, Money):
            raise TypeError(f"cannot compare Money with {type(other).__name__}")
        self._same_currency(other, "compare")
        return int(_CTX.compare(self.amount, other.amount))

    def __lt__(self, other: Money) -> bool:
        return self._compare(other) < 0

    def __le__(self, other: Money) -> bool:
        return self._compare(other) <= 0

    def __gt__(self, other: Money) -> bool:
        return self._compare(other) > 0

    def __ge__(self, other: Money) -> bool:
        return self._compare(other) >= 0

    def __str__(self) -> str:
        """``"EUR 12.50"``: padded to the minor unit, but extra precision is shown, never hidden."""
        exponent = self.amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= -self.currency.minor_units:
            # Padding only (no digit is dropped), and unlike quantize it cannot fail on huge amounts.
            return f"{self.currency.code} {self.amount:.{self.currency.minor_units}f}"
        return f"{self.currency.code} {self.amount:f}"

    def __repr__(self) -> str:
        return f"Money({str(self.amount)!r}, {self.currency.code!r})"


# The slots' own setters: results of Money arithmetic are built without the frozen __setattr__ check
# (one of the hottest paths of a billing run).
_SET_AMOUNT: Final[Any] = vars(Money)["amount"].__set__
_SET_CURRENCY: Final[Any] = vars(Money)["currency"].__set__
