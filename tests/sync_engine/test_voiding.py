"""Voiding an invoice (``sync_engine.voiding``): what an admin, the customer and the other systems see.

An admin voids an unpaid invoice: it reads void with who, when and why; the ERP, the CRM and QuickBooks
are told through the outbox; the customer gets no invoice mail, reminder or card charge afterwards;
the ledger reverses it on the day of the void. An invoice with money on it is refused, with the way
out (a credit note). Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from sync_engine.delivery import queue_delivery, run_deliveries
from sync_engine.dunning import run_dunning
from sync_engine.ledger import export_beancount
from sync_engine.outbox import enqueue
from sync_engine.payments import Receipt, record_payment
from sync_engine.runtime import Runtime
from sync_engine.settings import DestinationSettings, DunningSettings, SellerSettings
from sync_engine.smtp_sink import SmtpSink
from sync_engine.store.models import Invoice, OutboxItem, Reminder, SyncRun
from sync_engine.voiding import VoidRefused, void_invoice
from tests.sync_engine import books

CUSTOMER = "cus_acme"
DUE = dt.date(2026, 11, 30)
VOIDED_AT = dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC)
ADMIN = "alice@seller.example"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def runtime(db_url: str, tmp_path: Path, sink: SmtpSink) -> Iterator[Runtime]:
    """QuickBooks (invoices, voids), an ERP and a CRM (statuses, balances); mail through ``sink``."""
    rt = books.make_runtime(
        db_url,
        tmp_path,
        mail=sink.mail_settings(),
        seller=SellerSettings(name="Seller GmbH", payment_instructions="IBAN DE89 3704 0044 0532 0130 00"),
        dunning=DunningSettings(attach_pdf=False),
        destinations=[
            DestinationSettings(
                name="qbo",
                connection="books",
                mappings={
                    "invoice": "builtin:quickbooks/invoice.out",
                    "invoice_void": "builtin:quickbooks/invoice_void.out",
                },
            ),
            DestinationSettings(
                name="erp", connection="nav", mappings={"invoice_status": "builtin:nav/payment_status.out"}
            ),
            DestinationSettings(
                name="crm",
                connection="sf",
                mappings={
                    "invoice_status": "builtin:salesforce/invoice_status.out",
                    "customer_balance": "builtin:salesforce/account_balance.out",
                },
            ),
        ],
    )
    books.add_rows(rt, books.customer_row(CUSTOMER, name="Acme Ltd", email="ap@acme.example", currency="EUR"))
    yield rt
    rt.close()


def add_invoice(
    runtime: Runtime, number: str = "INV-000001", total: str = "1234.50", **fields: object
) -> str:
    return books.add_invoice(runtime, number, total, customer_id=CUSTOMER, due=DUE, currency="EUR", **fields)


def stored(runtime: Runtime, invoice_id: str) -> Invoice:
    with runtime.sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        session.expunge(invoice)
        return invoice


def open_rows(runtime: Runtime) -> set[tuple[str, str, str]]:
    with runtime.sessions() as session:
        return {
            (row.destination, row.entity, row.canonical_id)
            for row in session.scalars(select(OutboxItem).where(OutboxItem.status == "pending"))
        }


def pay(runtime: Runtime, invoice_id: str, amount: str) -> None:
    with runtime.transaction() as session:
        record_payment(
            session,
            runtime.settings,
            Receipt(
                source="bank",
                source_ref=f"stmt-{invoice_id}-{amount}",
                customer_id=CUSTOMER,
                amount=Decimal(amount),
                currency="EUR",
                received_on=DUE,
                method="bank_transfer",
                invoice_ids=[invoice_id],
            ),
            as_of=DUE,
        )


@pytest.mark.parametrize("status", ["open", "overdue", "uncollectible"])
def test_an_unpaid_invoice_is_void_with_who_when_and_why_and_every_system_is_told(
    runtime: Runtime, status: str
) -> None:
    invoice_id = add_invoice(runtime, status=status)

    result = void_invoice(
        runtime, "INV-000001", reason="  duplicate of INV-000002 ", requested_by=ADMIN, now=VOIDED_AT
    )

    assert (result.status, result.number, result.voided_at) == ("void", "INV-000001", VOIDED_AT)
    assert result.to_dict()["total"] == "1234.50" and result.reason == "duplicate of INV-000002"
    invoice = stored(runtime, invoice_id)
    assert (invoice.status, invoice.number) == ("void", "INV-000001")  # the number stays used
    assert (invoice.voided_at, invoice.void_reason, invoice.voided_by) == (
        VOIDED_AT,
        "duplicate of INV-000002",
        ADMIN,
    )
    assert open_rows(runtime) == {
        ("qbo", "invoice_void", invoice_id),
        ("erp", "invoice_status", invoice_id),
        ("crm", "invoice_status", invoice_id),
        ("crm", "customer_balance", CUSTOMER),
    }
    assert set(result.queued) == {
        "qbo:invoice_void",
        "erp:invoice_status",
        "crm:invoice_status",
        "crm:customer_balance",
    }
    with runtime.sessions() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.kind == "void")).one()
        assert (run.stream, run.status) == ("invoices", "ok")
        assert run.counts["requested_by"] == ADMIN and run.counts["invoice"] == "INV-000001"


def test_an_invoice_with_money_on_it_is_refused_with_the_way_out(runtime: Runtime) -> None:
    invoice_id = add_invoice(runtime)
    pay(runtime, invoice_id, "100.00")
    queued_before = open_rows(runtime)

    with pytest.raises(
        VoidRefused, match=r"EUR 100\.00 was received.*issue a credit note instead"
    ) as refused:
        void_invoice(runtime, "INV-000001", reason="customer cancelled", requested_by=ADMIN)

    assert "billsync invoices credit INV-000001" in str(refused.value)
    invoice = stored(runtime, invoice_id)
    assert (invoice.status, invoice.voided_at, invoice.voided_by) == ("partially_paid", None, None)
    assert open_rows(runtime) == queued_before
    with runtime.sessions() as session:
        assert session.scalars(select(SyncRun).where(SyncRun.kind == "void")).first() is None


def test_unknown_void_paid_and_blank_requests_are_refused_with_the_reason(runtime: Runtime) -> None:
    add_invoice(runtime, "INV-000001")
    add_invoice(runtime, "INV-000002", "0.00", status="paid")  # a zero invoice is paid at once

    with pytest.raises(VoidRefused, match="no invoice INV-999999"):
        void_invoice(runtime, "INV-999999", reason="typo", requested_by=ADMIN)
    with pytest.raises(VoidRefused, match="needs a reason"):
        void_invoice(runtime, "INV-000001", reason="  ", requested_by=ADMIN)
    with pytest.raises(VoidRefused, match="it is paid"):
        void_invoice(runtime, "INV-000002", reason="typo", requested_by=ADMIN)

    void_invoice(runtime, "INV-000001", reason="sent twice", requested_by=ADMIN, now=VOIDED_AT)
    with pytest.raises(VoidRefused, match=rf"void already \(voided 2026-12-03 by {ADMIN}: sent twice\)"):
        void_invoice(runtime, "INV-000001", reason="again", requested_by="bob")


def test_no_mail_reminder_or_card_charge_goes_out_after_a_void(runtime: Runtime, sink: SmtpSink) -> None:
    invoice_id = add_invoice(runtime)
    with runtime.transaction() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        queue_delivery(session, invoice)  # owed since finalisation, not sent yet
        session.add(
            Reminder(
                invoice_id=invoice_id,
                step="due",
                level="reminded",
                scheduled_for=DUE,
                status="pending",
                to_address="ap@acme.example",
                attempts=1,
                error="451 try again later",
            )
        )
        enqueue(
            session,
            destination="stripe",
            entity="card_collection",
            canonical_id=invoice_id,
            action="collect",
            version="1",
        )

    result = void_invoice(runtime, "INV-000001", reason="order cancelled", requested_by=ADMIN)

    assert set(result.cancelled) == {"delivery", "reminder:due", "card_collection"}
    assert stored(runtime, invoice_id).delivery_status is None
    with runtime.sessions() as session:
        statuses = {
            row.entity: row.status
            for row in session.scalars(select(OutboxItem).where(OutboxItem.canonical_id == invoice_id))
        }
        assert statuses["invoice_delivery"] == statuses["card_collection"] == "cancelled"
    assert run_deliveries(runtime).delivered == 0
    dunning = run_dunning(runtime, as_of=DUE + dt.timedelta(days=31))
    assert dunning.sent == 0
    assert sink.messages == []
    with runtime.sessions() as session:
        rows = list(session.scalars(select(Reminder).where(Reminder.invoice_id == invoice_id)))
        assert [(r.step, r.status) for r in rows] == [("due", "cancelled")]  # and no new step


def test_a_card_charge_in_flight_holds_the_void_until_its_outcome_is_known(runtime: Runtime) -> None:
    invoice_id = add_invoice(runtime)
    with runtime.transaction() as session:
        row = enqueue(
            session,
            destination="stripe",
            entity="card_collection",
            canonical_id=invoice_id,
            action="collect",
            version="1",
        )
        assert row is not None
        row.status = "unknown"  # sent to Stripe, the answer lost

    with pytest.raises(VoidRefused, match="card charge for it is in flight"):
        void_invoice(runtime, "INV-000001", reason="order cancelled", requested_by=ADMIN)
    assert stored(runtime, invoice_id).status == "open"


def test_money_arriving_after_a_void_becomes_credit_not_a_payment_of_the_void_invoice(
    runtime: Runtime,
) -> None:
    invoice_id = add_invoice(runtime)
    void_invoice(runtime, "INV-000001", reason="order cancelled", requested_by=ADMIN)

    pay(runtime, invoice_id, "1234.50")

    invoice = stored(runtime, invoice_id)
    assert (invoice.status, invoice.amount_paid) == ("void", Decimal("0"))


def test_the_ledger_reverses_a_void_invoice_on_the_day_it_was_voided(runtime: Runtime) -> None:
    add_invoice(runtime, issue=dt.date(2026, 11, 1))
    void_invoice(runtime, "INV-000001", reason="order cancelled", requested_by=ADMIN, now=VOIDED_AT)

    with runtime.sessions() as session:
        book = export_beancount(session, runtime.settings)
        before_the_void = export_beancount(session, runtime.settings, until=dt.date(2026, 12, 2))

    assert '2026-11-01 * "Acme Ltd" "Invoice INV-000001"' in book
    assert '2026-12-03 * "Acme Ltd" "Invoice INV-000001 voided" #void' in book
    assert "voided" not in before_the_void  # until the void, the customer owed it
