"""Pure billing domain: money, catalog, orders -> invoices. No I/O, no clock, no logging.

Other layers import from here; ``mappings`` should import only the value types (``billing.money``,
``billing.model``), as the import-linter contracts in pyproject.toml require.
"""

from __future__ import annotations

from billing.catalog import (
    BillingModel,
    Catalog,
    CatalogError,
    Interval,
    Price,
    Product,
    UnknownProductError,
)
from billing.model import Customer, Invoice, InvoiceLine, Order, OrderLine
from billing.money import CURRENCIES, Currency, CurrencyMismatchError, Money, UnknownCurrencyError
from billing.numbering import NumberSeries
from billing.run import BillingProblem, BillingResult, add_months, billing_run

__all__ = [
    "CURRENCIES",
    "BillingModel",
    "BillingProblem",
    "BillingResult",
    "Catalog",
    "CatalogError",
    "Currency",
    "CurrencyMismatchError",
    "Customer",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "Money",
    "NumberSeries",
    "Order",
    "OrderLine",
    "Price",
    "Product",
    "UnknownCurrencyError",
    "UnknownProductError",
    "add_months",
    "billing_run",
]
