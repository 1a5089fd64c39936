from __future__ import annotations

import billing


def test_public_names_are_exported_and_importable() -> None:
    assert set(billing.__all__) == {
        "CURRENCIES", "BillingModel", "BillingProblem", "BillingResult", "Catalog", "CatalogError",
        "Currency", "CurrencyMismatchError", "Customer", "Interval", "Invoice", "InvoiceLine", "Money",
        "NumberSeries", "Order", "OrderLine", "Price", "Product", "UnknownCurrencyError",
        "UnknownProductError", "add_months", "billing_run",
    }  # fmt: skip
    for name in billing.__all__:
        assert getattr(billing, name) is not None
