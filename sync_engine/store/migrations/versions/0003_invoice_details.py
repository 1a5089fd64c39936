"""Invoices keep what the billing engine computed: discounts, taxes, payments and explanations.

Lines gain their discount, tax rate and explanation (how the amount came about, for ``billsync
invoices explain``); invoices gain their discount total and the amount paid; each tax of an invoice
gets a row in ``invoice_tax_lines``. Rows written before this revision get zero discounts and
payments, no tax rate and no explanation, which is what they had.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[Any]:
    """NUMERIC(20, 6), text on SQLite: what ExactDecimal was at this revision (see 0001)."""
    return sa.Numeric(precision=20, scale=6).with_variant(sa.String(length=40), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("discount_total", _money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("amount_paid", _money(), server_default="0", nullable=False))

    with op.batch_alter_table("invoice_lines") as batch:
        batch.add_column(sa.Column("discount_amount", _money(), server_default="0", nullable=False))
        batch.add_column(sa.Column("tax_id", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("tax_rate", _money(), nullable=True))
        batch.add_column(sa.Column("tax_inclusive", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("explanation", sa.JSON(), nullable=True))

    op.create_table(
        "invoice_tax_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tax_id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rate", _money(), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("taxable", _money(), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_tax_lines_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_tax_lines")),
        sa.UniqueConstraint("invoice_id", "position", name="uq_invoice_tax_line_position"),
    )
    op.create_index(op.f("ix_invoice_tax_lines_invoice_id"), "invoice_tax_lines", ["invoice_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_invoice_tax_lines_invoice_id"), table_name="invoice_tax_lines")
    op.drop_table("invoice_tax_lines")
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_column("explanation")
        batch.drop_column("tax_inclusive")
        batch.drop_column("tax_rate")
        batch.drop_column("tax_id")
        batch.drop_column("discount_amount")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("amount_paid")
        batch.drop_column("discount_total")
