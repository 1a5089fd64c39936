"""The state store: canonical records, bindings across systems, cursors, runs, dead letters, outbox,
invoices and number sequences. One schema for SQLite and PostgreSQL, migrated by Alembic."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sync_engine.store.types import ExactDecimal, UTCDateTime


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Named constraints: SQLite batch migrations can only drop or alter a constraint that has a name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON}


class CanonicalRecord(Base):
    """A record in billsync's canonical model (customer, product, order...), keyed by canonical id."""

    __tablename__ = "canonical_records"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]]
    payload_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Binding(Base):
    """``(system, entity, external_id) <-> canonical id`` with the remote version and last payload hash."""

    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("system", "entity", "external_id", name="uq_binding_external"),
        UniqueConstraint("system", "entity", "canonical_id", name="uq_binding_canonical"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    canonical_id: Mapped[str] = mapped_column(String(64), index=True)
    remote_version: Mapped[str | None] = mapped_column(String(64))
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StreamCursor(Base):
    """Where an incremental stream stopped reading (e.g. the last SystemModstamp seen)."""

    __tablename__ = "stream_cursors"

    stream: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One execution of a stream, a billing run or a push, with its counts and outcome."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # pull | bill | push
    stream: Mapped[str] = mapped_column(String(120), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | ok | failed | partial
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(Base):
    """A record that could not be processed, with its payload and the reason; the run went on."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream: Mapped[str] = mapped_column(String(120), index=True)
    system: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text)
    error_type: Mapped[str] = mapped_column(String(60))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | replayed | discarded
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxItem(Base):
    """A write owed to a destination, created in the same transaction as the change that causes it.

    ``idempotency_key`` is deterministic (destination, entity, canonical id, action, version) so the
    same change is never queued twice and the remote write can carry it (QBO requestid, bId).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "destination", "status", "id"),
        Index("ix_outbox_record", "canonical_id", "destination", "entity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    canonical_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(20), default="upsert")
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | sent | unknown | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]
    #: Set when a write goes out: the value of the spec's ``match_on`` field and the hash of the
    #: canonical record as sent, so an unknown outcome is looked up by what was really sent.
    sent_match_key: Mapped[str | None] = mapped_column(String(255))
    sent_hash: Mapped[str | None] = mapped_column(String(64))
    #: Not retried before this moment (backoff after a temporary failure); None: at once.
    not_before: Mapped[dt.datetime | None]


class Invoice(Base):
    """An invoice produced by the billing run; ``number`` is assigned at finalisation, never before."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("series", "number", name="uq_invoice_number"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    series: Mapped[str] = mapped_column(String(40))
    number: Mapped[str | None] = mapped_column(String(64))
    # draft | open | partially_paid | overdue | paid | void | uncollectible (see sync_engine.payments)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[dt.date | None]
    period_end: Mapped[dt.date | None]
    issue_date: Mapped[dt.date]
    due_date: Mapped[dt.date]
    subtotal: Mapped[Decimal] = mapped_column(ExactDecimal())
    tax_total: Mapped[Decimal] = mapped_column(ExactDecimal())
    total: Mapped[Decimal] = mapped_column(ExactDecimal())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finalized_at: Mapped[dt.datetime | None]
    #: What discounts took off the subtotal (before tax): total = subtotal - discount + exclusive tax.
    discount_total: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"), server_default="0")
    amount_paid: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"), server_default="0")
    #: The day the last allocation made it paid (None while anything is due).
    paid_on: Mapped[dt.date | None]
    #: Where dunning stands: none | reminded | final_notice | suspended (escalation, never back
    #: down except to ``none`` when the invoice is paid).
    dunning_level: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    #: Where sending it to the customer stands: None (not queued) | pending | delivered | failed |
    #: print (listed for printing and posting).
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    #: When, why and by whom it was voided (None while it is not void).
    voided_at: Mapped[dt.datetime | None]
    void_reason: Mapped[str | None] = mapped_column(Text)
    voided_by: Mapped[str | None] = mapped_column(String(120))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", cascade="all, delete-orphan", order_by="InvoiceLine.position"
    )
    tax_lines: Mapped[list[InvoiceTaxLine]] = relationship(
        back_populates="invoice", cascade="all, delete-orphan", order_by="InvoiceTaxLine.position"
    )


class InvoiceLine(Base):
    """One billed charge; ``source_key`` (order line, subscription period) is billed at most once."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    product_code: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal())
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal())
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    tax_amount: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"))
    period_start: Mapped[dt.date | None]
    period_end: Mapped[dt.date | None]
    #: Subtracted from ``amount`` before tax. ``tax_rate`` is in percent; an inclusive tax is part
    #: of ``amount``, an exclusive one is added on top.
    discount_amount: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"), server_default="0")
    tax_id: Mapped[str | None] = mapped_column(String(80))
    tax_rate: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    tax_inclusive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: ``billing.Explanation.to_dict()``: how the amount came about (None for lines billed before 0003).
    explanation: Mapped[dict[str, Any] | None]

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class InvoiceTaxLine(Base):
    """One tax of an invoice: the rate (percent), the net amount it applies to and the tax."""

    __tablename__ = "invoice_tax_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_invoice_tax_line_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    tax_id: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    rate: Mapped[Decimal] = mapped_column(ExactDecimal())
    inclusive: Mapped[bool] = mapped_column(Boolean)
    taxable: Mapped[Decimal] = mapped_column(ExactDecimal())
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())

    invoice: Mapped[Invoice] = relationship(back_populates="tax_lines")


class CreditNote(Base):
    """A credit note: part or all of a finalised invoice given back, with its own number (series CN).

    Amounts are positive (what is credited). ``total`` = ``subtotal`` + ``tax_total``, net of
    discounts, as the credited invoice lines were. Issuing one records a receipt of source
    ``credit_note`` allocated to the invoice, so the invoice's amount due, status and every system's
    balance follow; a credit beyond what is still due becomes customer credit.
    """

    __tablename__ = "credit_notes"
    __table_args__ = (UniqueConstraint("number", name="uq_credit_note_number"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[dt.date]
    reason: Mapped[str] = mapped_column(Text)
    subtotal: Mapped[Decimal] = mapped_column(ExactDecimal())
    tax_total: Mapped[Decimal] = mapped_column(ExactDecimal())
    total: Mapped[Decimal] = mapped_column(ExactDecimal())
    status: Mapped[str] = mapped_column(String(20), default="issued")
    requested_by: Mapped[str | None] = mapped_column(String(120))
    #: Where sending it to the customer stands (as ``Invoice.delivery_status``).
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[CreditNoteLine]] = relationship(
        back_populates="credit_note", cascade="all, delete-orphan", order_by="CreditNoteLine.position"
    )
    invoice: Mapped[Invoice] = relationship()


class CreditNoteLine(Base):
    """One credited amount: part or all of one invoice line (``source_key``), net, with its tax."""

    __tablename__ = "credit_note_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credit_note_id: Mapped[str] = mapped_column(ForeignKey("credit_notes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    invoice_line_position: Mapped[int] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    product_code: Mapped[str | None] = mapped_column(String(80))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())  # net credited
    tax_amount: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"))
    tax_id: Mapped[str | None] = mapped_column(String(80))
    tax_rate: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    period_start: Mapped[dt.date | None]
    period_end: Mapped[dt.date | None]

    credit_note: Mapped[CreditNote] = relationship(back_populates="lines")


class NumberSequence(Base):
    """The next number of a gapless series; incremented in the finalising transaction."""

    __tablename__ = "number_sequences"

    series: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_value: Mapped[int] = mapped_column(BigInteger, default=1)


class OAuthToken(Base):
    """The newest OAuth tokens of a connection; QBO rotates refresh tokens, so this row is the truth."""

    __tablename__ = "oauth_tokens"

    connection: Mapped[str] = mapped_column(String(80), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str] = mapped_column(Text)
    access_expires_at: Mapped[dt.datetime | None]
    refresh_expires_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Payment(Base):
    """Money received from a customer, from one source (QBO, Stripe, a bank statement, by hand).

    ``(source, source_ref)`` is unique: the same QBO payment, Stripe PaymentIntent or statement line
    is recorded once however often it is seen. What is not allocated to invoices (``unapplied``) is
    the customer's credit, applied to their next invoices; refunds come out of it first.
    """

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("source", "source_ref", name="uq_payment_source"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str] = mapped_column(String(21), unique=True)  # short: QBO's PaymentRefNum holds 21
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(20))  # quickbooks | stripe | bank | manual
    source_ref: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    currency: Mapped[str] = mapped_column(String(3))
    received_on: Mapped[dt.date]
    reference: Mapped[str | None] = mapped_column(String(255))
    refunded: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal("0"))
    unapplied: Mapped[Decimal] = mapped_column(ExactDecimal())
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    allocations: Mapped[list[PaymentAllocation]] = relationship(
        back_populates="payment", cascade="all, delete-orphan", order_by="PaymentAllocation.id"
    )


class PaymentAllocation(Base):
    """Part of a payment applied to one invoice; a refund that reaches allocated money removes it."""

    __tablename__ = "payment_allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    applied_on: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="allocations")


class Refund(Base):
    """Money given back on a payment; ``(source, source_ref)`` makes a repeated notice harmless."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("source", "source_ref", name="uq_refund_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str] = mapped_column(String(255))
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
    refunded_on: Mapped[dt.date]
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BankStatement(Base):
    """An imported statement file; its SHA-256 makes a second import of the same file a no-op."""

    __tablename__ = "bank_statements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(20))  # camt.053 | mt940
    account: Mapped[str | None] = mapped_column(String(64))
    statement_ref: Mapped[str | None] = mapped_column(String(255))
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class StatementLine(Base):
    """One booked entry of a statement and what reconciliation made of it.

    ``status``: matched (a payment was recorded), unmatched (waits in the review queue, with
    ``candidates``), ignored (debits, or dismissed by a person). ``fingerprint`` is unique, so a line
    that reappears in an overlapping statement is not imported twice.
    """

    __tablename__ = "statement_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("bank_statements.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    booking_date: Mapped[dt.date]
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())  # positive: money in
    currency: Mapped[str] = mapped_column(String(3))
    counterparty_name: Mapped[str | None] = mapped_column(String(255))
    counterparty_iban: Mapped[str | None] = mapped_column(String(64))
    remittance_info: Mapped[str | None] = mapped_column(Text)
    end_to_end_id: Mapped[str | None] = mapped_column(String(255))
    entry_ref: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="unmatched", index=True)
    matched_by: Mapped[str | None] = mapped_column(String(40))  # invoice_number | amount_customer | manual
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Reminder(Base):
    """One dunning step for one invoice: at most one row per (invoice, step), so never sent twice."""

    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("invoice_id", "step", name="uq_reminder_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    step: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(20))  # reminded | final_notice | suspended
    scheduled_for: Mapped[dt.date]
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | sent | failed
    to_address: Mapped[str | None] = mapped_column(String(320))
    message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InvoiceDelivery(Base):
    """One attempt to get an invoice to its customer, and how it ended: the proof support shows.

    ``channel``: email | post. ``status``: sent | failed (for good) | retrying (a temporary
    failure, tried again later) | print (listed in the merged PDF ``print_file`` for posting).
    ``requested_by``: None for the automatic delivery, else who asked for the resend.
    """

    __tablename__ = "invoice_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The invoice the document belongs to (for a credit note: the invoice it credits).
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    #: The document sent: the invoice itself, or one of its credit notes.
    document_kind: Mapped[str] = mapped_column(String(20), default="invoice", server_default="invoice")
    document_number: Mapped[str | None] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(20))  # initial | resend
    status: Mapped[str] = mapped_column(String(20))
    to_address: Mapped[str | None] = mapped_column(String(320))
    message_id: Mapped[str | None] = mapped_column(String(255))
    requested_by: Mapped[str | None] = mapped_column(String(120))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    print_file: Mapped[str | None] = mapped_column(String(500))
    #: What was attached: pdf, or the e-invoice format (ubl, peppol, xrechnung, cii, facturx).
    document_format: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """A webhook event received and verified; the id makes a redelivery harmless and a replay visible."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the provider's event id
    provider: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(String(512))  # the exact signature header first accepted
    status: Mapped[str] = mapped_column(String(20))  # processed | ignored | failed
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who uses the console or the API; the password is stored as a scrypt hash only.

    ``role``: admin (everything) | support (resync, replay, match payments) | viewer (read only).
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]


class ApiToken(Base):
    """A bearer token of a user for scripts; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class WebSession(Base):
    """A console login: the cookie holds the id, only its SHA-256 is stored; with its CSRF token."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class LoginAttempt(Base):
    """A failed login, by user name and by client address: what throttling counts."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_username_at", "username", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(120))
    client: Mapped[str | None] = mapped_column(String(64), index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what, when, and how it ended: every action of the console, the API and the CLI."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120), index=True)
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(20))  # ok | denied | failed
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
