"""The closed set of named value operations a mapping may use. Nothing else can run: no eval, no
template engine, no format strings; a name not in these tables is a spec error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any


class TransformError(ValueError):
    """A value could not be transformed; the message says what was found and what was expected."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        raise TransformError(f"float {value!r} refused: money and quantities must be exact decimals")
    return str(value)


def _trim(value: Any) -> Any:
    return value.strip() if value.__class__ is str else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _empty_to_null(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _split(separator: str, value: Any) -> Any:
    return [part.strip() for part in value.split(separator)] if isinstance(value, str) else value


def _join(separator: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return separator.join("" if v is None else _text(v) for v in value)
    return value


OPS: dict[str, Callable[[Any], Any]] = {
    "trim": _trim,
    "upper": _upper,
    "lower": _lower,
    "empty_to_null": _empty_to_null,
}

#: Operations that take one text argument: ``{split: ","}``, ``{join: "; "}``.
PARAM_OPS: dict[str, Callable[[str, Any], Any]] = {"split": _split, "join": _join}


def cast_string(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime(fmt) if fmt else value.isoformat()
    return _text(value)


#: Digits before / after the point a business number may have; beyond is an error, not a bignum.
MAX_INTEGER_DIGITS = 30
MAX_FRACTION_DIGITS = 30


def _bounded_decimal(text: str, value: Any, expected: str) -> Decimal:
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        raise TransformError(f"expected {expected}, got {value!r}") from None
    if not number.is_finite():
        raise TransformError(f"expected {expected}, got {value!r} (not a finite number)")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite numbers have an integer exponent
    if number and (number.adjusted() >= MAX_INTEGER_DIGITS or -exponent > MAX_FRACTION_DIGITS):
        raise TransformError(
            f"{value!r} is out of range: at most {MAX_INTEGER_DIGITS} digits before and "
            f"{MAX_FRACTION_DIGITS} after the point"
        )
    return number


def cast_integer(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> int:
    if isinstance(value, bool):
        raise TransformError(f"expected an integer, got boolean {value!r}")
    if isinstance(value, int):
        return value
    number = _bounded_decimal(_text(value).strip(), value, "an integer")
    if number != number.to_integral_value():
        raise TransformError(f"expected an integer, got {value!r} (has a fraction)")
    return int(number)


def cast_decimal(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> Decimal:
    """Exact decimal. JSON numbers from vendor APIs arrive as ``float`` through ``json.loads``;
    ``repr`` of a float is the shortest round-tripping text, so ``Decimal(repr(x))`` is the value
    the vendor sent (``19.99`` stays ``19.99``)."""
    if isinstance(value, bool):
        raise TransformError(f"expected a decimal number, got boolean {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    text = repr(value) if isinstance(value, float) else str(value).strip()
    return _bounded_decimal(text, value, "a decimal number")


_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}


def cast_boolean(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError(f"expected a boolean (true/false, yes/no, 1/0), got {value!r}")


def cast_date(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = _text(value).strip()
    try:
        if fmt:
            return dt.datetime.strptime(text, fmt).date()
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise TransformError(
            f"expected a date{' as ' + fmt if fmt else ' (YYYY-MM-DD)'}, got {value!r}"
        ) from None


def cast_datetime(value: Any, fmt: str | None = None, tz: tzinfo | None = None) -> dt.datetime:
    """Timezone-aware datetime; Salesforce's ``+0000`` offsets and a trailing ``Z`` are accepted.
    A value without an offset is read in ``tz`` (the rule's ``timezone:``), else in UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = _text(value).strip()
        try:
            if fmt:
                parsed = dt.datetime.strptime(text, fmt)
            else:
                if text.endswith("Z"):
                    text = text[:-1] + "+00:00"
                elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
                    text = text[:-2] + ":" + text[-2:]
                parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise TransformError(
                f"expected a date-time{' as ' + fmt if fmt else ' (ISO 8601)'}, got {value!r}"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz or dt.UTC)


CASTS: dict[str, Callable[..., Any]] = {
    "string": cast_string,
    "integer": cast_integer,
    "decimal": cast_decimal,
    "boolean": cast_boolean,
    "date": cast_date,
    "datetime": cast_datetime,
}


def money(amount: Any, currency: Any) -> dict[str, Any] | None:
    """``{amount: Decimal, currency: ISO code}``; both parts or neither."""
    if amount in (None, "") and currency in (None, ""):
        return None
    if amount in (None, "") or currency in (None, ""):
        raise TransformError(f"money needs both an amount and a currency, got {amount!r} and {currency!r}")
    code = _text(currency).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise TransformError(f"{currency!r} is not an ISO 4217 currency code")
    return {"amount": cast_decimal(amount), "currency": code}
