"""StripeConnector.collect against Stripe's documented answers (``responses``, no network).

What a user notices: the card is charged once per key (the key travels as ``Idempotency-Key`` on every
attempt), a decline is not retried, a lost answer is retried safely, throttling waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses

from connectors.errors import (
    AuthError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.stripe.client import (
    CardDeclinedError,
    CollectionResult,
    IdempotencyConflictError,
    StripeConnector,
)
from tests.connectors.stripe.conftest import resource

API = "https://api.stripe.com"
KEY = "sk_test_51Hbillsync0000000000000000"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def connector() -> StripeConnector:
    return StripeConnector(KEY)


def customer(default_payment_method: str | None = "pm_card_on_file") -> dict[str, Any]:
    found = resource("customer")
    found["id"] = "cus_QXg1o8vcGmoR32"
    found["invoice_settings"]["default_payment_method"] = default_payment_method
    return found


def succeeded(**changes: Any) -> dict[str, Any]:
    intent = resource("payment_intent")
    intent.update(
        status="succeeded",
        amount_received=intent["amount"],
        latest_charge="ch_3Pcollect",
        customer="cus_QXg1o8vcGmoR32",
        payment_method="pm_card_on_file",
        last_payment_error=None,
        next_action=None,
        metadata={"billsync_invoice_number": "INV-0001"},
    )
    intent.update(changes)
    return intent


def card_error(decline_code: str = "insufficient_funds") -> dict[str, Any]:
    """Stripe's 402 body for an off-session decline (docs.stripe.com/error-codes, /api/errors)."""
    intent = resource("payment_intent")
    intent.update(status="requires_payment_method", latest_charge="ch_3Pdeclined")
    return {
        "error": {
            "charge": "ch_3Pdeclined",
            "code": "card_declined",
            "decline_code": decline_code,
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": "Your card has insufficient funds.",
            "payment_intent": intent,
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_8Fq2x1",
            "type": "card_error",
        }
    }


def collect(connector: StripeConnector, **changes: Any) -> CollectionResult:
    arguments: dict[str, Any] = {
        "customer": "cus_QXg1o8vcGmoR32",
        "amount": Decimal("10.99"),
        "currency": "USD",
        "invoice_number": "INV-0001",
        "idempotency_key": "billsync-pay-INV-0001-1",
    }
    arguments.update(changes)
    return connector.collect(**arguments)


def form(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def test_collect_charges_the_default_card_once_with_the_key_as_header(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.get(f"{API}/v1/customers/cus_QXg1o8vcGmoR32", json=customer())
    mocked.post(f"{API}/v1/payment_intents", json=succeeded())
    result = collect(connector, description="Invoice INV-0001")
    assert result == CollectionResult(
        payment_intent_id="pi_1PgafyB7WZ01zgkWSjxsAJo3",
        status="succeeded",
        amount=Decimal("10.99"),
        currency="USD",
        charge_id="ch_3Pcollect",
    )
    assert result.succeeded and connector.api_calls == 2
    create = mocked.calls[1]
    assert create.request.headers["Idempotency-Key"] == "billsync-pay-INV-0001-1"
    assert create.request.headers["Authorization"] == f"Bearer {KEY}"
    assert form(create) == {
        "amount": "1099",
        "currency": "usd",
        "customer": "cus_QXg1o8vcGmoR32",
        "payment_method": "pm_card_on_file",
        "confirm": "true",
        "off_session": "true",
        "metadata[billsync_invoice_number]": "INV-0001",
        "description": "Invoice INV-0001",
    }


def test_explicit_payment_method_skips_the_customer_lookup_and_jpy_is_whole_units(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.post(
        f"{API}/v1/payment_intents", json=succeeded(amount=5000, amount_received=5000, currency="jpy")
    )
    result = collect(connector, amount=Decimal("5000"), currency="JPY", payment_method="pm_given")
    assert (result.amount, result.currency, connector.api_calls) == (Decimal("5000"), "JPY", 1)
    assert form(mocked.calls[0])["amount"] == "5000" and form(mocked.calls[0])["payment_method"] == "pm_given"


def test_declined_card_is_a_record_error_with_the_decline_code(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.post(f"{API}/v1/payment_intents", status=402, json=card_error())
    with pytest.raises(CardDeclinedError) as caught:
        collect(connector, payment_method="pm_card_on_file")
    error = caught.value
    assert isinstance(error, RecordError) and not isinstance(error, RetryableError)
    assert (error.code, error.decline_code) == ("card_declined", "insufficient_funds")
    assert (error.payment_intent_id, error.charge_id) == ("pi_1PgafyB7WZ01zgkWSjxsAJo3", "ch_3Pdeclined")
    assert "insufficient funds" in str(error)


def test_rate_limit_is_retryable_with_the_wait_stripe_asked_for(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    body = {
        "error": {
            "code": "rate_limit",
            "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
            "type": "invalid_request_error",
        }
    }
    mocked.post(f"{API}/v1/payment_intents", status=429, json=body)
    with pytest.raises(RateLimitedError) as caught:
        collect(connector, payment_method="pm_card_on_file")
    assert caught.value.code == "rate_limit" and caught.value.retry_after is None
    mocked.replace(
        responses.POST, f"{API}/v1/payment_intents", status=429, json=body, headers={"Retry-After": "2"}
    )
    with pytest.raises(RateLimitedError) as caught:
        collect(connector, payment_method="pm_card_on_file")
    assert caught.value.retry_after == 2.0


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ConnectionError("Connection aborted."),
        requests.exceptions.ReadTimeout("read timed out"),
    ],
    ids=["connection-lost", "read-timeout"],
)
def test_lost_answer_to_the_create_is_outcome_unknown(
    mocked: responses.RequestsMock, connector: StripeConnector, failure: Exception
) -> None:
    mocked.post(f"{API}/v1/payment_intents", body=failure)
    with pytest.raises(OutcomeUnknownError, match="same idempotency key"):
        collect(connector, payment_method="pm_card_on_file")


def test_lost_answer_to_the_customer_lookup_is_only_retryable(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.get(f"{API}/v1/customers/cus_QXg1o8vcGmoR32", body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(RetryableError) as caught:
        collect(connector)
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert len(mocked.calls) == 1  # nothing was charged


def test_sdk_retries_reuse_the_same_idempotency_key(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "stripe._http_client.HTTPClient._sleep_time_seconds", lambda self, n, response=None: 0
    )
    connector = StripeConnector(KEY, max_network_retries=2)
    lost = requests.exceptions.ConnectionError("Connection aborted.")
    mocked.post(f"{API}/v1/payment_intents", body=lost)
    mocked.post(f"{API}/v1/payment_intents", body=lost)
    mocked.post(f"{API}/v1/payment_intents", json=succeeded())
    assert collect(connector, payment_method="pm_card_on_file").succeeded
    assert connector.api_calls == 3
    assert {call.request.headers["Idempotency-Key"] for call in mocked.calls} == {"billsync-pay-INV-0001-1"}


def test_server_error_on_the_create_is_retryable_and_flagged_outcome_unknown(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    body = {"error": {"message": "An unknown error occurred", "type": "api_error"}}
    mocked.post(f"{API}/v1/payment_intents", status=500, json=body)
    with pytest.raises(OutcomeUnknownError):
        collect(connector, payment_method="pm_card_on_file")
    mocked.get(f"{API}/v1/payment_intents/pi_1", status=503, json=body)
    with pytest.raises(RetryableError) as caught:
        connector.retrieve("pi_1")
    assert not isinstance(caught.value, OutcomeUnknownError)


def test_rejected_key_is_an_auth_error_and_the_key_never_shows_in_the_message(
    mocked: responses.RequestsMock,
) -> None:
    secret = "sk_live_51HsecretSECRETsecret1234"
    body = {"error": {"message": f"Invalid API Key provided: {secret}", "type": "invalid_request_error"}}
    mocked.post(f"{API}/v1/payment_intents", status=401, json=body)
    with pytest.raises(AuthError) as caught:
        collect(StripeConnector(secret), payment_method="pm_card_on_file")
    assert "SECRET" not in str(caught.value) and "sk_live_****" in str(caught.value)


def test_unknown_customer_and_key_reuse_are_record_errors(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    missing = {
        "error": {
            "code": "resource_missing",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
            "message": "No such customer: 'cus_QXg1o8vcGmoR32'",
            "param": "id",
            "type": "invalid_request_error",
        }
    }
    mocked.get(f"{API}/v1/customers/cus_QXg1o8vcGmoR32", status=404, json=missing)
    with pytest.raises(RecordError) as caught:
        collect(connector)
    assert caught.value.code == "resource_missing"
    reused = {
        "error": {
            "message": "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            "type": "idempotency_error",
        }
    }
    mocked.post(f"{API}/v1/payment_intents", status=400, json=reused)
    with pytest.raises(IdempotencyConflictError):
        collect(connector, payment_method="pm_card_on_file")


def test_customer_without_a_default_card_is_refused_before_any_charge(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.get(f"{API}/v1/customers/cus_QXg1o8vcGmoR32", json=customer(None))
    with pytest.raises(RecordError) as caught:
        collect(connector)
    assert caught.value.code == "no_default_payment_method"
    assert [call.request.method for call in mocked.calls] == ["GET"]


@pytest.mark.parametrize(
    ("amount", "currency"), [("10.999", "USD"), ("0", "USD"), ("0.5", "JPY"), ("-5", "EUR")]
)
def test_amount_stripe_cannot_take_is_refused_without_a_call(
    mocked: responses.RequestsMock, connector: StripeConnector, amount: str, currency: str
) -> None:
    with pytest.raises(RecordError) as caught:
        collect(connector, amount=Decimal(amount), currency=currency, payment_method="pm_x")
    assert caught.value.code == "invalid_amount" and connector.api_calls == 0


def test_refund_checks_the_currency_before_refunding(
    mocked: responses.RequestsMock, connector: StripeConnector
) -> None:
    mocked.get(
        f"{API}/v1/payment_intents/pi_1PgafyB7WZ01zgkWSjxsAJo3", json=succeeded(currency="jpy", amount=5000)
    )
    with pytest.raises(RecordError, match="JPY"):
        connector.refund("pi_1PgafyB7WZ01zgkWSjxsAJo3", Decimal("10"), currency="USD", idempotency_key="r-1")
    refund = resource("refund")
    refund.update(amount=1000, currency="jpy", payment_intent="pi_1PgafyB7WZ01zgkWSjxsAJo3")
    mocked.post(f"{API}/v1/refunds", json=refund)
    result = connector.refund(
        "pi_1PgafyB7WZ01zgkWSjxsAJo3", Decimal("1000"), currency="JPY", idempotency_key="r-2"
    )
    assert (result.amount, result.currency, result.status) == (Decimal("1000"), "JPY", "succeeded")
    post = mocked.calls[-1]
    assert form(post) == {"payment_intent": "pi_1PgafyB7WZ01zgkWSjxsAJo3", "amount": "1000"}
    assert post.request.headers["Idempotency-Key"] == "r-2"
