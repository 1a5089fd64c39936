"""Alembic environment: run only through ``sync_engine.store.db.upgrade_database`` (or the CLI on top).

The caller passes an open connection in ``config.attributes["connection"]`` so that migrations use
the same engine settings as the application; there is no ini file and no offline (SQL script) mode.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from sync_engine.store.models import Base
from sync_engine.store.types import ExactDecimal, UTCDateTime


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy DDL types.

    A migration is history: it must create the same columns next year even if the application's
    types change, so it must not import them. The DDL of ``ExactDecimal`` differs by backend, hence
    the variant.
    """
    if type_ == "type" and isinstance(obj, ExactDecimal):
        return 'sa.Numeric(precision=20, scale=6).with_variant(sa.String(length=40), "sqlite")'
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with sync_engine.store.db.upgrade_database(url)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; pass a database URL")
run_migrations()
