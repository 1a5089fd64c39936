"""The invoice delivery commands as an operator types them, against a real SMTP server on 127.0.0.1.

``billsync invoices deliver`` is run as a process and killed with SIGKILL while the server holds one
message, then run again: every invoice must arrive exactly once. The other commands run in this
process (typer's runner) on the same billsync.yaml. Runs on SQLite and (with
BILLSYNC_TEST_DATABASE_URL) PostgreSQL: the yaml points at the test's database either way.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner, Result

from sync_engine.cli import app
from sync_engine.delivery import ENTITY, STREAM, delivery_history, queue_delivery
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, OutboxItem
from tests.sync_engine.books import customer_row, invoice_row

BILLSYNC = Path(sys.executable).parent / "billsync"
DUE = dt.date(2026, 12, 1)
FINANCE = "finance@seller.example"
ARCHIVE = "archive@seller.example"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def write_config(folder: Path, db_url: str, sink: SmtpSink, **delivery: Any) -> Path:
    """A billsync.yaml on ``db_url`` sending through ``sink``, with the finance mailbox."""
    (folder / "catalog.yaml").write_text("version: 1\nproducts: []\n", encoding="utf-8")
    settings = {
        "version": 1,
        "database_url": db_url,
        "connections": {},
        "streams": [],
        "destinations": [],
        "seller": {"name": "Seller GmbH"},
        "mail": {
            "host": sink.host,
            "port": sink.port,
            "security": "none",
            "from_address": "billing@seller.example",
            "timeout_seconds": 30,
        },
        "delivery": {"reply_to": FINANCE, "bcc": [ARCHIVE], "retry_seconds": 0.05, **delivery},
    }
    path = folder / "billsync.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@pytest.fixture
def config(db_url: str, tmp_path: Path, sink: SmtpSink) -> Path:
    return write_config(tmp_path, db_url, sink)


@pytest.fixture
def runtime(config: Path) -> Iterator[Runtime]:
    """The state store the commands of ``config`` work on, for seeding and checking."""
    settings = load_settings(config)
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def billsync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "-c", str(config)])


def owe(runtime: Runtime, number: str, email: str | None, **customer: Any) -> str:
    """A customer (``cus_<number>``) and its finalised invoice, whose delivery is owed."""
    customer_id = f"cus_{number}"
    data = {"name": f"Customer {number}", "currency": "EUR", **customer}
    if email is not None:
        data["email"] = email
    with runtime.transaction() as session:
        session.add(customer_row(customer_id, **data))
        invoice = invoice_row(number, "250.00", customer_id=customer_id, due=DUE, currency="EUR")
        session.add(invoice)
        session.flush()
        queue_delivery(session, invoice)
        return invoice.id


def history(runtime: Runtime, number: str) -> dict[str, Any]:
    with runtime.sessions() as session:
        return delivery_history(session, number)


def delivery_status(runtime: Runtime, invoice_id: str) -> str | None:
    with runtime.sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice.delivery_status


def letter_statuses(runtime: Runtime) -> list[tuple[str, str | None, str]]:
    with runtime.sessions() as session:
        return [
            (d.stream, d.external_id, d.status)
            for d in session.scalars(select(DeadLetter).order_by(DeadLetter.id))
        ]


# --------------------------------------------------------------------------------------------
# killed mid-batch


def test_a_sender_killed_mid_batch_and_restarted_delivers_every_invoice_exactly_once(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    numbers = [f"INV-00000{n}" for n in range(1, 7)]
    ids = {number: owe(runtime, number, f"ap{n}@customer.example") for n, number in enumerate(numbers, 1)}
    # the 4th message is held after its content arrived, before the server answered
    held = sink.hold("ap4@customer.example", stage="data")

    process = subprocess.Popen(
        [str(BILLSYNC), "invoices", "deliver", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        held.wait(timeout=60)
        assert len(sink.messages) == 3
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert held.abandoned.wait(5), "the server should have seen the sender go away"
    held.release()
    with runtime.sessions() as session:
        claimed = session.scalars(
            select(OutboxItem).where(OutboxItem.canonical_id == ids["INV-000004"])
        ).one()
        assert (claimed.status, claimed.attempts) == ("unknown", 1)

    restarted = subprocess.run(
        [str(BILLSYNC), "invoices", "deliver", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert restarted.returncode == 0, restarted.stderr
    assert "3 delivered, 0 failed, 0 to retry, 0 to print" in restarted.stdout
    messages = sink.messages
    by_message_id = Counter(str(m.message["Message-ID"]) for m in messages)
    by_number = Counter(m.attachments()[0][0].removesuffix(".pdf") for m in messages)
    assert by_message_id == Counter(f"<invoice.{ids[n]}@seller.example>" for n in numbers)
    assert by_number == Counter(numbers)
    assert all(m.rcpt_tos[1:] == (ARCHIVE,) for m in messages)
    with runtime.sessions() as session:
        rows = session.scalars(select(OutboxItem).where(OutboxItem.entity == ENTITY))
        assert sorted((row.canonical_id, row.status) for row in rows) == sorted(
            (i, "sent") for i in ids.values()
        )
        assert set(session.scalars(select(Invoice.delivery_status))) == {"delivered"}
    assert [(d["status"], d["attempt"]) for d in history(runtime, "INV-000004")["deliveries"]] == [
        ("sent", 2)
    ]


# --------------------------------------------------------------------------------------------
# proof


def test_deliveries_shows_every_attempt_with_its_outcome(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    invoice_id = owe(runtime, "INV-000001", "ap@acme.example")
    sink.fail("ap@acme.example", 451, "Greylisted, try again", times=1)

    delivered = billsync(config, "invoices", "deliver")
    shown = billsync(config, "invoices", "deliveries", "INV-000001")
    as_json = billsync(config, "invoices", "deliveries", "INV-000001", "--json")

    assert delivered.exit_code == 0, delivered.output
    assert "1 delivered, 0 failed, 0 to retry, 0 to print" in delivered.stdout
    assert shown.exit_code == 0, shown.output
    msg_id = f"<invoice.{invoice_id}@seller.example>"
    lines = shown.stdout.splitlines()
    assert lines[0] == "INV-000001: open, delivery delivered"
    assert len(lines) == 3
    assert "email initial to ap@acme.example: retrying" in lines[1] and msg_id in lines[1]
    assert "451 Greylisted, try again" in lines[1]
    assert "email initial to ap@acme.example: sent" in lines[2] and msg_id in lines[2]
    history_json = json.loads(as_json.stdout)
    assert history_json["delivery_status"] == "delivered"
    attempts = history_json["deliveries"]
    assert [(a["channel"], a["to"], a["status"], a["attempt"], a["message_id"]) for a in attempts] == [
        ("email", "ap@acme.example", "retrying", 1, msg_id),
        ("email", "ap@acme.example", "sent", 2, msg_id),
    ]
    first, second = (dt.datetime.fromisoformat(a["at"]) for a in attempts)
    assert first <= second and first.tzinfo is not None
    assert lines[1].split()[0] == attempts[0]["at"]

    unknown = billsync(config, "invoices", "deliveries", "INV-999999")
    assert unknown.exit_code == 1 and "no invoice or credit note INV-999999" in unknown.stderr


def test_resend_to_a_new_address_sends_a_new_message_recorded_with_who_asked(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    invoice_id = owe(runtime, "INV-000001", "typo@acme.example")
    sink.fail("typo@acme.example", 550, "No such user")
    failed = billsync(config, "invoices", "deliver")
    assert failed.exit_code == 1
    assert "INV-000001 to typo@acme.example: typo@acme.example refused: 550 No such user" in failed.stdout
    assert delivery_status(runtime, invoice_id) == "failed"
    assert letter_statuses(runtime) == [(STREAM, "INV-000001", "open")]

    resent = billsync(config, "invoices", "resend", "INV-000001", "--to", "ap@acme.example", "--by", "sue")

    assert resent.exit_code == 0, resent.output
    original = f"<invoice.{invoice_id}@seller.example>"
    [mail] = sink.messages
    assert mail.rcpt_tos == ("ap@acme.example", ARCHIVE)
    assert mail.message["Message-ID"] != original
    assert mail.message["References"] == original
    assert mail.message["Reply-To"] == FINANCE
    assert mail.attachments()[0][0] == "INV-000001.pdf"
    assert resent.stdout.strip() == f"INV-000001 resent to ap@acme.example ({mail.message['Message-ID']})"
    assert delivery_status(runtime, invoice_id) == "delivered"
    assert letter_statuses(runtime) == [(STREAM, "INV-000001", "resolved")]
    last = history(runtime, "INV-000001")["deliveries"][-1]
    assert (last["purpose"], last["status"], last["to"], last["requested_by"], last["message_id"]) == (
        "resend",
        "sent",
        "ap@acme.example",
        "sue",
        mail.message["Message-ID"],
    )
    shown = billsync(config, "invoices", "deliveries", "INV-000001")
    assert "(asked by sue)" in shown.stdout.splitlines()[-1]

    again = billsync(config, "invoices", "resend", "INV-000001", "--to", "ap@acme.example", "--by", "sue")
    assert again.exit_code == 0
    assert len({str(m.message["Message-ID"]) for m in sink.messages}) == 2  # each resend its own id


def test_a_resend_the_server_refuses_exits_1_with_the_reason_and_is_recorded(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    invoice_id = owe(runtime, "INV-000001", "ap@acme.example")
    assert billsync(config, "invoices", "deliver").exit_code == 0
    sink.fail("old@acme.example", 550, "No such user")

    refused = billsync(config, "invoices", "resend", "INV-000001", "--to", "old@acme.example", "--by", "sue")

    assert refused.exit_code == 1
    assert "billsync: invoice INV-000001 not resent:" in refused.stderr
    assert "550 No such user" in refused.stderr
    assert len(sink.messages) == 1
    last = history(runtime, "INV-000001")["deliveries"][-1]
    assert (last["purpose"], last["status"], last["to"], last["requested_by"]) == (
        "resend",
        "failed",
        "old@acme.example",
        "sue",
    )
    assert "550 No such user" in last["error"]
    assert delivery_status(runtime, invoice_id) == "delivered"  # the first delivery still stands


def test_a_resend_without_any_address_says_so(config: Path, runtime: Runtime, sink: SmtpSink) -> None:
    owe(runtime, "INV-000001", None)

    refused = billsync(config, "invoices", "resend", "INV-000001", "--by", "sue")

    assert refused.exit_code == 1 and "no e-mail address" in refused.stderr
    assert sink.messages == []


# --------------------------------------------------------------------------------------------
# post, replay, config check


def test_print_list_names_the_invoices_to_post_and_their_file(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    owe(runtime, "INV-000001", None, billing_address={"street": "Hauptstr. 1", "city": "Berlin"})
    owe(runtime, "INV-000002", "ap@post.example", invoice_delivery="post")
    owe(runtime, "INV-000003", "ap@mail.example")
    assert billsync(config, "invoices", "print-list").stdout.strip() == "nothing to print"

    delivered = billsync(config, "invoices", "deliver")
    listed = billsync(config, "invoices", "print-list")
    as_json = json.loads(billsync(config, "invoices", "print-list", "--json").stdout)

    assert delivered.exit_code == 0, delivered.output
    assert "1 delivered, 0 failed, 0 to retry, 2 to print" in delivered.stdout
    [print_file] = [row["print_file"] for row in as_json[:1]]
    assert f"  print file: {print_file}" in delivered.stdout.splitlines()
    assert Path(print_file).parent == config.parent / "print" and Path(print_file).is_file()
    assert listed.stdout.splitlines() == [
        f"INV-000001 Customer INV-000001, Hauptstr. 1, Berlin: no e-mail address -> {print_file}",
        f"INV-000002 Customer INV-000002: the customer asked for post -> {print_file}",
    ]
    assert [(r["number"], r["print_file"]) for r in as_json] == [
        ("INV-000001", print_file),
        ("INV-000002", print_file),
    ]
    assert [m.rcpt_tos[0] for m in sink.messages] == ["ap@mail.example"]

    again = billsync(config, "invoices", "deliver")
    assert (
        "0 delivered, 0 failed, 0 to retry, 0 to print" in again.stdout and "print file" not in again.stdout
    )
    assert len(list((config.parent / "print").glob("*.pdf"))) == 1


def test_replaying_the_dead_letter_once_the_address_is_fixed_delivers_the_invoice(
    config: Path, runtime: Runtime, sink: SmtpSink
) -> None:
    invoice_id = owe(runtime, "INV-000001", "typo@acme.example")
    sink.fail("typo@acme.example", 550, "No such user")
    assert billsync(config, "invoices", "deliver").exit_code == 1
    with runtime.transaction() as session:  # the address is fixed in the CRM and pulled
        record = session.get(CanonicalRecord, "cus_INV-000001")
        assert record is not None
        record.data = {**record.data, "email": "ap@acme.example"}

    replayed = billsync(config, "dead-letters", "replay", "--stream", STREAM, "--by", "sue")

    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1: 1 resolved, 0 still failing (deliver:email: 1)" in replayed.stdout
    [mail] = sink.messages
    assert mail.rcpt_tos == ("ap@acme.example", ARCHIVE)
    assert mail.message["Message-ID"] == f"<invoice.{invoice_id}@seller.example>"
    assert delivery_status(runtime, invoice_id) == "delivered"
    assert letter_statuses(runtime) == [(STREAM, "INV-000001", "resolved")]


def test_config_check_reports_a_delivery_template_with_an_undefined_variable(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    templates = tmp_path / "mail"
    templates.mkdir()
    config = write_config(tmp_path, db_url, sink, templates="mail")
    (templates / "invoice.de.txt").write_text(
        "Subject: Rechnung {{ number }}\n\nBetrag: {{ totl }}\n", encoding="utf-8"
    )

    broken = billsync(config, "config", "check")

    assert broken.exit_code == 2
    assert "delivery template (invoice, de)" in broken.output and "totl" in broken.output
    assert "delivery template (en)" not in broken.output

    (templates / "invoice.de.txt").write_text(
        "Subject: Rechnung {{ number }}\n\nBetrag: {{ total }}\n", encoding="utf-8"
    )
    fixed = billsync(config, "config", "check")
    assert fixed.exit_code == 0, fixed.output
    assert "is valid" in fixed.output
