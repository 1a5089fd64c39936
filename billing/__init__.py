"""Pure billing domain: money, catalog, prices, periods, invoices, taxes. No I/O, no clock, no logging.

Entry points: ``generate`` (what is due and not yet billed), ``billing.scenario`` (pricing scenarios
for ``billsync billing preview``), ``billing.lifecycle`` (invoice statuses, credit notes) and
``explain`` (how a line's amount came about).

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
from billing.discounts import Discount
from billing.engine import BillingSettings, Change, GenerationResult, Problem, Subscription, generate
from billing.explain import Explanation, TierUse, explain
from billing.lifecycle import (
    CreditNote,
    CreditNoteLine,
    InvalidTransitionError,
    credit_note,
    finalize,
    issue_credit_note,
    mark_uncollectible,
    record_payment,
    void,
)
from billing.model import Customer, Invoice, InvoiceLine, Order, OrderLine, TaxLine
from billing.money import CURRENCIES, Currency, CurrencyMismatchError, Money, UnknownCurrencyError
from billing.numbering import NumberSeries
from billing.periods import Cycle, Fraction, add_months, cycle_for, prorate
from billing.pricing import PriceBook, PriceSpec, Tier, UsageRecord
from billing.tax import TaxRate, TaxTable

__all__ = [
    "CURRENCIES",
    "BillingModel",
    "BillingSettings",
    "Catalog",
    "CatalogError",
    "Change",
    "CreditNote",
    "CreditNoteLine",
    "Currency",
    "CurrencyMismatchError",
    "Customer",
    "Cycle",
    "Discount",
    "Explanation",
    "Fraction",
    "GenerationResult",
    "Interval",
    "InvalidTransitionError",
    "Invoice",
    "InvoiceLine",
    "Money",
    "NumberSeries",
    "Order",
    "OrderLine",
    "Price",
    "PriceBook",
    "PriceSpec",
    "Problem",
    "Product",
    "Subscription",
    "TaxLine",
    "TaxRate",
    "TaxTable",
    "Tier",
    "TierUse",
    "UnknownCurrencyError",
    "UnknownProductError",
    "UsageRecord",
    "add_months",
    "credit_note",
    "cycle_for",
    "explain",
    "finalize",
    "generate",
    "issue_credit_note",
    "mark_uncollectible",
    "prorate",
    "record_payment",
    "void",
]
