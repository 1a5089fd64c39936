"""The audit log: who did what, when, and how it ended.

Written for every action of the console and the API (allowed, refused or failed) and for user
administration from the CLI; admins read it in the console (``/audit``, ``GET /api/audit``).
An entry is written in its own transaction so a failed action still leaves its trace.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.store.models import AuditEntry


def record(
    sessions: sessionmaker[Session],
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    **details: Any,
) -> None:
    with sessions() as session, session.begin():
        session.add(
            AuditEntry(actor=actor, action=action, target=target, outcome=outcome, details=_plain(details))
        )


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe details (Decimals and dates as text)."""
    return {
        k: v if isinstance(v, str | int | float | bool | list | dict | None) else str(v)
        for k, v in details.items()
    }


def entries(
    session: Session, *, actor: str | None = None, action: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    return [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "outcome": e.outcome,
            "details": e.details,
        }
        for e in session.scalars(query)
    ]
