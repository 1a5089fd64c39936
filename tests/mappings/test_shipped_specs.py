from __future__ import annotations

from pathlib import Path

import pytest

from mappings.spec import BUILTIN_DIR, load_spec

SHIPPED = sorted(BUILTIN_DIR.rglob("*.yaml"))


def test_the_demo_specs_are_shipped() -> None:
    names = {str(p.relative_to(BUILTIN_DIR)) for p in SHIPPED}
    for expected in (
        "salesforce/account.in.yaml",
        "salesforce/product2.in.yaml",
        "salesforce/pricebookentry.in.yaml",
        "salesforce/order.in.yaml",
        "salesforce/orderitem.in.yaml",
        "quickbooks/customer.out.yaml",
        "quickbooks/item.out.yaml",
        "quickbooks/invoice.out.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(Path(p).relative_to(BUILTIN_DIR)))
def test_every_shipped_spec_compiles(path: Path) -> None:
    spec = load_spec(path)
    assert spec.rules
