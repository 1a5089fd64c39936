"""A loopback emulator of the slice of Stripe billsync uses, and of Stripe's webhook deliveries.

API (form-encoded requests, JSON answers, ``Authorization: Bearer <secret key>``):

- ``POST /v1/payment_intents`` (``confirm=true``, ``off_session=true``): succeeds, or fails the way the
  seeded card is told to (:meth:`StripeSandbox.seed_customer` ``fail_code=``) with Stripe's 402
  ``card_error`` body, the PaymentIntent left in ``requires_payment_method``;
- ``GET /v1/payment_intents/{id}``, ``GET /v1/customers/{id}``, ``GET /v1/charges/{id}``;
- ``POST /v1/refunds`` (partial or full, never more than what is left).

Idempotency as Stripe does it for v1 POSTs: the first answer to a key is saved once the endpoint
started executing (successes and card declines; not validation errors) and replayed for the same key
and parameters with ``Idempotent-Replayed: true``; the same key with other parameters gets the 400
``idempotency_error``. Stripe's test payment methods work too (``pm_card_visa``,
``pm_card_chargeDeclinedInsufficientFunds``...).

Response shapes are Stripe's fixtures (github.com/stripe/openapi ``fixtures3.json``, MIT) with the
placeholder values made consistent (a succeeded PaymentIntent has ``amount_received`` and a
``latest_charge``, no ``next_action``). Error texts are Stripe's where documented; the few that are
not (confirming without a payment method, refunding a PaymentIntent without a successful charge) are
approximations and say so in a comment.

Webhooks: with ``webhook_url`` and ``webhook_secret`` every PaymentIntent confirmation queues a
``payment_intent.succeeded`` or ``payment_intent.payment_failed`` event and every refund a
``charge.refunded`` one, shaped like Stripe's event envelope and pretty-printed like Stripe's bodies,
signed at delivery time (``Stripe-Signature``, :func:`connectors.stripe.webhook.sign`). With
``auto_deliver`` (default) a background thread POSTs them right away, so, as with the real Stripe,
a webhook may arrive before the API answer it stems from; otherwise they wait for
:meth:`StripeSandbox.deliver_pending`. A delivery that fails stays pending (Stripe retries for days).
:meth:`StripeSandbox.send_event` signs and posts any event (``invoice.paid`` for the demo).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import requests

from connectors.http import DefaultsSession
from connectors.sandbox import Handler, Request, Response, Sandbox
from connectors.stripe.webhook import SIGNATURE_HEADER, sign

__all__ = ["API_VERSION", "DECLINES", "Delivery", "StripeSandbox"]

#: stripe-python 16.1.0's pinned API version, used in responses and event envelopes
API_VERSION = "2026-10-28.endive"
DEFAULT_API_KEY = "sk_test_billsync_sandbox_0000000000000000"
DEFAULT_WEBHOOK_TYPES = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded", "invoice.paid"}
)

_ALNUM = string.ascii_letters + string.digits
_REQUEST_ID = "x-billsync-sandbox-request-id"  # set on each Request so events can name it
_DOCS = "https://stripe.com/docs/error-codes/"


@dataclass(frozen=True)
class _Decline:
    code: str
    decline_code: str
    message: str
    last4: str  # the Stripe test card that produces it


#: ``fail_code`` -> Stripe's decline (https://docs.stripe.com/testing#declined-payments).
DECLINES: dict[str, _Decline] = {
    "generic_decline": _Decline("card_declined", "generic_decline", "Your card was declined.", "0002"),
    "insufficient_funds": _Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds.", "9995"
    ),
    "lost_card": _Decline("card_declined", "lost_card", "Your card was declined.", "9987"),
    "stolen_card": _Decline("card_declined", "stolen_card", "Your card was declined.", "9979"),
    "expired_card": _Decline("expired_card", "expired_card", "Your card has expired.", "0069"),
    "incorrect_cvc": _Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "0127"
    ),
    "processing_error": _Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        "0119",
    ),
    "authentication_required": _Decline(
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        "3155",
    ),
}
DECLINES["card_declined"] = DECLINES["generic_decline"]

#: Stripe's test PaymentMethods (https://docs.stripe.com/testing) -> fail_code (None: succeeds).
TEST_PAYMENT_METHODS: dict[str, str | None] = {
    "pm_card_visa": None,
    "pm_card_mastercard": None,
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedLostCard": "lost_card",
    "pm_card_chargeDeclinedStolenCard": "stolen_card",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
    "pm_card_authenticationRequired": "authentication_required",
}


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery attempt: ``status`` None means no HTTP answer (``error`` says why)."""

    event_id: str
    event_type: str
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Card:
    id: str
    customer: str | None
    fail_code: str | None
    last4: str
    brand: str = "visa"


@dataclass
class _Saved:
    """An idempotent result: the request it answered and the answer."""

    fingerprint: str
    response: Response
    request_id: str


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _decode_form(body: bytes) -> dict[str, Any]:
    """``a=1&metadata[k]=v&expand[0]=x`` -> ``{"a": "1", "metadata": {"k": "v"}, "expand": {"0": "x"}}``."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        head, _, rest = key.partition("[")
        path = [head] + ([part.rstrip("]") for part in rest.split("[")] if rest else [])
        target = result
        for part in path[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[path[-1]] = value
    return result


class _StripeError(Exception):
    """An error answer in Stripe's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        error: dict[str, Any] = {}
        if code:
            error["code"] = code
            error["doc_url"] = _DOCS + code.replace("_", "-")
        error["message"] = message
        if param:
            error["param"] = param
        error.update(extra or {})
        error["type"] = type
        self.status = status
        self.body = {"error": error}


def _missing(param: str) -> _StripeError:
    return _StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _no_such(kind: str, value: str, param: str) -> _StripeError:
    return _StripeError(400, f"No such {kind}: '{value}'", code="resource_missing", param=param)


def _positive_int(params: Mapping[str, Any], name: str) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        raise _missing(name)
    text = str(raw)
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise _StripeError(
            400, f"Invalid positive integer: {text}", code="parameter_invalid_integer", param=name
        )
    return int(text)


def _flag(params: Mapping[str, Any], name: str) -> bool:
    return str(params.get(name, "")).lower() == "true"


class StripeSandbox(Sandbox):
    """The emulated Stripe account (see the module docstring)."""

    system = "stripe"

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_verify: bool | str = True,
        webhook_timeout: float = 5.0,
        webhook_types: Collection[str] | None = None,
        auto_deliver: bool = True,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if webhook_url and not webhook_secret:
            raise ValueError("webhook_url needs webhook_secret (Stripe signs every delivery)")
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_verify = webhook_verify
        self.webhook_timeout = webhook_timeout
        self.webhook_types = frozenset(webhook_types or DEFAULT_WEBHOOK_TYPES)
        self.auto_deliver = auto_deliver
        self.clock = clock
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._cards: dict[str, _Card] = {}
        self._saved: dict[str, _Saved] = {}
        #: every event created, oldest first (envelopes as delivered)
        self.events: list[dict[str, Any]] = []
        #: every delivery attempt, oldest first
        self.deliveries: list[Delivery] = []
        self._bodies: dict[str, bytes] = {}
        self._pending: list[str] = []
        self._attempts: dict[str, int] = {}
        self._delivery_lock = threading.Lock()
        self._delivery_threads: list[threading.Thread] = []
        self._webhook_session: requests.Session | None = None
        routes: list[tuple[str, str, Handler]] = [
            ("POST", r"/v1/payment_intents", self._create_payment_intent),
            ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", self._get_payment_intent),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", self._get_customer),
            ("GET", r"/v1/charges/(?P<id>[^/]+)", self._get_charge),
            ("POST", r"/v1/refunds", self._create_refund),
        ]
        for method, pattern, handler in routes:
            self.route(method, pattern, self._api(handler))

    # -- set-up helpers --------------------------------------------------------------------------
    def seed_customer(
        self,
        customer_id: str,
        default_payment_method: str | None = "pm_card_visa",
        fail_code: str | None = None,
        *,
        email: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """A customer whose default card succeeds, or is declined with ``fail_code`` (a key of
        :data:`DECLINES`: ``card_declined``, ``insufficient_funds``, ``expired_card``...)."""
        if fail_code is not None and fail_code not in DECLINES:
            raise ValueError(f"fail_code must be one of {sorted(DECLINES)}")
        with self._lock:
            if default_payment_method is not None:
                self._cards[default_payment_method] = _Card(
                    default_payment_method,
                    customer_id,
                    fail_code,
                    DECLINES[fail_code].last4 if fail_code else "4242",
                )
            customer = _customer_template(customer_id, default_payment_method, int(self.clock()))
            customer.update(email=email, name=name)
            self.customers[customer_id] = customer
            return copy.deepcopy(customer)

    def connector_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~connectors.stripe.client.StripeConnector` to use this sandbox."""
        return {
            "api_key": self.api_key,
            "api_base": self.base_url,
            "ca_bundle": str(self.cert_file) if self.cert_file else None,
        }

    # -- HTTP plumbing ---------------------------------------------------------------------------
    def _api(self, handler: Handler) -> Handler:
        """Authentication, Stripe's error bodies, idempotency and the common headers around a route."""

        def serve(request: Request) -> Response:
            request_id = _new_id("req", 14)
            request.headers[_REQUEST_ID] = request_id
            headers = {
                "Request-Id": request_id,
                "Stripe-Version": request.headers.get("stripe-version") or API_VERSION,
            }
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            try:
                self._authenticate(request)
                if key is None:
                    response = handler(request)
                else:
                    headers["Idempotency-Key"] = key
                    response = self._idempotent(request, key, handler, request_id, headers)
            except _StripeError as error:
                response = Response(error.status, error.body)
            response.headers = {**headers, **response.headers}
            return response

        return serve

    def _authenticate(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().partition(":")[0]
            except ValueError:
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        if not credential:
            raise _StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/.",
            )
        if credential != self.api_key:
            masked = credential[:8] + "*" * max(0, len(credential) - 12) + credential[-4:]
            raise _StripeError(401, f"Invalid API Key provided: {masked}")

    def _idempotent(
        self, request: Request, key: str, handler: Handler, request_id: str, headers: dict[str, str]
    ) -> Response:
        fingerprint = hashlib.sha256(
            request.method.encode()
            + b" "
            + request.path.encode()
            + b"?"
            + json.dumps(sorted(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))).encode()
        ).hexdigest()
        with self._lock:
            saved = self._saved.get(key)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    raise _StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                        type="idempotency_error",
                    )
                headers["Idempotent-Replayed"] = "true"
                headers["Original-Request"] = saved.request_id
                return Response(saved.response.status, copy.deepcopy(saved.response.body))
            response = handler(request)  # a _StripeError (validation) propagates: nothing is saved
            self._saved[key] = _Saved(
                fingerprint, Response(response.status, copy.deepcopy(response.body)), request_id
            )
            headers["Original-Request"] = request_id
            return response

    def fault_response(self, kind: str, request: Request) -> Response:
        """Stripe's own bodies for a throttle (429, ``rate_limit``; no ``Retry-After``) and 500/503."""
        headers = {"Request-Id": _new_id("req", 14)}
        if kind == "throttle":
            error = _StripeError(
                429,
                "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
                "requests.",
                code="rate_limit",
            )
            error.body["error"].pop("doc_url", None)
            return Response(429, error.body, headers=headers)
        body = {"error": {"message": "An unknown error occurred", "type": "api_error"}}
        return Response(500 if kind == "server_error" else 503, body, headers=headers)

    # -- routes ----------------------------------------------------------------------------------
    def _get_customer(self, request: Request) -> Response:
        assert request.match is not None
        with self._lock:
            customer = self.customers.get(request.match["id"])
            if customer is None:
                raise _no_such("customer", request.match["id"], "id")
            return Response(200, copy.deepcopy(customer))

    def _get_payment_intent(self, request: Request) -> Response:
        assert request.match is not None
        with self._lock:
            intent = self.payment_intents.get(request.match["id"])
            if intent is None:
                raise _no_such("payment_intent", request.match["id"], "intent")
            return Response(200, copy.deepcopy(intent))

    def _get_charge(self, request: Request) -> Response:
        assert request.match is not None
        with self._lock:
            charge = self.charges.get(request.match["id"])
            if charge is None:
                raise _no_such("charge", request.match["id"], "id")
            return Response(200, copy.deepcopy(charge))

    def _card(self, payment_method: str) -> _Card:
        card = self._cards.get(payment_method)
        if card is None and payment_method in TEST_PAYMENT_METHODS:
            fail_code = TEST_PAYMENT_METHODS[payment_method]
            card = _Card(payment_method, None, fail_code, DECLINES[fail_code].last4 if fail_code else "4242")
            if payment_method == "pm_card_mastercard":
                card.brand, card.last4 = "mastercard", "4444"
        if card is None:
            raise _no_such("PaymentMethod", payment_method, "payment_method")
        return card

    def _create_payment_intent(self, request: Request) -> Response:
        params = _decode_form(request.body)
        amount = _positive_int(params, "amount")
        currency = str(params.get("currency") or "").lower()
        if not currency:
            raise _missing("currency")
        if len(currency) != 3 or not currency.isalpha():
            raise _StripeError(
                400, f"Invalid currency: {currency}.", code="parameter_invalid_string", param="currency"
            )
        customer = params.get("customer") or None
        with self._lock:
            if customer is not None and customer not in self.customers:
                raise _no_such("customer", str(customer), "customer")
            method = params.get("payment_method") or None
            card = self._card(str(method)) if method else None
            confirm = _flag(params, "confirm")
            if confirm and card is None:
                # Approximation: Stripe's exact wording for this case is not documented.
                raise _StripeError(
                    400,
                    "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm "
                    "the PaymentIntent, specify a payment method attached to the customer.",
                    code="payment_intent_unexpected_state",
                )
            now = int(self.clock())
            intent = _payment_intent_template(_new_id("pi"), amount, currency, now)
            metadata = params.get("metadata")
            intent.update(
                customer=customer,
                description=params.get("description") or None,
                metadata=dict(metadata) if isinstance(metadata, dict) else {},
                payment_method=card.id if card else None,
                status="requires_confirmation" if card else "requires_payment_method",
            )
            if not confirm:
                self.payment_intents[intent["id"]] = intent
                return Response(200, copy.deepcopy(intent))
            assert card is not None
            charge = _charge_template(_new_id("ch"), intent, card, now)
            self.charges[charge["id"]] = charge
            intent["latest_charge"] = charge["id"]
            decline = DECLINES[card.fail_code] if card.fail_code else None
            if decline is None:
                intent.update(status="succeeded", amount_received=amount)
                self.payment_intents[intent["id"]] = intent
                self._queue_event("payment_intent.succeeded", intent, request)
                return Response(200, copy.deepcopy(intent))
            failure = {
                "charge": charge["id"],
                "code": decline.code,
                "decline_code": decline.decline_code,
                "doc_url": _DOCS + decline.code.replace("_", "-"),
                "message": decline.message,
                "payment_method": _payment_method_object(card, now),
                "type": "card_error",
            }
            charge.update(
                status="failed",
                paid=False,
                captured=False,
                amount_captured=0,
                failure_code=decline.code,
                failure_message=decline.message,
                outcome={
                    "network_status": "declined_by_network",
                    "reason": decline.decline_code,
                    "risk_level": "normal",
                    "seller_message": "The bank did not return any further details with this decline.",
                    "type": "issuer_declined",
                },
            )
            intent.update(status="requires_payment_method", last_payment_error=failure)
            self.payment_intents[intent["id"]] = intent
            self._queue_event("payment_intent.payment_failed", intent, request)
            error = dict(failure)
            error["payment_intent"] = copy.deepcopy(intent)
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{_new_id('req', 14)}"
            return Response(402, {"error": dict(sorted(error.items()))})

    def _create_refund(self, request: Request) -> Response:
        params = _decode_form(request.body)
        with self._lock:
            charge_id = params.get("charge") or None
            intent_id = params.get("payment_intent") or None
            if intent_id:
                intent = self.payment_intents.get(str(intent_id))
                if intent is None:
                    raise _no_such("payment_intent", str(intent_id), "payment_intent")
                charge_id = intent.get("latest_charge") if intent["status"] == "succeeded" else None
                if not charge_id:
                    # Approximation: Stripe's exact wording for this case is not documented.
                    raise _StripeError(
                        400,
                        f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                        code="charge_not_refundable",
                    )
            if not charge_id:
                raise _missing("charge")
            charge = self.charges.get(str(charge_id))
            if charge is None:
                raise _no_such("charge", str(charge_id), "charge")
            remaining = charge["amount_captured"] - charge["amount_refunded"]
            if remaining <= 0:
                raise _StripeError(
                    400, f"Charge {charge_id} has already been refunded.", code="charge_already_refunded"
                )
            amount = _positive_int(params, "amount") if params.get("amount") else remaining
            if amount > remaining:
                raise _StripeError(
                    400,
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                    code="amount_too_large",
                    param="amount",
                )
            now = int(self.clock())
            refund = _refund_template(_new_id("re"), charge, amount, now)
            self.refunds[refund["id"]] = refund
            previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
            charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
            self._queue_event("charge.refunded", charge, request, previous_attributes=previous)
            return Response(200, copy.deepcopy(refund))

    # -- webhooks --------------------------------------------------------------------------------
    def _envelope(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        previous_attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
        if previous_attributes:
            data["previous_attributes"] = dict(previous_attributes)
        return {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(self.clock()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.webhook_url else 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }

    def _record(self, envelope: dict[str, Any]) -> None:
        """Keep the event and, when the endpoint listens to its type, queue its delivery."""
        with self._lock:
            self.events.append(envelope)
            if self.webhook_url and envelope["type"] in self.webhook_types:
                self._bodies[envelope["id"]] = json.dumps(envelope, indent=2).encode("utf-8")
                self._pending.append(envelope["id"])

    def _queue_event(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        request: Request,
        *,
        previous_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        envelope = self._envelope(
            event_type,
            obj,
            request_id=request.headers.get(_REQUEST_ID),
            idempotency_key=request.headers.get("idempotency-key"),
            previous_attributes=previous_attributes,
        )
        self._record(envelope)
        if self.auto_deliver and self.webhook_url:
            thread = threading.Thread(target=self.deliver_pending, name="stripe-webhooks", daemon=True)
            with self._lock:
                self._delivery_threads = [t for t in self._delivery_threads if t.is_alive()] + [thread]
            thread.start()

    @property
    def pending(self) -> list[str]:
        """Ids of the events not yet delivered successfully, oldest first."""
        with self._lock:
            return list(self._pending)

    def event_body(self, event_id: str) -> bytes:
        """The exact bytes delivered (and signed) for ``event_id``."""
        with self._lock:
            return self._bodies[event_id]

    def deliver_pending(self) -> list[Delivery]:
        """POST every pending event once, oldest first; failed ones stay pending for the next call."""
        with self._delivery_lock:
            results = [self._deliver(event_id) for event_id in self.pending]
        return results

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait for the background deliveries; True when nothing is left pending."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._delivery_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not self.pending

    def send_event(
        self,
        event_type: str,
        obj: Mapping[str, Any],
        *,
        previous_attributes: Mapping[str, Any] | None = None,
    ) -> Delivery:
        """Sign and POST an event of any type now (e.g. ``invoice.paid`` with an invoice object)."""
        if not self.webhook_url:
            raise ValueError("send_event needs webhook_url and webhook_secret")
        envelope = self._envelope(event_type, obj, previous_attributes=previous_attributes)
        with self._lock:
            self.events.append(envelope)
            self._bodies[envelope["id"]] = json.dumps(envelope, indent=2).encode("utf-8")
            self._pending.append(envelope["id"])
        with self._delivery_lock:
            return self._deliver(envelope["id"])

    def _deliver(self, event_id: str) -> Delivery:
        assert self.webhook_url is not None and self.webhook_secret is not None
        with self._lock:
            body = self._bodies[event_id]
            event_type = next(e["type"] for e in self.events if e["id"] == event_id)
            attempt = self._attempts[event_id] = self._attempts.get(event_id, 0) + 1
            if self._webhook_session is None:
                self._webhook_session = DefaultsSession(
                    timeout=self.webhook_timeout, verify=self.webhook_verify
                )
            session = self._webhook_session
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Cache-Control": "no-cache",
            SIGNATURE_HEADER: sign(body, self.webhook_secret, int(self.clock())),
        }
        try:
            answer = session.post(self.webhook_url, data=body, headers=headers)
            delivery = Delivery(event_id, event_type, attempt, answer.status_code)
        except requests.RequestException as exc:
            delivery = Delivery(event_id, event_type, attempt, None, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.deliveries.append(delivery)
            if delivery.ok and event_id in self._pending:
                self._pending.remove(event_id)
        return delivery

    def stop(self) -> None:
        self.drain(timeout=self.webhook_timeout)
        super().stop()
        if self._webhook_session is not None:
            self._webhook_session.close()
            self._webhook_session = None


# -- object templates (fixtures3.json shapes, placeholders made consistent) ----------------------------


def _customer_template(customer_id: str, payment_method: str | None, now: int) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": now,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(7)),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _payment_intent_template(intent_id: str, amount: int, currency: str, now: int) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{_new_id('x', 25)[2:]}",
        "confirmation_method": "automatic",
        "created": now,
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }


def _payment_method_object(card: _Card, now: int) -> dict[str, Any]:
    return {
        "id": card.id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": card.brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 8,
            "exp_year": 2030,
            "funding": "credit",
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": now,
        "customer": card.customer,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def _charge_template(charge_id: str, intent: Mapping[str, Any], card: _Card, now: int) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"],
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": _new_id("txn"),
        "billing_details": _payment_method_object(card, now)["billing_details"],
        "calculated_statement_descriptor": "BILLSYNC",
        "captured": True,
        "created": now,
        "currency": intent["currency"],
        "customer": intent.get("customer"),
        "description": intent.get("description"),
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": copy.deepcopy(intent.get("metadata") or {}),
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": intent["id"],
        "payment_method": card.id,
        "payment_method_details": {
            "card": {
                "brand": card.brand,
                "country": "US",
                "exp_month": 8,
                "exp_year": 2030,
                "funding": "credit",
                "last4": card.last4,
                "network": card.brand,
            },
            "type": "card",
        },
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


def _refund_template(refund_id: str, charge: Mapping[str, Any], amount: int, now: int) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": _new_id("txn"),
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "customer": charge.get("customer"),
        "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": {},
        "payment_intent": charge.get("payment_intent"),
        "payment_method": charge.get("payment_method"),
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
