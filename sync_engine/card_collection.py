"""Automatic card collection: charge the saved Stripe card of customers who pay by card, exactly once.

Why it is built this way:

- **One automatic attempt per invoice.** Each collectable invoice (open, partially paid or overdue,
  with an amount due) of a customer whose ``payment_method`` is ``card`` and who has a
  ``stripe_customer_id`` gets one ``card_collection`` outbox row, ever. A declined card is not tried
  again and again (issuers flag merchants that hammer a card); dunning and support take over.
- **Never twice.** The row's deterministic ``idempotency_key`` travels as Stripe's
  ``Idempotency-Key`` on every attempt, and the row is marked ``unknown`` in a committed transaction
  *before* the call. A timeout or a crash leaves it ``unknown``; the next run repeats the call with
  the same key and Stripe replays its saved answer (for 24 h) instead of charging again. Stripe
  replays only for the same parameters, so what was sent (amount, currency, Stripe customer, the
  card pinned at the first attempt) is kept in the row's ``sent_match_key`` and a retry sends exactly
  that, even if the amount due or the customer's default card changed meanwhile.
- **Nothing charged that is no longer owed.** The invoice is read again right before the call: one
  paid (by bank transfer, by the webhook of this very charge) or voided meanwhile closes the row
  without a call. Money a lost-answer attempt did take is still recorded: Stripe's
  ``payment_intent.succeeded`` webhook carries it into :func:`sync_engine.payments.record_payment`.
- **Recorded once.** A successful charge is recorded with ``(source="stripe", source_ref=<PaymentIntent
  id>)`` in the same transaction that closes the row, so the webhook for the same PaymentIntent
  later records nothing twice.
- **Outcomes as the taxonomy says.** A declined card is a business outcome (row ``failed`` with the
  decline code, a log line, no dead letter); another refused record (idempotency conflict, unknown
  Stripe customer, no saved card) goes to the dead letters (stream ``collect:stripe``); a temporary
  failure leaves the row for the next run (after three in a row the run stops calling Stripe);
  rejected credentials or a TLS/permission problem stop the run after what was learnt is committed.

No network call runs inside a database transaction (on SQLite a transaction holds the write lock).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.errors import (
    AuthError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.stripe.client import CardDeclinedError, CollectionResult, StripeConnector
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.logging import get_logger
from sync_engine.outbox import OPEN_STATUSES, enqueue
from sync_engine.payments import PaymentError, Receipt, amount_due, record_payment
from sync_engine.runtime import Runtime
from sync_engine.settings import StripeSettings
from sync_engine.store.models import CanonicalRecord, Invoice, OutboxItem, utcnow

__all__ = [
    "COLLECTABLE",
    "ENTITY",
    "STREAM",
    "CardCollectionResult",
    "collect_cards",
    "queue_card_collections",
]

log = get_logger(__name__)

ENTITY = "card_collection"
STREAM = "collect:stripe"
#: Invoice statuses a card is charged for (``uncollectible`` is written off: not charged).
COLLECTABLE = ("open", "partially_paid", "overdue")
#: Consecutive temporary failures after which the run stops calling Stripe (the rest waits).
MAX_TRANSIENT_IN_A_ROW = 3


@dataclass
class CardCollectionResult:
    """What a run did; ``pending`` rows are retried by the next run with the same idempotency key."""

    queued: int = 0
    charged: int = 0
    declined: int = 0
    #: rows whose outcome is not known yet (timeout, Stripe unavailable, throttled, not reached)
    pending: int = 0
    failed: int = 0
    api_calls: int = 0
    #: charges Stripe accepted but has not settled (``processing``): the webhook settles them
    processing: int = 0
    #: rows closed without a call (the invoice was paid or voided meanwhile, the customer changed)
    skipped: int = 0
    #: why nothing was done, when nothing was done
    note: str | None = None


@dataclass(frozen=True)
class _Params:
    """What one attempt sends; a retry of an unknown outcome sends exactly the same."""

    amount: Decimal
    currency: str
    customer: str
    payment_method: str

    def encoded(self) -> str:
        return f"{self.amount} {self.currency} {self.customer} {self.payment_method}"

    @staticmethod
    def decoded(text: str | None) -> _Params | None:
        parts = (text or "").split(" ")
        if len(parts) != 4 or not all(parts):
            return None
        try:
            amount = Decimal(parts[0])
        except InvalidOperation:
            return None
        return _Params(amount, parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class _Attempt:
    """One row ready for its call, as plain values (no ORM object outlives its transaction)."""

    row_id: int
    key: str
    invoice_id: str
    invoice_number: str
    customer_id: str
    stripe_customer: str
    #: what the previous attempt sent (a retry of an unknown outcome), else None: a fresh attempt
    params: _Params | None
    amount_due: Decimal
    currency: str


class _Stop(Exception):
    """Stop calling Stripe for this run (throttled, or it keeps failing)."""


# --------------------------------------------------------------------------------------------
# the run


def collect_cards(
    runtime: Runtime, *, as_of: dt.date, connector: StripeConnector | None = None
) -> CardCollectionResult:
    """Queue the invoices to charge and charge every open row once (see the module docstring).

    Does nothing (``note`` says why) unless ``payments.collect_cards`` is on and ``payments.stripe``
    names a Stripe connection with an ``api_key``. ``connector`` defaults to one built from that
    connection (and closed afterwards). Raises ``StopRequested`` at a checkpoint between invoices,
    and ``AuthError``/``FatalError`` when Stripe refuses the credentials or the connection (after
    committing what was learnt); everything done so far stays committed.
    """
    result = CardCollectionResult()
    settings = runtime.settings
    name = settings.payments.stripe
    connection = settings.connections.get(name or "")
    if not settings.payments.collect_cards:
        result.note = "card collection is off (payments.collect_cards: false)"
        return result
    if name is None or not isinstance(connection, StripeSettings):
        result.note = "card collection needs payments.stripe to name a Stripe connection"
        log.warning(result.note)
        return result
    if connection.api_key is None or not connection.api_key.get_secret_value():
        result.note = f"card collection needs an api_key on the Stripe connection {name!r}"
        log.warning(result.note)
        return result
    own = connector is None
    if connector is None:
        connector = _connector(runtime, connection)
    calls_before = connector.api_calls
    try:
        with runtime.lock(f"collect:{name}"):
            result.queued = queue_card_collections(runtime, connection=name)
            _drain(runtime, connector, name, as_of, result)
    finally:
        result.api_calls = connector.api_calls - calls_before
        if own:
            connector.close()
    log.info(
        "card collection finished",
        queued=result.queued,
        charged=result.charged,
        declined=result.declined,
        processing=result.processing,
        pending=result.pending,
        failed=result.failed,
        skipped=result.skipped,
        api_calls=result.api_calls,
    )
    return result


def queue_card_collections(runtime: Runtime, *, connection: str) -> int:
    """Give each collectable invoice of a card customer its one ``card_collection`` row; returns how
    many were queued. An invoice that ever had a row (any outcome) gets no second one."""
    with runtime.transaction() as session:
        invoices = [
            inv
            for inv in session.scalars(
                select(Invoice)
                .where(Invoice.status.in_(COLLECTABLE), Invoice.number.is_not(None))
                .order_by(Invoice.due_date, Invoice.issue_date, Invoice.number)
            )
            if amount_due(inv) > 0
        ]
        if not invoices:
            return 0
        card_customers = _card_customers(session, {inv.customer_id for inv in invoices})
        candidates = [inv for inv in invoices if inv.customer_id in card_customers]
        if not candidates:
            return 0
        seen = set(
            session.scalars(
                select(OutboxItem.canonical_id).where(
                    OutboxItem.entity == ENTITY,
                    OutboxItem.canonical_id.in_([inv.id for inv in candidates]),
                )
            )
        )
        queued = 0
        for inv in candidates:
            if inv.id in seen:
                continue
            row = enqueue(
                session,
                destination=connection,
                entity=ENTITY,
                canonical_id=inv.id,
                action="collect",
                version="1",
            )
            if row is not None:
                queued += 1
        return queued


# --------------------------------------------------------------------------------------------
# draining


def _drain(
    runtime: Runtime,
    connector: StripeConnector,
    connection: str,
    as_of: dt.date,
    result: CardCollectionResult,
) -> None:
    with runtime.sessions() as session:
        row_ids = list(
            session.scalars(
                select(OutboxItem.id)
                .where(
                    OutboxItem.destination == connection,
                    OutboxItem.entity == ENTITY,
                    OutboxItem.status.in_(OPEN_STATUSES),
                )
                .order_by(OutboxItem.id)
            )
        )
    transient = 0
    for position, row_id in enumerate(row_ids):
        runtime.checkpoint()  # a stop request ends the run here, between invoices
        try:
            outcome = _collect_one(runtime, connector, row_id, as_of, result)
        except _Stop as stop:
            left = len(row_ids) - position  # this row is counted pending already
            result.pending += left - 1
            log.warning("card collection stopped for this run", reason=str(stop), waiting=left)
            return
        transient = transient + 1 if outcome == "transient" else 0
        if transient >= MAX_TRANSIENT_IN_A_ROW and position + 1 < len(row_ids):
            left = len(row_ids) - position - 1
            result.pending += left
            log.warning(
                "card collection stopped for this run: Stripe keeps failing",
                in_a_row=transient,
                waiting=left,
            )
            return


def _collect_one(
    runtime: Runtime, connector: StripeConnector, row_id: int, as_of: dt.date, result: CardCollectionResult
) -> str:
    """Charge one row; returns ``done`` or ``transient`` (raises ``_Stop`` when throttled)."""
    attempt = _prepare(runtime, row_id, result)
    if attempt is None:
        return "done"
    params = attempt.params
    if params is None:
        # Pin the card now, so a retry of this attempt sends the same payment method (a customer who
        # changes cards in between would otherwise turn the retry into an idempotency error).
        try:
            method = connector.default_payment_method(attempt.stripe_customer)
        except RecordError as exc:
            _refused(runtime, attempt, exc, result)
            return "done"
        except RetryableError as exc:
            _retry_later(runtime, attempt, exc, result)
            if isinstance(exc, RateLimitedError):
                raise _Stop(str(exc)) from exc
            return "transient"
        except (AuthError, FatalError) as exc:
            _note_error(runtime, attempt.row_id, exc)
            raise
        params = _Params(attempt.amount_due, attempt.currency, attempt.stripe_customer, method)
        if len(params.encoded()) > 255:
            _refused(runtime, attempt, RecordError("Stripe ids too long to keep", code="too_long"), result)
            return "done"
    if not _mark_in_flight(runtime, attempt, params):
        return "done"  # another process took this row meanwhile
    try:
        charged = connector.collect(
            customer=params.customer,
            amount=params.amount,
            currency=params.currency,
            invoice_number=attempt.invoice_number,
            idempotency_key=attempt.key,
            payment_method=params.payment_method,
            description=f"Invoice {attempt.invoice_number}",
        )
    except CardDeclinedError as exc:
        _declined(runtime, attempt, exc.code, exc.decline_code, str(exc), exc.payment_intent_id, result)
        return "done"
    except RecordError as exc:  # idempotency conflict, unknown customer or card, invalid amount
        _refused(runtime, attempt, exc, result)
        return "done"
    except RetryableError as exc:  # OutcomeUnknownError included: the same key next run
        _retry_later(runtime, attempt, exc, result)
        if isinstance(exc, RateLimitedError):
            raise _Stop(str(exc)) from exc
        return "transient"
    except (AuthError, FatalError) as exc:
        _note_error(runtime, attempt.row_id, exc)
        raise
    _apply(runtime, attempt, charged, as_of, result)
    return "done"


def _prepare(runtime: Runtime, row_id: int, result: CardCollectionResult) -> _Attempt | None:
    """Read the row, the invoice and the customer again; close the row when nothing is owed."""
    with runtime.transaction() as session:
        row = session.get(OutboxItem, row_id)
        if row is None or row.status not in OPEN_STATUSES:
            return None  # done by another process meanwhile
        invoice = session.get(Invoice, row.canonical_id)
        if invoice is None:
            _fail(session, row, {"invoice_id": row.canonical_id}, "the invoice no longer exists", "NotFound")
            result.failed += 1
            return None
        due = amount_due(invoice)
        if invoice.status not in COLLECTABLE or due <= 0:
            _close(row, f"not charged: invoice {invoice.number} is {invoice.status}")
            log.info("card collection skipped", invoice=invoice.number, status=invoice.status)
            result.skipped += 1
            return None
        previous = _Params.decoded(row.sent_match_key) if row.status == "unknown" else None
        customer = _card_customers(session, {invoice.customer_id}).get(invoice.customer_id)
        if previous is None and customer is None:
            # Checked again because the customer may have switched to another payment method since.
            _close(row, f"not charged: customer {invoice.customer_id} no longer pays by saved card")
            result.skipped += 1
            return None
        return _Attempt(
            row_id=row.id,
            key=row.idempotency_key,
            invoice_id=invoice.id,
            invoice_number=str(invoice.number),
            customer_id=invoice.customer_id,
            stripe_customer=previous.customer if previous else str(customer),
            params=previous,
            amount_due=due,
            currency=invoice.currency,
        )


def _mark_in_flight(runtime: Runtime, attempt: _Attempt, params: _Params) -> bool:
    """Committed before the call: a crash during it leaves the row ``unknown``, retried with its key."""
    with runtime.transaction() as session:
        row = session.get(OutboxItem, attempt.row_id)
        if row is None or row.status not in OPEN_STATUSES:
            return False
        row.status = "unknown"
        row.attempts += 1
        row.sent_match_key = params.encoded()
        return True


def _apply(
    runtime: Runtime,
    attempt: _Attempt,
    charged: CollectionResult,
    as_of: dt.date,
    result: CardCollectionResult,
) -> None:
    if charged.status == "requires_payment_method":  # declined without a card_error answer
        _declined(
            runtime,
            attempt,
            charged.failure_code,
            charged.decline_code,
            charged.failure_message or "the card was declined",
            charged.payment_intent_id,
            result,
        )
        return
    if charged.status == "processing":
        with runtime.transaction() as session:
            row = _row(session, attempt.row_id)
            _close(row, f"processing: PaymentIntent {charged.payment_intent_id}; the webhook settles it")
        log.info("card payment processing", invoice=attempt.invoice_number, intent=charged.payment_intent_id)
        result.processing += 1
        return
    if not charged.succeeded:
        error = RecordError(
            f"PaymentIntent {charged.payment_intent_id} is {charged.status} after an off-session charge",
            code=charged.status,
            system="stripe",
        )
        _refused(runtime, attempt, error, result)
        return
    try:
        with runtime.transaction() as session:
            recorded = record_payment(
                session,
                runtime.settings,
                Receipt(
                    source="stripe",
                    source_ref=charged.payment_intent_id,
                    customer_id=attempt.customer_id,
                    amount=charged.amount,
                    currency=charged.currency,
                    received_on=as_of,
                    method="card",
                    reference=charged.charge_id,
                    invoice_ids=[attempt.invoice_id],
                    details={
                        "stripe_customer": attempt.stripe_customer,
                        "collected_by": "billsync",
                        "replayed": charged.replayed,
                    },
                ),
                as_of=as_of,
            )
            row = _row(session, attempt.row_id)
            _close(row, None)
            resolve_dead_letters(session, stream=STREAM, entity=ENTITY, external_ids=[attempt.invoice_id])
    except PaymentError as exc:  # charged in Stripe but not placeable here: support must look at it
        error = RecordError(
            f"charged (PaymentIntent {charged.payment_intent_id}) but not recorded: {exc}",
            code="not_recorded",
            system="stripe",
        )
        _refused(runtime, attempt, error, result)
        return
    log.info(
        "card charged",
        invoice=attempt.invoice_number,
        amount=str(charged.amount),
        currency=charged.currency,
        intent=charged.payment_intent_id,
        payment=recorded.number,
        replayed=charged.replayed,
    )
    result.charged += 1


def _declined(
    runtime: Runtime,
    attempt: _Attempt,
    code: str | None,
    decline_code: str | None,
    message: str,
    intent: str | None,
    result: CardCollectionResult,
) -> None:
    """A business outcome, not an error: the row fails for good and dunning takes over."""
    reason = decline_code or code or "declined"
    text = f"card declined ({reason}): {message}" + (f" [PaymentIntent {intent}]" if intent else "")
    with runtime.transaction() as session:
        row = _row(session, attempt.row_id)
        row.status = "failed"
        row.last_error = text
        row.done_at = utcnow()
    log.warning(
        "card declined; not charged again automatically",
        invoice=attempt.invoice_number,
        code=code,
        decline_code=decline_code,
        intent=intent,
    )
    result.declined += 1


def _refused(runtime: Runtime, attempt: _Attempt, exc: RecordError, result: CardCollectionResult) -> None:
    """A record Stripe (or billsync) refuses as it is: row ``failed`` and a dead letter for support."""
    payload = {
        "invoice_id": attempt.invoice_id,
        "invoice_number": attempt.invoice_number,
        "customer_id": attempt.customer_id,
        "stripe_customer": attempt.stripe_customer,
        "amount_due": str(attempt.amount_due),
        "currency": attempt.currency,
        "idempotency_key": attempt.key,
    }
    with runtime.transaction() as session:
        _fail(session, _row(session, attempt.row_id), payload, str(exc), type(exc).__name__)
    log.error("card collection refused", invoice=attempt.invoice_number, error=str(exc))
    result.failed += 1


def _retry_later(
    runtime: Runtime, attempt: _Attempt, exc: RetryableError, result: CardCollectionResult
) -> None:
    """The row keeps its status (``unknown`` after a call, ``pending`` if only the lookup failed)."""
    _note_error(runtime, attempt.row_id, exc)
    log.warning(
        "card collection will be retried",
        invoice=attempt.invoice_number,
        outcome_unknown=isinstance(exc, OutcomeUnknownError),
        error=str(exc),
    )
    result.pending += 1


def _note_error(runtime: Runtime, row_id: int, exc: Exception) -> None:
    with runtime.transaction() as session:
        _row(session, row_id).last_error = str(exc)


# --------------------------------------------------------------------------------------------
# helpers


def _card_customers(session: Session, customer_ids: set[str]) -> dict[str, str]:
    """Customer id -> Stripe customer id, for those who pay by card and have one.

    The JSON data is filtered in Python: JSON operators differ between SQLite and PostgreSQL."""
    if not customer_ids:
        return {}
    found: dict[str, str] = {}
    for cid, data in session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(
            CanonicalRecord.entity == "customer", CanonicalRecord.id.in_(sorted(customer_ids))
        )
    ):
        if not isinstance(data, dict) or data.get("payment_method") != "card":
            continue
        stripe_id = data.get("stripe_customer_id")
        if isinstance(stripe_id, str) and stripe_id.strip():
            found[str(cid)] = stripe_id.strip()
    return found


def _row(session: Session, row_id: int) -> OutboxItem:
    row = session.get(OutboxItem, row_id)
    assert row is not None, f"outbox row {row_id} vanished"
    return row


def _close(row: OutboxItem, note: str | None) -> None:
    row.status = "sent"
    row.done_at = utcnow()
    row.last_error = note


def _fail(session: Session, row: OutboxItem, payload: dict[str, Any], error: str, error_type: str) -> None:
    row.status = "failed"
    row.last_error = error
    row.done_at = utcnow()
    record_dead_letter(
        session,
        stream=STREAM,
        system="stripe",
        entity=ENTITY,
        external_id=row.canonical_id,
        payload=payload,
        error=error,
        error_type=error_type,
    )


def _connector(runtime: Runtime, connection: StripeSettings) -> StripeConnector:
    assert connection.api_key is not None
    ca_bundle = None
    if connection.ca_file:
        path = Path(connection.ca_file).expanduser()
        ca_bundle = str(path if path.is_absolute() else runtime.settings.base_dir / path)
    return StripeConnector(
        connection.api_key.get_secret_value(),
        api_base=connection.api_base,
        timeout=connection.timeout_seconds,
        ca_bundle=ca_bundle,
    )
