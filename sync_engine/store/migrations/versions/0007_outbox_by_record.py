"""The outbox indexed by record: queueing a page or a chunk of invoices looks up what is already
queued for those records, and the console shows a customer's sync history; without the index both
scanned every row of the destination, so a billing run slowed with the square of the outbox.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_record", "outbox", ["canonical_id", "destination", "entity"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_record", table_name="outbox")
