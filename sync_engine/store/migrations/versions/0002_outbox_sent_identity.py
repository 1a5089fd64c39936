"""Outbox rows remember what was sent: the match key and the payload hash of an in-flight write.

A write whose outcome is unknown must be looked up by the name it was *sent* with (the record may
have been renamed since), and adopted with the hash of what was sent (so a later change still goes
out).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("sent_match_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("sent_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("sent_hash")
        batch.drop_column("sent_match_key")
