"""The Stripe webhook endpoint over HTTP: signed events pay invoices once; anything else changes nothing.

Events have the shape of Stripe's documented ``event`` envelope (tests/fixtures/stripe has the
originals); they are signed here with the connector's ``sign`` exactly as Stripe does.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from connectors.stripe.webhook import sign
from sync_engine.runtime import Runtime
from sync_engine.settings import PaymentSettings, StripeSettings
from sync_engine.store.models import DeadLetter, Invoice, Payment, WebhookEvent
from sync_engine.web import create_app
from tests.sync_engine.books import add_rows, customer_row, invoice_row, make_runtime

SECRET = "whsec_test_secret"
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(
        db_url,
        tmp_path,
        connections={"stripe": StripeSettings(type="stripe", webhook_secret=SecretStr(SECRET))},
        payments=PaymentSettings(stripe="stripe"),
    )
    add_rows(
        rt,
        customer_row("cus_a", name="A", currency="USD", stripe_customer_id="cus_STRIPE_A"),
        invoice_row(
            "INV-000001",
            "10.99",
            invoice_id="inv_1",
            customer_id="cus_a",
            issue=TODAY,
            due=TODAY + dt.timedelta(days=30),
        ),
    )
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime))


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    envelope = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def intent(
    amount: int = 1099, invoice: str | None = "INV-000001", customer: str = "cus_STRIPE_A"
) -> dict[str, Any]:
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": "usd",
        "customer": customer,
        "created": int(time.time()),
        "latest_charge": "ch_1",
        "metadata": {"billsync_invoice_number": invoice} if invoice else {},
        "payment_method_types": ["card"],
        "status": "succeeded",
    }


def post(client: TestClient, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", content=body, headers=headers)


def state(runtime: Runtime) -> tuple[str, int, int]:
    with runtime.sessions() as session:
        inv = session.get(Invoice, "inv_1")
        assert inv is not None
        payments = len(session.scalars(select(Payment)).all())
        events = len(session.scalars(select(WebhookEvent)).all())
        return inv.status, payments, events


def test_a_signed_payment_event_pays_the_invoice_once(client: TestClient, runtime: Runtime) -> None:
    body = event("payment_intent.succeeded", intent())
    answer = post(client, body, sign(body, SECRET, int(time.time())))
    assert answer.status_code == 200
    assert state(runtime) == ("paid", 1, 1)
    # Stripe redelivers the same event, signed anew: accepted, nothing changes
    again = post(client, body, sign(body, SECRET, int(time.time()) + 1))
    assert again.status_code == 200 and "already processed" in again.text
    assert state(runtime) == ("paid", 1, 1)


@pytest.mark.parametrize(
    "tamper",
    ["forged", "wrong_secret", "reserialised", "old", "missing", "garbled"],
)
def test_untrusted_deliveries_get_400_and_change_nothing(
    client: TestClient, runtime: Runtime, tamper: str
) -> None:
    body = event("payment_intent.succeeded", intent())
    now = int(time.time())
    header: str | None = sign(body, SECRET, now)
    if tamper == "forged":
        body = body.replace(b"1099", b"9999")  # signed for other bytes
    elif tamper == "wrong_secret":
        header = sign(body, "whsec_someone_else", now)
    elif tamper == "reserialised":
        body = json.dumps(json.loads(body), indent=2).encode()  # same JSON, other bytes
    elif tamper == "old":
        header = sign(body, SECRET, now - 3600)
    elif tamper == "missing":
        header = None
    else:
        header = "t=abc,v1=nothex"
    answer = post(client, body, header)
    assert answer.status_code == 400
    assert state(runtime) == ("open", 0, 0)


def test_an_exact_replay_is_refused(client: TestClient, runtime: Runtime) -> None:
    body = event("payment_intent.succeeded", intent())
    header = sign(body, SECRET, int(time.time()))
    assert post(client, body, header).status_code == 200
    replay = post(client, body, header)
    assert replay.status_code == 400 and "replayed" in replay.text
    assert state(runtime) == ("paid", 1, 1)


def test_refund_reopens_the_invoice_once(client: TestClient, runtime: Runtime) -> None:
    body = event("payment_intent.succeeded", intent())
    post(client, body, sign(body, SECRET, int(time.time())))
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 1099,
        "amount_refunded": 500,
        "captured": True,
        "currency": "usd",
        "customer": "cus_STRIPE_A",
        "created": int(time.time()),
        "metadata": {"billsync_invoice_number": "INV-000001"},
        "payment_intent": "pi_1",
        "refunded": False,
        "refunds": {"object": "list", "data": [{"id": "re_1", "amount": 500, "created": int(time.time())}]},
    }
    for event_id in ("evt_r1", "evt_r2"):  # the second is a different event with the same total
        refund = event("charge.refunded", charge, event_id)
        assert post(client, refund, sign(refund, SECRET, int(time.time()))).status_code == 200
    with runtime.sessions() as session:
        inv = session.get(Invoice, "inv_1")
        payment = session.scalars(select(Payment)).one()
        assert inv is not None
        assert (inv.status, inv.amount_paid) == ("partially_paid", Decimal("5.990000"))
        assert payment.refunded == Decimal("5.00")


def test_an_unknown_customer_is_parked_for_support_not_retried(client: TestClient, runtime: Runtime) -> None:
    body = event("payment_intent.succeeded", intent(invoice=None, customer="cus_STRANGER"))
    answer = post(client, body, sign(body, SECRET, int(time.time())))
    assert answer.status_code == 200 and "dead_lettered" in answer.text
    with runtime.sessions() as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert "cus_STRANGER" in letter.error and letter.stream == "webhook:stripe"
    assert state(runtime) == ("open", 0, 1)


def test_without_a_stripe_connection_the_endpoint_says_so(db_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(db_url, tmp_path)
    try:
        answer = TestClient(create_app(runtime)).post("/webhooks/stripe", content=b"{}")
        assert answer.status_code == 503 and "payments.stripe" in answer.text
    finally:
        runtime.close()
