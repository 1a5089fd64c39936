"""Webhook verification: what a forged, altered, replayed or garbled delivery gets (a 400, not money)."""

from __future__ import annotations

import json

import pytest

from connectors.stripe.webhook import WebhookRejected, sign, verify_event
from tests.connectors.stripe.conftest import SECRET, TS, event_bytes, vectors

BODY = event_bytes("payment_intent.succeeded")
HEADER = sign(BODY, SECRET, TS)


def rejected(payload: bytes, header: str | None, *, secret: str = SECRET, now: int | None = TS) -> str:
    with pytest.raises(WebhookRejected) as caught:
        verify_event(payload, header, secret, now=now)
    return caught.value.reason


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: v["file"].split("/")[-1])
def test_published_vectors_verify_and_sign_reproduces_them(vector: dict[str, str]) -> None:
    body = event_bytes(vector["file"].split("/")[-1].removesuffix(".json"))
    event = verify_event(body, vector["stripe_signature"], vector["secret"], now=TS)
    envelope = json.loads(body)
    assert (event.id, event.type, event.created) == (envelope["id"], envelope["type"], 1764000000)
    assert event.api_version == "2026-10-28.endive" and event.livemode is False
    assert event.object["id"] == envelope["data"]["object"]["id"]
    assert event.signature_timestamp == TS and event.raw_signature == vector["stripe_signature"]
    assert event.payload == body
    assert sign(body, vector["secret"], TS) == vector["stripe_signature"]


def test_previous_attributes_are_exposed() -> None:
    body = event_bytes("charge.refunded")
    event = verify_event(body, sign(body, SECRET, TS), SECRET, now=TS)
    assert event.previous_attributes == {"amount_refunded": 0, "refunded": False}


def test_forged_signature_is_rejected() -> None:
    digest = HEADER.split("v1=")[1]
    forged = HEADER.replace(digest, ("0" if digest[0] != "0" else "1") + digest[1:])
    assert rejected(BODY, forged) == WebhookRejected.BAD_SIGNATURE


def test_signature_made_with_another_secret_is_rejected() -> None:
    assert rejected(BODY, sign(BODY, "whsec_someone_else", TS)) == WebhookRejected.BAD_SIGNATURE
    assert rejected(BODY, HEADER, secret="whsec_rolled_secret") == WebhookRejected.BAD_SIGNATURE


def test_reserialised_or_altered_body_is_rejected() -> None:
    reserialised = json.dumps(json.loads(BODY)).encode()
    assert json.loads(reserialised) == json.loads(BODY)  # same data, other bytes
    assert rejected(reserialised, HEADER) == WebhookRejected.BAD_SIGNATURE
    tampered = BODY.replace(b'"amount_received": 1099', b'"amount_received": 9999')
    assert tampered != BODY
    assert rejected(tampered, HEADER) == WebhookRejected.BAD_SIGNATURE
    assert rejected(BODY + b"\n", HEADER) == WebhookRejected.BAD_SIGNATURE


def test_timestamp_tolerance_both_ways_with_exact_boundary() -> None:
    assert verify_event(BODY, sign(BODY, SECRET, TS - 300), SECRET, now=TS).signature_timestamp == TS - 300
    assert verify_event(BODY, sign(BODY, SECRET, TS + 300), SECRET, now=TS).id == "evt_sample_pi_succeeded"
    assert rejected(BODY, sign(BODY, SECRET, TS - 301)) == WebhookRejected.TIMESTAMP_OUT_OF_TOLERANCE
    assert rejected(BODY, sign(BODY, SECRET, TS + 301)) == WebhookRejected.TIMESTAMP_OUT_OF_TOLERANCE
    with pytest.raises(WebhookRejected):
        verify_event(BODY, sign(BODY, SECRET, TS - 61), SECRET, tolerance=60, now=TS)


def test_replaying_a_captured_request_later_is_rejected_on_the_real_clock() -> None:
    """The vectors were signed in 2025: replayed today, a valid signature is not enough."""
    assert rejected(BODY, HEADER, now=None) == WebhookRejected.TIMESTAMP_OUT_OF_TOLERANCE


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_rejected(header: str | None) -> None:
    assert rejected(BODY, header) == WebhookRejected.MISSING_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t=abc,v1={HEADER.split('v1=')[1]}",
        f"v1={HEADER.split('v1=')[1]}",
        f"t={TS}",
        f"t={TS},t={TS + 1},v1={HEADER.split('v1=')[1]}",
        f"t={TS},v0={HEADER.split('v1=')[1]}",
    ],
    ids=["no-pairs", "t-not-a-number", "no-t", "no-v1", "two-t", "only-v0"],
)
def test_garbled_header_is_rejected(header: str) -> None:
    assert rejected(BODY, header) == WebhookRejected.MALFORMED_SIGNATURE


def test_one_valid_v1_among_several_is_accepted() -> None:
    """While a secret is rolled Stripe signs with both: any matching v1 is enough, in any position."""
    good = HEADER.split("v1=")[1]
    old = sign(BODY, "whsec_previous", TS).split("v1=")[1]
    assert verify_event(BODY, f"t={TS},v1={old},v1={good}", SECRET, now=TS).id == "evt_sample_pi_succeeded"
    assert verify_event(BODY, f"t={TS},v1={good},v1={old},v0=ignored", SECRET, now=TS).type == (
        "payment_intent.succeeded"
    )
    assert rejected(BODY, f"t={TS},v1={old},v1={old}") == WebhookRejected.BAD_SIGNATURE


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"object": "charge", "id": "ch_1"}',
        b'{"object": "event", "id": "evt_1", "type": "x", "created": 1}',
        b'{"object": "event", "id": "evt_1", "type": "x", "created": "yesterday", "data": {"object": {}}}',
        b"\xff\xfe not utf-8",
    ],
    ids=["text", "array", "not-an-event", "no-data", "created-not-int", "not-utf8"],
)
def test_correctly_signed_body_that_is_not_an_event_is_rejected(payload: bytes) -> None:
    assert rejected(payload, sign(payload, SECRET, TS)) == WebhookRejected.NOT_AN_EVENT


def test_replay_key_is_the_event_id_and_signature_timestamp() -> None:
    first = verify_event(BODY, HEADER, SECRET, now=TS)
    replayed = verify_event(BODY, HEADER, SECRET, now=TS + 10)
    redelivered = verify_event(BODY, sign(BODY, SECRET, TS + 60), SECRET, now=TS + 60)  # Stripe's retry
    assert first.replay_key == replayed.replay_key == ("evt_sample_pi_succeeded", TS)
    assert redelivered.replay_key == ("evt_sample_pi_succeeded", TS + 60)


def test_fractional_numbers_are_decimals_not_floats() -> None:
    body = json.dumps(
        {
            "id": "evt_f",
            "object": "event",
            "type": "coupon.created",
            "created": TS,
            "data": {"object": {"percent_off": 12.5}},
        }
    ).encode()
    event = verify_event(body, sign(body, SECRET, TS), SECRET, now=TS)
    assert repr(event.object["percent_off"]) == "Decimal('12.5')"


def test_empty_secret_is_a_configuration_error_not_a_rejection() -> None:
    with pytest.raises(ValueError):
        verify_event(BODY, HEADER, "", now=TS)
