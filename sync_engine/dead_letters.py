"""The dead-letter store: a record that cannot be processed is kept with its payload and reason,
and the run goes on. The same failure seen again bumps ``attempts`` instead of adding a row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sync_engine.store.models import DeadLetter


def record_dead_letter(
    session: Session,
    *,
    stream: str,
    system: str,
    entity: str,
    external_id: str | None,
    payload: dict[str, Any],
    error: str,
    error_type: str,
    run_id: int | None = None,
) -> DeadLetter:
    existing = session.scalars(
        select(DeadLetter).where(
            DeadLetter.stream == stream,
            DeadLetter.entity == entity,
            DeadLetter.external_id == external_id,
            DeadLetter.status.in_(("open", "replayed")),
        )
    ).first()
    if existing is not None:
        existing.status = "open"  # a replay that failed again is open again
        existing.attempts += 1
        existing.error, existing.error_type, existing.payload = error, error_type, payload
        existing.run_id = run_id
        return existing
    letter = DeadLetter(
        stream=stream,
        system=system,
        entity=entity,
        external_id=external_id,
        payload=payload,
        error=error,
        error_type=error_type,
        run_id=run_id,
    )
    session.add(letter)
    return letter


def resolve_dead_letters(session: Session, *, stream: str, entity: str, external_ids: list[str]) -> None:
    """A record that now goes through closes its open dead letters (status ``resolved``).

    For a page of records, the stream's open letters (few, normally none) are read and matched here
    instead: thousands of ids in an ``IN`` list cost more to send and parse than the letters."""
    if not external_ids:
        return
    open_ = (
        DeadLetter.stream == stream,
        DeadLetter.entity == entity,
        DeadLetter.status.in_(("open", "replayed")),
    )
    if len(external_ids) <= _ID_CHUNK:
        session.execute(
            update(DeadLetter)
            .where(*open_, DeadLetter.external_id.in_(external_ids))
            .values(status="resolved")
        )
        return
    wanted = set(external_ids)
    letters = [
        letter_id
        for letter_id, external_id in session.execute(
            select(DeadLetter.id, DeadLetter.external_id).where(*open_)
        )
        if external_id in wanted
    ]
    for start in range(0, len(letters), _ID_CHUNK):
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.id.in_(letters[start : start + _ID_CHUNK]))
            .values(status="resolved")
        )


#: Ids per ``IN (...)`` (well under SQLite's variable limit).
_ID_CHUNK = 500
