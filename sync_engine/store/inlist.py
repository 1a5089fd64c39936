"""``column IN (values)`` for hundreds of values, cheap to send on both backends.

SQLAlchemy renders ``IN`` as one bound parameter per value, and psycopg then parses the statement in
Python: for a page of 500 ids that cost more than PostgreSQL spent answering. On PostgreSQL the ids
go as one array parameter (``column = ANY(%s)``, which PostgreSQL plans as it plans ``IN``); SQLite
has no arrays and keeps ``IN``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def one_of(session: Session, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (text values, such as ids)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]
