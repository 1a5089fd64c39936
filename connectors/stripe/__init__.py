"""Stripe connector: collect invoices with PaymentIntents, verify and translate webhooks, and a sandbox.

Public names load lazily so that the webhook route (``webhook``/``events``) does not import the
emulator, and nothing here shadows the ``stripe`` SDK: modules of this package import it as the
absolute top-level ``import stripe``.

- ``verify_event``, ``VerifiedEvent``, ``WebhookRejected``, ``sign`` (``webhook``)
- ``translate``, ``PaymentSucceeded``, ``PaymentFailed``, ``Refunded``, ``Ignored`` (``events``)
- ``StripeConnector``, ``CollectionResult``, ``CardDeclinedError`` (``client``)
- ``StripeSandbox`` (``sandbox``): the emulated account for tests and the demo
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.stripe.amounts import from_minor_units, to_minor_units
    from connectors.stripe.client import (
        CardDeclinedError,
        CollectionResult,
        IdempotencyConflictError,
        RefundResult,
        StripeConnector,
    )
    from connectors.stripe.events import (
        Ignored,
        PaymentEvent,
        PaymentFailed,
        PaymentSucceeded,
        Refunded,
        UntranslatableEvent,
        translate,
    )
    from connectors.stripe.sandbox import StripeSandbox
    from connectors.stripe.webhook import VerifiedEvent, WebhookRejected, sign, verify_event

_WHERE = {
    "from_minor_units": "amounts",
    "to_minor_units": "amounts",
    "CardDeclinedError": "client",
    "CollectionResult": "client",
    "IdempotencyConflictError": "client",
    "RefundResult": "client",
    "StripeConnector": "client",
    "Ignored": "events",
    "PaymentEvent": "events",
    "PaymentFailed": "events",
    "PaymentSucceeded": "events",
    "Refunded": "events",
    "UntranslatableEvent": "events",
    "translate": "events",
    "StripeSandbox": "sandbox",
    "VerifiedEvent": "webhook",
    "WebhookRejected": "webhook",
    "sign": "webhook",
    "verify_event": "webhook",
}
__all__ = [
    "CardDeclinedError",
    "CollectionResult",
    "IdempotencyConflictError",
    "Ignored",
    "PaymentEvent",
    "PaymentFailed",
    "PaymentSucceeded",
    "RefundResult",
    "Refunded",
    "StripeConnector",
    "StripeSandbox",
    "UntranslatableEvent",
    "VerifiedEvent",
    "WebhookRejected",
    "from_minor_units",
    "sign",
    "to_minor_units",
    "translate",
    "verify_event",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
