"""The connector against StripeSandbox over real HTTPS, and the sandbox's signed webhook deliveries.

The end-to-end promise: a collection charges once per key, whatever is retried, and the webhook that
follows verifies with the endpoint's secret and translates to the same payment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from connectors.errors import AuthError, FatalError, OutcomeUnknownError, RateLimitedError, RecordError
from connectors.stripe.client import CardDeclinedError, IdempotencyConflictError, StripeConnector
from connectors.stripe.events import PaymentFailed, PaymentSucceeded, Refunded, translate
from connectors.stripe.sandbox import StripeSandbox
from connectors.stripe.webhook import SIGNATURE_HEADER, VerifiedEvent, verify_event
from tests.connectors.stripe.conftest import Receiver, resource

pytestmark = pytest.mark.integration

WHSEC = "whsec_sandbox_endpoint_secret"


@pytest.fixture
def stripe_sandbox(receiver: Receiver) -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox(
        webhook_url=receiver.url, webhook_secret=WHSEC, webhook_verify=receiver.cert, auto_deliver=False
    )
    with sandbox:
        sandbox.seed_customer("cus_good", "pm_good")
        sandbox.seed_customer("cus_broke", "pm_broke", fail_code="insufficient_funds")
        yield sandbox


@pytest.fixture
def connector(stripe_sandbox: StripeSandbox) -> Iterator[StripeConnector]:
    connector = StripeConnector(**stripe_sandbox.connector_options(), timeout=5)
    yield connector
    connector.close()


def collect(connector: StripeConnector, customer: str = "cus_good", **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "customer": customer,
        "amount": Decimal("12.34"),
        "currency": "EUR",
        "invoice_number": "INV-2026-0007",
        "idempotency_key": "pay-INV-2026-0007",
    }
    arguments.update(changes)
    return connector.collect(**arguments)


def delivered(receiver: Receiver, index: int = -1) -> VerifiedEvent:
    """Verify a received delivery exactly as the webhook route will (real clock, raw bytes)."""
    got = receiver.received[index]
    return verify_event(got.body, got.headers.get(SIGNATURE_HEADER.lower()), WHSEC)


def test_collect_succeeds_and_the_webhook_verifies_and_translates(
    stripe_sandbox: StripeSandbox, connector: StripeConnector, receiver: Receiver
) -> None:
    result = collect(connector)
    assert result.succeeded and (result.amount, result.currency) == (Decimal("12.34"), "EUR")
    assert connector.api_calls == 2  # customer lookup + create
    intent = stripe_sandbox.payment_intents[result.payment_intent_id]
    assert intent["metadata"] == {"billsync_invoice_number": "INV-2026-0007"}
    assert (intent["amount_received"], intent["payment_method"], intent["customer"]) == (
        1234,
        "pm_good",
        "cus_good",
    )

    assert stripe_sandbox.pending and not receiver.received  # nothing sent until asked
    [delivery] = stripe_sandbox.deliver_pending()
    assert delivery.ok and not stripe_sandbox.pending
    event = delivered(receiver)
    assert event.type == "payment_intent.succeeded" and event.id == delivery.event_id
    assert receiver.received[-1].body == stripe_sandbox.event_body(event.id)
    payment = translate(event)
    assert isinstance(payment, PaymentSucceeded)
    assert (payment.source_ref, payment.amount, payment.currency, payment.invoice_number) == (
        result.payment_intent_id,
        Decimal("12.34"),
        "EUR",
        "INV-2026-0007",
    )
    assert payment.stripe_customer == "cus_good" and payment.reference == result.charge_id


def test_retry_with_the_same_key_replays_and_charges_once(
    stripe_sandbox: StripeSandbox, connector: StripeConnector
) -> None:
    first = collect(connector)
    again = collect(connector)
    assert again.payment_intent_id == first.payment_intent_id and again.replayed and not first.replayed
    assert len(stripe_sandbox.payment_intents) == 1 and len(stripe_sandbox.events) == 1
    with pytest.raises(IdempotencyConflictError):
        collect(connector, amount=Decimal("99.00"))
    assert len(stripe_sandbox.payment_intents) == 1


def test_declined_card_raises_with_stripes_card_error_and_a_failed_event(
    stripe_sandbox: StripeSandbox, connector: StripeConnector, receiver: Receiver
) -> None:
    with pytest.raises(CardDeclinedError) as caught:
        collect(connector, "cus_broke")
    error = caught.value
    assert (error.code, error.decline_code) == ("card_declined", "insufficient_funds")
    assert (
        stripe_sandbox.payment_intents[error.payment_intent_id or ""]["status"] == "requires_payment_method"
    )
    with pytest.raises(CardDeclinedError):  # the saved 402 is replayed: still one attempt at the bank
        collect(connector, "cus_broke")
    assert len(stripe_sandbox.charges) == 1

    stripe_sandbox.deliver_pending()
    failed = translate(delivered(receiver))
    assert isinstance(failed, PaymentFailed)
    assert (failed.source_ref, failed.failure_code, failed.decline_code, failed.amount) == (
        error.payment_intent_id,
        "card_declined",
        "insufficient_funds",
        Decimal("12.34"),
    )
    assert failed.failure_message == "Your card has insufficient funds."


def test_a_failed_delivery_stays_pending_until_the_endpoint_answers(
    stripe_sandbox: StripeSandbox, connector: StripeConnector, receiver: Receiver
) -> None:
    collect(connector)
    receiver.status = 500
    [first] = stripe_sandbox.deliver_pending()
    assert (first.status, first.ok, len(stripe_sandbox.pending)) == (500, False, 1)
    receiver.status = 200
    [second] = stripe_sandbox.deliver_pending()
    assert second.ok and second.attempt == 2 and second.event_id == first.event_id
    assert not stripe_sandbox.pending
    assert delivered(receiver, 0).id == delivered(receiver, 1).id  # same event, each attempt signed


def test_automatic_delivery_in_the_background(receiver: Receiver) -> None:
    with StripeSandbox(
        webhook_url=receiver.url, webhook_secret=WHSEC, webhook_verify=receiver.cert
    ) as sandbox:
        sandbox.seed_customer("cus_auto", "pm_auto")
        connector = StripeConnector(**sandbox.connector_options(), timeout=5)
        result = collect(connector, "cus_auto", idempotency_key="auto-1")
        assert sandbox.drain(timeout=5)
    payment = translate(delivered(receiver))
    assert isinstance(payment, PaymentSucceeded) and payment.source_ref == result.payment_intent_id


def test_send_event_signs_any_event_for_the_demo(stripe_sandbox: StripeSandbox, receiver: Receiver) -> None:
    invoice = resource("invoice")
    invoice.update(status="paid", amount_paid=2500, metadata={"billsync_invoice_number": "INV-9"})
    delivery = stripe_sandbox.send_event("invoice.paid", invoice)
    assert delivery.ok
    paid = translate(delivered(receiver))
    assert isinstance(paid, PaymentSucceeded)
    assert (paid.amount, paid.invoice_number, paid.source_ref) == (Decimal("25.00"), "INV-9", invoice["id"])
    body = receiver.received[-1].body
    assert json.loads(body)["object"] == "event" and b'\n  "id": ' in body  # pretty-printed like Stripe


def test_refunds_partial_then_rest_and_never_more(
    stripe_sandbox: StripeSandbox, connector: StripeConnector, receiver: Receiver
) -> None:
    paid = collect(connector)
    part = connector.refund(
        paid.payment_intent_id, Decimal("2.34"), currency="EUR", idempotency_key="refund-1"
    )
    assert (part.amount, part.charge_id, part.status) == (Decimal("2.34"), paid.charge_id, "succeeded")
    with pytest.raises(RecordError) as caught:
        connector.refund(paid.payment_intent_id, Decimal("10.01"), currency="EUR", idempotency_key="refund-2")
    assert caught.value.code == "amount_too_large"
    rest = connector.refund(paid.payment_intent_id, None, currency="EUR", idempotency_key="refund-3")
    assert rest.amount == Decimal("10.00")

    stripe_sandbox.deliver_pending()
    refunds = [translate(delivered(receiver, i)) for i in range(len(receiver.received))]
    totals = [(r.amount_refunded, r.fully_refunded) for r in refunds if isinstance(r, Refunded)]
    assert totals == [(Decimal("2.34"), False), (Decimal("12.34"), True)]


def test_wrong_key_unknown_customer_and_untrusted_certificate(stripe_sandbox: StripeSandbox) -> None:
    options = stripe_sandbox.connector_options()
    with pytest.raises(AuthError):
        collect(StripeConnector(**{**options, "api_key": "sk_test_not_this_one"}))
    with pytest.raises(RecordError) as caught:
        collect(StripeConnector(**options), "cus_nobody")
    assert caught.value.code == "resource_missing"
    with pytest.raises(FatalError, match="TLS"):  # without ca_bundle the self-signed sandbox is refused
        collect(StripeConnector(**{**options, "ca_bundle": None}))


def test_lost_answer_then_retry_with_the_same_key_charges_once(stripe_sandbox: StripeSandbox) -> None:
    connector = StripeConnector(**stripe_sandbox.connector_options(), timeout=0.5)
    stripe_sandbox.set_faults(1.0, seed=1, kinds=["timeout"], delay=2.0, applied=1.0)
    with pytest.raises(OutcomeUnknownError):
        collect(connector, payment_method="pm_good")
    assert len(stripe_sandbox.payment_intents) == 1  # it did happen
    stripe_sandbox.set_faults(0.0)
    result = collect(connector, payment_method="pm_good")
    assert result.succeeded and result.replayed and len(stripe_sandbox.payment_intents) == 1


def test_throttle_fault_uses_stripes_429(stripe_sandbox: StripeSandbox, connector: StripeConnector) -> None:
    stripe_sandbox.set_faults(1.0, seed=1, kinds=["throttle"])
    with pytest.raises(RateLimitedError) as caught:
        collect(connector, payment_method="pm_good")
    assert caught.value.code == "rate_limit" and not stripe_sandbox.payment_intents


def test_response_shapes_have_every_field_of_stripes_fixtures(
    stripe_sandbox: StripeSandbox, connector: StripeConnector
) -> None:
    paid = collect(connector)
    stripe_sandbox.deliver_pending()
    for name, obj in [
        ("payment_intent", stripe_sandbox.payment_intents[paid.payment_intent_id]),
        ("customer", stripe_sandbox.customers["cus_good"]),
        ("charge", stripe_sandbox.charges[paid.charge_id or ""]),
        ("event", stripe_sandbox.events[0]),
    ]:
        assert set(resource(name)) <= set(obj), name


def test_raw_http_auth_and_form_encoding_like_the_real_api(stripe_sandbox: StripeSandbox) -> None:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(stripe_sandbox.cert_file)
    url = stripe_sandbox.base_url + "/v1/payment_intents"
    anonymous = session.post(url, data={"amount": "100", "currency": "usd"})
    assert (
        anonymous.status_code == 401 and "did not provide an API key" in anonymous.json()["error"]["message"]
    )
    created = session.post(
        url,
        auth=(stripe_sandbox.api_key, ""),  # curl -u sk_...: (Basic) works too
        data={"amount": "100", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
        headers={"Idempotency-Key": "raw-1"},
    )
    assert created.status_code == 200 and created.json()["status"] == "succeeded"
    assert created.headers["Idempotency-Key"] == "raw-1" and created.headers["Request-Id"].startswith("req_")
    missing = session.post(url, auth=(stripe_sandbox.api_key, ""), data={"currency": "usd"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "parameter_missing"
