"""A billing run of 100,000 subscriptions persisted to PostgreSQL, against COPY of the same rows.

The store holds 50,000 customers (a third in EUR) with one activated order each, of two monthly
subscription lines (the demo catalog's plans and per-seat add-on), starting this month: 100,000
subscriptions. They are loaded before the clock starts. Timed: ``run_billing`` as the sync runs it:
read the canonical records, price every subscription (``billing.generate``), and finalise the
50,000 invoices in chunks of 1,000 (gapless numbers, invoices, lines with their explanations, tax
lines, one outbox row per invoice for QuickBooks, written with COPY), each chunk one transaction.

Baseline, in the same run: every row the billing run wrote (invoices, lines, outbox, the number
series, its run row) taken out and loaded back with COPY into the same tables, indexes and
constraints, in one transaction. Goal (issue 8): the billing run takes at most 5 x that COPY time.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import (
    TODAY,
    Result,
    bulk_reload_seconds,
    data_tables,
    emit,
    in_workdir,
    pg_schema,
    result,
    timed,
    write_config,
)
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.bindings import payload_hash
from sync_engine.invoicing import run_billing
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import CanonicalRecord

SUBSCRIPTIONS = 100_000
FACTOR = 5
PLANS = ("PLAT-BASIC-M", "PLAT-PRO-M")
SEATS = "SEATS-M"


def canonical_rows(subscriptions: int) -> list[dict[str, Any]]:
    """The store's rows for ``subscriptions`` subscriptions, two per customer's order."""
    rows: list[dict[str, Any]] = []

    def add(entity: str, cid: str, data: dict[str, Any]) -> None:
        rows.append({"id": cid, "entity": entity, "data": data, "payload_hash": payload_hash(data)})

    for code in (*PLANS, SEATS):
        add("product", f"prd_{code}", {"code": code, "name": code.title(), "active": True})
    start = TODAY.replace(day=1)
    for n in range(subscriptions // 2):
        currency = "EUR" if n % 3 == 0 else "USD"
        add("customer", f"cus_{n:06d}", {"name": f"Customer {n}", "currency": currency, "active": True})
        add(
            "order",
            f"ord_{n:06d}",
            {
                "customer_id": f"cus_{n:06d}",
                "number": f"{n:08d}",
                "currency": currency,
                "effective_date": (start + dt.timedelta(days=n % 14)).isoformat(),
                "end_date": None,
                "status": "activated",
            },
        )
        add(
            "order_line",
            f"orl_{n:06d}a",
            {"order_id": f"ord_{n:06d}", "product_id": f"prd_{PLANS[n % 2]}", "quantity": "1"},
        )
        add(
            "order_line",
            f"orl_{n:06d}b",
            {
                "order_id": f"ord_{n:06d}",
                "product_id": f"prd_{SEATS}",
                "quantity": str(1 + n % 20),
                "unit_price": str(Decimal("11.25") if n % 4 == 0 else Decimal("12.50")),
            },
        )
    return rows


def run() -> list[Result]:
    return in_workdir("billing-pg", _run)


def _run(workdir: Path) -> list[Result]:
    with pg_schema() as url:
        with SalesforceSandbox(cert_dir=workdir) as sf, QuickBooksSandbox(cert_dir=workdir) as qbo:
            config = write_config(workdir, sf, qbo, database_url=url, qbo_entities=("invoice",))
        settings = load_settings(config)
        upgrade_database(url)
        runtime = Runtime(settings)
        try:
            rows = canonical_rows(SUBSCRIPTIONS)
            with runtime.transaction() as session:
                for start in range(0, len(rows), 10_000):
                    session.execute(insert(CanonicalRecord), rows[start : start + 10_000])
            before = set(data_tables(runtime.engine))
            billed, seconds = timed(lambda: run_billing(runtime, TODAY))
            assert billed.lines == SUBSCRIPTIONS and billed.problems == 0, billed
            written = [t for t in data_tables(runtime.engine) if t not in before]
            copy_seconds, copied = bulk_reload_seconds(runtime.engine, written)
        finally:
            runtime.close()
    return [
        result(
            f"billing run: {SUBSCRIPTIONS:,} subscriptions persisted to PostgreSQL",
            f"<= {FACTOR} x baseline",
            round(seconds, 1),
            round(copy_seconds, 2),
            f"s ({billed.invoices_created:,} invoices; baseline: COPY of the {copied:,} rows it wrote)",
            seconds <= FACTOR * copy_seconds,
        )
    ]


if __name__ == "__main__":
    emit(run())
