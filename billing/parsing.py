"""Reading prices and tax rates from parsed YAML: shared by pricing scenarios and the catalog.

One parser, so a price written in a scenario means exactly the same in ``catalog.yaml``. Problems
are collected (never raised) with their key path (``prices[2].tiers[0].up_to: ...``), so a user sees
every mistake at once. Floats are refused: YAML reads ``24.95`` as a binary float, which is not the
amount that was written, so amounts are quoted (``"24.95"``) or whole.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, ParamSpec, TypeVar

from billing.money import CURRENCIES, Currency
from billing.periods import DAY_COUNTS, UNITS
from billing.pricing import AGGREGATIONS, CHARGES, MODELS, TIMINGS, PriceSpec, Tier
from billing.tax import TaxRate

__all__ = [
    "PRICE_KEYS",
    "Reader",
    "build",
    "check_tax",
    "parse_currency",
    "parse_date",
    "parse_decimal",
    "parse_decimals",
    "parse_integer",
    "parse_list",
    "parse_price",
    "parse_taxes",
    "parse_text",
    "kind",
]

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Reader:
    """Typed access to one mapping, recording problems instead of raising."""

    problems: list[str]
    data: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def keys(self, allowed: Iterable[str]) -> None:
        allowed = frozenset(allowed)
        for key in sorted(map(str, self.data)):
            if key not in allowed:
                self.problem(key, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def get(self, key: str, parse: Callable[[object], T], default: T, required: bool = False) -> T:
        if key not in self.data or self.data[key] is None:
            if required:
                self.problem(key, "required")
            return default
        try:
            return parse(self.data[key])
        except (TypeError, ValueError) as exc:
            self.problem(key, str(exc))
            return default

    def text(self, key: str, default: str = "", required: bool = False) -> str:
        return self.get(key, parse_text, default, required)

    def optional_text(self, key: str) -> str | None:
        return self.get(key, parse_text, None)

    def decimal(self, key: str, default: Decimal = Decimal(0), required: bool = False) -> Decimal:
        return self.get(key, parse_decimal, default, required)

    def optional_decimal(self, key: str) -> Decimal | None:
        return self.get(key, parse_decimal, None)

    def integer(self, key: str, default: int) -> int:
        return self.get(key, parse_integer, default)

    def optional_integer(self, key: str) -> int | None:
        return self.get(key, parse_integer, None)

    def flag(self, key: str, default: bool = False) -> bool:
        return self.get(key, _flag, default)

    def day(self, key: str, required: bool = False) -> date | None:
        return self.get(key, parse_date, None, required)

    def choice(self, key: str, options: Sequence[str], default: str, required: bool = False) -> str:
        def parse(value: object) -> str:
            if value not in options:
                raise ValueError(f"must be one of {', '.join(options)} (got {value!r})")
            return str(value)

        return self.get(key, parse, default, required)

    def items(self, key: str, required: bool = False) -> list[Reader]:
        raw = self.data.get(key)
        if raw is None:
            if required:
                self.problem(key, "required, a list")
            return []
        if not isinstance(raw, list):
            self.problem(key, f"expected a list, got {kind(raw)}")
            return []
        readers: list[Reader] = []
        for index, item in enumerate(raw):
            where = f"{self.at(key)}[{index}]"
            if not isinstance(item, Mapping):
                self.problems.append(f"{where}: expected a mapping, got {kind(item)}")
                continue
            readers.append(Reader(self.problems, item, where))
        return readers

    def mapping(self, key: str) -> Reader:
        raw = self.data.get(key)
        if raw is not None and not isinstance(raw, Mapping):
            self.problem(key, f"expected a mapping, got {kind(raw)}")
            raw = None
        return Reader(self.problems, raw or {}, self.at(key))


def kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {kind(value)}")
    return value.strip()


def parse_decimal(value: object) -> Decimal:
    if isinstance(value, float):
        raise ValueError(
            f'{value!r} was read as a float, which cannot hold money exactly; quote it: "{value}"'
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'expected a quoted decimal such as "24.95", got {kind(value)}')
    try:
        result = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not result.is_finite() or abs(result) >= Decimal("1e15"):
        raise ValueError(f"not a usable amount: {value!r}")
    return result


def parse_integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def parse_date(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"expected a date (YYYY-MM-DD), got a timestamp {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


def parse_currency(value: object) -> Currency:
    if not isinstance(value, str) or value.strip().upper() not in CURRENCIES:
        raise ValueError(f"unknown currency {value!r}; use an ISO 4217 code such as USD")
    return Currency.of(value)


def parse_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {kind(value)}")
    return value


def parse_decimals(value: object) -> tuple[Decimal, ...]:
    return tuple(parse_decimal(item) for item in parse_list(value))


def build(r: Reader, make: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Construct a value whose own checks may still refuse it (ValueError -> a problem)."""
    try:
        return make(*args, **kwargs)
    except ValueError as exc:
        r.problems.append(f"{r.path}: {exc}")
        return None


PRICE_KEYS: Final = frozenset(
    {
        "id", "model", "amount", "name", "currency", "interval", "interval_count", "billing", "proration",
        "charge", "aggregation", "tiers", "package_size", "package_rounding", "free_units", "free_amount",
        "rate", "fixed_fee", "minimum", "installments", "schedule", "tax", "tax_code",
    }
)  # fmt: skip


def parse_price(r: Reader, currency: Currency | None) -> PriceSpec | None:
    """One price entry; ``currency`` is the default when the entry names none (None = required)."""
    r.keys(PRICE_KEYS)
    before = len(r.problems)
    tiers: list[Tier] = []
    for t in r.items("tiers"):
        t.keys({"up_to", "unit_amount", "flat_amount"})
        tiers.append(Tier(t.optional_decimal("up_to"), t.decimal("unit_amount"), t.decimal("flat_amount")))
    schedule: tuple[Decimal, ...] = r.get("schedule", parse_decimals, ())
    values: dict[str, Any] = {
        "id": r.text("id", required=True),
        "currency": r.get("currency", parse_currency, currency or Currency.of("USD"), currency is None),
        "model": r.choice("model", MODELS, "", required=True),
        "amount": r.decimal("amount"),
        "name": r.text("name"),
        "interval": r.choice("interval", UNITS, "") or None,
        "interval_count": r.integer("interval_count", 1),
        "billing": r.choice("billing", TIMINGS, "in_advance"),
        "proration": r.choice("proration", DAY_COUNTS, "actual_days"),
        "charge": r.choice("charge", CHARGES, "per_unit"),
        "aggregation": r.choice("aggregation", AGGREGATIONS, "sum"),
        "tiers": tuple(tiers),
        "package_size": r.decimal("package_size", Decimal(1)),
        "package_rounding": r.choice("package_rounding", ("up", "down"), "up"),
        "free_units": r.decimal("free_units"),
        "free_amount": r.decimal("free_amount"),
        "rate": r.decimal("rate"),
        "fixed_fee": r.decimal("fixed_fee"),
        "minimum": r.optional_decimal("minimum"),
        "installments": r.integer("installments", 1),
        "schedule": schedule,
        "tax": r.optional_text("tax"),
        "tax_code": r.optional_text("tax_code"),
    }
    if len(r.problems) > before:
        return None
    try:
        return PriceSpec(**values)
    except ValueError as exc:
        r.problems.append(f"{r.path}.{exc}")
        return None


def parse_taxes(root: Reader, key: str = "taxes") -> list[TaxRate]:
    """The ``taxes:`` list; a repeated id is a problem at the repeat."""
    taxes: list[TaxRate] = []
    for r in root.items(key):
        before = len(r.problems)
        r.keys({"id", "rate", "inclusive", "name", "jurisdiction", "tax_code"})
        values: dict[str, Any] = {
            "id": r.text("id", required=True),
            "rate": r.decimal("rate", required=True),
            "inclusive": r.flag("inclusive"),
            "name": r.text("name"),
            "jurisdiction": r.optional_text("jurisdiction"),
            "tax_code": r.optional_text("tax_code"),
        }
        # Once a field is reported, the rate's own checks would only repeat it.
        tax = None if len(r.problems) > before else build(r, TaxRate, **values)
        if tax is None:
            continue
        if any(t.id == tax.id for t in taxes):
            r.problem("id", f"duplicate tax rate {tax.id!r}")
            continue
        taxes.append(tax)
    return taxes


def check_tax(r: Reader, tax_id: str | None, defined: Collection[str], key: str = "tax") -> bool:
    """Whether ``tax_id`` (None = no reference) names a defined rate; a problem listing them if not."""
    if tax_id is None or tax_id in defined:
        return True
    r.problem(key, f"unknown tax rate {tax_id!r}; defined: {', '.join(sorted(defined)) or 'none'}")
    return False
