"""Invoice delivery against a real SMTP server (aiosmtpd on 127.0.0.1): what customers receive, once.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL. Invoices are written directly as
finalised (open, numbered) with their delivery owed, the way the billing run leaves them; the last
tests go through ``run_billing`` itself. Each PDF costs about 0.3 s to render: few invoices per test.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pypdf import PdfReader
from sqlalchemy import select

from sync_engine import delivery
from sync_engine.delivery import (
    STREAM,
    DeliveryResult,
    delivery_history,
    print_queue,
    queue_delivery,
    run_deliveries,
)
from sync_engine.invoicing import run_billing
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import DeliverySettings, MailSettings, SellerSettings
from sync_engine.smtp_sink import ReceivedMessage, SmtpSink
from sync_engine.store.models import CanonicalRecord, DeadLetter, Invoice, OutboxItem
from sync_engine.support import LetterFilter, replay_letters
from tests.sync_engine import books
from tests.sync_engine.books import customer_row, invoice_row
from tests.sync_engine.test_invoicing import CATALOG, seed, seed_order

DUE = dt.date(2026, 12, 1)
FROM = "Seller Billing <billing@seller.example>"
FINANCE = "finance@seller.example"
ARCHIVE = "archive@seller.example"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def make_runtime(
    db_url: str,
    folder: Path,
    mail: MailSettings | None,
    *,
    seller: str = "Seller GmbH",
    **delivery_fields: Any,
) -> Runtime:
    """A runtime whose invoices go out through ``mail`` with the finance mailbox as reply-to and Bcc."""
    fields: dict[str, Any] = {"reply_to": FINANCE, "bcc": [ARCHIVE], "retry_seconds": 0.05, **delivery_fields}
    return books.make_runtime(
        db_url,
        folder,
        mail=mail,
        seller=SellerSettings(name=seller, payment_instructions="IBAN DE89 3704 0044 0532 0130 00"),
        delivery=DeliverySettings(**fields),
    )


@pytest.fixture
def runtime(db_url: str, tmp_path: Path, sink: SmtpSink) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM))
    yield runtime
    runtime.close()


def customer(runtime: Runtime, customer_id: str, **data: Any) -> None:
    books.add_rows(runtime, customer_row(customer_id, currency="EUR", **data))


def owe(runtime: Runtime, number: str, customer_id: str, total: str = "1234.50") -> str:
    """A finalised invoice whose delivery is owed (queued in the finalising transaction)."""
    with runtime.transaction() as session:
        invoice = invoice_row(number, total, customer_id=customer_id, due=DUE, currency="EUR")
        session.add(invoice)
        session.flush()
        queue_delivery(session, invoice)
        return invoice.id


def change_customer(runtime: Runtime, customer_id: str, **data: Any) -> None:
    """The CRM changed the customer (a pull would store the new record)."""
    with runtime.transaction() as session:
        record = session.get(CanonicalRecord, customer_id)
        assert record is not None
        record.data = {**record.data, **data}


def pdf_text(content: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(content)).pages]


def the_pdf(message: ReceivedMessage) -> tuple[str, str]:
    """``(filename, text)`` of the one attachment of ``message``, which must be a PDF."""
    [(filename, mime, content)] = message.attachments()
    assert mime == "application/pdf" and content.startswith(b"%PDF-")
    return filename, "\n".join(pdf_text(content))


def history(runtime: Runtime, number: str) -> dict[str, Any]:
    with runtime.sessions() as session:
        return delivery_history(session, number)


def attempts(runtime: Runtime, number: str) -> list[tuple[str, int, str | None]]:
    """``(status, attempt, message id)`` of every recorded delivery attempt of ``number``."""
    return [(d["status"], d["attempt"], d["message_id"]) for d in history(runtime, number)["deliveries"]]


def outbox(runtime: Runtime) -> dict[str, OutboxItem]:
    """The delivery rows of the outbox by invoice id (the latest row of each invoice)."""
    with runtime.sessions() as session:
        rows = session.scalars(
            select(OutboxItem).where(OutboxItem.entity == delivery.ENTITY).order_by(OutboxItem.id)
        )
        return {row.canonical_id: row for row in rows}


def outbox_rows(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        rows = session.scalars(
            select(OutboxItem).where(OutboxItem.entity == delivery.ENTITY).order_by(OutboxItem.id)
        )
        return [(row.canonical_id, row.status) for row in rows]


def delivery_status(runtime: Runtime, invoice_id: str) -> str | None:
    with runtime.sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice.delivery_status


def letters(runtime: Runtime) -> list[DeadLetter]:
    with runtime.sessions() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def message_id(invoice_id: str) -> str:
    return f"<invoice.{invoice_id}@seller.example>"


# --------------------------------------------------------------------------------------------
# what the customer receives


def test_each_invoice_arrives_once_with_its_pdf_and_the_finance_mailbox(
    runtime: Runtime, sink: SmtpSink
) -> None:
    customer(runtime, "cus_acme", name="Acme Ltd", billing_email="ap@acme.example")
    customer(runtime, "cus_beta", name="Beta AG", email="office@beta.example")
    first = owe(runtime, "INV-000001", "cus_acme", "1234.50")
    second = owe(runtime, "INV-000002", "cus_beta", "99.95")

    result = run_deliveries(runtime)
    again = run_deliveries(runtime)

    assert (result.delivered, result.failed, result.for_print, result.retrying) == (2, 0, 0, 0)
    assert (again.delivered, len(sink.messages)) == (0, 2)
    acme, beta = sink.messages
    assert acme.rcpt_tos == ("ap@acme.example", ARCHIVE) and beta.rcpt_tos == ("office@beta.example", ARCHIVE)
    assert acme.message["To"] == "Acme Ltd <ap@acme.example>"
    assert acme.message["From"] == FROM
    assert acme.message["Reply-To"] == FINANCE
    assert acme.message["Bcc"] is None and ARCHIVE.encode() not in acme.data
    assert acme.message["Message-ID"] == message_id(first)
    assert beta.message["Message-ID"] == message_id(second)
    assert acme.message["Subject"] == "Invoice INV-000001 from Seller GmbH: EUR 1,234.50, due 2026-12-01"
    assert "Dear Acme Ltd" in acme.text and "EUR 1,234.50" in acme.text
    assert "IBAN DE89 3704 0044 0532 0130 00" in acme.text
    assert acme.html is not None and "INV-000001" in acme.html
    filename, text = the_pdf(acme)
    assert filename == "INV-000001.pdf" and "INV-000001" in text and "1234.50" in text.replace(",", "")
    filename, text = the_pdf(beta)
    assert filename == "INV-000002.pdf" and "INV-000002" in text and "99.95" in text
    assert "INV-000001" not in text
    assert {i: r.status for i, r in outbox(runtime).items()} == {first: "sent", second: "sent"}
    assert (delivery_status(runtime, first), delivery_status(runtime, second)) == ("delivered", "delivered")
    [sent] = history(runtime, "INV-000001")["deliveries"]
    assert (sent["channel"], sent["to"], sent["status"], sent["attempt"], sent["message_id"]) == (
        "email",
        "ap@acme.example",
        "sent",
        1,
        message_id(first),
    )


def test_the_mail_is_written_in_the_customer_s_language(runtime: Runtime, sink: SmtpSink) -> None:
    for code, language in (("de", "de"), ("fr", "fr"), ("ch", "de-CH"), ("es", "es")):
        customer(runtime, f"cus_{code}", name=f"Kunde {code}", email=f"ap@{code}.example", language=language)
        owe(runtime, f"INV-{code.upper()}", f"cus_{code}")

    run_deliveries(runtime)

    mails = {m.rcpt_tos[0]: m for m in sink.messages}
    assert mails["ap@de.example"].message["Subject"] == (
        "Rechnung INV-DE von Seller GmbH: EUR 1,234.50, fällig am 2026-12-01"
    )
    assert "Guten Tag Kunde de" in mails["ap@de.example"].text
    assert mails["ap@fr.example"].message["Subject"] == (
        "Facture INV-FR de Seller GmbH : EUR 1,234.50, échéance 2026-12-01"
    )
    assert "Bonjour Kunde fr" in mails["ap@fr.example"].text
    # de-CH has no template of its own: German
    assert str(mails["ap@ch.example"].message["Subject"]).startswith("Rechnung INV-CH von Seller GmbH")
    # a language without templates: the default (English)
    assert str(mails["ap@es.example"].message["Subject"]).startswith("Invoice INV-ES from Seller GmbH")
    assert "Dear Kunde es" in mails["ap@es.example"].text


def test_the_admin_s_templates_replace_the_built_in_ones_and_a_seller_s_folder_replaces_those(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    ours = tmp_path / "mail"
    (ours / "acme-gmbh").mkdir(parents=True)
    (ours / "invoice.txt").write_text(
        "Subject: Our invoice {{ number }}\n\nHello {{ customer_name }}, {{ currency }} {{ total }}.\n",
        encoding="utf-8",
    )
    (ours / "acme-gmbh" / "invoice.de.txt").write_text(
        "Subject: Acme-Rechnung {{ number }}\n\nHallo {{ customer_name }} von {{ seller_name }}.\n",
        encoding="utf-8",
    )
    # a relative folder is found next to billsync.yaml
    runtime = make_runtime(
        db_url, tmp_path, sink.mail_settings(from_address=FROM), seller="ACME GmbH", templates="mail"
    )
    customer(runtime, "cus_en", name="Eve", email="eve@en.example")
    customer(runtime, "cus_de", name="Dora", email="dora@de.example", language="de")
    owe(runtime, "INV-000001", "cus_en")
    owe(runtime, "INV-000002", "cus_de")

    run_deliveries(runtime)
    runtime.close()

    mails = {m.rcpt_tos[0]: m for m in sink.messages}
    assert mails["eve@en.example"].message["Subject"] == "Our invoice INV-000001"
    assert mails["eve@en.example"].text == "Hello Eve, EUR 1,234.50.\n"
    assert mails["dora@de.example"].message["Subject"] == "Acme-Rechnung INV-000002"
    assert mails["dora@de.example"].text == "Hallo Dora von ACME GmbH.\n"
    assert the_pdf(mails["dora@de.example"])[0] == "INV-000002.pdf"


# --------------------------------------------------------------------------------------------
# temporary failures


def test_a_temporary_refusal_is_retried_in_the_same_run_and_the_invoice_arrives_once(
    runtime: Runtime, sink: SmtpSink
) -> None:
    customer(runtime, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    sink.fail("ap@acme.example", 451, times=1)

    result = run_deliveries(runtime)

    assert (result.delivered, result.failed, result.retrying) == (1, 0, 0)
    assert sink.rcpt_attempts.count("ap@acme.example") == 2
    [mail] = sink.messages
    assert mail.message["Message-ID"] == message_id(invoice_id)
    assert attempts(runtime, "INV-000001") == [
        ("retrying", 1, message_id(invoice_id)),
        ("sent", 2, message_id(invoice_id)),
    ]
    assert history(runtime, "INV-000001")["deliveries"][0]["error"].startswith("ap@acme.example refused: 451")
    assert delivery_status(runtime, invoice_id) == "delivered"


def test_a_retry_due_after_the_run_s_wait_is_left_to_a_later_run(
    db_url: str, tmp_path: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(
        db_url, tmp_path, sink.mail_settings(from_address=FROM), retry_seconds=600, wait_seconds=1
    )
    customer(runtime, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    sink.fail("ap@acme.example", 451, times=1)

    first = run_deliveries(runtime)

    assert (first.delivered, first.retrying, sink.messages) == (0, 1, [])
    assert first.errors == [
        "INV-000001 to ap@acme.example: ap@acme.example refused: 451 Try again later (will retry)"
    ]
    row = outbox(runtime)[invoice_id]
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.not_before is not None
    wait = (row.not_before - dt.datetime.now(dt.UTC)).total_seconds()
    assert 590 < wait <= 600
    assert delivery_status(runtime, invoice_id) == "pending"

    early = run_deliveries(runtime)  # before not_before: the server is not even asked

    assert (early.delivered, early.retrying, sink.rcpt_attempts, sink.messages) == (
        0,
        1,
        ["ap@acme.example"],
        [],
    )

    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=601)
    monkeypatch.setattr(delivery, "utcnow", lambda: later)
    last = run_deliveries(runtime)
    runtime.close()

    assert (last.delivered, last.retrying) == (1, 0)
    [mail] = sink.messages
    assert mail.message["Message-ID"] == message_id(invoice_id)
    assert [a[:2] for a in attempts(runtime, "INV-000001")] == [("retrying", 1), ("sent", 2)]


def test_after_max_attempts_a_temporary_failure_counts_as_permanent(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = make_runtime(
        db_url, tmp_path, sink.mail_settings(from_address=FROM), retry_seconds=0.01, max_attempts=3
    )
    customer(runtime, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    sink.fail("ap@acme.example", 452, "Mailbox full")

    result = run_deliveries(runtime)
    again = run_deliveries(runtime)
    runtime.close()

    assert (result.delivered, result.failed, result.retrying) == (0, 1, 0)
    assert (again.failed, sink.messages, sink.rcpt_attempts.count("ap@acme.example")) == (0, [], 3)
    assert [a[:2] for a in attempts(runtime, "INV-000001")] == [
        ("retrying", 1),
        ("retrying", 2),
        ("failed", 3),
    ]
    assert delivery_status(runtime, invoice_id) == "failed"
    assert outbox(runtime)[invoice_id].status == "failed"
    [letter] = letters(runtime)
    assert (letter.stream, letter.entity, letter.external_id, letter.status) == (
        STREAM,
        "invoice",
        "INV-000001",
        "open",
    )
    assert letter.error == "gave up after 3 attempts; last: ap@acme.example refused: 452 Mailbox full"


# --------------------------------------------------------------------------------------------
# permanent failures


def test_a_refused_address_lands_in_the_dead_letters_and_the_batch_goes_on(
    runtime: Runtime, sink: SmtpSink
) -> None:
    customer(runtime, "cus_a", name="A", email="ap@a.example")
    customer(runtime, "cus_b", name="B", email="gone@b.example")
    customer(runtime, "cus_c", name="C", email="ap@c.example")
    first, bounced, third = (
        owe(runtime, f"INV-00000{n}", f"cus_{c}") for n, c in ((1, "a"), (2, "b"), (3, "c"))
    )
    sink.fail("gone@b.example", 550, "No such user")

    result = run_deliveries(runtime)
    again = run_deliveries(runtime)

    assert (result.delivered, result.failed) == (2, 1)
    assert result.errors == ["INV-000002 to gone@b.example: gone@b.example refused: 550 No such user"]
    assert [m.rcpt_tos[0] for m in sink.messages] == ["ap@a.example", "ap@c.example"]
    assert (again.delivered, again.failed, sink.rcpt_attempts.count("gone@b.example")) == (0, 0, 1)
    assert [delivery_status(runtime, i) for i in (first, bounced, third)] == [
        "delivered",
        "failed",
        "delivered",
    ]
    assert outbox(runtime)[bounced].status == "failed"
    [letter] = letters(runtime)
    assert (letter.stream, letter.system, letter.entity, letter.external_id, letter.status) == (
        "deliver:email",
        "smtp",
        "invoice",
        "INV-000002",
        "open",
    )
    assert "550 No such user" in letter.error
    assert letter.payload["invoice_id"] == bounced and letter.payload["to"] == "gone@b.example"
    [failed] = history(runtime, "INV-000002")["deliveries"]
    assert (failed["status"], failed["to"], failed["message_id"]) == (
        "failed",
        "gone@b.example",
        message_id(bounced),
    )


def test_a_refusal_after_data_fails_the_invoice_too(runtime: Runtime, sink: SmtpSink) -> None:
    customer(runtime, "cus_a", name="A", email="ap@a.example")
    invoice_id = owe(runtime, "INV-000001", "cus_a")
    sink.fail("ap@a.example", 554, "Message rejected as spam", stage="data")

    result = run_deliveries(runtime)

    assert (result.delivered, result.failed, sink.messages) == (0, 1, [])
    assert delivery_status(runtime, invoice_id) == "failed"
    [letter] = letters(runtime)
    assert "554 Message rejected as spam" in letter.error


@pytest.mark.parametrize("address", ["ap@@x", "ap@x", "accounts payable@acme.example"])
def test_an_invalid_address_fails_without_asking_the_server(
    runtime: Runtime, sink: SmtpSink, address: str
) -> None:
    customer(runtime, "cus_a", name="A", billing_email=address)
    invoice_id = owe(runtime, "INV-000001", "cus_a")

    result = run_deliveries(runtime)

    assert (result.delivered, result.failed, result.for_print) == (0, 1, 0)
    assert (sink.rcpt_attempts, sink.messages) == ([], [])
    assert delivery_status(runtime, invoice_id) == "failed"
    [letter] = letters(runtime)
    assert (letter.stream, letter.external_id) == (STREAM, "INV-000001")
    assert letter.error == f"not a valid e-mail address: {address}"


def test_a_mail_server_that_is_down_leaves_everything_pending_without_using_attempts(
    db_url: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = MailSettings(host="127.0.0.1", port=port, security="none", from_address=FROM, timeout_seconds=5)
    runtime = make_runtime(db_url, tmp_path, down)
    customer(runtime, "cus_a", name="A", email="ap@a.example")
    customer(runtime, "cus_b", name="B", email="ap@b.example")
    ids = [owe(runtime, "INV-000001", "cus_a"), owe(runtime, "INV-000002", "cus_b")]

    for _ in range(2):
        result = run_deliveries(runtime)
        assert (result.delivered, result.failed, result.retrying) == (0, 0, 2)
        assert any("unavailable" in line for line in result.errors)
    assert [(r.status, r.attempts) for r in outbox(runtime).values()] == [("pending", 0), ("pending", 0)]
    assert [delivery_status(runtime, i) for i in ids] == ["pending", "pending"]
    assert history(runtime, "INV-000001")["deliveries"] == [] and letters(runtime) == []

    with SmtpSink(port=port) as back:
        result = run_deliveries(runtime)
        assert (result.delivered, len(back.messages)) == (2, 2)
    runtime.close()
    assert [a[:2] for a in attempts(runtime, "INV-000002")] == [("sent", 1)]


# --------------------------------------------------------------------------------------------
# crashes


def test_a_run_killed_between_claim_and_send_sends_on_restart_with_the_same_message_id(
    runtime: Runtime, sink: SmtpSink
) -> None:
    customer(runtime, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    with runtime.transaction() as session:  # as a run killed after its claim leaves the row
        row = session.scalars(select(OutboxItem).where(OutboxItem.canonical_id == invoice_id)).one()
        row.status, row.attempts, row.sent_match_key = "unknown", 1, "ap@acme.example"

    result = run_deliveries(runtime)
    again = run_deliveries(runtime)

    assert (result.delivered, again.delivered) == (1, 0)
    [mail] = sink.messages
    assert mail.message["Message-ID"] == message_id(invoice_id)
    assert mail.rcpt_tos == ("ap@acme.example", ARCHIVE)
    assert attempts(runtime, "INV-000001") == [("sent", 2, message_id(invoice_id))]
    assert outbox(runtime)[invoice_id].status == "sent"


def test_a_claimed_invoice_is_repeated_to_the_address_it_was_claimed_for(
    runtime: Runtime, sink: SmtpSink
) -> None:
    """The killed attempt may have reached the server: the repeat must be the same message."""
    customer(runtime, "cus_acme", name="Acme Ltd", email="new@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    with runtime.transaction() as session:
        row = session.scalars(select(OutboxItem).where(OutboxItem.canonical_id == invoice_id)).one()
        row.status, row.attempts, row.sent_match_key = "unknown", 1, "old@acme.example"

    run_deliveries(runtime)

    [mail] = sink.messages
    assert mail.rcpt_tos[0] == "old@acme.example"
    assert mail.message["Message-ID"] == message_id(invoice_id)


def test_two_overlapping_runs_send_an_invoice_once(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    """The daemon's run and a support replay (or a second ``invoices deliver``) may overlap: the
    message one run is handing to the server must not be sent again by the other."""
    daemon = make_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM))
    support = make_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM))
    customer(daemon, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(daemon, "INV-000001", "cus_acme")
    held = sink.hold("ap@acme.example", stage="rcpt")  # the server is slow to answer the first run
    results: dict[str, DeliveryResult | BaseException] = {}

    def run(name: str, runtime: Runtime) -> None:
        try:
            results[name] = run_deliveries(runtime)
        except BaseException as exc:  # reported by the assertions below
            results[name] = exc

    first = threading.Thread(target=run, args=("daemon", daemon), daemon=True)
    first.start()
    held.wait()
    second = threading.Thread(target=run, args=("support", support), daemon=True)
    second.start()
    second.join(timeout=3)  # it may finish (nothing of its own to send) or wait for the first
    held.release()
    first.join(timeout=30)
    second.join(timeout=30)
    daemon.close()
    support.close()

    assert not first.is_alive() and not second.is_alive()
    assert not any(isinstance(r, BaseException) for r in results.values()), results
    assert [str(m.message["Message-ID"]) for m in sink.messages] == [message_id(invoice_id)]


def test_a_run_without_mail_settings_ends_while_a_retry_is_due(
    db_url: str, tmp_path: Path, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mail:`` removed (or broken) while an invoice waits for its retry: the run must still end."""
    with_mail = make_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM), retry_seconds=600)
    customer(with_mail, "cus_acme", name="Acme Ltd", email="ap@acme.example")
    invoice_id = owe(with_mail, "INV-000001", "cus_acme")
    sink.fail("ap@acme.example", 451, times=1)
    assert run_deliveries(with_mail).retrying == 1
    with_mail.close()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=601)  # the retry is due
    monkeypatch.setattr(delivery, "utcnow", lambda: later)
    without_mail = make_runtime(db_url, tmp_path, None)
    outcome: list[DeliveryResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(run_deliveries(without_mail))
        except BaseException as exc:  # StopRequested when it had to be stopped
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=3)  # it has nothing to send: milliseconds
    took = time.monotonic() - started
    without_mail.stop_event.set()  # a run that does not end by itself is stopped at its checkpoint
    worker.join(timeout=10)
    without_mail.close()

    assert not isinstance(outcome[0], StopRequested), f"the run was still going after {took:.0f} s"
    result = outcome[0]
    assert isinstance(result, DeliveryResult) and (result.delivered, result.retrying) == (0, 1)
    assert result.note is not None and "no mail settings" in result.note
    assert outbox(with_mail)[invoice_id].status == "pending" and sink.messages == []


# --------------------------------------------------------------------------------------------
# post


def test_customers_without_an_address_or_asking_for_post_are_listed_in_one_print_file_per_run(
    runtime: Runtime, sink: SmtpSink, tmp_path: Path
) -> None:
    customer(
        runtime,
        "cus_paper",
        name="Paper GmbH",
        billing_address={"street": "Hauptstr. 1", "postal_code": "10115", "city": "Berlin", "country": "DE"},
    )
    customer(runtime, "cus_post", name="Post AG", email="ap@post.example", invoice_delivery="post")
    customer(runtime, "cus_mail", name="Mail Ltd", email="ap@mail.example")
    paper = owe(runtime, "INV-000001", "cus_paper", "10.00")
    post = owe(runtime, "INV-000002", "cus_post", "20.00")
    owe(runtime, "INV-000003", "cus_mail", "30.00")

    result = run_deliveries(runtime)

    assert (result.delivered, result.for_print) == (1, 2)
    assert [m.rcpt_tos[0] for m in sink.messages] == ["ap@mail.example"]
    [print_file] = result.print_files
    assert Path(print_file).parent == tmp_path / "print"
    pages = pdf_text(Path(print_file).read_bytes())
    assert any("INV-000001" in page for page in pages) and any("INV-000002" in page for page in pages)
    assert not any("INV-000003" in page for page in pages)
    assert (delivery_status(runtime, paper), delivery_status(runtime, post)) == ("print", "print")
    with runtime.sessions() as session:
        listed = print_queue(session)
    assert [(r["number"], r["reason"], r["print_file"]) for r in listed] == [
        ("INV-000001", "no e-mail address", print_file),
        ("INV-000002", "the customer asked for post", print_file),
    ]
    assert listed[0]["address"] == "Paper GmbH, Hauptstr. 1, 10115, Berlin, DE"

    again = run_deliveries(runtime)

    assert (again.for_print, again.print_files) == (0, [])
    assert list((tmp_path / "print").iterdir()) == [Path(print_file)]

    owe(runtime, "INV-000004", "cus_paper", "40.00")
    later = run_deliveries(runtime)

    [second_file] = later.print_files
    assert second_file != print_file
    pages = pdf_text(Path(second_file).read_bytes())
    assert any("INV-000004" in page for page in pages)
    assert not any("INV-000001" in page or "INV-000002" in page for page in pages)
    assert sorted(p.name for p in (tmp_path / "print").iterdir()) == sorted(
        [Path(print_file).name, Path(second_file).name]
    )


# --------------------------------------------------------------------------------------------
# replaying a failed delivery


def test_replaying_the_dead_letter_after_the_address_was_fixed_delivers_it(
    runtime: Runtime, sink: SmtpSink
) -> None:
    customer(runtime, "cus_acme", name="Acme Ltd", email="typo@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    sink.fail("typo@acme.example", 550, "No such user")
    run_deliveries(runtime)
    assert delivery_status(runtime, invoice_id) == "failed"

    change_customer(runtime, "cus_acme", email="ap@acme.example")
    replayed = replay_letters(runtime, LetterFilter(stream=STREAM), "sue", dt.date(2026, 11, 25))

    assert (replayed.replayed, replayed.resolved, replayed.still_failing) == (1, 1, 0)
    [mail] = sink.messages
    assert mail.rcpt_tos == ("ap@acme.example", ARCHIVE)
    assert mail.message["Message-ID"] == message_id(invoice_id)
    assert delivery_status(runtime, invoice_id) == "delivered"
    assert [letter.status for letter in letters(runtime)] == ["resolved"]
    assert outbox_rows(runtime) == [(invoice_id, "failed"), (invoice_id, "sent")]
    assert [(d["status"], d["to"]) for d in history(runtime, "INV-000001")["deliveries"]] == [
        ("failed", "typo@acme.example"),
        ("sent", "ap@acme.example"),
    ]


def test_a_replay_that_fails_again_leaves_the_letter_open(runtime: Runtime, sink: SmtpSink) -> None:
    customer(runtime, "cus_acme", name="Acme Ltd", email="typo@acme.example")
    invoice_id = owe(runtime, "INV-000001", "cus_acme")
    sink.fail("typo@acme.example", 550, "No such user")
    run_deliveries(runtime)

    replayed = replay_letters(runtime, LetterFilter(stream=STREAM), "sue", dt.date(2026, 11, 25))

    assert (replayed.resolved, replayed.still_failing) == (0, 1)
    [letter] = letters(runtime)
    assert (letter.status, letter.attempts) == ("open", 2)
    assert delivery_status(runtime, invoice_id) == "failed"
    assert sink.messages == []


# --------------------------------------------------------------------------------------------
# through the billing run


def billed_runtime(db_url: str, folder: Path, mail: MailSettings | None, **settings: Any) -> Runtime:
    """A runtime with the test catalog, two customers with an order each (two invoices to bill)."""
    runtime = books.make_runtime(db_url, folder, mail=mail, **settings)
    (folder / "catalog.yaml").write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    seed(runtime, "product", "prd_setup", {"code": "SETUP", "name": "Setup"})
    for name in ("acme", "beta"):
        seed(
            runtime,
            "customer",
            f"cus_{name}",
            {"name": name.title(), "currency": "USD", "email": f"ap@{name}.example"},
        )
        seed_order(runtime, f"ord_{name}", f"cus_{name}", [(f"oli_{name}", "prd_setup", "1", None)])
    return runtime


def test_the_billing_run_owes_each_finalised_invoice_its_delivery(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = billed_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM))

    billed = run_billing(runtime, dt.date(2026, 11, 25))

    assert billed.invoices_created == 2
    with runtime.sessions() as session:
        invoices = {i.id: (i.number, i.delivery_status) for i in session.scalars(select(Invoice))}
    assert sorted(invoices.values()) == [("INV-000001", "pending"), ("INV-000002", "pending")]
    assert sorted(outbox_rows(runtime)) == sorted((i, "pending") for i in invoices)

    result = run_deliveries(runtime)
    run_billing(runtime, dt.date(2026, 11, 25))  # nothing new billed, nothing queued again
    again = run_deliveries(runtime)
    runtime.close()

    assert (result.delivered, again.delivered, len(sink.messages)) == (2, 0, 2)
    numbers = sorted(the_pdf(m)[0] for m in sink.messages)
    assert numbers == ["INV-000001.pdf", "INV-000002.pdf"]
    for mail in sink.messages:
        number = mail.attachments()[0][0].removesuffix(".pdf")
        assert number in the_pdf(mail)[1] and "500.00" in the_pdf(mail)[1]


@pytest.mark.parametrize("settings", [{"mail": None}, {"delivery": DeliverySettings(enabled=False)}])
def test_without_mail_or_with_delivery_off_the_billing_run_owes_no_delivery(
    db_url: str, tmp_path: Path, sink: SmtpSink, settings: dict[str, Any]
) -> None:
    fields = {"mail": sink.mail_settings(from_address=FROM), **settings}
    mail = fields.pop("mail")
    runtime = billed_runtime(db_url, tmp_path, mail, **fields)

    billed = run_billing(runtime, dt.date(2026, 11, 25))
    result = run_deliveries(runtime)
    runtime.close()

    assert billed.invoices_created == 2
    with runtime.sessions() as session:
        assert [i.delivery_status for i in session.scalars(select(Invoice))] == [None, None]
    assert outbox_rows(runtime) == []
    assert isinstance(result, DeliveryResult) and result.delivered == 0 and sink.messages == []


def test_an_invoice_voided_before_it_went_is_not_sent(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    runtime = billed_runtime(db_url, tmp_path, sink.mail_settings(from_address=FROM))
    run_billing(runtime, dt.date(2026, 11, 25))
    with runtime.transaction() as session:
        voided = session.scalars(select(Invoice).where(Invoice.number == "INV-000001")).one()
        voided.status = "void"
        voided_id = voided.id

    result = run_deliveries(runtime)
    runtime.close()

    assert (result.delivered, result.cancelled) == (1, 1)
    [mail] = sink.messages
    assert the_pdf(mail)[0] == "INV-000002.pdf"
    assert outbox(runtime)[voided_id].status == "cancelled"
    assert history(runtime, "INV-000001")["deliveries"] == []
