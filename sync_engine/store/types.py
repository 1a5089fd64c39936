"""Column types that keep money exact and timestamps in UTC on every backend."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Digits kept after the decimal point (enough for unit prices of metered usage).
MONEY_SCALE = 6
#: Total significant digits: NUMERIC(20, 6) holds up to 14 integer digits.
MONEY_PRECISION = 20
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(20, 6) where the database has an exact decimal; text on SQLite.

    SQLite's NUMERIC affinity stores floats, which would silently round money. Text keeps every
    digit; values come back as ``Decimal`` with six places on both backends. A value that does not
    fit (more than six decimals, more than fourteen integer digits, NaN) is refused rather than
    rounded, as PostgreSQL would round it silently. Do not ``SUM()`` these columns in SQL on SQLite
    (it adds floats); add the ``Decimal`` values in Python.
    """

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(exact_amount(value)) if dialect.name == "sqlite" else exact_amount(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


def exact_amount(value: Any) -> Decimal:
    """``value`` as a ``Decimal`` with six places, refused (``ValueError``) if that would round it or
    it is too large for the column; floats are refused (``TypeError``)."""
    exact: Decimal = value
    if type(value) is not Decimal:
        if isinstance(value, float):
            raise TypeError("money columns take Decimal, never float")
        try:
            exact = Decimal(value)
        except (InvalidOperation, ValueError, TypeError) as exc:
            raise ValueError(f"not a storable decimal amount: {value!r}") from exc
    try:
        quantized = exact.quantize(_QUANTUM)
    except InvalidOperation as exc:
        raise ValueError(f"not a storable decimal amount: {value!r}") from exc
    if quantized != exact or not -_LIMIT < quantized < _LIMIT:
        raise ValueError(
            f"{value!r} does not fit NUMERIC({MONEY_PRECISION}, {MONEY_SCALE}); refusing to round it"
        )
    return quantized


def money_text(value: Any) -> str | None:
    """What ``ExactDecimal`` stores on SQLite (text), for writers that bypass the type's processor."""
    return None if value is None else str(exact_amount(value))


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp, stored in UTC and always read back aware (UTC).

    SQLite has no time zone: SQLAlchemy's SQLite DATETIME drops the offset on write (storing local
    wall time as if it were UTC) and returns naive values, which then fail comparisons with aware
    ones. Naive datetimes are refused, since on PostgreSQL their meaning depends on the session
    time zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"timestamp columns take datetime, not {type(value).__name__}")
        if value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass an aware one, e.g. datetime.now(UTC)")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]
        return value.astimezone(dt.UTC)  # type: ignore[no-any-return]
