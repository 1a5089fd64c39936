"""Payments on the stored invoices: allocation, credit, refunds, statuses and what is queued.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from sync_engine.payments import (
    PaymentError,
    Receipt,
    apply_credit,
    customer_balance_document,
    payment_document,
    record_payment,
    record_refund,
    refresh_overdue,
)
from sync_engine.runtime import Runtime
from sync_engine.settings import DestinationSettings, PaymentSettings
from sync_engine.store.models import CanonicalRecord, Invoice, OutboxItem, Payment, Reminder
from tests.sync_engine import books
from tests.sync_engine.books import add_rows, customer_row, make_runtime

AS_OF = dt.date(2026, 11, 25)
CUSTOMER = "cus_1"


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(
        db_url,
        tmp_path,
        destinations=[
            DestinationSettings(
                name="qbo",
                connection="books",
                mappings={
                    "invoice": "builtin:quickbooks/invoice.out",
                    "payment": "builtin:quickbooks/payment.out",
                },
            ),
            DestinationSettings(
                name="crm",
                connection="sf",
                mappings={"invoice_status": "builtin:salesforce/invoice_status.out"},
            ),
        ],
        payments=PaymentSettings(quickbooks="books"),
    )
    add_rows(rt, *(customer_row(cid, name=cid, currency="USD") for cid in (CUSTOMER, "cus_2")))
    yield rt
    rt.close()


def add_invoice(runtime: Runtime, number: str, total: str, *, due: dt.date, customer: str = CUSTOMER) -> str:
    return books.add_invoice(runtime, number, total, customer_id=customer, due=due)


def receipt(ref: str, value: str, **kw: object) -> Receipt:
    fields: dict[str, object] = {
        "source": "bank",
        "source_ref": ref,
        "customer_id": CUSTOMER,
        "amount": Decimal(value),
        "currency": "USD",
        "received_on": AS_OF,
        "method": "bank_transfer",
    }
    fields.update(kw)
    return Receipt(**fields)  # type: ignore[arg-type]


def pay(runtime: Runtime, r: Receipt, as_of: dt.date = AS_OF):  # type: ignore[no-untyped-def]
    with runtime.transaction() as session:
        return record_payment(session, runtime.settings, r, as_of=as_of)


def refund(runtime: Runtime, payment_id: str, ref: str, amount: str) -> bool:
    """A Stripe refund notice for ``payment_id``, received and recorded on AS_OF."""
    with runtime.transaction() as session:
        return record_refund(
            session,
            runtime.settings,
            payment_id=payment_id,
            source="stripe",
            source_ref=ref,
            amount=Decimal(amount),
            refunded_on=AS_OF,
            as_of=AS_OF,
        )


def invoice(runtime: Runtime, invoice_id: str) -> Invoice:
    with runtime.sessions() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        session.expunge(found)
        return found


def outbox(runtime: Runtime, entity: str) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        return [
            (r.destination, r.canonical_id)
            for r in session.scalars(
                select(OutboxItem).where(OutboxItem.entity == entity).order_by(OutboxItem.id)
            )
        ]


def test_partial_then_full_payment_moves_the_status_and_tells_the_crm(runtime: Runtime) -> None:
    inv = add_invoice(runtime, "INV-1", "100.00", due=AS_OF + dt.timedelta(days=10))
    first = pay(runtime, receipt("r1", "40.00", invoice_ids=[inv]))
    assert first.allocated == {inv: Decimal("40.00")}
    assert invoice(runtime, inv).status == "partially_paid"
    pay(runtime, receipt("r2", "60.00"))
    paid = invoice(runtime, inv)
    assert (paid.status, paid.amount_paid, paid.paid_on) == ("paid", Decimal("100.00"), AS_OF)
    assert outbox(runtime, "invoice_status").count(("crm", inv)) >= 1
    assert ("qbo", first.payment_id) in outbox(runtime, "payment")


def test_the_same_receipt_twice_records_one_payment(runtime: Runtime) -> None:
    inv = add_invoice(runtime, "INV-1", "100.00", due=AS_OF)
    assert pay(runtime, receipt("same", "30.00")).created
    again = pay(runtime, receipt("same", "30.00"))
    assert not again.created
    assert invoice(runtime, inv).amount_paid == Decimal("30.00")
    with runtime.sessions() as session:
        assert len(session.scalars(select(Payment)).all()) == 1


def test_overpayment_is_credit_and_pays_the_next_invoice(runtime: Runtime) -> None:
    first = add_invoice(runtime, "INV-1", "100.00", due=AS_OF)
    recorded = pay(runtime, receipt("r1", "150.00", invoice_ids=[first]))
    assert recorded.unapplied == Decimal("50.00")
    with runtime.sessions() as session:
        assert customer_balance_document(session, CUSTOMER)["credit"] == Decimal("50.00")
    second = add_invoice(runtime, "INV-2", "80.00", due=AS_OF + dt.timedelta(days=30))
    with runtime.transaction() as session:
        changed = apply_credit(session, runtime.settings, [CUSTOMER], as_of=AS_OF)
    assert changed == {second: ("open", "partially_paid")}
    assert invoice(runtime, second).amount_paid == Decimal("50.00")
    with runtime.sessions() as session:
        payment = session.get(Payment, recorded.payment_id)
        assert payment is not None and payment.unapplied == Decimal("0")
        doc = payment_document(payment)
    assert [(a["invoice_id"], a["amount"]) for a in doc["allocations"]] == [
        (first, Decimal("100.00")),
        (second, Decimal("50.00")),
    ]


def test_automatic_allocation_pays_the_oldest_due_first(runtime: Runtime) -> None:
    newer = add_invoice(runtime, "INV-2", "50.00", due=AS_OF + dt.timedelta(days=20))
    older = add_invoice(runtime, "INV-1", "50.00", due=AS_OF - dt.timedelta(days=5))
    recorded = pay(runtime, receipt("r", "70.00"))
    assert recorded.allocated == {older: Decimal("50.00"), newer: Decimal("20.00")}


def test_explicit_allocations_are_kept_and_quickbooks_credit_is_not_spent(runtime: Runtime) -> None:
    one = add_invoice(runtime, "INV-1", "100.00", due=AS_OF)
    two = add_invoice(runtime, "INV-2", "100.00", due=AS_OF)
    recorded = pay(
        runtime,
        receipt("qbo-9", "150.00", source="quickbooks", allocations=[(two, Decimal("100.00"))]),
    )
    assert recorded.allocated == {two: Decimal("100.00")} and recorded.unapplied == Decimal("50.00")
    with runtime.transaction() as session:
        assert apply_credit(session, runtime.settings, [CUSTOMER], as_of=AS_OF) == {}
    assert invoice(runtime, one).status == "open"
    # a QBO payment is not pushed back to the QBO it came from
    assert ("qbo", recorded.payment_id) not in outbox(runtime, "payment")


def test_refund_takes_credit_first_then_reopens_the_last_paid_invoice(runtime: Runtime) -> None:
    inv = add_invoice(runtime, "INV-1", "100.00", due=AS_OF + dt.timedelta(days=3))
    recorded = pay(runtime, receipt("r", "120.00", method="card", source="stripe"))
    assert refund(runtime, recorded.payment_id, "re_1", "50.00")
    back = invoice(runtime, inv)
    assert (back.status, back.amount_paid, back.paid_on) == ("partially_paid", Decimal("70.00"), None)
    assert not refund(runtime, recorded.payment_id, "re_1", "50.00")  # the same notice again: no change
    assert invoice(runtime, inv).amount_paid == Decimal("70.00")
    with pytest.raises(PaymentError, match="exceeds"):
        refund(runtime, recorded.payment_id, "re_2", "80.00")


def test_overdue_is_marked_once_and_payment_stops_reminders(runtime: Runtime) -> None:
    inv = add_invoice(runtime, "INV-1", "100.00", due=AS_OF - dt.timedelta(days=1))
    with runtime.transaction() as session:
        assert refresh_overdue(session, runtime.settings, as_of=AS_OF) == 1
        assert refresh_overdue(session, runtime.settings, as_of=AS_OF) == 0
        session.add(Reminder(invoice_id=inv, step="late-7", level="reminded", scheduled_for=AS_OF))
    assert invoice(runtime, inv).status == "overdue"
    pay(runtime, receipt("r", "30.00"))
    assert invoice(runtime, inv).status == "overdue"  # partly paid, still late
    pay(runtime, receipt("r2", "70.00"))
    with runtime.sessions() as session:
        reminder = session.scalars(select(Reminder)).one()
        assert reminder.status == "cancelled"
    assert invoice(runtime, inv).dunning_level == "none"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": Decimal("0")}, "positive"),
        ({"amount": Decimal("-5")}, "positive"),
        ({"method": "bitcoin"}, "unknown payment method"),
        ({"source": "paypal"}, "unknown payment source"),
        ({"customer_id": "cus_nobody"}, "not known"),
    ],
)
def test_bad_receipts_are_refused_with_the_reason(
    runtime: Runtime, changes: dict[str, object], message: str
) -> None:
    add_invoice(runtime, "INV-1", "100.00", due=AS_OF)
    with pytest.raises(PaymentError, match=message):
        pay(runtime, receipt("bad", "10.00", **changes))
    with runtime.sessions() as session:
        assert session.scalars(select(Payment)).all() == []


def test_a_payment_never_pays_another_customers_invoice(runtime: Runtime) -> None:
    theirs = add_invoice(runtime, "INV-9", "100.00", due=AS_OF, customer="cus_2")
    with pytest.raises(PaymentError, match="cannot pay invoice INV-9"):
        pay(runtime, receipt("r", "10.00", allocations=[(theirs, Decimal("10.00"))]))


def test_the_crm_order_learns_when_the_invoices_billed_from_it_are_paid(runtime: Runtime) -> None:
    from sync_engine.payments import order_balance_documents
    from sync_engine.store.models import InvoiceLine

    runtime.settings.destinations.append(
        DestinationSettings(
            name="crm-orders",
            connection="sf",
            mappings={"order_balance": "builtin:salesforce/order_balance.out"},
        )
    )
    inv = add_invoice(runtime, "INV-1", "100.00", due=AS_OF + dt.timedelta(days=5))
    with runtime.transaction() as session:
        for line_id, order_id in (("orl_a", "ord_1"), ("orl_b", "ord_2")):
            session.add(
                CanonicalRecord(
                    id=line_id,
                    entity="order_line",
                    data={"order_id": order_id, "product_id": "p", "quantity": "1"},
                    payload_hash="h",
                )
            )
        for position, line_id in enumerate(("orl_a", "orl_b")):
            session.add(
                InvoiceLine(
                    invoice_id=inv,
                    position=position,
                    source_key=f"order-line:{line_id}",
                    description="x",
                    quantity=Decimal(1),
                    unit_price=Decimal("50.00"),
                    amount=Decimal("50.00"),
                )
            )
    pay(runtime, receipt("r1", "40.00"))
    assert sorted(cid for d, cid in outbox(runtime, "order_balance")) == ["ord_1", "ord_2"]
    with runtime.sessions() as session:
        docs = order_balance_documents(session, ["ord_1", "ord_2", "ord_unbilled"])
    assert docs["ord_1"]["payment_status"] == "partially_paid"
    assert docs["ord_1"]["balance"] == Decimal("60.00") and docs["ord_1"]["last_payment_date"] == AS_OF
    assert docs["ord_unbilled"]["payment_status"] == "none"
