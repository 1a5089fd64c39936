"""The outbox: writes owed to destinations, queued in the same transaction as the change.

A pending row for the same ``(destination, entity, canonical id)`` already covers a newer change,
because the dispatcher maps the record as it is when it sends; so only one pending row is kept.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_engine.store.models import OutboxItem

OPEN_STATUSES = ("pending", "unknown")


def enqueue(
    session: Session, *, destination: str, entity: str, canonical_id: str, action: str, version: str
) -> OutboxItem | None:
    """Queue one write; returns ``None`` when an open row or the identical key already exists."""
    key = f"{destination}:{entity}:{canonical_id}:{action}:{version}"[:128]
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
    if session.scalars(select(OutboxItem.id).where(OutboxItem.idempotency_key == key)).first() is not None:
        return None
    item = OutboxItem(
        destination=destination, entity=entity, canonical_id=canonical_id, action=action, idempotency_key=key
    )
    session.add(item)
    return item
