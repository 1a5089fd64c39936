"""The outbox: writes owed to destinations, queued in the same transaction as the change.

A pending row for the same ``(destination, entity, canonical id)`` already covers a newer change,
because the dispatcher maps the record as it is when it sends; so only one pending row is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync_engine.store.bulk import insert_rows
from sync_engine.store.inlist import one_of
from sync_engine.store.models import OutboxItem

OPEN_STATUSES = ("pending", "unknown")


def enqueue(
    session: Session, *, destination: str, entity: str, canonical_id: str, action: str, version: str
) -> OutboxItem | None:
    """Queue one write; returns ``None`` when an open row already covers it.

    The key ends with the row's ordinal for this record, so a value that comes back (A -> B -> A)
    is queued again rather than mistaken for the write already made."""
    open_row = session.scalars(
        select(OutboxItem.id).where(
            OutboxItem.destination == destination,
            OutboxItem.entity == entity,
            OutboxItem.canonical_id == canonical_id,
            OutboxItem.status.in_(OPEN_STATUSES),
        )
    ).first()
    if open_row is not None:
        return None
    earlier = session.scalar(
        select(func.count())
        .select_from(OutboxItem)
        .where(
            OutboxItem.destination == destination,
            OutboxItem.entity == entity,
            OutboxItem.canonical_id == canonical_id,
        )
    )
    key = f"{destination}:{entity}:{canonical_id}:{action}:{version}:{(earlier or 0) + 1}"[:128]
    item = OutboxItem(
        destination=destination, entity=entity, canonical_id=canonical_id, action=action, idempotency_key=key
    )
    session.add(item)
    return item


class Owed(NamedTuple):
    """One write owed to a destination, for :func:`enqueue_many` (a tuple: a pull or a billing run
    makes one per record and destination, and a frozen dataclass took three times as long to build)."""

    destination: str
    entity: str
    canonical_id: str
    action: str
    version: str


#: Canonical ids per ``IN (...)`` of :func:`enqueue_many` (well under SQLite's variable limit).
_IN_CHUNK = 500


def enqueue_many(session: Session, owed: Iterable[Owed], *, fresh: Collection[str] = ()) -> list[Owed]:
    """:func:`enqueue` for many records at once, in order: one query per 500 records instead of two
    per record, and no flush per record (a page or a chunk of invoices is one flush).

    A record owed twice in ``owed`` is queued once, as two calls of :func:`enqueue` would do. The rows
    go in with one bulk insert (COPY on PostgreSQL); returns what was queued.

    ``fresh``: canonical ids the caller created in this transaction (a new invoice, a record pulled
    for the first time). Nothing can be queued for them yet, since records are never deleted, so they
    are not looked up; the unique idempotency key would refuse the rows if that ever changed."""
    unique: dict[tuple[str, str, str], Owed] = {}
    for item in owed:
        unique.setdefault((item.destination, item.entity, item.canonical_id), item)
    ids = sorted({canonical_id for _, _, canonical_id in unique} - set(fresh))
    covered: set[tuple[str, str, str]] = set()
    earlier: dict[tuple[str, str, str], int] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        # By record only, along ix_outbox_record, and the other destinations' rows dropped here: with
        # destination and entity in the WHERE, PostgreSQL without fresh statistics (a first big run)
        # scanned the destination's whole queue and tested each row against the id list.
        for destination, entity, canonical_id, status, count in session.execute(
            select(
                OutboxItem.destination,
                OutboxItem.entity,
                OutboxItem.canonical_id,
                OutboxItem.status,
                func.count(),
            )
            .where(one_of(session, OutboxItem.canonical_id, ids[start : start + _IN_CHUNK]))
            .group_by(OutboxItem.destination, OutboxItem.entity, OutboxItem.canonical_id, OutboxItem.status)
        ):
            key = (destination, entity, canonical_id)
            if key not in unique:
                continue
            earlier[key] = earlier.get(key, 0) + int(count)
            if status in OPEN_STATUSES:
                covered.add(key)
    added = [item for key, item in unique.items() if key not in covered]
    insert_rows(
        session,
        OutboxItem,
        [
            {
                "destination": item.destination,
                "entity": item.entity,
                "canonical_id": item.canonical_id,
                "action": item.action,
                "idempotency_key": (
                    f"{item.destination}:{item.entity}:{item.canonical_id}:{item.action}:{item.version}:"
                    f"{earlier.get((item.destination, item.entity, item.canonical_id), 0) + 1}"
                )[:128],
            }
            for item in added
        ],
    )
    return added
