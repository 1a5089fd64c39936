"""The billing step on the stored records: what a run writes, numbers, dead letters, explanations.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL, without the sandboxes: the
canonical records are written directly, as the pull would have left them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, select

from sync_engine import invoicing
from sync_engine.invoice_tools import InvoiceNotFoundError, explain_invoice, find_invoice
from sync_engine.invoicing import invoice_document, run_billing
from sync_engine.runtime import Runtime
from sync_engine.settings import DestinationSettings, Settings
from sync_engine.store.db import make_engine, upgrade_database
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, OutboxItem, SyncRun
from sync_engine.store.types import ExactDecimal, UTCDateTime

AS_OF = dt.date(2026, 11, 25)
CATALOG: dict[str, Any] = {
    "version": 1,
    "products": [
        {"code": "SETUP", "name": "Setup", "billing_model": "one_time", "prices": {"USD": "500.00"}},
        {
            "code": "BASIC",
            "name": "Basic plan",
            "billing_model": "recurring",
            "interval": "month",
            "interval_count": 1,
            "prices": {"USD": "49.00", "EUR": "45.00"},
        },
    ],
}


def make_runtime(db_url: str, folder: Path, catalog: dict[str, Any] | None = None) -> Runtime:
    """A runtime on a migrated database, with one invoice destination and ``catalog``."""
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog or CATALOG), encoding="utf-8")
    upgrade_database(db_url)
    settings = Settings(
        database_url=db_url,
        catalog=path,
        connections={},
        streams=[],
        destinations=[
            DestinationSettings(
                name="qbo", connection="qbo", mappings={"invoice": "builtin:quickbooks/invoice.out"}
            )
        ],
    )
    return Runtime(settings)


def seed(runtime: Runtime, entity: str, record_id: str, data: dict[str, Any]) -> None:
    """Store one canonical record, as a pull would have."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    with runtime.transaction() as session:
        session.merge(CanonicalRecord(id=record_id, entity=entity, data=data, payload_hash=digest))


def seed_order(
    runtime: Runtime,
    order_id: str,
    customer_id: str,
    lines: list[tuple[str, str, str, str | None]],
    *,
    start: str = "2026-09-16",
    end: str | None = None,
    currency: str = "USD",
) -> None:
    """An activated order; ``lines`` are (line id, product id, quantity, negotiated unit price)."""
    data: dict[str, Any] = {
        "customer_id": customer_id,
        "currency": currency,
        "effective_date": start,
        "status": "activated",
    }
    if end:
        data["end_date"] = end
    seed(runtime, "order", order_id, data)
    for line_id, product_id, quantity, unit_price in lines:
        line: dict[str, Any] = {"order_id": order_id, "product_id": product_id, "quantity": quantity}
        if unit_price is not None:
            line["unit_price"] = unit_price
        seed(runtime, "order_line", line_id, line)


def seed_company(runtime: Runtime) -> None:
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "currency": "USD"})
    seed(runtime, "product", "prd_setup", {"code": "SETUP", "name": "Setup"})
    seed(runtime, "product", "prd_basic", {"code": "BASIC", "name": "Basic plan"})
    # setup fee + 2 seats of a monthly plan from Sep 16 to Nov 1 (a fixed term: last month prorated)
    seed_order(
        runtime,
        "ord_1",
        "cus_acme",
        [("oli_1", "prd_setup", "1", None), ("oli_2", "prd_basic", "2", None)],
        end="2026-11-01",
    )


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path)
    yield runtime
    runtime.close()


def invoices(runtime: Runtime) -> list[Invoice]:
    with runtime.sessions() as session:
        return [
            find_invoice(session, number)
            for number in session.scalars(select(Invoice.number).order_by(Invoice.number))
            if number is not None
        ]


def test_a_run_stores_one_numbered_invoice_per_customer_with_prorated_lines_and_queues_it(
    runtime: Runtime,
) -> None:
    seed_company(runtime)
    result = run_billing(runtime, AS_OF)

    assert result.invoices_created == 1 and result.numbers == ["INV-000001"] and result.problems == 0
    assert result.totals == {"USD": Decimal("648.58")}
    [invoice] = invoices(runtime)
    assert (invoice.status, invoice.issue_date, invoice.due_date) == ("open", AS_OF, dt.date(2026, 12, 25))
    totals = (invoice.subtotal, invoice.discount_total, invoice.tax_total, invoice.total, invoice.amount_paid)
    assert totals == (Decimal("648.58"), 0, 0, Decimal("648.58"), 0)
    by_key = {line.source_key: line for line in invoice.lines}
    assert {key: line.amount for key, line in by_key.items()} == {
        "order-line:oli_1": Decimal("500.00"),
        "sub:oli_2:2026-09-16": Decimal("98.00"),
        "sub:oli_2:2026-10-16": Decimal("50.58"),  # 2 x 49.00 x 16/31 days
    }
    prorated = by_key["sub:oli_2:2026-10-16"].explanation
    assert prorated is not None and prorated["proration"]["numerator"] == 16
    with runtime.sessions() as session:
        outbox = session.scalars(select(OutboxItem)).all()
        run = session.scalars(select(SyncRun).where(SyncRun.kind == "bill")).one()
    assert [(row.destination, row.entity, row.canonical_id) for row in outbox] == [
        ("qbo", "invoice", invoice.id)
    ]
    assert run.status == "ok" and run.counts["totals"] == {"USD": "648.58"}


def test_running_again_bills_nothing_new_and_later_periods_get_the_next_number(runtime: Runtime) -> None:
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "currency": "EUR"})
    seed(runtime, "product", "prd_basic", {"code": "BASIC", "name": "Basic plan"})
    seed_order(runtime, "ord_1", "cus_acme", [("oli_1", "prd_basic", "1", None)], currency="EUR")

    first = run_billing(runtime, AS_OF)
    again = run_billing(runtime, AS_OF)
    next_month = run_billing(runtime, dt.date(2026, 12, 16))

    assert first.numbers == ["INV-000001"] and first.lines == 3  # Sep 16, Oct 16, Nov 16 in advance
    assert again.invoices_created == 0
    assert next_month.numbers == ["INV-000002"] and next_month.totals == {"EUR": Decimal("45.00")}


def test_an_unbillable_line_waits_in_the_dead_letters_and_is_billed_once_the_catalog_has_it(
    db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(db_url, tmp_path)
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "currency": "USD"})
    seed(runtime, "product", "prd_xl", {"code": "WIDGET-XL", "name": "Widget XL"})
    seed_order(runtime, "ord_1", "cus_acme", [("oli_1", "prd_xl", "2", None)])
    seed_order(runtime, "ord_2", "cus_nobody", [("oli_2", "prd_xl", "1", "10")])

    result = run_billing(runtime, AS_OF)

    assert result.invoices_created == 0 and result.problems == 2
    with runtime.sessions() as session:
        letters = {d.external_id: d for d in session.scalars(select(DeadLetter))}
    assert set(letters) == {"ord_1/oli_1", "ord_2"}
    assert "WIDGET-XL" in letters["ord_1/oli_1"].error and "cus_nobody" in letters["ord_2"].error
    assert letters["ord_1/oli_1"].payload == {
        "order_id": "ord_1",
        "line_id": "oli_1",
        "subject": "order ord_1 line oli_1",
    }
    run_billing(runtime, AS_OF)  # the same problem again is one letter seen twice, not two letters
    with runtime.sessions() as session:
        assert (
            session.scalars(select(DeadLetter.attempts).where(DeadLetter.external_id == "ord_2")).one() == 2
        )
    runtime.close()

    fixed = {**CATALOG, "products": [*CATALOG["products"], {**CATALOG["products"][0], "code": "WIDGET-XL"}]}
    runtime = make_runtime(db_url, tmp_path, fixed)
    result = run_billing(runtime, AS_OF)
    with runtime.sessions() as session:
        status = {d.external_id: d.status for d in session.scalars(select(DeadLetter))}
    runtime.close()
    assert result.invoices_created == 1 and result.totals == {"USD": Decimal("1000.00")}
    assert status == {"ord_1/oli_1": "resolved", "ord_2": "open"}


def test_a_crash_while_finalising_keeps_whole_chunks_and_the_numbers_gapless(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invoicing, "FINALISE_CHUNK", 100)  # 130 invoices: two chunks
    seed(runtime, "product", "prd_setup", {"code": "SETUP", "name": "Setup"})
    for n in range(1, 131):
        seed(runtime, "customer", f"cus_{n:03d}", {"name": f"Customer {n}", "currency": "USD"})
        seed_order(runtime, f"ord_{n:03d}", f"cus_{n:03d}", [(f"oli_{n:03d}", "prd_setup", "1", None)])
    real_enqueue, calls = invoicing.enqueue_many, {"n": 0}

    def crash_in_second_chunk(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1  # one call per chunk, after its invoices are added
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed while finalising")
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(invoicing, "enqueue_many", crash_in_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_billing(runtime, AS_OF)
    assert [inv.number for inv in invoices(runtime)] == [f"INV-{n:06d}" for n in range(1, 101)]

    monkeypatch.setattr(invoicing, "enqueue_many", real_enqueue)
    result = run_billing(runtime, AS_OF)
    assert result.invoices_created == 30
    stored = invoices(runtime)
    assert [inv.number for inv in stored] == [f"INV-{n:06d}" for n in range(1, 131)]
    with runtime.sessions() as session:
        queued = session.scalars(select(OutboxItem.canonical_id)).all()
    assert sorted(queued) == sorted(inv.id for inv in stored)


def test_a_zero_invoice_is_paid_when_finalised(runtime: Runtime) -> None:
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "currency": "USD"})
    seed(runtime, "product", "prd_setup", {"code": "SETUP", "name": "Setup"})
    seed_order(runtime, "ord_1", "cus_acme", [("oli_1", "prd_setup", "1", "0")])  # setup waived

    run_billing(runtime, AS_OF)

    [invoice] = invoices(runtime)
    assert invoice.status == "paid" and invoice.total == 0


def test_the_outbound_document_keeps_quantity_times_unit_price_equal_to_the_amount(runtime: Runtime) -> None:
    seed_company(runtime)
    run_billing(runtime, AS_OF)
    [invoice] = invoices(runtime)

    document = invoice_document(invoice, {"SETUP": "prd_setup", "BASIC": "prd_basic"})

    assert document["number"] == "INV-000001" and document["total"] == Decimal("648.58")
    lines = {line["source_key"]: line for line in document["lines"]}
    prorated = lines["sub:oli_2:2026-10-16"]
    # QuickBooks refuses Amount != Qty x UnitPrice: the prorated month goes at its effective price
    assert (prorated["quantity"] * prorated["unit_price"]).quantize(Decimal("0.01")) == prorated["amount"]
    assert prorated["list_unit_price"] == Decimal("49.00") and prorated["billed_quantity"] == 2
    full = lines["sub:oli_2:2026-09-16"]
    assert (full["quantity"], full["unit_price"], full["product_id"]) == (2, Decimal("49.00"), "prd_basic")
    assert document["taxes"] == [] and document["amount_due"] == Decimal("648.58")


def test_explain_prints_how_every_line_came_about(runtime: Runtime) -> None:
    seed_company(runtime)
    run_billing(runtime, AS_OF)

    text_out = explain_invoice(runtime, "INV-000001")

    assert text_out.startswith("Invoice INV-000001 (open)\nCustomer: Acme Ltd (cus_acme)\n")
    assert "total USD 648.58" in text_out and "due USD 648.58" in text_out
    assert "prorated 16/31 (actual_days) of the period 2026-10-16 to 2026-11-16" in text_out
    assert "2 x 49.00 x 16/31 = 50.58064516" in text_out
    assert "Line 3 (sub:oli_2:2026-10-16)" in text_out
    with pytest.raises(InvoiceNotFoundError, match="INV-000009"):
        explain_invoice(runtime, "INV-000009")


def test_invoices_billed_before_the_upgrade_keep_working(db_url: str, tmp_path: Path) -> None:
    upgrade_database(db_url, "0002")
    # an invoice as the foundation's billing wrote it (the columns of revision 0002 only)
    old = MetaData()
    old_invoices = Table(
        "invoices", old,
        *(Column(name, String) for name in ("id", "customer_id", "series", "number", "status", "currency")),
        Column("issue_date", Date), Column("due_date", Date), Column("created_at", UTCDateTime()),
        *(Column(name, ExactDecimal()) for name in ("subtotal", "tax_total", "total")),
    )  # fmt: skip
    old_lines = Table(
        "invoice_lines", old,
        *(Column(name, String) for name in ("invoice_id", "source_key", "product_code", "description")),
        Column("position", Integer),
        *(Column(name, ExactDecimal()) for name in ("quantity", "unit_price", "amount", "tax_amount")),
    )  # fmt: skip
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                old_invoices.insert().values(
                    id="inv-old",
                    customer_id="cus_acme",
                    series="INV",
                    number="INV-000001",
                    status="open",
                    currency="USD",
                    issue_date=AS_OF,
                    due_date=AS_OF,
                    created_at=dt.datetime.now(dt.UTC),
                    subtotal=Decimal("49.90"),
                    tax_total=Decimal(0),
                    total=Decimal("49.90"),
                )  # fmt: skip
            )
            connection.execute(
                old_lines.insert().values(
                    invoice_id="inv-old",
                    source_key="order-line:oli_old",
                    product_code="SETUP",
                    description="Setup",
                    position=1,
                    quantity=Decimal(2),
                    unit_price=Decimal("24.95"),
                    amount=Decimal("49.90"),
                    tax_amount=Decimal(0),
                )  # fmt: skip
            )
    finally:
        engine.dispose()

    runtime = make_runtime(db_url, tmp_path)  # upgrades to the newest revision
    try:
        [invoice] = invoices(runtime)
        [line] = invoice.lines
        explained = explain_invoice(runtime, "INV-000001")
    finally:
        runtime.close()
    assert (invoice.discount_total, invoice.amount_paid, invoice.tax_lines) == (0, 0, [])
    assert (line.discount_amount, line.tax_id, line.tax_inclusive, line.explanation) == (0, None, False, None)
    assert "Setup: USD 49.90\n  2 x USD 24.95 = USD 49.90" in explained
