"""Taxes: which rate applies to a line, and the tax of an invoice rounded per line or per invoice.

Rates are percentages. An *exclusive* rate is added on top of the net amount; an *inclusive* rate is
already inside the price, so the tax is ``gross x rate / (100 + rate)`` and the net is what is left
(1000.00 at 10 % inclusive -> net 909.09, tax 90.91).

Rounding (``TaxRounding``):

- ``per_line`` (default): each line's tax is rounded, the invoice's tax is their sum;
- ``per_invoice``: the exact taxes of all lines with the same rate are summed and rounded once;
  each line then gets its share of that rounded tax (largest remainder), so lines still add up.

Example, three lines of 0.05 at 10 %: per line 3 x round(0.005) = 3 x 0.01 = 0.03; per invoice
round(0.015) = 0.02.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Final, Literal, get_args

from billing.model import Customer, InvoiceLine, TaxLine
from billing.money import Currency, Money

__all__ = ["TAX_ROUNDINGS", "TaxRate", "TaxRounding", "TaxTable", "allocate", "apply_taxes", "line_tax"]

TaxRounding = Literal["per_line", "per_invoice"]
TAX_ROUNDINGS: Final[tuple[str, ...]] = get_args(TaxRounding)
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class TaxRate:
    """A tax rate in percent. ``jurisdiction`` and ``tax_code`` (None = any) say where it applies."""

    id: str
    rate: Decimal
    inclusive: bool = False
    name: str = ""
    jurisdiction: str | None = None
    tax_code: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a tax rate needs an id")
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite() or not 0 <= self.rate <= _HUNDRED:
            raise ValueError(
                f"tax rate {self.id!r}: rate must be a percentage from 0 to 100, got {self.rate!r}"
            )

    def tax_of(self, amount: Decimal) -> Decimal:
        """The exact tax in ``amount`` (net if exclusive, gross if inclusive)."""
        if self.inclusive:
            return amount * self.rate / (_HUNDRED + self.rate)
        return amount * self.rate / _HUNDRED


class TaxTable:
    """The rates in force; picks one rate per line."""

    __slots__ = ("_rates",)

    def __init__(self, rates: Iterable[TaxRate] = ()) -> None:
        self._rates: dict[str, TaxRate] = {}
        for rate in rates:
            if rate.id in self._rates:
                raise ValueError(f"duplicate tax rate id {rate.id!r}")
            self._rates[rate.id] = rate

    def __contains__(self, tax_id: object) -> bool:
        return tax_id in self._rates

    def resolve(self, customer: Customer, tax_id: str | None, tax_code: str | None) -> TaxRate | None:
        """The rate for a line: none for a tax-exempt customer; the price's own ``tax`` if it names one;
        else the most specific rate matching the customer's jurisdiction and the price's tax code
        (both match > tax code only > jurisdiction only). A rate that declares neither applies only
        where a price names it, so a lone ``vat10`` never taxes prices that did not ask for it."""
        if customer.tax_exempt:
            return None
        if tax_id is not None:
            return self._rates.get(tax_id)
        best: tuple[int, TaxRate] | None = None
        for rate in self._rates.values():
            if rate.jurisdiction is None and rate.tax_code is None:
                continue
            if rate.jurisdiction not in (None, customer.jurisdiction):
                continue
            if rate.tax_code not in (None, tax_code):
                continue
            score = (2 if rate.tax_code is not None else 0) + (1 if rate.jurisdiction is not None else 0)
            if best is None or score > best[0]:
                best = (score, rate)
        return None if best is None else best[1]


def allocate(total: Decimal, exact: Sequence[Decimal], quantum: Decimal) -> list[Decimal]:
    """Round the ``exact`` parts to ``quantum`` so that they add up to the rounded ``total``.

    Largest remainder: each part is rounded toward zero, then the missing quanta go to the parts
    with the largest remainders in the needed direction (earlier parts first on ties).
    """
    parts = [e.quantize(quantum, rounding=ROUND_DOWN) for e in exact]
    leftover = int((total - sum(parts, Decimal(0))) / quantum)
    sign = 1 if leftover >= 0 else -1
    order = sorted(range(len(parts)), key=lambda i: -sign * (exact[i] - parts[i]))
    for i in order[: abs(leftover)]:
        parts[i] += sign * quantum
    return parts


def line_tax(base: Money, rate: TaxRate, rounding: TaxRounding) -> Money:
    """The tax of a line's ``base`` (its amount after discounts): rounded per line, or exact until
    the invoice rounds it (``per_invoice``)."""
    tax = Money(rate.tax_of(base.amount), base.currency)
    return tax.rounded() if rounding == "per_line" else tax


def apply_taxes(
    lines: Sequence[tuple[InvoiceLine, TaxRate | None]],
    currency: Currency,
    rounding: TaxRounding = "per_line",
) -> tuple[list[InvoiceLine], tuple[TaxLine, ...]]:
    """Lines with their tax set, and one tax line per rate (in order of first use)."""
    taxed: list[InvoiceLine] = []
    groups: dict[str, list[int]] = {}
    rates: dict[str, TaxRate] = {}
    for index, (line, rate) in enumerate(lines):
        if rate is None:
            taxed.append(line)
            continue
        groups.setdefault(rate.id, []).append(index)
        rates[rate.id] = rate
        # The generator taxes each line as it builds it (one object instead of two per line).
        taxed.append(
            line
            if line.tax_id == rate.id
            else _taxed(line, rate, line_tax(line.discounted_amount, rate, rounding))
        )
    tax_lines: list[TaxLine] = []
    for tax_id, indexes in groups.items():
        rate = rates[tax_id]
        bases = [taxed[i].discounted_amount.amount for i in indexes]
        if rounding == "per_invoice":
            exacts = [rate.tax_of(base) for base in bases]
            total = Money(sum(exacts, Decimal(0)), currency).rounded().amount
            shares = allocate(total, exacts, currency.quantum)
            for i, share in zip(indexes, shares, strict=True):
                taxed[i] = _taxed(taxed[i], rate, Money(share, currency))
        tax = Money(sum((_tax_of(taxed[i]) for i in indexes), Decimal(0)), currency)
        gross = Money(sum(bases, Decimal(0)), currency)
        taxable = gross - tax if rate.inclusive else gross
        tax_lines.append(TaxLine(tax_id, rate.name or tax_id, rate.rate, rate.inclusive, taxable, tax))
    return taxed, tuple(tax_lines)


def _tax_of(line: InvoiceLine) -> Decimal:
    assert line.tax_amount is not None  # every line of a tax group was given its tax above
    return line.tax_amount.amount


def _taxed(line: InvoiceLine, rate: TaxRate, amount: Money) -> InvoiceLine:
    """``line`` with its tax (built field by field: ``dataclasses.replace`` is 4x slower here)."""
    return InvoiceLine(
        line.source_key,
        line.product_code,
        line.description,
        line.quantity,
        line.unit_price,
        line.amount,
        line.period_start,
        line.period_end,
        line.discount,
        rate.id,
        rate.rate,
        rate.inclusive,
        amount,
        line.explanation,
    )
