"""Dunning against a real SMTP server (aiosmtpd on 127.0.0.1): what customers receive, and when.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL. Invoices are written directly as
finalised (open, numbered), the way the billing run leaves them. The default schedule is used:
upcoming -3, due 0, late-7 +7, late-14 +14 (final notice), late-30 +30 (suspended).
"""

from __future__ import annotations

import datetime as dt
import io
import ssl
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pypdf import PdfReader
from sqlalchemy import select

from connectors.sandbox import make_self_signed_cert
from sync_engine.dunning import check_templates, dunning_overview, run_dunning
from sync_engine.logging import redact_text
from sync_engine.mailer import Mailer, MailUnavailableError, PermanentMailError, message_id
from sync_engine.payments import Receipt, record_payment
from sync_engine.runtime import Runtime
from sync_engine.settings import DunningSettings, DunningStep, MailSettings, SellerSettings
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.models import Invoice, InvoiceLine, Reminder
from tests.sync_engine import books
from tests.sync_engine.books import add_rows, invoice_row
from tests.sync_engine.test_invoicing import seed

DUE = dt.date(2026, 11, 30)
CUSTOMER = "ap@acme.example"
ARCHIVE = "archive@seller.example"


def day(offset: int) -> dt.date:
    return DUE + dt.timedelta(days=offset)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def make_runtime(
    db_url: str,
    folder: Path,
    mail: MailSettings | None,
    *,
    seller: bool = True,
    **dunning: Any,
) -> Runtime:
    return books.make_runtime(
        db_url,
        folder,
        mail=mail,
        seller=SellerSettings(
            name="Seller GmbH",
            payment_instructions="IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX",
        )
        if seller
        else None,
        dunning=DunningSettings(**{"attach_pdf": False, **dunning}),
    )


@pytest.fixture
def runtime(db_url: str, tmp_path: Path, sink: SmtpSink) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(reply_to="help@seller.example"))
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER, "currency": "EUR"})
    yield runtime
    runtime.close()


def add_invoice(
    runtime: Runtime,
    number: str,
    *,
    customer_id: str = "cus_acme",
    due: dt.date = DUE,
    total: str = "1234.50",
    with_line: bool = False,
) -> str:
    invoice = invoice_row(
        number,
        total,
        customer_id=customer_id,
        due=due,
        currency="EUR",
        finalized_at=dt.datetime(2026, 10, 31, tzinfo=dt.UTC),
    )
    if with_line:
        invoice.lines.append(
            InvoiceLine(
                position=1,
                source_key=f"line:{number}",
                description="Consulting, October",
                quantity=Decimal("1"),
                unit_price=Decimal(total),
                amount=Decimal(total),
            )
        )
    invoice_id = invoice.id
    add_rows(runtime, invoice)
    return invoice_id


def reminders(runtime: Runtime, invoice_id: str = "inv_INV-000001") -> dict[str, Reminder]:
    with runtime.sessions() as session:
        rows = session.scalars(
            select(Reminder).where(Reminder.invoice_id == invoice_id).order_by(Reminder.id)
        )
        return {row.step: row for row in rows}


def level(runtime: Runtime, invoice_id: str = "inv_INV-000001") -> str:
    with runtime.sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice.dunning_level


# --------------------------------------------------------------------------------------------
# the schedule


def test_each_step_goes_out_on_its_day_once_and_escalates_the_level(runtime: Runtime, sink: SmtpSink) -> None:
    add_invoice(runtime, "INV-000001")
    sent_on: dict[int, str] = {}
    levels: dict[int, str] = {}
    for offset in range(-6, 36):
        before = len(sink.messages)
        run_dunning(runtime, as_of=day(offset))
        run_dunning(runtime, as_of=day(offset))  # a second run the same day changes nothing
        new = sink.messages[before:]
        assert len(new) <= 1, f"day {offset}: {[m.message['Subject'] for m in new]}"
        if new:
            sent_on[offset] = str(new[0].message["Subject"])
        levels[offset] = level(runtime)

    assert sent_on == {
        -3: "Invoice INV-000001 is due on 2026-11-30",
        0: "Payment reminder: invoice INV-000001 is due today",
        7: "Payment reminder: invoice INV-000001 is 7 days overdue",
        14: "Final notice: invoice INV-000001 is 14 days overdue",
        30: "Account suspended: invoice INV-000001 is 30 days overdue",
    }
    assert (levels[-4], levels[-3], levels[13], levels[14], levels[29], levels[30]) == (
        "none",
        "reminded",
        "reminded",
        "final_notice",
        "final_notice",
        "suspended",
    )
    rows = reminders(runtime)
    assert {name: (r.status, r.scheduled_for, r.attempts) for name, r in rows.items()} == {
        "upcoming": ("sent", day(-3), 1),
        "due": ("sent", day(0), 1),
        "late-7": ("sent", day(7), 1),
        "late-14": ("sent", day(14), 1),
        "late-30": ("sent", day(30), 1),
    }
    assert all(r.sent_at is not None and r.to_address == CUSTOMER for r in rows.values())
    first = sink.messages[0]
    assert first.rcpt_tos == (CUSTOMER,)
    assert first.message["To"] == f"Acme Ltd <{CUSTOMER}>"
    assert first.message["Reply-To"] == "help@seller.example"
    assert "EUR 1,234.50" in first.text and "IBAN DE89 3704 0044 0532 0130 00" in first.text
    assert "Seller GmbH" in first.text and first.html is not None and "INV-000001" in first.html


def test_after_an_outage_only_the_latest_due_step_is_sent(runtime: Runtime, sink: SmtpSink) -> None:
    add_invoice(runtime, "INV-000001")
    run_dunning(runtime, as_of=day(-3))

    result = run_dunning(runtime, as_of=day(16))  # down from day -2 to day 15

    assert (result.sent, result.skipped, result.by_level) == (1, 2, {"final_notice": 1})
    assert [str(m.message["Subject"]) for m in sink.messages] == [
        "Invoice INV-000001 is due on 2026-11-30",
        "Final notice: invoice INV-000001 is 16 days overdue",
    ]
    rows = reminders(runtime)
    assert {name: r.status for name, r in rows.items()} == {
        "upcoming": "sent",
        "due": "skipped",
        "late-7": "skipped",
        "late-14": "sent",
    }
    assert rows["due"].error == "superseded by late-14"
    assert level(runtime) == "final_notice"


def test_a_step_missed_by_more_than_the_allowed_lateness_is_not_sent_late(
    runtime: Runtime, sink: SmtpSink
) -> None:
    add_invoice(runtime, "INV-000001")

    result = run_dunning(runtime, as_of=day(25))  # late-14 would be 11 days late (max 7)

    assert (result.sent, result.skipped) == (0, 4)
    assert sink.messages == []
    assert "max_lateness_days 7" in (reminders(runtime)["late-14"].error or "")
    assert level(runtime) == "none"
    assert run_dunning(runtime, as_of=day(30)).sent == 1  # the next step goes out on its day


def test_the_dunning_level_never_goes_down(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    groups = {
        "standard": [
            DunningStep(name="final", days=1, level="final_notice", template="final_notice"),
            DunningStep(name="nudge", days=5, level="reminded"),
        ]
    }
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(), groups=groups)
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER})
    add_invoice(runtime, "INV-000001")

    run_dunning(runtime, as_of=day(1))
    run_dunning(runtime, as_of=day(5))

    assert len(sink.messages) == 2
    assert {name: (r.status, r.level) for name, r in reminders(runtime).items()} == {
        "final": ("sent", "final_notice"),
        "nudge": ("sent", "reminded"),
    }
    assert level(runtime) == "final_notice"
    runtime.close()


# --------------------------------------------------------------------------------------------
# delivery


def test_a_451_is_retried_next_run_and_delivered_once_with_the_same_message_id(
    runtime: Runtime, sink: SmtpSink
) -> None:
    add_invoice(runtime, "INV-000001")
    sink.fail(CUSTOMER, 451, "4.2.0 Greylisted, try again later", times=1)

    first = run_dunning(runtime, as_of=day(0))

    assert (first.sent, first.retrying, first.failed) == (0, 1, 0)
    assert sink.messages == []
    pending = reminders(runtime)["due"]
    assert (pending.status, pending.attempts) == ("pending", 1)
    assert "451" in (pending.error or "") and "Greylisted" in (pending.error or "")
    assert level(runtime) == "none"

    second = run_dunning(runtime, as_of=day(1))
    run_dunning(runtime, as_of=day(2))

    assert second.sent == 1
    [delivered] = sink.messages
    sent = reminders(runtime)["due"]
    assert (sent.status, sent.attempts, sent.error) == ("sent", 2, None)
    assert delivered.message["Message-ID"] == pending.message_id == sent.message_id
    assert level(runtime) == "reminded"


class Crash(BaseException):
    """billsync dies: not an error any code would catch."""


class CrashAfterSending(Mailer):
    def send(self, message: EmailMessage) -> None:
        super().send(message)
        raise Crash("killed after the server accepted the mail")


def test_a_crash_after_sending_resends_with_the_same_message_id(runtime: Runtime, sink: SmtpSink) -> None:
    add_invoice(runtime, "INV-000001")
    mail = runtime.settings.mail
    assert mail is not None
    with pytest.raises(Crash):
        run_dunning(runtime, as_of=day(0), mailer=CrashAfterSending(mail))
    assert reminders(runtime)["due"].status == "pending"

    result = run_dunning(runtime, as_of=day(0))

    assert result.sent == 1
    first, again = sink.messages
    assert first.message["Message-ID"] == again.message["Message-ID"] == reminders(runtime)["due"].message_id
    assert str(first.message["Message-ID"]) == message_id("reminder.inv_INV-000001.due", "example.com")
    assert run_dunning(runtime, as_of=day(1)).sent == 0
    assert len(sink.messages) == 2


def test_a_550_fails_the_reminder_with_the_reason_and_no_copy_leaks_to_the_bcc(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(bcc=[ARCHIVE]))
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER})
    add_invoice(runtime, "INV-000001")
    sink.fail(CUSTOMER, 550, "5.1.1 <ap@acme.example>: Recipient address rejected: User unknown")

    result = run_dunning(runtime, as_of=day(0))
    again = run_dunning(runtime, as_of=day(1))

    assert (result.sent, result.failed) == (0, 1)
    assert "User unknown" in result.errors[0] and "INV-000001 due" in result.errors[0]
    failed = reminders(runtime)["due"]
    assert (
        failed.status == "failed" and "550" in (failed.error or "") and "User unknown" in (failed.error or "")
    )
    assert sink.messages == []  # the archive got no copy of a mail the customer never received
    assert sink.rcpt_attempts == [CUSTOMER]  # and the failed reminder was not tried again
    assert (again.sent, again.failed) == (0, 0)
    assert level(runtime) == "none"
    runtime.close()


def test_the_bcc_address_gets_a_copy_but_no_bcc_header(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(bcc=[ARCHIVE]))
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "billing_email": CUSTOMER, "email": "x@y.z"})
    add_invoice(runtime, "INV-000001")

    run_dunning(runtime, as_of=day(0))

    [message] = sink.messages
    assert set(message.rcpt_tos) == {CUSTOMER, ARCHIVE}
    assert message.message["Bcc"] is None and ARCHIVE.encode() not in message.data
    assert len(sink.messages_to(ARCHIVE)) == 1
    runtime.close()


def test_an_unreachable_server_keeps_everything_pending_for_the_next_run(
    runtime: Runtime, sink: SmtpSink
) -> None:
    add_invoice(runtime, "INV-000001")
    add_invoice(runtime, "INV-000002", due=day(-7))
    mail = runtime.settings.mail
    assert mail is not None
    sink.stop()

    down = run_dunning(runtime, as_of=day(0))

    assert (down.sent, down.failed, down.retrying) == (0, 0, 2)
    assert "cannot connect" in down.errors[0]
    assert (
        reminders(runtime)["due"].status == reminders(runtime, "inv_INV-000002")["late-7"].status == "pending"
    )
    with SmtpSink() as back:
        up = run_dunning(runtime, as_of=day(0), mailer=Mailer(back.mail_settings()))
        assert up.sent == 2
        assert sorted(str(m.message["Subject"]).split()[3] for m in back.messages) == [
            "INV-000001",
            "INV-000002",
        ]


# --------------------------------------------------------------------------------------------
# paid invoices, missing addresses


def test_a_paid_invoice_gets_no_further_reminders(runtime: Runtime, sink: SmtpSink) -> None:
    add_invoice(runtime, "INV-000001")
    run_dunning(runtime, as_of=day(0))
    sink.fail(CUSTOMER, 451, times=1)
    assert run_dunning(runtime, as_of=day(7)).retrying == 1  # late-7 waits for a retry
    with runtime.transaction() as session:
        record_payment(
            session,
            runtime.settings,
            Receipt(
                source="manual",
                source_ref="wire-1",
                customer_id="cus_acme",
                amount=Decimal("1234.50"),
                currency="EUR",
                received_on=day(8),
                method="bank_transfer",
            ),
            as_of=day(8),
        )

    for offset in (8, 14, 30):
        assert run_dunning(runtime, as_of=day(offset)).sent == 0

    assert len(sink.messages) == 1
    assert level(runtime) == "none"
    assert {name: r.status for name, r in reminders(runtime).items()} == {
        "upcoming": "skipped",
        "due": "sent",
        "late-7": "cancelled",
    }


def test_a_pending_reminder_is_cancelled_when_the_invoice_is_settled_before_the_retry(
    runtime: Runtime, sink: SmtpSink
) -> None:
    add_invoice(runtime, "INV-000001")
    add_invoice(runtime, "INV-000002")
    sink.fail(CUSTOMER, 451, times=2)
    run_dunning(runtime, as_of=day(0))
    with runtime.transaction() as session:  # settled without record_payment (e.g. in the ERP)
        paid = session.get(Invoice, "inv_INV-000001")
        voided = session.get(Invoice, "inv_INV-000002")
        assert paid is not None and voided is not None
        paid.amount_paid, paid.status = paid.total, "paid"
        voided.status = "void"

    result = run_dunning(runtime, as_of=day(1))

    assert (result.sent, result.cancelled) == (0, 2)
    assert sink.messages == []
    assert reminders(runtime)["due"].status == "cancelled"
    assert reminders(runtime)["due"].error == "invoice is paid"
    assert reminders(runtime, "inv_INV-000002")["due"].status == "cancelled"


def test_a_customer_without_an_email_address_gets_a_failed_reminder_support_can_see(
    runtime: Runtime, sink: SmtpSink
) -> None:
    seed(runtime, "customer", "cus_mute", {"name": "Mute Corp"})
    add_invoice(runtime, "INV-000007", customer_id="cus_mute")

    result = run_dunning(runtime, as_of=day(0))

    assert (result.sent, result.failed) == (0, 1)
    assert "no e-mail address" in result.errors[0]
    row = reminders(runtime, "inv_INV-000007")["due"]
    assert (row.status, row.error, row.to_address) == ("failed", "no e-mail address", None)
    with runtime.sessions() as session:
        [item] = dunning_overview(session)
    assert (item["number"], item["customer"], item["level"], item["sent"]) == (
        "INV-000007",
        "Mute Corp",
        "none",
        [],
    )
    assert [(r["step"], r["status"], r["error"]) for r in item["reminders"]] == [
        ("upcoming", "skipped", "superseded by due"),
        ("due", "failed", "no e-mail address"),
    ]
    assert sink.messages == []


def test_the_overview_lists_the_steps_sent_with_their_dates(runtime: Runtime) -> None:
    add_invoice(runtime, "INV-000001")
    add_invoice(runtime, "INV-000002", due=day(60))  # not due for anything yet
    run_dunning(runtime, as_of=day(-3))
    run_dunning(runtime, as_of=day(0))

    with runtime.sessions() as session:
        overview = dunning_overview(session)

    assert [item["number"] for item in overview] == ["INV-000001"]
    [item] = overview
    assert (item["customer"], item["level"], item["amount_due"], item["currency"]) == (
        "Acme Ltd",
        "reminded",
        "1234.50",
        "EUR",
    )
    today = dt.datetime.now(dt.UTC).date().isoformat()  # sent_at is the real clock
    assert item["sent"] == [
        {"step": "upcoming", "level": "reminded", "date": today},
        {"step": "due", "level": "reminded", "date": today},
    ]


# --------------------------------------------------------------------------------------------
# content: PDF, templates


def test_the_invoice_pdf_is_attached(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(), attach_pdf=True)
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER})
    add_invoice(runtime, "INV-000042", with_line=True)

    assert run_dunning(runtime, as_of=day(7)).sent == 1

    [message] = sink.messages
    [(filename, content_type, content)] = message.attachments()
    assert (filename, content_type) == ("INV-000042.pdf", "application/pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    assert "INV-000042" in text and "1,234.50" in text
    assert "attached as a PDF" in message.text
    # the archivable PDF/A-3b the invoice was delivered as, not a second, plain rendering
    assert PdfReader(io.BytesIO(content)).xmp_metadata is not None
    runtime.close()


def test_customer_data_is_escaped_in_html_and_printed_literally_in_text(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(), seller=False)
    name = "<b>Acme & Sons</b> {{ number }}"
    seed(runtime, "customer", "cus_acme", {"name": name, "email": CUSTOMER})
    add_invoice(runtime, "INV-000001")

    run_dunning(runtime, as_of=day(0))

    [message] = sink.messages
    assert f"Dear {name}," in message.text
    assert message.html is not None and "&lt;b&gt;Acme &amp; Sons&lt;/b&gt; {{ number }}" in message.html
    assert "<b>Acme" not in message.html
    assert "Accounts receivable" in message.text  # no seller configured
    assert "Please pay EUR 1,234.50, quoting invoice INV-000001." in message.text
    runtime.close()


def test_a_group_can_use_its_own_template_file(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "gentle.txt").write_text(
        "Subject: A gentle nudge about {{ number }}\n\nHi {{ customer_name }}, {{ currency }} {{ amount_due }} "
        "is {{ days(days_overdue) }} late.\n",
        encoding="utf-8",
    )
    groups = {
        "standard": [DunningStep(name="due", days=0)],
        "gentle": [DunningStep(name="nudge", days=10, template="mail/gentle.txt")],
    }
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(), groups=groups)
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER, "dunning_group": "gentle"})
    add_invoice(runtime, "INV-000001")

    assert run_dunning(runtime, as_of=day(0)).sent == 0  # the gentle group has no step on day 0
    assert run_dunning(runtime, as_of=day(10)).sent == 1

    [message] = sink.messages
    assert message.message["Subject"] == "A gentle nudge about INV-000001"
    assert message.text == "Hi Acme Ltd, EUR 1,234.50 is 10 days late.\n"
    assert message.html is None
    assert check_templates(runtime.settings) == []
    broken = runtime.settings.model_copy(deep=True)
    broken.dunning.groups["gentle"][0].template = "mail/missing.txt"
    assert "no file" in check_templates(broken)[0]
    runtime.close()


def test_a_broken_template_keeps_the_reminder_pending_until_it_is_fixed(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    template = tmp_path / "late.txt"
    template.write_text("Subject: Invoice {{ numbr }}\n\nPlease pay.\n", encoding="utf-8")
    groups = {"standard": [DunningStep(name="late", days=5, template="late.txt")]}
    runtime = make_runtime(db_url, tmp_path, sink.mail_settings(), groups=groups)
    seed(runtime, "customer", "cus_acme", {"name": "Acme Ltd", "email": CUSTOMER})
    add_invoice(runtime, "INV-000001")

    broken = run_dunning(runtime, as_of=day(5))

    assert (broken.sent, broken.retrying, broken.failed) == (0, 1, 0)
    assert "numbr" in broken.errors[0] and sink.messages == []
    assert "numbr" in check_templates(runtime.settings)[0]  # what a config check would show
    row = reminders(runtime)["late"]
    assert row.status == "pending" and "numbr" in (row.error or "")

    template.write_text("Subject: Invoice {{ number }}\n\nPlease pay.\n", encoding="utf-8")
    fixed = run_dunning(runtime, as_of=day(6))

    assert fixed.sent == 1
    assert [str(m.message["Subject"]) for m in sink.messages] == ["Invoice INV-000001"]
    runtime.close()


# --------------------------------------------------------------------------------------------
# the mailer on its own: TLS, login, secrets


def _server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_starttls_with_a_private_ca_and_login(tmp_path: Path) -> None:
    cert_file, key_file = make_self_signed_cert(tmp_path, "smtp")  # a private CA for 127.0.0.1
    password = "s3cret-Pa55word"
    with SmtpSink(starttls=_server_tls(cert_file, key_file), credentials=("billsync", password)) as sink:
        settings = sink.mail_settings(
            security="starttls", ca_file=str(cert_file), username="billsync", password=password
        )
        mailer = Mailer(settings)
        with mailer:
            for n in range(2):  # one connection for the batch
                mailer.send(
                    mailer.compose(to=CUSTOMER, subject=f"hello {n}", text="hi\n", message_id=f"<{n}@t>")
                )
        assert [str(m.message["Subject"]) for m in sink.messages] == ["hello 0", "hello 1"]

        wrong = Mailer(settings.model_copy(update={"password": SecretStr("wrong-password")}))
        with pytest.raises(MailUnavailableError) as refused:
            wrong.send(wrong.compose(to=CUSTOMER, subject="x", text="x\n", message_id="<x@t>"))
        assert refused.value.code == 535 and "wrong-password" not in str(refused.value)

        untrusted = Mailer(settings.model_copy(update={"ca_file": None}))
        with pytest.raises(MailUnavailableError, match="TLS"):
            untrusted.send(untrusted.compose(to=CUSTOMER, subject="x", text="x\n", message_id="<y@t>"))
    assert redact_text(f"login with {password}") == "login with ***"  # never in a log line
    assert len(sink.messages) == 2


def test_implicit_tls(tmp_path: Path) -> None:
    cert_file, key_file = make_self_signed_cert(tmp_path, "smtp")  # a private CA for 127.0.0.1
    with SmtpSink(implicit_tls=_server_tls(cert_file, key_file)) as sink:
        mailer = Mailer(sink.mail_settings(security="tls", ca_file=str(cert_file)))
        mailer.send(mailer.compose(to=CUSTOMER, subject="over TLS", text="hi\n", message_id="<tls@t>"))
        assert [str(m.message["Subject"]) for m in sink.messages] == ["over TLS"]


def test_a_refusal_after_data_is_classified_by_its_code(sink: SmtpSink) -> None:
    mailer = Mailer(sink.mail_settings())
    sink.fail(CUSTOMER, 554, "5.7.1 Message rejected as spam", stage="data", times=1)
    with pytest.raises(PermanentMailError) as rejected:
        mailer.send(mailer.compose(to=CUSTOMER, subject="x", text="x\n", message_id="<d@t>"))
    assert (rejected.value.code, rejected.value.text) == (554, "5.7.1 Message rejected as spam")
    assert sink.messages == []


def test_a_bcc_header_is_turned_into_a_blind_copy(sink: SmtpSink) -> None:
    mailer = Mailer(sink.mail_settings())
    message = mailer.compose(to=CUSTOMER, subject="x", text="x\n", message_id="<b@t>")
    message["Bcc"] = "auditor@seller.example"

    mailer.send(message)

    [received] = sink.messages
    assert set(received.rcpt_tos) == {CUSTOMER, "auditor@seller.example"}
    assert b"auditor@" not in received.data and received.message["Bcc"] is None
    assert message["Bcc"] == "auditor@seller.example"  # the caller's message is left as it was


def test_a_password_is_never_sent_unencrypted_to_a_remote_server() -> None:
    settings = MailSettings(
        host="smtp.example.com",
        port=25,
        security="none",
        username="billsync",
        password=SecretStr("hunter2-secret"),
        from_address="billing@example.com",
    )
    mailer = Mailer(settings)
    with pytest.raises(MailUnavailableError, match="unencrypted") as refused:
        mailer.send(mailer.compose(to=CUSTOMER, subject="x", text="x\n", message_id="<p@t>"))
    assert "hunter2" not in str(refused.value)


def test_message_ids_are_stable_and_well_formed() -> None:
    assert message_id("reminder.inv_1.due") == "<reminder.inv_1.due@billsync>"
    assert message_id("reminder.inv_1.due", "seller.example") == "<reminder.inv_1.due@seller.example>"
    odd = message_id("reminder.inv 1<>.due")
    assert odd == message_id("reminder.inv 1<>.due") and " " not in odd and odd.count("<") == 1
    assert odd != message_id("reminder.inv-1--.due")
