"""Invoice delivery: each attempt to send an invoice (or credit note) to its customer, the invoice's
delivery status, a "not before" time on outbox rows for retries with backoff; credit notes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[Any]:
    """NUMERIC(20, 6), text on SQLite: what ExactDecimal is at this revision (see 0001)."""
    return sa.Numeric(precision=20, scale=6).with_variant(sa.String(length=40), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoice_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("document_kind", sa.String(length=20), server_default="invoice", nullable=False),
        sa.Column("document_number", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=120), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("print_file", sa.String(length=500), nullable=True),
        sa.Column("document_format", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_deliveries_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_deliveries")),
    )
    with op.batch_alter_table("invoice_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoice_deliveries_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invoice_deliveries_document_number"), ["document_number"], unique=False
        )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("subtotal", _money(), nullable=False),
        sa.Column("tax_total", _money(), nullable=False),
        sa.Column("total", _money(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=True),
        sa.Column("delivery_status", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name="uq_credit_note_number"),
    )
    with op.batch_alter_table("credit_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_notes_customer_id"), ["customer_id"], unique=False)
    op.create_table(
        "credit_note_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("credit_note_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("invoice_line_position", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("product_code", sa.String(length=80), nullable=True),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("tax_amount", _money(), nullable=False),
        sa.Column("tax_id", sa.String(length=80), nullable=True),
        sa.Column("tax_rate", _money(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_credit_note_lines_credit_note_id_credit_notes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_note_lines")),
    )
    with op.batch_alter_table("credit_note_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_note_lines_credit_note_id"), ["credit_note_id"], unique=False)
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_status", sa.String(length=20), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("not_before")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("delivery_status")
    op.drop_table("credit_note_lines")
    op.drop_table("credit_notes")
    op.drop_table("invoice_deliveries")
