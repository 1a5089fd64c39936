"""The values the billing run reads (customers, orders) and writes (invoices).

They are plain frozen dataclasses so the run can be tested with literals and the mappings can
build them without touching the catalog or the database. Constructors refuse floats (a type
error, caught early); business checks such as "quantity must be positive" are reported by the
billing run as problems instead, so one bad order never stops the others.

Periods are half-open: ``period_end`` is the first day *not* covered (the next period's start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal, get_args

from billing.explain import Explanation
from billing.money import Currency, Money

__all__ = [
    "INVOICE_STATUSES",
    "Customer",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "Order",
    "OrderLine",
    "TaxLine",
]

InvoiceStatus = Literal["draft", "open", "partially_paid", "paid", "void", "uncollectible"]
INVOICE_STATUSES: Final[tuple[str, ...]] = get_args(InvoiceStatus)


def _require_decimal(value: object, what: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Customer:
    """Who is billed; ``payment_terms_days`` sets each invoice's due date (net 30 by default).

    ``bill_cycle_day`` (1-31) aligns month-based subscriptions on that day (None: the anniversary of
    each subscription); ``jurisdiction`` selects tax rates; a ``tax_exempt`` customer is taxed nothing.
    """

    id: str
    currency: str
    payment_terms_days: int = 30
    bill_cycle_day: int | None = None
    tax_exempt: bool = False
    jurisdiction: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.payment_terms_days, bool) or not isinstance(self.payment_terms_days, int):
            raise TypeError("payment_terms_days must be an int")
        if self.payment_terms_days < 0:
            raise ValueError(f"payment_terms_days must be >= 0, got {self.payment_terms_days}")
        day = self.bill_cycle_day
        if day is not None and (isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31):
            raise ValueError(f"bill_cycle_day must be a whole number from 1 to 31, got {day!r}")


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One product on an order; ``unit_price`` set means a negotiated price overriding the catalog."""

    id: str
    product_code: str
    quantity: Decimal
    unit_price: Decimal | None
    description: str | None = None

    def __post_init__(self) -> None:
        _require_decimal(self.quantity, "quantity")
        _require_decimal(self.unit_price, "unit_price", optional=True)


@dataclass(frozen=True, slots=True)
class Order:
    """A signed order: one-time lines are due on ``effective_date``; recurring lines start then.

    ``end_date`` (exclusive) stops recurring lines: no period starting on or after it is billed.
    """

    id: str
    customer_id: str
    currency: str
    effective_date: date
    end_date: date | None
    lines: tuple[OrderLine, ...]
    discounts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One billed charge. ``source_key`` identifies what was billed, so it is never billed twice.

    ``unit_price`` keeps full precision; ``amount`` is quantity x unit price (x the proration
    fraction) rounded to the currency. For tiered, package and percentage charges ``unit_price`` is
    the average (amount / quantity, 10 decimals) and the explanation holds the real breakdown.
    The period is None for one-time charges. ``product_code`` is the price id.

    ``discount`` is subtracted before tax. ``tax_amount`` is this line's tax; with an inclusive
    rate it is part of ``amount``, otherwise it is added on top.
    """

    source_key: str
    product_code: str
    description: str
    quantity: Decimal
    unit_price: Money
    amount: Money
    period_start: date | None
    period_end: date | None
    discount: Money | None = None
    tax_id: str | None = None
    tax_rate: Decimal | None = None
    tax_inclusive: bool = False
    tax_amount: Money | None = None
    explanation: Explanation | None = None

    @property
    def discounted_amount(self) -> Money:
        """The amount after discounts (still including an inclusive tax)."""
        return self.amount if self.discount is None else self.amount - self.discount

    @property
    def net_amount(self) -> Money:
        """The amount after discounts and without any tax: the taxable base."""
        if self.tax_inclusive and self.tax_amount is not None:
            return self.discounted_amount - self.tax_amount
        return self.discounted_amount


@dataclass(frozen=True, slots=True)
class TaxLine:
    """One tax on an invoice: the rate (percent), the net amount it applies to, and the tax."""

    tax_id: str
    name: str
    rate: Decimal
    inclusive: bool
    taxable: Money
    amount: Money


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    """An invoice's four totals, as its properties of the same names compute them."""

    subtotal: Money
    discount_total: Money
    tax_total: Money
    total: Money


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice in one currency for one customer.

    Generated as a ``draft`` without a number; ``billing.lifecycle.finalize`` gives it its number
    (numbers are assigned only at finalisation, so drafts never burn one). Totals are computed from
    the lines and tax lines, so they cannot disagree with them.
    """

    key: str
    customer_id: str
    currency: Currency
    issue_date: date
    due_date: date
    period_start: date
    period_end: date
    lines: tuple[InvoiceLine, ...]
    tax_lines: tuple[TaxLine, ...] = ()
    status: InvoiceStatus = "draft"
    number: str | None = None
    amount_paid: Money | None = None

    def _sum(self, amounts: list[Money]) -> Money:
        return Money.sum(amounts, self.currency)

    @property
    def subtotal(self) -> Money:
        """Sum of the (already rounded) line amounts, before discounts."""
        return self._sum([line.amount for line in self.lines])

    @property
    def discount_total(self) -> Money:
        return self._sum([line.discount for line in self.lines if line.discount is not None])

    @property
    def tax_total(self) -> Money:
        """All taxes, inclusive ones (already in the line amounts) and exclusive ones."""
        return self._sum([tax.amount for tax in self.tax_lines])

    @property
    def total(self) -> Money:
        """What the customer owes: subtotal - discounts + exclusive taxes."""
        return self.subtotal - self.discount_total + self._exclusive_tax()

    def _exclusive_tax(self) -> Money:
        return self._sum([tax.amount for tax in self.tax_lines if not tax.inclusive])

    def totals(self) -> InvoiceTotals:
        """All four totals with each sum taken once (the properties each start from the lines): a
        run storing thousands of invoices needs all four of every one."""
        subtotal = self.subtotal
        discount_total = self.discount_total
        total = subtotal - discount_total + self._exclusive_tax()
        return InvoiceTotals(subtotal, discount_total, self.tax_total, total)

    @property
    def net_total(self) -> Money:
        """The total without any tax."""
        return self.total - self.tax_total

    @property
    def amount_due(self) -> Money:
        """What is still to be paid."""
        return self.total if self.amount_paid is None else self.total - self.amount_paid

    @property
    def source_keys(self) -> frozenset[str]:
        return frozenset(line.source_key for line in self.lines)
