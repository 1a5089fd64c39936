"""The outbox: writes owed to destinations, queued in the same transaction as the change.

A pending row for the same ``(destination, entity, canonical id)`` already covers a newer change,
because the dispatcher maps the record as it is when it sends; so only one pending row is kept.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
