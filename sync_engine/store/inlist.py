"""``column IN (values)`` for hundreds of values, cheap to send on both backends.

SQLAlchemy renders ``IN`` as one bound parameter per value, and psycopg then parses the statement in
Python: for a page of 500 ids that cost more than PostgreSQL spent answering. On PostgreSQL the ids
go as one array parameter (``column = ANY(%s)``, which PostgreSQL plans as it plans ``IN``). SQLite
has no arrays: the ids go as one JSON text, ``column IN (SELECT value FROM json_each(?))``, which
SQLite answers with one index probe per id, as it answers ``IN`` with a list, and the statement is
the same text (compiled and cached once) whatever the number of ids.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def one_of(session: Session, column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column`` is one of ``values`` (text values, such as ids)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))  # type: ignore[no-any-return]
    ids = func.json_each(bindparam(None, json.dumps(list(values)), type_=String)).table_valued("value")
    return column.in_(select(ids.c.value))  # type: ignore[no-any-return]
