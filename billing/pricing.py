"""Prices and charge models: what one price costs for a quantity or a set of usage records.

A ``PriceSpec`` is in one currency (a product priced in USD and EUR has one spec per currency, as in
Stripe); a ``PriceBook`` looks them up by ``(price id, currency)``. Rating functions return the
*exact* amount (no rounding) with its breakdown; the generator rounds once per line.

Charge models for usage (quantity Q is the aggregated usage of a period):

- ``per_unit``: Q x amount.
- ``graduated``: each tier prices the units that fall in it (+ its flat fee once entered).
- ``volume``: the tier Q falls in prices every unit (+ that tier's flat fee).
- ``package``: ``ceil((Q - free_units) / package_size)`` packages x amount (``package_rounding:
  down`` floors instead).
- ``percentage``: ``rate`` % of each transaction's amount plus ``fixed_fee`` per transaction. The
  first transactions are free while *both* allowances last: ``free_units`` transactions and
  ``free_amount`` of transaction amount; whichever runs out first ends the free part (Lago's rule).
  The transaction that crosses ``free_amount`` pays the rate on its excess and the fixed fee.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, cast, get_args

from billing.explain import TierUse
from billing.money import Currency
from billing.periods import DAY_COUNTS, UNITS, DayCount, Unit

if TYPE_CHECKING:  # the catalog builds PriceSpecs, so it imports this module
    from billing.catalog import Catalog

__all__ = [
    "AGGREGATIONS",
    "CHARGES",
    "MODELS",
    "Aggregation",
    "ChargeModel",
    "PriceBook",
    "PriceModel",
    "PriceSpec",
    "Rating",
    "Tier",
    "Timing",
    "UsageRecord",
    "aggregate",
    "rate_quantity",
    "rate_transactions",
]

PriceModel = Literal["one_time", "recurring", "usage", "installment"]
ChargeModel = Literal["per_unit", "graduated", "volume", "package", "percentage"]
Aggregation = Literal["count", "sum", "max", "last", "unique_count"]
Timing = Literal["in_advance", "in_arrears"]

MODELS: Final[tuple[str, ...]] = get_args(PriceModel)
CHARGES: Final[tuple[str, ...]] = get_args(ChargeModel)
AGGREGATIONS: Final[tuple[str, ...]] = get_args(Aggregation)
TIMINGS: Final[tuple[str, ...]] = get_args(Timing)
#: Charge models whose amount is not quantity x one unit amount.
NONLINEAR: Final = frozenset({"graduated", "volume", "package", "percentage"})
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to ``up_to`` (inclusive; None = no upper bound) at ``unit_amount``, plus ``flat_amount``."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage event. ``value`` is what ``unique_count`` counts; ``id`` de-duplicates re-sent events."""

    customer_id: str
    price: str
    timestamp: datetime
    quantity: Decimal = Decimal(1)
    value: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.timestamp, datetime):
            raise TypeError(f"timestamp must be a datetime, not {type(self.timestamp).__name__}")
        if not isinstance(self.quantity, Decimal) or not self.quantity.is_finite() or self.quantity < 0:
            raise ValueError(f"usage quantity must be a Decimal >= 0, got {self.quantity!r}")
        # Periods are UTC days: a naive timestamp is taken as UTC, an aware one converted to it.
        stamp = self.timestamp
        utc = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        object.__setattr__(self, "timestamp", utc)

    @property
    def day(self) -> date:
        """The UTC day of the event, which decides its billing period."""
        return self.timestamp.date()


@dataclass(frozen=True, slots=True)
class PriceSpec:
    """One price in one currency. Which fields matter depends on ``model`` (see docs/billing.md).

    ``amount`` is the unit amount (one-time, recurring, per-unit usage), the package amount
    (package) or the total to split (installment).
    """

    id: str
    currency: Currency
    model: PriceModel
    amount: Decimal = _ZERO
    name: str = ""
    interval: Unit | None = None
    interval_count: int = 1
    billing: Timing = "in_advance"
    proration: DayCount = "actual_days"
    charge: ChargeModel = "per_unit"
    aggregation: Aggregation = "sum"
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal = Decimal(1)
    package_rounding: Literal["up", "down"] = "up"
    free_units: Decimal = _ZERO
    free_amount: Decimal = _ZERO
    rate: Decimal = _ZERO
    fixed_fee: Decimal = _ZERO
    minimum: Decimal | None = None
    installments: int = 1
    schedule: tuple[Decimal, ...] = ()
    tax: str | None = None
    tax_code: str | None = None

    def __post_init__(self) -> None:
        for problem in self.problems():
            raise ValueError(problem)
        if self.model == "usage" and self.interval is None:
            object.__setattr__(self, "interval", "month")

    @property
    def label(self) -> str:
        """The name printed on invoice lines."""
        return self.name or self.id

    @property
    def linear(self) -> bool:
        """True when amount = quantity x one unit amount (so a line's unit price is meaningful)."""
        return self.model != "usage" or self.charge not in NONLINEAR

    def problems(self) -> Iterator[str]:
        """Every rule this price breaks, as ``"field: message"``."""
        if not self.id:
            yield "id: required"
        if self.model not in MODELS:
            yield f"model: must be one of {', '.join(MODELS)} (got {self.model!r})"
        if self.amount < 0:
            yield f"amount: must be >= 0 (got {self.amount})"
        if self.model in ("recurring", "installment") and self.interval not in UNITS:
            yield f"interval: a {self.model} price needs one of {', '.join(UNITS)} (got {self.interval!r})"
        if self.interval is not None and self.interval not in UNITS:
            yield f"interval: must be one of {', '.join(UNITS)} (got {self.interval!r})"
        if (
            isinstance(self.interval_count, bool)
            or not isinstance(self.interval_count, int)
            or self.interval_count < 1
        ):
            yield f"interval_count: must be a whole number >= 1 (got {self.interval_count!r})"
        if self.billing not in TIMINGS:
            yield f"billing: must be one of {', '.join(TIMINGS)} (got {self.billing!r})"
        if self.proration not in DAY_COUNTS:
            yield f"proration: must be one of {', '.join(DAY_COUNTS)} (got {self.proration!r})"
        if self.model == "usage":
            yield from self._usage_problems()
        elif self.minimum is not None:
            yield "minimum: only usage prices have a minimum commitment"
        if self.model == "installment":
            yield from self._installment_problems()

    def _usage_problems(self) -> Iterator[str]:
        if self.charge not in CHARGES:
            yield f"charge: must be one of {', '.join(CHARGES)} (got {self.charge!r})"
        if self.aggregation not in AGGREGATIONS:
            yield f"aggregation: must be one of {', '.join(AGGREGATIONS)} (got {self.aggregation!r})"
        if self.charge in ("graduated", "volume"):
            yield from _tier_problems(self.tiers)
        elif self.tiers:
            yield f"tiers: only graduated and volume charges have tiers (charge is {self.charge})"
        if self.charge == "package" and self.package_size <= 0:
            yield f"package_size: must be > 0 (got {self.package_size})"
        if self.charge == "percentage":
            if self.aggregation != "sum":
                yield "aggregation: a percentage charge applies to each transaction amount, so it must be sum"
            if not 0 <= self.rate <= _HUNDRED:
                yield f"rate: must be a percentage from 0 to 100 (got {self.rate})"
        for name in ("free_units", "free_amount", "fixed_fee"):
            if getattr(self, name) < 0:
                yield f"{name}: must be >= 0 (got {getattr(self, name)})"
        if self.minimum is not None and self.minimum < 0:
            yield f"minimum: must be >= 0 (got {self.minimum})"

    def _installment_problems(self) -> Iterator[str]:
        if (
            isinstance(self.installments, bool)
            or not isinstance(self.installments, int)
            or self.installments < 1
        ):
            yield f"installments: must be a whole number >= 1 (got {self.installments!r})"
        elif self.schedule:
            if len(self.schedule) != self.installments:
                yield f"schedule: {len(self.schedule)} percentages for {self.installments} installments"
            if sum(self.schedule, _ZERO) != _HUNDRED or any(p <= 0 for p in self.schedule):
                yield f"schedule: percentages must be > 0 and add up to 100 (got {', '.join(map(str, self.schedule))})"


def _tier_problems(tiers: Sequence[Tier]) -> Iterator[str]:
    if not tiers:
        yield "tiers: a graduated or volume charge needs at least one tier"
    previous = _ZERO
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.up_to is None and not last:
            yield f"tiers[{index}].up_to: only the last tier can be open-ended (up_to: null)"
        elif tier.up_to is not None and last:
            yield f"tiers[{index}].up_to: the last tier must be open-ended (up_to: null)"
        if tier.up_to is not None:
            if tier.up_to <= previous:
                yield f"tiers[{index}].up_to: must be greater than the previous tier's ({previous})"
            previous = tier.up_to
        if tier.unit_amount < 0 or tier.flat_amount < 0:
            yield f"tiers[{index}]: amounts must be >= 0"


class PriceBook:
    """Prices by ``(id, currency code)``; immutable."""

    __slots__ = ("_prices",)

    def __init__(self, prices: Iterable[PriceSpec]) -> None:
        found: dict[tuple[str, str], PriceSpec] = {}
        for price in prices:
            key = (price.id, price.currency.code)
            if key in found:
                raise ValueError(f"duplicate price {price.id!r} in {price.currency.code}")
            found[key] = price
        self._prices = MappingProxyType(found)

    def get(self, price_id: str, currency: Currency) -> PriceSpec | None:
        return self._prices.get((price_id, currency.code))

    def ids(self) -> frozenset[str]:
        return frozenset(price_id for price_id, _ in self._prices)

    def __iter__(self) -> Iterator[PriceSpec]:
        return iter(self._prices.values())

    def __len__(self) -> int:
        return len(self._prices)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> PriceBook:
        """Every catalog product's prices: id = product code, one spec per currency."""
        return cls(spec for product in catalog for spec in product.specs)


@dataclass(frozen=True, slots=True)
class Rating:
    """An exact (unrounded) amount and how it was reached."""

    amount: Decimal
    tiers: tuple[TierUse, ...] = ()
    details: tuple[tuple[str, str], ...] = ()


def aggregate(aggregation: Aggregation, records: Sequence[UsageRecord]) -> Decimal:
    """A period's usage quantity. ``last`` is the latest record by timestamp (input order on ties)."""
    if aggregation == "count":
        return Decimal(len(records))
    if aggregation == "max":
        return max((r.quantity for r in records), default=_ZERO)
    if aggregation == "last":
        return records[-1].quantity if records else _ZERO
    if aggregation == "unique_count":
        return Decimal(len({r.value if r.value is not None else str(r.quantity) for r in records}))
    return sum((r.quantity for r in records), _ZERO)


def rate_quantity(price: PriceSpec, quantity: Decimal) -> Rating:
    """The exact amount of ``quantity`` units (everything but the percentage model)."""
    if price.model != "usage" or price.charge == "per_unit":
        return Rating(quantity * price.amount)
    if price.charge == "graduated":
        return _graduated(price.tiers, quantity)
    if price.charge == "volume":
        return _volume(price.tiers, quantity)
    if price.charge == "package":
        billable = max(quantity - price.free_units, _ZERO)
        rounding = ROUND_CEILING if price.package_rounding == "up" else ROUND_FLOOR
        packages = (billable / price.package_size).to_integral_value(rounding=rounding)
        return Rating(
            packages * price.amount,
            details=(
                ("free units", str(price.free_units)),
                ("billable units", str(billable)),
                ("package size", str(price.package_size)),
                ("packages", f"{packages} (rounded {price.package_rounding})"),
                ("package amount", str(price.amount)),
            ),
        )
    raise ValueError("the percentage charge is rated per transaction: use rate_transactions")


def _graduated(tiers: Sequence[Tier], quantity: Decimal) -> Rating:
    """Each tier prices its own units, up to the tier the quantity ends in (whose flat fee counts;
    so a quantity of 0 costs the first tier's flat fee, as in Stripe)."""
    uses: list[TierUse] = []
    total, lower, index = _ZERO, _ZERO, 0
    while True:
        tier = tiers[index]
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        amount = (upper - lower) * tier.unit_amount + tier.flat_amount
        uses.append(
            TierUse(
                index + 1, lower + 1, tier.up_to, upper - lower, tier.unit_amount, tier.flat_amount, amount
            )
        )
        total += amount
        if tier.up_to is None or quantity <= tier.up_to:
            return Rating(total, tiers=tuple(uses))
        lower, index = tier.up_to, index + 1


def _volume(tiers: Sequence[Tier], quantity: Decimal) -> Rating:
    """Every unit at the tier the quantity falls in (the last tier is open-ended, validated)."""
    index, lower = 0, _ZERO
    while index < len(tiers) - 1 and quantity > cast(Decimal, tiers[index].up_to):
        lower = cast(Decimal, tiers[index].up_to)
        index += 1
    tier = tiers[index]
    amount = quantity * tier.unit_amount + tier.flat_amount
    use = TierUse(index + 1, lower + 1, tier.up_to, quantity, tier.unit_amount, tier.flat_amount, amount)
    return Rating(amount, tiers=(use,))


def rate_transactions(price: PriceSpec, records: Sequence[UsageRecord]) -> Rating:
    """The percentage model: rate on each transaction's amount plus a fixed fee, after allowances."""
    free_events = price.free_units
    free_amount = price.free_amount
    has_allowance = free_events > 0 or free_amount > 0
    used_events = _ZERO
    used_amount = _ZERO
    charged = _ZERO
    charged_events = 0
    for record in records:
        if (
            has_allowance
            and (free_events <= 0 or used_events < free_events)
            and (free_amount <= 0 or used_amount < free_amount)
        ):
            used_events += 1
            if free_amount > 0 and used_amount + record.quantity > free_amount:
                charged += used_amount + record.quantity - free_amount
                charged_events += 1
                used_amount = free_amount
            else:
                used_amount += record.quantity
            continue
        charged += record.quantity
        charged_events += 1
    amount = charged * price.rate / _HUNDRED + charged_events * price.fixed_fee
    return Rating(
        amount,
        details=(
            ("transactions", str(len(records))),
            ("free transactions", str(len(records) - charged_events)),
            ("chargeable amount", str(charged)),
            ("rate", f"{price.rate}%"),
            ("fixed fee per transaction", str(price.fixed_fee)),
            ("chargeable transactions", str(charged_events)),
        ),
    )
