"""Collect invoice payments with Stripe PaymentIntents, errors in billsync's taxonomy.

What it adds to stripe-python, and why:

* one charge per invoice, however often the job is retried: every write carries the caller's
  idempotency key (``Idempotency-Key``), so a retry after a timeout gets Stripe's saved answer instead
  of charging the card again. Stripe compares the parameters of a replay with the original, so the
  same key must always travel with the same amount, currency and payment method (pass
  ``payment_method`` to pin it: a customer who changes cards between two attempts otherwise turns the
  retry into an ``idempotency_error``);
* timeout and TLS trust per connector: the SDK reads its CA bundle from the global
  ``stripe.ca_bundle_path``, so the requests session here substitutes ``ca_bundle`` (the sandbox's
  self-signed certificate, a corporate CA) on every verified request and ignores proxy/CA
  environment variables, like :class:`connectors.http.DefaultsSession`;
* exact money: ``Decimal`` in, Stripe's minor units out via :mod:`connectors.stripe.amounts` (no
  rounding; an amount Stripe cannot represent is refused before any call);
* errors translated once (:func:`translate_error`): a declined card is a :class:`CardDeclinedError`
  (a RecordError: retrying will not make the issuer say yes), a lost answer to a write is an
  ``OutcomeUnknownError`` (retry with the *same* key), throttling a ``RateLimitedError``.

``max_network_retries`` is the SDK's own retry (network errors, 409 and 429 when Stripe says so);
0 by default because the job layer retries with the same idempotency key. ``api_calls`` counts the
HTTP requests sent, retries included. A connector is not thread-safe; use one per worker thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import requests
import stripe

from connectors.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.http import DefaultsSession
from connectors.retry import parse_retry_after
from connectors.stripe.amounts import from_minor_units, to_minor_units
from connectors.stripe.events import INVOICE_NUMBER_KEY

__all__ = [
    "SYSTEM",
    "CardDeclinedError",
    "CollectionResult",
    "IdempotencyConflictError",
    "RefundResult",
    "StripeConnector",
    "translate_error",
]

SYSTEM = "stripe"
_MAX_IDEMPOTENCY_KEY = 255  # Stripe's documented limit
_SECRET_KEY = re.compile(r"\b([sr]k_(?:test|live)_)[A-Za-z0-9*]+")


class CardDeclinedError(RecordError):
    """The card was refused (402 ``card_error``): not retryable as is; ask for another card.

    ``code`` is Stripe's error code (``card_declined``, ``expired_card``, ``authentication_required``),
    ``decline_code`` the issuer's reason (``insufficient_funds``...), and ``payment_intent_id`` the
    PaymentIntent left in ``requires_payment_method``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        decline_code: str | None,
        payment_intent_id: str | None,
        charge_id: str | None,
    ) -> None:
        super().__init__(message, code=code, system=SYSTEM)
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id
        self.charge_id = charge_id


class IdempotencyConflictError(RecordError):
    """The idempotency key was already used with different parameters (amount, payment method...)."""


@dataclass(frozen=True)
class CollectionResult:
    """What Stripe answered to a collection; ``replayed`` means it was its saved earlier answer."""

    payment_intent_id: str
    status: str
    amount: Decimal
    currency: str
    failure_code: str | None = None
    failure_message: str | None = None
    decline_code: str | None = None
    charge_id: str | None = None
    replayed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str
    amount: Decimal
    currency: str
    charge_id: str | None
    payment_intent_id: str | None


def _redact(text: str) -> str:
    return _SECRET_KEY.sub(r"\1****", text)


def _error_body(exc: stripe.StripeError) -> Mapping[str, Any]:
    body = exc.json_body
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _ref(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def translate_error(exc: stripe.StripeError, *, write: bool) -> ConnectorError:
    """The taxonomy class for a stripe-python exception; ``write``: the call may have changed state."""
    body = _error_body(exc)
    message = _redact(str(body.get("message") or exc.user_message or type(exc).__name__))
    code = body.get("code") if isinstance(body.get("code"), str) else exc.code
    status = exc.http_status
    if isinstance(exc, stripe.CardError):
        return CardDeclinedError(
            message,
            code=code,
            decline_code=body.get("decline_code") if isinstance(body.get("decline_code"), str) else None,
            payment_intent_id=_ref(body.get("payment_intent")),
            charge_id=_ref(body.get("charge")),
        )
    if isinstance(exc, stripe.RateLimitError):
        retry_after = parse_retry_after((exc.headers or {}).get("Retry-After"))
        return RateLimitedError(message, retry_after=retry_after, code=code or "rate_limit", system=SYSTEM)
    if isinstance(exc, stripe.IdempotencyError):
        return IdempotencyConflictError(message, code="idempotency_error", system=SYSTEM)
    if isinstance(exc, stripe.AuthenticationError):
        return AuthError(message, code=code, system=SYSTEM)
    if isinstance(exc, stripe.PermissionError):
        return FatalError(message, code=code, system=SYSTEM)
    if isinstance(exc, stripe.InvalidRequestError):
        return RecordError(message, code=code, system=SYSTEM)
    if isinstance(exc, stripe.APIConnectionError):
        return _translate_transport(exc, write=write)
    if isinstance(exc, stripe.APIError) and (status is None or status >= 500 or status == 409):
        if write and status != 409:  # Stripe saved this 500 under the key: a retry replays it
            return OutcomeUnknownError(
                f"{message} (HTTP {status}); the payment may or may not have happened: look it up",
                code=code,
                system=SYSTEM,
            )
        return RetryableError(f"{message} (HTTP {status})", code=code, system=SYSTEM)
    return FatalError(f"{type(exc).__name__}: {message}", code=code, system=SYSTEM)


def _translate_transport(exc: stripe.APIConnectionError, *, write: bool) -> ConnectorError:
    cause = exc.__cause__
    name = type(cause).__name__ if cause is not None else type(exc).__name__
    if isinstance(cause, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(cause):
        return FatalError(f"{name}: TLS verification failed (check ca_bundle)", system=SYSTEM)
    not_sent = isinstance(cause, requests.ConnectTimeout) or (
        isinstance(cause, requests.ConnectionError) and "NewConnectionError" in repr(cause.args)
    )
    if write and not not_sent:
        return OutcomeUnknownError(
            f"{name} after the request was sent; retry with the same idempotency key", system=SYSTEM
        )
    return RetryableError(f"{name}: Stripe did not answer or refused the connection", system=SYSTEM)


class _StripeSession(DefaultsSession):
    """The session under the SDK: our CA bundle instead of the global one, and a request counter."""

    def __init__(self, *, timeout: float, ca_bundle: str | None) -> None:
        super().__init__(timeout=timeout, verify=ca_bundle or True)
        self.ca_bundle = ca_bundle
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        # stripe's RequestsClient passes verify=stripe.ca_bundle_path (or False if told not to verify)
        if self.ca_bundle is not None and kwargs.get("verify") is not False:
            kwargs["verify"] = self.ca_bundle
        with self._count_lock:
            self.requests_sent += 1
        return super().request(method, url, *args, **kwargs)


class StripeConnector:
    """PaymentIntents for invoice collection (see the module docstring)."""

    system = SYSTEM

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 30,
        max_network_retries: int = 0,
        ca_bundle: str | None = None,
        stripe_version: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Stripe secret key is required")
        self._session = _StripeSession(timeout=timeout, ca_bundle=ca_bundle)
        http_client = stripe.RequestsClient(timeout=timeout, session=self._session)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=http_client,
            max_network_retries=max_network_retries,
            stripe_version=stripe_version,
        )

    @property
    def api_calls(self) -> int:
        """HTTP requests sent to Stripe so far (SDK retries included)."""
        return self._session.requests_sent

    def close(self) -> None:
        self._session.close()

    # -- reads -----------------------------------------------------------------------------------
    def default_payment_method(self, customer: str) -> str:
        """The customer's ``invoice_settings.default_payment_method`` (or legacy ``default_source``)."""
        try:
            found = self._client.v1.customers.retrieve(customer).to_dict()
        except stripe.StripeError as exc:
            raise translate_error(exc, write=False) from exc
        if found.get("deleted"):
            raise RecordError(f"customer {customer} is deleted", code="resource_missing", system=SYSTEM)
        settings = found.get("invoice_settings")
        method = _ref(settings.get("default_payment_method")) if isinstance(settings, Mapping) else None
        method = method or _ref(found.get("default_source"))
        if method is None:
            raise RecordError(
                f"customer {customer} has no default payment method",
                code="no_default_payment_method",
                system=SYSTEM,
            )
        return method

    def retrieve(self, payment_intent_id: str) -> CollectionResult:
        """The current state of a PaymentIntent (e.g. after an OutcomeUnknownError and a webhook)."""
        try:
            intent = self._client.v1.payment_intents.retrieve(payment_intent_id)
        except stripe.StripeError as exc:
            raise translate_error(exc, write=False) from exc
        return _result(intent)

    # -- writes ----------------------------------------------------------------------------------
    def collect(
        self,
        *,
        customer: str,
        amount: Decimal,
        currency: str,
        invoice_number: str,
        idempotency_key: str,
        payment_method: str | None = None,
        description: str | None = None,
    ) -> CollectionResult:
        """Charge ``amount`` to the customer's saved card, off-session, once per ``idempotency_key``.

        Raises :class:`CardDeclinedError` when the card is refused, ``OutcomeUnknownError`` when the
        answer was lost (retry with the same key), ``RateLimitedError``, ``AuthError``, ``RecordError``
        (unknown customer, no default payment method, invalid amount, key reused with other
        parameters). A result that is not ``succeeded`` (``processing`` for slower methods) settles
        later through the ``payment_intent.*`` webhook.
        """
        _check_key(idempotency_key)
        if not invoice_number:
            raise ValueError("invoice_number is required (it is how the webhook finds the invoice)")
        minor = _minor_units(amount, currency)
        method = payment_method or self.default_payment_method(customer)
        params: dict[str, Any] = {
            "amount": minor,
            "currency": currency.strip().lower(),
            "customer": customer,
            "payment_method": method,
            "confirm": True,
            "off_session": True,
            "metadata": {INVOICE_NUMBER_KEY: invoice_number},
        }
        if description:
            params["description"] = description
        try:
            intent = self._client.v1.payment_intents.create(
                cast(Any, params), {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise translate_error(exc, write=True) from exc
        return _result(intent)

    def refund(
        self,
        payment_intent: str,
        amount: Decimal | None,
        *,
        currency: str,
        idempotency_key: str,
    ) -> RefundResult:
        """Refund ``amount`` (None: the rest) of a PaymentIntent; ``currency`` must be the payment's.

        The PaymentIntent is read first so a wrong ``currency`` cannot refund 100x the amount (JPY has
        no minor unit, USD has cents).
        """
        _check_key(idempotency_key)
        intent = self.retrieve(payment_intent)
        if intent.currency != currency.strip().upper():
            raise RecordError(
                f"{payment_intent} is in {intent.currency}, not {currency.upper()}",
                code="currency_mismatch",
                system=SYSTEM,
            )
        params: dict[str, Any] = {"payment_intent": payment_intent}
        if amount is not None:
            params["amount"] = _minor_units(amount, currency)
        try:
            refund = self._client.v1.refunds.create(cast(Any, params), {"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise translate_error(exc, write=True) from exc
        data = refund.to_dict()
        code = str(data.get("currency") or currency).upper()
        return RefundResult(
            refund_id=str(data["id"]),
            status=str(data.get("status")),
            amount=from_minor_units(int(data["amount"]), code),
            currency=code,
            charge_id=_ref(data.get("charge")),
            payment_intent_id=_ref(data.get("payment_intent")),
        )


def _check_key(key: str) -> None:
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"idempotency_key must be 1..{_MAX_IDEMPOTENCY_KEY} characters")


def _minor_units(amount: Decimal, currency: str) -> int:
    try:
        minor = to_minor_units(amount, currency)
    except ValueError as exc:
        raise RecordError(str(exc), code="invalid_amount", system=SYSTEM) from exc
    if minor <= 0:
        raise RecordError(f"amount must be positive, got {amount}", code="invalid_amount", system=SYSTEM)
    return minor


def _result(intent: stripe.PaymentIntent) -> CollectionResult:
    data = intent.to_dict()
    currency = str(data["currency"]).upper()
    received = data.get("amount_received")
    status = str(data.get("status"))
    error = data.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    response = intent.last_response
    replayed = bool(response and response.headers.get("Idempotent-Replayed") == "true")
    return CollectionResult(
        payment_intent_id=str(data["id"]),
        status=status,
        amount=from_minor_units(
            received if status == "succeeded" and isinstance(received, int) else int(data["amount"]),
            currency,
        ),
        currency=currency,
        failure_code=error.get("code"),
        failure_message=error.get("message"),
        decline_code=error.get("decline_code"),
        charge_id=_ref(data.get("latest_charge")),
        replayed=replayed,
    )
