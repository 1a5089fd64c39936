from __future__ import annotations

import billing


def test_public_names_are_exported_and_importable() -> None:
    assert set(billing.__all__) == {
        "CURRENCIES", "BillingModel", "BillingSettings", "Catalog", "CatalogError", "Change", "CreditNote", "CreditNoteLine", "Currency", "CurrencyMismatchError", "Customer", "Cycle", "Discount", "Explanation", "Fraction", "GenerationResult", "Interval", "InvalidTransitionError", "Invoice", "InvoiceLine", "Money", "NumberSeries", "Order", "OrderLine", "Price", "PriceBook", "PriceSpec", "Problem", "Product", "Subscription", "TaxLine", "TaxRate", "TaxTable", "Tier", "TierUse", "UnknownCurrencyError", "UnknownProductError", "UsageRecord", "add_months", "credit_note", "cycle_for", "explain", "finalize", "generate", "issue_credit_note", "mark_uncollectible", "prorate", "record_payment", "void",
    }  # fmt: skip
    for name in billing.__all__:
        assert getattr(billing, name) is not None
