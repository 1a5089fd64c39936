"""Automatic card collection against the Stripe sandbox over HTTPS: each invoice is charged once.

What a user notices: a card customer's invoice is paid without anyone lifting a finger, and never
charged twice (not by a second run, not by a retry after a lost answer, not by the webhook that
follows); a declined card is tried once; nobody else's card is touched. Runs on SQLite and (with
BILLSYNC_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connectors.errors import AuthError
from connectors.sandbox import Request
from connectors.stripe.client import StripeConnector
from connectors.stripe.sandbox import StripeSandbox
from connectors.stripe.webhook import sign
from sync_engine.card_collection import collect_cards, queue_card_collections
from sync_engine.payments import Receipt, record_payment
from sync_engine.runtime import Runtime
from sync_engine.settings import PaymentSettings, StripeSettings
from sync_engine.store.models import DeadLetter, OutboxItem, Payment
from sync_engine.stripe_payments import handle_stripe_webhook
from tests.sync_engine import books
from tests.sync_engine.books import add_rows, customer_row, invoice_status

AS_OF = dt.date(2026, 11, 25)
SECRET = "whsec_card_collection_test"

#: billsync customer -> (customer data, Stripe customer seeded in the sandbox with this card, or None)
CUSTOMERS: dict[str, tuple[dict[str, Any], tuple[str, str, str | None] | None]] = {
    "cus_card": (
        {"payment_method": "card", "stripe_customer_id": "cus_S_card"},
        ("cus_S_card", "pm_card_visa", None),
    ),
    "cus_declined": (
        {"payment_method": "card", "stripe_customer_id": "cus_S_declined"},
        ("cus_S_declined", "pm_card_chargeDeclined", "card_declined"),
    ),
    # has a working card in Stripe, but pays by bank transfer: must not be charged
    "cus_bank": (
        {"payment_method": "bank_transfer", "stripe_customer_id": "cus_S_bank"},
        ("cus_S_bank", "pm_card_mastercard", None),
    ),
    "cus_no_stripe": ({"payment_method": "card"}, None),
    # pays by card in billsync, but Stripe does not know the customer
    "cus_stranger": ({"payment_method": "card", "stripe_customer_id": "cus_S_unknown"}, None),
}


class LosesChargeAnswers(StripeSandbox):
    """Faults (when switched on) only the charge itself, so the card lookup before it gets through."""

    def faultable(self, request: Request) -> bool:
        return request.method == "POST" and request.path == "/v1/payment_intents"


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    # Events are kept (signed bodies) but not delivered: the tests hand them to the handler.
    with LosesChargeAnswers(
        webhook_url="https://127.0.0.1:9/unused", webhook_secret=SECRET, auto_deliver=False
    ) as sb:
        for _, seeded in CUSTOMERS.values():
            if seeded is not None:
                stripe_id, card, fail_code = seeded
                sb.seed_customer(stripe_id, card, fail_code)
        yield sb


def make_runtime(db_url: str, tmp_path: Path, sandbox: StripeSandbox, **payments: Any) -> Runtime:
    options = sandbox.connector_options()
    stripe_connection: dict[str, Any] = {
        "type": "stripe",
        "api_key": SecretStr(options["api_key"]),
        "webhook_secret": SecretStr(SECRET),
        "api_base": options["api_base"],
        "ca_file": options["ca_bundle"],
        "timeout_seconds": 5,
    }
    stripe_connection.update(payments.pop("connection", {}))
    return books.make_runtime(
        db_url,
        tmp_path,
        connections={"stripe": StripeSettings(**stripe_connection)},
        payments=PaymentSettings(**{"stripe": "stripe", "collect_cards": True, **payments}),
    )


@pytest.fixture
def runtime(db_url: str, tmp_path: Path, sandbox: StripeSandbox) -> Iterator[Runtime]:
    rt = make_runtime(db_url, tmp_path, sandbox)
    add_rows(
        rt, *(customer_row(cid, name=cid, currency="USD", **data) for cid, (data, _) in CUSTOMERS.items())
    )
    yield rt
    rt.close()


def add_invoice(runtime: Runtime, number: str, total: str, customer: str, *, status: str = "open") -> str:
    return books.add_invoice(
        runtime,
        number,
        total,
        customer_id=customer,
        status=status,
        issue=AS_OF - dt.timedelta(days=1),
        due=AS_OF + dt.timedelta(days=14),
    )


def pay_by_bank(runtime: Runtime, ref: str, customer: str, amount: str, invoice_id: str) -> None:
    with runtime.transaction() as session:
        record_payment(
            session,
            runtime.settings,
            Receipt(
                source="bank",
                source_ref=ref,
                customer_id=customer,
                amount=Decimal(amount),
                currency="USD",
                received_on=AS_OF,
                method="bank_transfer",
                invoice_ids=[invoice_id],
            ),
            as_of=AS_OF,
        )


def row(runtime: Runtime, invoice_id: str) -> OutboxItem:
    with runtime.sessions() as session:
        found = session.scalars(
            select(OutboxItem).where(
                OutboxItem.entity == "card_collection", OutboxItem.canonical_id == invoice_id
            )
        ).one()
        session.expunge(found)
        return found


def stripe_payments(runtime: Runtime) -> list[tuple[str, Decimal, str]]:
    with runtime.sessions() as session:
        return [
            (p.source_ref, p.amount, p.customer_id)
            for p in session.scalars(select(Payment).where(Payment.source == "stripe"))
        ]


def intents(sandbox: StripeSandbox, stripe_customer: str) -> list[dict[str, Any]]:
    return [pi for pi in sandbox.payment_intents.values() if pi["customer"] == stripe_customer]


def test_a_card_customers_invoices_are_charged_the_amount_due_once(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    whole = add_invoice(runtime, "INV-001", "10.99", "cus_card")
    partly = add_invoice(runtime, "INV-002", "50.00", "cus_card")
    pay_by_bank(runtime, "bank-1", "cus_card", "20.00", partly)

    first = collect_cards(runtime, as_of=AS_OF)

    assert (first.queued, first.charged, first.declined, first.pending, first.failed) == (2, 2, 0, 0, 0)
    assert invoice_status(runtime, whole) == ("paid", Decimal("10.99"))
    assert invoice_status(runtime, partly) == ("paid", Decimal("50.00"))
    charged = {pi["metadata"]["billsync_invoice_number"]: pi for pi in intents(sandbox, "cus_S_card")}
    assert {n: (pi["amount"], pi["currency"], pi["status"]) for n, pi in charged.items()} == {
        "INV-001": (1099, "usd", "succeeded"),
        "INV-002": (3000, "usd", "succeeded"),  # what was still due, not the invoice total
    }
    assert sorted(stripe_payments(runtime)) == sorted(
        [
            (charged["INV-001"]["id"], Decimal("10.99"), "cus_card"),
            (charged["INV-002"]["id"], Decimal("30.00"), "cus_card"),
        ]
    )
    assert row(runtime, whole).status == "sent"

    again = collect_cards(runtime, as_of=AS_OF + dt.timedelta(days=1))

    assert (again.queued, again.charged, again.api_calls) == (0, 0, 0)
    assert len(sandbox.payment_intents) == 2 and len(stripe_payments(runtime)) == 2


def test_a_declined_card_is_tried_once_and_the_invoice_stays_open(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-010", "25.00", "cus_declined")

    first = collect_cards(runtime, as_of=AS_OF)

    assert (first.queued, first.charged, first.declined, first.failed) == (1, 0, 1, 0)
    assert invoice_status(runtime, invoice_id) == ("open", Decimal("0"))
    failed = row(runtime, invoice_id)
    assert failed.status == "failed" and "generic_decline" in (failed.last_error or "")
    with runtime.sessions() as session:  # a business outcome: dunning takes over, not support
        assert session.scalars(select(DeadLetter)).all() == []
    assert len(intents(sandbox, "cus_S_declined")) == 1

    later = collect_cards(runtime, as_of=AS_OF + dt.timedelta(days=3))

    assert (later.queued, later.declined, later.api_calls) == (0, 0, 0)
    assert len(intents(sandbox, "cus_S_declined")) == 1
    assert invoice_status(runtime, invoice_id)[0] == "open"


def test_a_lost_answer_is_retried_next_run_with_the_same_key_and_charges_once(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-020", "42.50", "cus_card")
    # Stripe charges the card, but its answer never arrives: the client times out first.
    sandbox.set_faults(1.0, seed=1, kinds=["timeout"], delay=1.5, applied=1.0)
    impatient = StripeConnector(**sandbox.connector_options(), timeout=0.4)

    lost = collect_cards(runtime, as_of=AS_OF, connector=impatient)

    assert (lost.charged, lost.pending, lost.failed) == (0, 1, 0)
    assert sandbox.faults_injected["timeout_after_apply"] == 1
    assert len(intents(sandbox, "cus_S_card")) == 1  # the card *was* charged
    in_doubt = row(runtime, invoice_id)
    assert in_doubt.status == "unknown" and in_doubt.attempts == 1 and in_doubt.last_error
    assert invoice_status(runtime, invoice_id)[0] == "open" and stripe_payments(runtime) == []

    sandbox.set_faults(0.0)
    retried = collect_cards(runtime, as_of=AS_OF)

    assert (retried.charged, retried.pending) == (1, 0)
    [charge] = intents(sandbox, "cus_S_card")  # still one PaymentIntent: Stripe replayed its answer
    assert stripe_payments(runtime) == [(charge["id"], Decimal("42.50"), "cus_card")]
    assert invoice_status(runtime, invoice_id) == ("paid", Decimal("42.50"))
    done = row(runtime, invoice_id)
    assert done.status == "sent" and done.attempts == 2
    [event] = [e for e in sandbox.events if e["type"] == "payment_intent.succeeded"]
    assert event["request"]["idempotency_key"] == done.idempotency_key
    with runtime.sessions() as session:
        payment = session.scalars(select(Payment)).one()
        assert payment.details["replayed"] is True


def test_customers_not_paying_by_card_or_unknown_to_stripe_are_not_charged(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    add_invoice(runtime, "INV-030", "15.00", "cus_bank")
    add_invoice(runtime, "INV-031", "15.00", "cus_no_stripe")
    add_invoice(runtime, "INV-032", "15.00", "cus_card", status="draft")
    add_invoice(runtime, "INV-033", "15.00", "cus_card", status="void")

    result = collect_cards(runtime, as_of=AS_OF)

    assert (result.queued, result.charged, result.api_calls) == (0, 0, 0)
    assert sandbox.payment_intents == {} and sandbox.calls == 0


def test_a_stripe_customer_stripe_does_not_know_is_dead_lettered_once(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-035", "15.00", "cus_stranger")

    result = collect_cards(runtime, as_of=AS_OF)

    assert (result.queued, result.charged, result.failed) == (1, 0, 1)
    assert row(runtime, invoice_id).status == "failed"
    with runtime.sessions() as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert (letter.stream, letter.external_id) == ("collect:stripe", invoice_id)
        assert "cus_S_unknown" in letter.error
    assert collect_cards(runtime, as_of=AS_OF).api_calls == 0
    assert sandbox.payment_intents == {}


def test_an_invoice_paid_by_bank_transfer_after_queueing_is_not_charged(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-040", "80.00", "cus_card")
    assert queue_card_collections(runtime, connection="stripe") == 1
    pay_by_bank(runtime, "bank-40", "cus_card", "80.00", invoice_id)

    result = collect_cards(runtime, as_of=AS_OF)

    assert (result.queued, result.charged, result.skipped, result.api_calls) == (0, 0, 1, 0)
    assert sandbox.payment_intents == {}
    closed = row(runtime, invoice_id)
    assert closed.status == "sent" and "paid" in (closed.last_error or "")


def test_the_webhook_for_the_same_payment_intent_records_nothing_twice(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-050", "19.90", "cus_card")
    assert collect_cards(runtime, as_of=AS_OF).charged == 1
    [event] = [e for e in sandbox.events if e["type"] == "payment_intent.succeeded"]
    body = sandbox.event_body(event["id"])

    answer = handle_stripe_webhook(runtime, body, sign(body, SECRET, int(time.time())))

    assert (answer.status, answer.message) == (200, "duplicate")
    assert len(stripe_payments(runtime)) == 1
    assert invoice_status(runtime, invoice_id) == ("paid", Decimal("19.90"))


def test_nothing_happens_unless_card_collection_is_configured(
    db_url: str, tmp_path: Path, runtime: Runtime, sandbox: StripeSandbox
) -> None:
    add_invoice(runtime, "INV-060", "10.00", "cus_card")
    off = make_runtime(db_url, tmp_path, sandbox, collect_cards=False)
    keyless = make_runtime(db_url, tmp_path, sandbox, connection={"api_key": None})
    try:
        assert "collect_cards" in (collect_cards(off, as_of=AS_OF).note or "")
        assert "api_key" in (collect_cards(keyless, as_of=AS_OF).note or "")
    finally:
        off.close()
        keyless.close()
    with runtime.sessions() as session:
        assert session.scalars(select(OutboxItem)).all() == []
    assert sandbox.calls == 0


def test_rejected_credentials_stop_the_run_and_charge_nothing(
    runtime: Runtime, sandbox: StripeSandbox
) -> None:
    invoice_id = add_invoice(runtime, "INV-070", "10.00", "cus_card")
    wrong = StripeConnector(**{**sandbox.connector_options(), "api_key": "sk_test_revoked_key_000000"})

    with pytest.raises(AuthError):
        collect_cards(runtime, as_of=AS_OF, connector=wrong)

    waiting = row(runtime, invoice_id)
    assert waiting.status == "pending" and "Invalid API Key" in (waiting.last_error or "")
    assert sandbox.payment_intents == {}
    assert collect_cards(runtime, as_of=AS_OF).charged == 1  # fixed credentials: charged next run
