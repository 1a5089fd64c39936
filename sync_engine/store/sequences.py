"""Gapless number series (invoice numbers), allocated inside the caller's transaction.

Tax rules in many countries require invoice numbers without gaps. A database sequence burns a
number when the transaction that took it rolls back, so the counter is a row instead: the
allocation is an ``UPDATE`` that holds the row lock (PostgreSQL) or the database write lock
(SQLite, whose transactions start with ``BEGIN IMMEDIATE``) until the caller commits or rolls back.
Concurrent finalisations therefore queue for that moment, so keep those transactions short.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from sync_engine.store.models import NumberSequence


def next_number(session: Session, series: str, count: int = 1) -> int:
    """Take the next number of ``series`` (1 for a new series); it is spent only if the caller commits.

    ``count`` takes that many consecutive numbers in one statement and returns the first: a chunk of
    invoices finalised in one transaction numbers itself without a round trip per invoice."""
    if count < 1:
        raise ValueError("count must be at least 1")
    number = _take(session, series, count)
    if number is None:
        # First use of the series. Concurrent first uses both insert; one wins, the other does nothing,
        # and both then take their number through the row lock.
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(insert(NumberSequence).values(series=series, next_value=1).on_conflict_do_nothing())
        number = _take(session, series, count)
        if number is None:  # pragma: no cover - the row exists now
            raise RuntimeError(f"number series {series!r} vanished during allocation")
    return number


def _take(session: Session, series: str, count: int = 1) -> int | None:
    taken = session.execute(
        update(NumberSequence)
        .where(NumberSequence.series == series)
        .values(next_value=NumberSequence.next_value + count)
        .returning(NumberSequence.next_value - count)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return None if taken is None else int(taken)
