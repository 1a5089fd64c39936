"""Turn verified Stripe events into the few payment facts billsync acts on.

The sync engine should not know Stripe's object graph, and the connector must not import billing or
mappings, so each event becomes a small frozen dataclass of plain values: amounts as ``Decimal`` in
major units (converted with Stripe's own minor-unit table, :mod:`connectors.stripe.amounts`),
upper-case ISO 4217 codes, UTC datetimes.

- ``payment_intent.succeeded`` and ``invoice.paid`` -> :class:`PaymentSucceeded`
- ``payment_intent.payment_failed`` -> :class:`PaymentFailed`
- ``charge.refunded`` -> :class:`Refunded` (the charge's *total* refunded so far, not this refund's
  delta: Stripe may deliver events out of order, and a total is idempotent)
- anything else -> :class:`Ignored`

The billsync invoice number comes from ``metadata["billsync_invoice_number"]`` (set by
:meth:`connectors.stripe.client.StripeConnector.collect`); for ``invoice.paid`` the Stripe invoice's
own ``number`` is the fallback. Note that a Stripe-invoiced payment also produces a
``payment_intent.succeeded`` for the same money: from API version 2025-03-31 on, invoices no longer
name their PaymentIntent unless ``payments`` is expanded, so ``invoice.paid`` then falls back to the
invoice id as ``source_ref``; consume one of the two event types per payment flow, not both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.stripe.amounts import from_minor_units
from connectors.stripe.webhook import VerifiedEvent

__all__ = [
    "INVOICE_NUMBER_KEY",
    "Ignored",
    "PaymentEvent",
    "PaymentFailed",
    "PaymentSucceeded",
    "Refunded",
    "UntranslatableEvent",
    "translate",
]

#: The metadata key billsync writes on PaymentIntents (and reads back from events).
INVOICE_NUMBER_KEY = "billsync_invoice_number"


class UntranslatableEvent(ValueError):
    """A verified event of a handled type lacks a field the translation needs (amount, currency...)."""

    def __init__(self, event: VerifiedEvent, detail: str) -> None:
        super().__init__(f"{event.type} {event.id}: {detail}")
        self.event_id = event.id
        self.event_type = event.type


@dataclass(frozen=True)
class PaymentSucceeded:
    """Money arrived. ``source_ref`` is the PaymentIntent id (or, for ``invoice.paid``, the invoice's
    PaymentIntent/charge when the event names it, else the Stripe invoice id); ``reference`` is the
    charge id (PaymentIntent) or the Stripe invoice id (``invoice.paid``)."""

    source_ref: str
    stripe_customer: str | None
    amount: Decimal
    currency: str
    paid_at: dt.datetime
    method: str
    invoice_number: str | None
    description: str | None
    reference: str | None
    event_id: str
    event_type: str


@dataclass(frozen=True)
class PaymentFailed:
    """A payment attempt was declined or failed; ``failure_code`` is Stripe's error code
    (``card_declined``, ``expired_card``...) and ``decline_code`` the issuer's reason when given."""

    source_ref: str
    stripe_customer: str | None
    amount: Decimal
    currency: str
    failure_code: str | None
    failure_message: str | None
    invoice_number: str | None
    decline_code: str | None
    failed_at: dt.datetime
    event_id: str


@dataclass(frozen=True)
class Refunded:
    """A charge was (partly) refunded; ``amount_refunded`` is the charge's running total."""

    charge_id: str
    payment_intent_id: str | None
    amount_refunded: Decimal
    currency: str
    refunded_at: dt.datetime
    invoice_number: str | None
    stripe_customer: str | None
    charge_amount: Decimal
    fully_refunded: bool
    event_id: str


@dataclass(frozen=True)
class Ignored:
    """An event type billsync does not act on (acknowledge it with 200 and move on)."""

    type: str
    event_id: str


PaymentEvent = PaymentSucceeded | PaymentFailed | Refunded | Ignored


def translate(event: VerifiedEvent) -> PaymentEvent:
    """The payment fact ``event`` stands for; raises :class:`UntranslatableEvent` on a broken object."""
    handler = _HANDLERS.get(event.type)
    if handler is None:
        return Ignored(type=event.type, event_id=event.id)
    return handler(_Reader(event))


class _Reader:
    """Typed access to ``event.object`` that names the event in every complaint."""

    def __init__(self, event: VerifiedEvent) -> None:
        self.event = event
        self.obj = event.object

    def fail(self, detail: str) -> UntranslatableEvent:
        return UntranslatableEvent(self.event, detail)

    def text(self, key: str, source: Mapping[str, Any] | None = None) -> str | None:
        value = (self.obj if source is None else source).get(key)
        return value if isinstance(value, str) and value else None

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.fail(f"no {key}")
        return value

    def ref(self, key: str, source: Mapping[str, Any] | None = None) -> str | None:
        """An id field that may also come expanded (``{"id": ...}``)."""
        value = (self.obj if source is None else source).get(key)
        if isinstance(value, Mapping):
            value = value.get("id")
        return value if isinstance(value, str) and value else None

    def currency(self) -> str:
        code = self.text("currency")
        if code is None or len(code) != 3 or not code.isalpha():
            raise self.fail(f"bad currency {self.obj.get('currency')!r}")
        return code.upper()

    def amount(self, *keys: str) -> Decimal:
        """The first of ``keys`` holding an integer, in major units."""
        currency = self.currency()
        for key in keys:
            value = self.obj.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return from_minor_units(value, currency)
        raise self.fail(f"no integer {' or '.join(keys)}")

    def time(self, value: Any) -> dt.datetime:
        """A Unix timestamp as a UTC datetime; the event's ``created`` when ``value`` is not one."""
        if not isinstance(value, int) or isinstance(value, bool):
            value = self.event.created
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)

    def invoice_number(self) -> str | None:
        metadata = self.obj.get("metadata")
        if isinstance(metadata, Mapping):
            return self.text(INVOICE_NUMBER_KEY, metadata)
        return None


def _method(reader: _Reader) -> str:
    """``card`` unless the object says otherwise: the expanded charge's payment method type, or the
    only type the PaymentIntent allowed. billsync collects off-session with saved cards."""
    charge = reader.obj.get("latest_charge")
    if isinstance(charge, Mapping):
        details = charge.get("payment_method_details")
        if isinstance(details, Mapping) and isinstance(details.get("type"), str):
            return str(details["type"])
    types = reader.obj.get("payment_method_types")
    if isinstance(types, list) and len(types) == 1 and isinstance(types[0], str):
        return types[0]
    return "card"


def _payment_intent_succeeded(reader: _Reader) -> PaymentEvent:
    event = reader.event
    return PaymentSucceeded(
        source_ref=reader.required_text("id"),
        stripe_customer=reader.ref("customer"),
        amount=reader.amount("amount_received", "amount"),
        currency=reader.currency(),
        paid_at=reader.time(None),
        method=_method(reader),
        invoice_number=reader.invoice_number(),
        description=reader.text("description"),
        reference=reader.ref("latest_charge"),
        event_id=event.id,
        event_type=event.type,
    )


def _invoice_payment_ref(reader: _Reader) -> str | None:
    """The PaymentIntent (or charge) that paid the invoice, when the event names one."""
    payments = reader.obj.get("payments")
    if isinstance(payments, Mapping) and isinstance(payments.get("data"), list):
        for item in payments["data"]:
            payment = item.get("payment") if isinstance(item, Mapping) else None
            if isinstance(payment, Mapping) and item.get("status") in (None, "paid"):
                found = reader.ref("payment_intent", payment) or reader.ref("charge", payment)
                if found:
                    return found
    return reader.ref("payment_intent") or reader.ref("charge")  # API versions before 2025-03-31


def _invoice_paid(reader: _Reader) -> PaymentEvent:
    event = reader.event
    invoice_id = reader.required_text("id")
    transitions = reader.obj.get("status_transitions")
    paid_at = transitions.get("paid_at") if isinstance(transitions, Mapping) else None
    return PaymentSucceeded(
        source_ref=_invoice_payment_ref(reader) or invoice_id,
        stripe_customer=reader.ref("customer"),
        amount=reader.amount("amount_paid"),
        currency=reader.currency(),
        paid_at=reader.time(paid_at),
        method="card",
        invoice_number=reader.invoice_number() or reader.text("number"),
        description=reader.text("description"),
        reference=invoice_id,
        event_id=event.id,
        event_type=event.type,
    )


def _payment_intent_failed(reader: _Reader) -> PaymentEvent:
    error = reader.obj.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    return PaymentFailed(
        source_ref=reader.required_text("id"),
        stripe_customer=reader.ref("customer"),
        amount=reader.amount("amount"),
        currency=reader.currency(),
        failure_code=reader.text("code", error),
        failure_message=reader.text("message", error),
        invoice_number=reader.invoice_number(),
        decline_code=reader.text("decline_code", error),
        failed_at=reader.time(None),
        event_id=reader.event.id,
    )


def _charge_refunded(reader: _Reader) -> PaymentEvent:
    refunds = reader.obj.get("refunds")
    created: list[int] = [
        refund["created"]
        for refund in (refunds.get("data") if isinstance(refunds, Mapping) else None) or []
        if isinstance(refund, Mapping) and isinstance(refund.get("created"), int)
    ]
    return Refunded(
        charge_id=reader.required_text("id"),
        payment_intent_id=reader.ref("payment_intent"),
        amount_refunded=reader.amount("amount_refunded"),
        currency=reader.currency(),
        refunded_at=reader.time(max(created) if created else None),
        invoice_number=reader.invoice_number(),
        stripe_customer=reader.ref("customer"),
        charge_amount=reader.amount("amount"),
        fully_refunded=reader.obj.get("refunded") is True,
        event_id=reader.event.id,
    )


_HANDLERS = {
    "payment_intent.succeeded": _payment_intent_succeeded,
    "invoice.paid": _invoice_paid,
    "payment_intent.payment_failed": _payment_intent_failed,
    "charge.refunded": _charge_refunded,
}
