"""Builders for the payments tests: a runtime on a migrated database, customers, finalised invoices.

Why: the payments, collection, dunning, reconciliation, webhook, ledger and SEPA tests all start
from the same books (a store with customers and open, numbered invoices, the way the billing run
leaves them). Building them here once keeps each test down to the values it is about: the
customer, the number, the total, the due date.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from sync_engine.runtime import Runtime
from sync_engine.settings import Settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import CanonicalRecord, Invoice

EMPTY_CATALOG = "version: 1\nproducts: []\n"


def make_settings(db_url: str, folder: Path, **settings_fields: Any) -> Settings:
    """Settings with an empty catalog written to ``folder``; no connections, streams or destinations
    unless given. Relative paths in them (mail templates) resolve against ``folder``."""
    catalog = folder / "catalog.yaml"
    catalog.write_text(EMPTY_CATALOG, encoding="utf-8")
    fields: dict[str, Any] = {"connections": {}, "streams": [], "destinations": [], **settings_fields}
    settings = Settings(database_url=db_url, catalog=catalog, **fields)
    settings._base_dir = folder
    return settings


def make_runtime(db_url: str, folder: Path, **settings_fields: Any) -> Runtime:
    """A runtime on ``db_url`` upgraded to the latest schema, with :func:`make_settings`."""
    upgrade_database(db_url)
    return Runtime(make_settings(db_url, folder, **settings_fields))


def customer_row(customer_id: str, **data: Any) -> CanonicalRecord:
    """A canonical customer as a pull stores it; ``data`` is its record (name, currency, ...)."""
    return CanonicalRecord(id=customer_id, entity="customer", data=data, payload_hash="x")


def invoice_row(
    number: str,
    total: str | Decimal,
    *,
    customer_id: str,
    due: dt.date,
    currency: str = "USD",
    status: str = "open",
    issue: dt.date | None = None,
    invoice_id: str | None = None,
    **extra: Any,
) -> Invoice:
    """A finalised invoice of ``total`` with no tax and nothing paid yet.

    Its id is ``inv_<number>`` unless ``invoice_id`` is given; it was issued 30 days before it
    is due unless ``issue`` says otherwise. ``extra`` sets any other column (``finalized_at``...).
    """
    amount = Decimal(total)
    return Invoice(
        id=invoice_id or f"inv_{number}",
        customer_id=customer_id,
        series="INV",
        number=number,
        status=status,
        currency=currency,
        issue_date=issue if issue is not None else due - dt.timedelta(days=30),
        due_date=due,
        subtotal=amount,
        tax_total=Decimal("0"),
        total=amount,
        amount_paid=Decimal("0"),
        **extra,
    )


def add_rows(runtime: Runtime, *rows: object) -> None:
    """Store ``rows`` (customers, invoices...) in one committed transaction."""
    with runtime.transaction() as session:
        session.add_all(rows)


def add_invoice(runtime: Runtime, number: str, total: str | Decimal, **fields: Any) -> str:
    """Store one finalised invoice (see :func:`invoice_row` for ``fields``); returns its id."""
    row = invoice_row(number, total, **fields)
    invoice_id = row.id  # read before the commit expires the row
    add_rows(runtime, row)
    return invoice_id


def invoice_status(runtime: Runtime, invoice_id: str) -> tuple[str, Decimal]:
    """What the customer would see of an invoice: its status and how much of it is paid."""
    with runtime.sessions() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None, f"no invoice {invoice_id}"
        return found.status, found.amount_paid
