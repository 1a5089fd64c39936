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

from billing.money import Currency, Money

__all__ = ["Customer", "Invoice", "InvoiceLine", "Order", "OrderLine"]


def _require_decimal(value: object, what: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Customer:
    """Who is billed; ``payment_terms_days`` sets each invoice's due date (net 30 by default)."""

    id: str
    currency: str
    payment_terms_days: int = 30

    def __post_init__(self) -> None:
        if isinstance(self.payment_terms_days, bool) or not isinstance(self.payment_terms_days, int):
            raise TypeError("payment_terms_days must be an int")
        if self.payment_terms_days < 0:
            raise ValueError(f"payment_terms_days must be >= 0, got {self.payment_terms_days}")


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


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One billed charge. ``source_key`` identifies what was billed, so it is never billed twice.

    ``unit_price`` keeps full precision; ``amount`` is quantity x unit price rounded to the currency.
    The period is None for one-time charges.
    """

    source_key: str
    product_code: str
    description: str
    quantity: Decimal
    unit_price: Money
    amount: Money
    period_start: date | None
    period_end: date | None


@dataclass(frozen=True, slots=True)
class Invoice:
    """A draft invoice in one currency for one customer; numbering happens later, on finalisation."""

    key: str
    customer_id: str
    currency: Currency
    issue_date: date
    due_date: date
    period_start: date
    period_end: date
    lines: tuple[InvoiceLine, ...]

    @property
    def subtotal(self) -> Money:
        """Sum of the (already rounded) line amounts."""
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + line.amount
        return total

    @property
    def tax_total(self) -> Money:
        """Always zero until the tax module exists."""
        return Money.zero(self.currency)

    @property
    def total(self) -> Money:
        return self.subtotal + self.tax_total

    @property
    def source_keys(self) -> frozenset[str]:
        return frozenset(line.source_key for line in self.lines)
