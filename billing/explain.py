"""How every amount came about: a structured record on each invoice line, and its text.

Why structured: the same record is stored with the line (``to_dict`` -> JSON column), shown by
``billsync invoices explain NUMBER`` (``explain``), and asserted on by tests, so the explanation
can never drift from the arithmetic that produced the amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from json.encoder import encode_basestring as _quote
from typing import TYPE_CHECKING

from billing.periods import DayCount, Fraction

if TYPE_CHECKING:
    from billing.model import InvoiceLine

__all__ = ["Explanation", "TierUse", "explain"]


@dataclass(frozen=True, slots=True)
class TierUse:
    """One tier's share of a tiered charge: ``units`` x ``unit_amount`` + ``flat_amount``."""

    index: int
    first_unit: Decimal
    up_to: Decimal | None
    units: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything needed to recompute a line's amount by hand.

    ``kind`` names the rule that produced the line (``one_time``, ``recurring``,
    ``proration_credit``, ``proration_charge``, ``usage``, ``minimum_true_up``, ``installment``);
    ``unrounded`` is the exact amount before ``rounding`` produced ``rounded``. ``details`` holds
    model-specific facts (package size, free units, installment n of N, ...) as ordered pairs.
    """

    kind: str
    price_id: str
    model: str
    currency: str
    quantity: Decimal
    unit_amount: Decimal | None
    unrounded: Decimal
    rounded: Decimal
    rounding: str
    period_start: date | None = None
    period_end: date | None = None
    cycle_start: date | None = None
    cycle_end: date | None = None
    proration: Fraction | None = None
    charge: str | None = None
    tiers: tuple[TierUse, ...] = ()
    details: tuple[tuple[str, str], ...] = ()
    discounts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: decimals and dates as strings, so a stored explanation round-trips exactly."""
        return {
            "kind": self.kind,
            "price_id": self.price_id,
            "model": self.model,
            "currency": self.currency,
            "quantity": str(self.quantity),
            "unit_amount": _str(self.unit_amount),
            "unrounded": str(self.unrounded),
            "rounded": str(self.rounded),
            "rounding": self.rounding,
            "period_start": _str(self.period_start),
            "period_end": _str(self.period_end),
            "cycle_start": _str(self.cycle_start),
            "cycle_end": _str(self.cycle_end),
            "proration": None
            if self.proration is None
            else {
                "numerator": self.proration.numerator,
                "denominator": self.proration.denominator,
                "convention": self.proration.convention,
            },
            "charge": self.charge,
            "tiers": [
                {
                    "index": t.index,
                    "first_unit": str(t.first_unit),
                    "up_to": _str(t.up_to),
                    "units": str(t.units),
                    "unit_amount": str(t.unit_amount),
                    "flat_amount": str(t.flat_amount),
                    "amount": str(t.amount),
                }
                for t in self.tiers
            ],
            "details": [list(pair) for pair in self.details],
            "discounts": list(self.discounts),
        }

    def to_json(self) -> str:
        """``to_dict()`` as JSON text, written directly: a billing run stores one per line, and
        building the dict to serialise it cost more than the rest of storing the line. Keys, order
        and spelling are ``to_dict``'s (separators as ``json.dumps``'s defaults)."""
        p = self.proration
        proration = (
            "null"
            if p is None
            else f'{{"numerator": {p.numerator}, "denominator": {p.denominator}, "convention": {_quote(p.convention)}}}'
        )
        tiers = (
            ""
            if not self.tiers
            else ", ".join(
                f'{{"index": {t.index}, "first_unit": "{t.first_unit!s}", "up_to": {_text(t.up_to)}, '
                f'"units": "{t.units!s}", "unit_amount": "{t.unit_amount!s}", "flat_amount": "{t.flat_amount!s}", '
                f'"amount": "{t.amount!s}"}}'
                for t in self.tiers
            )
        )
        details = (
            "" if not self.details else ", ".join(f"[{_quote(k)}, {_quote(v)}]" for k, v in self.details)
        )
        charge = "null" if self.charge is None else _quote(self.charge)
        return (
            f'{{"kind": {_quote(self.kind)}, "price_id": {_quote(self.price_id)}, "model": {_quote(self.model)}, '
            f'"currency": {_quote(self.currency)}, "quantity": "{self.quantity!s}", '
            f'"unit_amount": {_text(self.unit_amount)}, "unrounded": "{self.unrounded!s}", '
            f'"rounded": "{self.rounded!s}", "rounding": {_quote(self.rounding)}, '
            f'"period_start": {_text(self.period_start)}, "period_end": {_text(self.period_end)}, '
            f'"cycle_start": {_text(self.cycle_start)}, "cycle_end": {_text(self.cycle_end)}, '
            f'"proration": {proration}, "charge": {charge}, "tiers": [{tiers}], "details": [{details}], '
            f'"discounts": [{", ".join(map(_quote, self.discounts)) if self.discounts else ""}]}}'
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Explanation:
        """The inverse of ``to_dict`` (for explanations read back from the database)."""
        proration = data.get("proration")
        tiers = data.get("tiers")
        details = data.get("details")
        discounts = data.get("discounts")
        assert isinstance(tiers, list) and isinstance(details, list) and isinstance(discounts, list)
        return cls(
            kind=str(data["kind"]),
            price_id=str(data["price_id"]),
            model=str(data["model"]),
            currency=str(data["currency"]),
            quantity=Decimal(str(data["quantity"])),
            unit_amount=_dec(data.get("unit_amount")),
            unrounded=Decimal(str(data["unrounded"])),
            rounded=Decimal(str(data["rounded"])),
            rounding=str(data["rounding"]),
            period_start=_date(data.get("period_start")),
            period_end=_date(data.get("period_end")),
            cycle_start=_date(data.get("cycle_start")),
            cycle_end=_date(data.get("cycle_end")),
            proration=None
            if not isinstance(proration, Mapping)
            else Fraction(
                int(proration["numerator"]),
                int(proration["denominator"]),
                _day_count(proration["convention"]),
            ),
            charge=None if data.get("charge") is None else str(data["charge"]),
            tiers=tuple(
                TierUse(
                    index=int(t["index"]),
                    first_unit=Decimal(t["first_unit"]),
                    up_to=_dec(t["up_to"]),
                    units=Decimal(t["units"]),
                    unit_amount=Decimal(t["unit_amount"]),
                    flat_amount=Decimal(t["flat_amount"]),
                    amount=Decimal(t["amount"]),
                )
                for t in tiers
            ),
            details=tuple((str(k), str(v)) for k, v in details),
            discounts=tuple(str(d) for d in discounts),
        )


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _text(value: Decimal | date | None) -> str:
    """A decimal or date as a JSON string (their ``str`` needs no escaping), or null."""
    return "null" if value is None else f'"{value!s}"'


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _date(value: object) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _day_count(value: object) -> DayCount:
    for known in ("actual_days", "thirty_day_months", "seconds", "none"):
        if value == known:
            return known
    raise ValueError(f"unknown day-count convention {value!r}")


def _fmt(value: Decimal) -> str:
    """A decimal without exponent notation or trailing zeros noise (``6.50`` stays ``6.50``)."""
    return f"{value:f}"


def explain(line: InvoiceLine) -> str:
    """A human-readable account of how ``line.amount`` (and its discount and tax) came about."""
    currency = line.amount.currency.code
    out = [f"{line.description}: {line.amount}"]
    ex = line.explanation
    if ex is None:
        out.append(f"  {_fmt(line.quantity)} x {line.unit_price} = {line.amount} (rounded to the currency)")
    else:
        out.append(
            f"  price {ex.price_id} ({ex.model}{', ' + ex.charge if ex.charge else ''}), rule: {ex.kind}"
        )
        if ex.period_start is not None and ex.period_end is not None:
            out.append(f"  period {ex.period_start} to {ex.period_end} (end exclusive)")
        if ex.proration is not None and ex.cycle_start is not None and ex.cycle_end is not None:
            out.append(
                f"  prorated {ex.proration.numerator}/{ex.proration.denominator} "
                f"({ex.proration.convention}) of the period {ex.cycle_start} to {ex.cycle_end}"
            )
        for tier in ex.tiers:
            upper = "and above" if tier.up_to is None else f"to {_fmt(tier.up_to)}"
            flat = f" + flat {_fmt(tier.flat_amount)}" if tier.flat_amount else ""
            out.append(
                f"  tier {tier.index} (units {_fmt(tier.first_unit)} {upper}): "
                f"{_fmt(tier.units)} x {_fmt(tier.unit_amount)}{flat} = {_fmt(tier.amount)}"
            )
        for key, value in ex.details:
            out.append(f"  {key}: {value}")
        if ex.unit_amount is not None and not ex.tiers:
            share = "" if ex.proration is None else f" x {ex.proration.numerator}/{ex.proration.denominator}"
            out.append(f"  {_fmt(ex.quantity)} x {_fmt(ex.unit_amount)}{share} = {_fmt(ex.unrounded)}")
        else:
            out.append(f"  quantity {_fmt(ex.quantity)}, exact amount {_fmt(ex.unrounded)}")
        out.append(f"  rounded {ex.rounding}: {_fmt(ex.unrounded)} -> {currency} {_fmt(ex.rounded)}")
        if ex.discounts:
            out.append(f"  discounts: {', '.join(ex.discounts)}")
    if line.discount is not None and line.discount.amount:
        out.append(f"  discount -{line.discount}")
    if line.tax_id is not None and line.tax_amount is not None:
        how = "included in the price" if line.tax_inclusive else "added"
        out.append(f"  tax {line.tax_id}: {line.tax_amount} ({how})")
    return "\n".join(out)
