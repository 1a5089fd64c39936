"""Stripe webhooks into payments: verify, record once, answer.

The answer codes are what Stripe acts on: 400 for a delivery that must not be trusted (bad or missing
signature, re-serialised body, too old, an exact replay of a delivery already accepted), 200 for
everything accepted, including events billsync cannot place (unknown customer or invoice): those are
parked in the dead letters for support instead of making Stripe retry for three days.

Exactly once: an event id is processed once (a redelivery, signed anew, is answered 200 and changes
nothing); the payment itself is keyed by its PaymentIntent, so ``invoice.paid`` and
``payment_intent.succeeded`` for the same money record it once; refunds are keyed by the charge's
cumulative refunded total, so out-of-order or repeated ``charge.refunded`` events refund once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.stripe.events import Ignored, PaymentFailed, PaymentSucceeded, Refunded, translate
from connectors.stripe.webhook import VerifiedEvent, WebhookRejected, verify_event
from sync_engine.dead_letters import record_dead_letter
from sync_engine.logging import get_logger
from sync_engine.payments import PaymentError, Receipt, record_payment, record_refund
from sync_engine.runtime import Runtime
from sync_engine.settings import StripeSettings
from sync_engine.store.models import CanonicalRecord, Invoice, Payment, PaymentAllocation, WebhookEvent

log = get_logger(__name__)
STREAM = "webhook:stripe"


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    message: str


def stripe_settings(runtime: Runtime) -> StripeSettings:
    name = runtime.settings.payments.stripe
    connection = runtime.settings.connections.get(name or "")
    if not isinstance(connection, StripeSettings):
        raise LookupError("no Stripe connection: set payments.stripe in billsync.yaml")
    return connection


def handle_stripe_webhook(
    runtime: Runtime, payload: bytes, signature: str | None, *, now: int | None = None
) -> WebhookAnswer:
    """Verify and apply one delivery; never raises for bad input (the answer says what happened)."""
    settings = stripe_settings(runtime)
    try:
        event = verify_event(
            payload,
            signature,
            settings.webhook_secret.get_secret_value(),
            tolerance=settings.tolerance_seconds,
            now=now,
        )
    except WebhookRejected as exc:
        log.warning("stripe webhook refused", reason=exc.reason)
        return WebhookAnswer(400, f"refused: {exc.reason}")
    with runtime.transaction() as session:
        seen = session.get(WebhookEvent, event.id)
        if seen is not None:
            if seen.signature == event.raw_signature:
                log.warning("stripe webhook replayed", event_id=event.id)
                return WebhookAnswer(400, "refused: replayed delivery")
            return WebhookAnswer(200, f"already processed ({seen.status})")
        status, error = _apply(session, runtime, event)
        session.add(
            WebhookEvent(
                id=event.id,
                provider="stripe",
                type=event.type,
                signature=event.raw_signature,
                status=status,
                error=error,
            )
        )
    log.info("stripe webhook", event_id=event.id, type=event.type, outcome=status)
    return WebhookAnswer(200, status if error is None else f"{status}: {error}")


def _apply(session: Session, runtime: Runtime, event: VerifiedEvent) -> tuple[str, str | None]:
    try:
        fact = translate(event)
    except ValueError as exc:
        return _park(session, event, str(exc), "UntranslatableEvent")
    as_of = dt.datetime.now(dt.UTC).date()
    try:
        if isinstance(fact, PaymentSucceeded):
            return _succeeded(session, runtime, event, fact, as_of)
        if isinstance(fact, Refunded):
            return _refunded(session, runtime, event, fact, as_of)
        if isinstance(fact, PaymentFailed):
            log.warning(
                "card payment failed",
                invoice=fact.invoice_number,
                code=fact.failure_code,
                decline_code=fact.decline_code,
            )
            return "payment_failed", fact.failure_message or fact.failure_code
    except PaymentError as exc:
        return _park(session, event, str(exc), "PaymentError")
    assert isinstance(fact, Ignored)
    return "ignored", None


def _succeeded(
    session: Session, runtime: Runtime, event: VerifiedEvent, fact: PaymentSucceeded, as_of: dt.date
) -> tuple[str, str | None]:
    invoice = _invoice(session, fact.invoice_number)
    customer_id = invoice.customer_id if invoice is not None else _customer(session, fact.stripe_customer)
    if customer_id is None:
        return _park(
            session,
            event,
            f"no billsync customer for Stripe customer {fact.stripe_customer} "
            f"(invoice {fact.invoice_number or 'not named'})",
            "UnknownCustomer",
        )
    if (
        invoice is not None
        and event.type == "invoice.paid"
        and _paid_by_stripe(session, invoice, fact.amount)
    ):
        return "duplicate", f"invoice {invoice.number} is already paid through Stripe"
    recorded = record_payment(
        session,
        runtime.settings,
        Receipt(
            source="stripe",
            source_ref=fact.source_ref,
            customer_id=customer_id,
            amount=fact.amount,
            currency=fact.currency,
            received_on=fact.paid_at.date(),
            method="card",
            reference=fact.reference,
            invoice_ids=[invoice.id] if invoice is not None else [],
            details={"stripe_event": event.id, "stripe_customer": fact.stripe_customer},
        ),
        as_of=as_of,
    )
    return ("processed" if recorded.created else "duplicate"), None


def _refunded(
    session: Session, runtime: Runtime, event: VerifiedEvent, fact: Refunded, as_of: dt.date
) -> tuple[str, str | None]:
    refs = [r for r in (fact.payment_intent_id, fact.charge_id) if r]
    payment = session.scalar(select(Payment).where(Payment.source == "stripe", Payment.source_ref.in_(refs)))
    if payment is None:
        return _park(session, event, f"no recorded payment for charge {fact.charge_id}", "UnknownPayment")
    delta = fact.amount_refunded - payment.refunded
    if delta <= 0:
        return "duplicate", None
    record_refund(
        session,
        runtime.settings,
        payment_id=payment.id,
        source="stripe",
        source_ref=f"{fact.charge_id}:{fact.amount_refunded}",
        amount=delta,
        refunded_on=fact.refunded_at.date(),
        reason=f"Stripe refund ({event.id})",
        as_of=as_of,
    )
    return "processed", None


def _invoice(session: Session, number: str | None) -> Invoice | None:
    if not number:
        return None
    return session.scalar(select(Invoice).where(Invoice.number == number))


def _customer(session: Session, stripe_customer: str | None) -> str | None:
    """The customer whose CRM record carries this Stripe customer id."""
    if not stripe_customer:
        return None
    for cid, data in session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "customer")
    ):
        if isinstance(data, dict) and data.get("stripe_customer_id") == stripe_customer:
            return str(cid)
    return None


def _paid_by_stripe(session: Session, invoice: Invoice, amount: Decimal) -> bool:
    """``invoice.paid`` after the PaymentIntent's own event already paid it: the same money."""
    if invoice.status != "paid":
        return False
    allocated = session.scalars(
        select(PaymentAllocation.amount)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(PaymentAllocation.invoice_id == invoice.id, Payment.source == "stripe")
    )
    stripe_paid = sum(allocated, Decimal(0))
    return stripe_paid >= amount


def _park(session: Session, event: VerifiedEvent, error: str, error_type: str) -> tuple[str, str | None]:
    payload: dict[str, Any] = {"event_id": event.id, "type": event.type, "object": event.object}
    record_dead_letter(
        session,
        stream=STREAM,
        system="stripe",
        entity="payment",
        external_id=event.id,
        payload=payload,
        error=error,
        error_type=error_type,
    )
    return "dead_lettered", error
