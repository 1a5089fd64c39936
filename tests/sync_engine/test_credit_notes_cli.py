"""The credit-note commands as an operator types them: ``billsync invoices credit``, and the invoice
commands that take a credit-note number (``export``, ``deliver``, ``deliveries``, ``resend``).

Commands run in this process (typer's runner) on one billsync.yaml with the demo seller, its bank
account and a real SMTP server on 127.0.0.1. Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL)
PostgreSQL: the yaml points at the test's database either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree
from sqlalchemy import select
from typer.testing import CliRunner, Result

from sync_engine.cli import app
from sync_engine.demo import DEMO_SELLER
from sync_engine.demo_payments import DEMO_BANK_IBAN
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import CreditNote, Invoice
from tests.sync_engine import books
from tests.sync_engine.test_credit_notes import (
    CUSTOMER,
    GERMAN_CUSTOMER,
    add_invoice,
    preceding_invoice,
    revalidated,
    standard_lines,
)

SENDER = "billing@demo-seller.example.com"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def config(db_url: str, tmp_path: Path, sink: SmtpSink) -> Path:
    """A billsync.yaml on ``db_url``: the demo seller and bank account, mail through ``sink``."""
    (tmp_path / "catalog.yaml").write_text("version: 1\nproducts: []\n", encoding="utf-8")
    settings: dict[str, Any] = {
        "version": 1,
        "database_url": db_url,
        "connections": {},
        "streams": [],
        "destinations": [],
        "seller": DEMO_SELLER,
        "payments": {"bank_account": {"name": "Demo Bank", "iban": DEMO_BANK_IBAN, "bic": "COBADEFFXXX"}},
        "einvoice": {"tax_categories": {"vat19": "S"}},
        "mail": {
            "host": sink.host,
            "port": sink.port,
            "security": "none",
            "from_address": SENDER,
            "timeout_seconds": 30,
        },
        "delivery": {"retry_seconds": 0.05},
    }
    path = tmp_path / "billsync.yaml"
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    """The state store the commands of ``config`` work on, with the German customer's invoice
    INV-000001 (Platform 100.00 + 19.00, Seats 50.00 + 9.50: 178.50)."""
    settings = load_settings(config)
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    books.add_rows(runtime, books.customer_row(CUSTOMER, **GERMAN_CUSTOMER))
    add_invoice(runtime, "INV-000001", standard_lines())
    yield runtime
    runtime.close()


def billsync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "-c", str(config)])


def credit(config: Path, *args: str) -> Result:
    return billsync(config, "invoices", "credit", "INV-000001", "--as-of", "2026-11-25", *args)


def stored_notes(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        return [
            (n.number, n.reason, n.requested_by)
            for n in session.scalars(select(CreditNote).order_by(CreditNote.number))
        ]


def amount_paid(runtime: Runtime) -> str:
    with runtime.sessions() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.number == "INV-000001")).one()
        return f"{invoice.status} {invoice.amount_paid:.2f}"


def test_credit_prints_the_number_and_json_gives_the_summary(runtime: Runtime, config: Path) -> None:
    first = credit(config, "--reason", "Two seats were not used", "--line", "1=20", "--by", "sue")
    assert first.exit_code == 0, first.output
    assert first.stdout == (
        "CN-000001 credits EUR 23.80 of INV-000001 (23.80 off what is due, 0.00 kept as customer credit)\n"
    )

    second = credit(
        config, "--reason", "Goodwill", "--line", "1=10", "--line", "2=10", "--by", "sue", "--json"
    )
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert {k: summary[k] for k in ("number", "invoice", "subtotal", "tax", "total", "requested_by")} == {
        "number": "CN-000002",
        "invoice": "INV-000001",
        "subtotal": "20.00",
        "tax": "3.80",
        "total": "23.80",
        "requested_by": "sue",
    }
    assert [(ln["invoice_line"], ln["amount"], ln["tax"]) for ln in summary["lines"]] == [
        (1, "10.00", "1.90"),
        (2, "10.00", "1.90"),
    ]
    assert (summary["issue_date"], summary["delivery_status"]) == ("2026-11-25", "pending")
    assert stored_notes(runtime) == [
        ("CN-000001", "Two seats were not used", "sue"),
        ("CN-000002", "Goodwill", "sue"),
    ]
    assert amount_paid(runtime) == "partially_paid 47.60"


def test_crediting_the_rest_prints_money_in_cents(runtime: Runtime, config: Path) -> None:
    assert credit(config, "--reason", "Seats", "--line", "1=20", "--by", "sue").exit_code == 0
    rest = credit(config, "--reason", "Cancelled", "--by", "sue", "--json")
    assert rest.exit_code == 0, rest.output
    summary = json.loads(rest.stdout)
    assert (summary["total"], summary["applied_to_invoice"], summary["customer_credit"]) == (
        "154.70",
        "154.70",
        "0.00",
    )
    assert amount_paid(runtime) == "paid 178.50"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("two=5", "--line wants POSITION=AMOUNT, got 'two=5'"),
        ("1:20", "--line wants POSITION=AMOUNT"),
        ("=5", "--line wants POSITION=AMOUNT"),
        ("1=abc", "not an amount: 'abc'"),
        ("1=", "not an amount"),
    ],
)
def test_a_line_that_is_not_position_equals_amount_exits_2(
    runtime: Runtime, config: Path, line: str, message: str
) -> None:
    result = credit(config, "--reason", "Seats", "--line", line, "--by", "sue")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert stored_notes(runtime) == []


def test_an_over_credit_or_unknown_invoice_exits_1_with_the_reason_and_spends_no_number(
    runtime: Runtime, config: Path
) -> None:
    over = credit(config, "--reason", "Seats", "--line", "1=500", "--by", "sue")
    assert over.exit_code == 1, over.output
    assert over.stderr.startswith("billsync: invoice INV-000001 line 1 (Platform): 100.00 left to credit")
    assert "not 500" in over.stderr
    unknown = billsync(config, "invoices", "credit", "INV-999999", "--reason", "x", "--by", "sue")
    assert unknown.exit_code == 1 and "billsync: no invoice INV-999999" in unknown.stderr
    no_line = credit(config, "--reason", "Seats", "--line", "3=1", "--by", "sue")
    assert no_line.exit_code == 1 and "has no line 3 (lines: 1, 2)" in no_line.stderr
    assert stored_notes(runtime) == []
    assert amount_paid(runtime) == "open 0.00"
    ok = credit(config, "--reason", "Seats", "--line", "1=20", "--by", "sue")
    assert ok.exit_code == 0 and ok.stdout.startswith("CN-000001 ")


def test_export_writes_the_credit_note_as_a_valid_peppol_file(
    runtime: Runtime, config: Path, tmp_path: Path
) -> None:
    assert credit(config, "--reason", "Seats", "--line", "1=20", "--by", "sue").exit_code == 0
    out = tmp_path / "out"
    out.mkdir()

    exported = billsync(config, "invoices", "export", "CN-000001", "--format", "peppol", "--out", str(out))

    assert exported.exit_code == 0, exported.output
    target = out / "CN-000001-peppol.xml"
    assert exported.stdout.strip() == str(target)
    content = target.read_bytes()
    assert revalidated(content, "peppol").format == "peppol"
    assert etree.QName(etree.fromstring(content)).localname == "CreditNote"
    assert preceding_invoice(content) == ("381", "INV-000001", "23.80")
    checked = CliRunner().invoke(app, ["invoices", "validate", str(target)])
    assert checked.exit_code == 0, checked.output


def test_deliver_sends_the_credit_note_and_deliveries_lists_the_attempt(
    runtime: Runtime, config: Path, sink: SmtpSink
) -> None:
    assert credit(config, "--reason", "Seats", "--line", "1=20", "--by", "sue").exit_code == 0
    with runtime.sessions() as session:
        note_id = session.scalars(select(CreditNote.id)).one()
    message_id = f"<creditnote.{note_id}@demo-seller.example.com>"

    delivered = billsync(config, "invoices", "deliver")
    assert delivered.exit_code == 0, delivered.output
    assert "1 delivered, 0 failed" in delivered.stdout
    [mail] = sink.messages
    assert mail.message["Message-ID"] == message_id

    shown = billsync(config, "invoices", "deliveries", "CN-000001")
    assert shown.exit_code == 0, shown.output
    head, attempt = shown.stdout.splitlines()
    assert head == "CN-000001: issued, delivery delivered"
    assert "email initial to rechnung@kunde.example: sent" in attempt and message_id in attempt

    as_json = json.loads(billsync(config, "invoices", "deliveries", "CN-000001", "--json").stdout)
    assert (as_json["kind"], [d["status"] for d in as_json["deliveries"]]) == ("credit_note", ["sent"])
    invoice_side = billsync(config, "invoices", "deliveries", "INV-000001")
    assert "no delivery attempt yet" in invoice_side.stdout

    resent = billsync(config, "invoices", "resend", "CN-000001", "--by", "sue")
    assert resent.exit_code == 0, resent.output
    assert resent.stdout.startswith("CN-000001 resent to rechnung@kunde.example (<creditnote.")
    assert len(sink.messages) == 2
    again = json.loads(billsync(config, "invoices", "deliveries", "CN-000001", "--json").stdout)
    assert [(d["purpose"], d["requested_by"]) for d in again["deliveries"]] == [
        ("initial", None),
        ("resend", "sue"),
    ]
