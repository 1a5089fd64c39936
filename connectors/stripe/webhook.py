"""Verify that a webhook delivery really comes from Stripe, recently, before anything acts on it.

Stripe signs each delivery with the endpoint's secret: the ``Stripe-Signature`` header is
``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`` (more than one ``v1`` while a
secret is being rolled; ``v0`` and other schemes are ignored). The signature covers the *exact* bytes
Stripe sent, so the route must hand over the raw request body: a body parsed and re-serialised
(``json.dumps(json.loads(body))``) no longer matches, by design.

:func:`verify_event` uses the stripe SDK's own check (:meth:`stripe.WebhookSignature.verify_header`)
for the HMAC, and applies the timestamp tolerance itself so tests can pin the clock (``now=``): the SDK
reads ``time.time()`` and only refuses *old* timestamps, whereas here a timestamp more than
``tolerance`` seconds away from ``now`` in either direction is refused (a captured request replayed
later, or a forged future timestamp meant to outlive the window).

The tolerance stops late replays; a replay *inside* the window carries the same event id and the same
signature timestamp, which is what :attr:`VerifiedEvent.replay_key` exposes for the store to refuse.
Stripe's own retries of a failed delivery re-sign with a new timestamp (same event id), so processing
must also be idempotent per event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import stripe

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "VerifiedEvent",
    "WebhookRejected",
    "sign",
    "verify_event",
]

DEFAULT_TOLERANCE = 300  # seconds, Stripe's documented default
SIGNATURE_HEADER = "Stripe-Signature"


class WebhookRejected(Exception):
    """The delivery must not be processed; answer 400. ``reason`` is one of the class constants."""

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    TIMESTAMP_OUT_OF_TOLERANCE = "timestamp_out_of_tolerance"
    NOT_AN_EVENT = "not_an_event"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VerifiedEvent:
    """A Stripe event whose signature and timestamp were checked.

    ``object`` is ``data.object`` (plain JSON; fractional numbers parsed as Decimal, never float),
    ``previous_attributes`` is ``data.previous_attributes`` for ``*.updated``-style events, and
    ``payload`` the exact body received (keep it for audit; it is what the signature covers).
    """

    id: str
    type: str
    created: int
    api_version: str | None
    livemode: bool
    object: dict[str, Any]
    signature_timestamp: int
    raw_signature: str
    previous_attributes: dict[str, Any] | None = None
    payload: bytes = field(default=b"", repr=False)

    @property
    def replay_key(self) -> tuple[str, int]:
        """``(event id, signature timestamp)``: seen twice inside the tolerance window = a replay."""
        return self.id, self.signature_timestamp


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` at ``timestamp``."""
    signed = str(int(timestamp)).encode() + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={int(timestamp)},v1={digest}"


def _signature_timestamp(header: str) -> int:
    """The single ``t=`` of the header, provided at least one ``v1=`` is present."""
    timestamps: list[str] = []
    has_v1 = False
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise WebhookRejected(WebhookRejected.MALFORMED_SIGNATURE, "header item without '='")
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and value:
            has_v1 = True
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise WebhookRejected(WebhookRejected.MALFORMED_SIGNATURE, "expected exactly one numeric t=")
    if not has_v1:
        raise WebhookRejected(WebhookRejected.MALFORMED_SIGNATURE, "no v1 signature")
    return int(timestamps[0])


def verify_event(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: int | None = None,
) -> VerifiedEvent:
    """Check ``payload`` (the raw body) against ``signature_header`` and return the event.

    Raises :class:`WebhookRejected` for a missing or garbled header, a signature that matches none of
    the ``v1`` values (forged, wrong secret, body altered or re-serialised), a timestamp further than
    ``tolerance`` seconds from ``now`` (default: the current time), or a body that is not a Stripe
    event. ``secret`` is the endpoint's ``whsec_...`` value; an empty one is a configuration error
    (ValueError), not a rejected delivery.
    """
    if not secret or not secret.strip():
        raise ValueError("the webhook signing secret is empty")
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    if not signature_header or not signature_header.strip():
        raise WebhookRejected(WebhookRejected.MISSING_SIGNATURE, f"no {SIGNATURE_HEADER} header")
    timestamp = _signature_timestamp(signature_header)
    body = bytes(payload)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected(WebhookRejected.NOT_AN_EVENT, "body is not UTF-8") from None
    try:
        stripe.WebhookSignature.verify_header(body, signature_header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        raise WebhookRejected(WebhookRejected.BAD_SIGNATURE, "no v1 signature matches the body") from None
    current = int(time.time()) if now is None else int(now)
    if abs(current - timestamp) > tolerance:
        raise WebhookRejected(
            WebhookRejected.TIMESTAMP_OUT_OF_TOLERANCE,
            f"signed at {timestamp}, now {current}, tolerance {tolerance}s",
        )
    return _parse_event(body, timestamp, signature_header)


def _parse_event(body: bytes, timestamp: int, header: str) -> VerifiedEvent:
    def reject(detail: str) -> WebhookRejected:
        return WebhookRejected(WebhookRejected.NOT_AN_EVENT, detail)

    try:
        envelope = json.loads(body, parse_float=Decimal)
    except ValueError:
        raise reject("body is not JSON") from None
    if not isinstance(envelope, dict) or envelope.get("object") != "event":
        raise reject('not an object with "object": "event"')
    event_id, event_type, created = envelope.get("id"), envelope.get("type"), envelope.get("created")
    data = envelope.get("data")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise reject("event without id or type")
    if isinstance(created, bool) or not isinstance(created, int):
        raise reject("event without an integer created")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise reject("event without data.object")
    api_version = envelope.get("api_version")
    previous = data.get("previous_attributes")
    return VerifiedEvent(
        id=event_id,
        type=event_type,
        created=created,
        api_version=api_version if isinstance(api_version, str) else None,
        livemode=envelope.get("livemode") is True,
        object=data["object"],
        signature_timestamp=timestamp,
        raw_signature=header,
        previous_attributes=previous if isinstance(previous, dict) else None,
        payload=body,
    )
