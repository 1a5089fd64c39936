"""``billsync invoices void`` as an operator types it: what it prints, its exit codes, what it stores.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL: the yaml points at the test's database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync_engine.cli import app
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import Invoice
from tests.sync_engine import books

CUSTOMER = "cus_acme"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    (tmp_path / "catalog.yaml").write_text("version: 1\nproducts: []\n", encoding="utf-8")
    secret = tmp_path / "sf_password"
    secret.write_text("not-used", encoding="utf-8")
    settings: dict[str, Any] = {
        "version": 1,
        "database_url": db_url,
        "connections": {
            "sf": {"type": "salesforce", "username": "ops@seller.example", "password_file": str(secret)}
        },
        "streams": [],
        "destinations": [
            {
                "name": "crm",
                "connection": "sf",
                "mappings": {"invoice_status": "builtin:salesforce/invoice_status.out"},
            }
        ],
    }
    path = tmp_path / "billsync.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    """INV-000001 (open, 99.00) and INV-000002 (200.00, 50.00 of it paid)."""
    settings = load_settings(config)
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    due = dt.date(2026, 12, 31)
    books.add_rows(
        runtime,
        books.customer_row(CUSTOMER, name="Acme Ltd", currency="EUR"),
        books.invoice_row("INV-000001", "99.00", customer_id=CUSTOMER, due=due, currency="EUR"),
        books.invoice_row(
            "INV-000002",
            "200.00",
            customer_id=CUSTOMER,
            due=due,
            currency="EUR",
            status="partially_paid",
        ),
    )
    with runtime.transaction() as session:
        paid = session.get(Invoice, "inv_INV-000002")
        assert paid is not None
        paid.amount_paid = Decimal("50.00")
    yield runtime
    runtime.close()


def billsync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "-c", str(config)])


def stored(runtime: Runtime, number: str) -> tuple[str, str | None, str | None]:
    with runtime.sessions() as session:
        invoice = session.get(Invoice, f"inv_{number}")
        assert invoice is not None
        return invoice.status, invoice.void_reason, invoice.voided_by


def test_void_prints_what_it_did_and_records_who_asked(config: Path, runtime: Runtime) -> None:
    result = billsync(config, "invoices", "void", "INV-000001", "--reason", "duplicate", "--by", "alice")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("INV-000001 is void (EUR 99.00), by alice at ")
    assert "queued for: crm:invoice_status" in result.output
    assert stored(runtime, "INV-000001") == ("void", "duplicate", "alice")


def test_void_json_is_one_object(config: Path, runtime: Runtime) -> None:
    result = billsync(
        config, "invoices", "void", "INV-000001", "--reason", "duplicate", "--by", "bob", "--json"
    )

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["number"], data["status"], data["total"], data["voided_by"]) == (
        "INV-000001",
        "void",
        "99.00",
        "bob",
    )


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("INV-000002", "EUR 50.00 was received or credited on it; issue a credit note instead"),
        ("INV-000404", "no invoice INV-000404"),
    ],
)
def test_a_refusal_exits_1_with_the_reason_and_changes_nothing(
    config: Path, runtime: Runtime, number: str, message: str
) -> None:
    result = billsync(config, "invoices", "void", number, "--reason", "customer cancelled")

    assert result.exit_code == 1
    assert "billsync: " in result.output and message in result.output
    assert stored(runtime, "INV-000002") == ("partially_paid", None, None)


def test_voiding_twice_says_when_and_by_whom_it_was_voided(config: Path, runtime: Runtime) -> None:
    assert (
        billsync(config, "invoices", "void", "INV-000001", "--reason", "typo", "--by", "alice").exit_code == 0
    )

    again = billsync(config, "invoices", "void", "INV-000001", "--reason", "typo", "--by", "bob")

    assert again.exit_code == 1 and "is void already" in again.output and "by alice: typo" in again.output
