"""What support staff do without a developer: read and replay dead letters, resync records and
streams, read the run history and the overall status. The CLI and (later) the console call these.

Every replay and resync is a recorded run (``sync_runs``) naming who asked for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from connectors.salesforce.client import SalesforceConnector
from mappings.spec import MappingSpec
from sync_engine.delivery import STREAM as DELIVERY_STREAM
from sync_engine.delivery import requeue_deliveries, run_deliveries
from sync_engine.invoicing import BILLING_STREAM, run_billing
from sync_engine.pull import PullResult, pull_stream, query_fields
from sync_engine.push import push_destination
from sync_engine.runtime import Runtime
from sync_engine.settings import StreamSettings
from sync_engine.store.models import DeadLetter, Invoice, OutboxItem, SyncRun, utcnow

PUSH_PREFIX = "push:"


# -- dead letters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LetterFilter:
    ids: Sequence[int] = ()
    stream: str | None = None
    entity: str | None = None
    error_type: str | None = None
    status: str | None = "open"


def find_letters(runtime: Runtime, where: LetterFilter, limit: int = 500) -> list[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id)
    if where.ids:
        query = query.where(DeadLetter.id.in_(list(where.ids)))
    if where.stream:
        query = query.where(DeadLetter.stream == where.stream)
    if where.entity:
        query = query.where(DeadLetter.entity == where.entity)
    if where.error_type:
        query = query.where(DeadLetter.error_type == where.error_type)
    if where.status:
        query = query.where(DeadLetter.status == where.status)
    with runtime.sessions() as session:
        return list(session.scalars(query.limit(limit)))


def letter_dict(letter: DeadLetter, *, with_payload: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": letter.id,
        "status": letter.status,
        "stream": letter.stream,
        "system": letter.system,
        "entity": letter.entity,
        "external_id": letter.external_id,
        "error_type": letter.error_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "first_seen": letter.created_at.isoformat(),
        "last_seen": letter.updated_at.isoformat(),
    }
    if with_payload:
        out["payload"] = letter.payload
    return out


def discard_letters(runtime: Runtime, where: LetterFilter, requested_by: str) -> int:
    letters = find_letters(runtime, where)
    with runtime.transaction() as session:
        session.execute(
            update(DeadLetter).where(DeadLetter.id.in_([d.id for d in letters])).values(status="discarded")
        )
        session.add(
            SyncRun(
                kind="discard",
                stream="dead-letters",
                status="ok",
                finished_at=utcnow(),
                counts={"requested_by": requested_by, "discarded": [d.id for d in letters]},
            )
        )
    return len(letters)


@dataclass
class ReplayResult:
    replayed: int = 0
    resolved: int = 0
    still_failing: int = 0
    by_stream: dict[str, int] = field(default_factory=dict)


def replay_letters(runtime: Runtime, where: LetterFilter, requested_by: str, as_of: dt.date) -> ReplayResult:
    """Process the letters again with the *current* mappings and catalog.

    Pulled records are re-mapped from their stored payload; billing problems re-run billing; failed
    pushes go back to the outbox. Then what was fixed is pushed, so a replay delivers.
    """
    letters = find_letters(runtime, where)
    result = ReplayResult(replayed=len(letters))
    ids = [d.id for d in letters]
    with runtime.transaction() as session:
        session.execute(update(DeadLetter).where(DeadLetter.id.in_(ids)).values(status="replayed"))
    streams = {s.name: s for s in runtime.settings.streams}
    by_stream: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_stream.setdefault(letter.stream, []).append(letter)
    for name, group in by_stream.items():
        result.by_stream[name] = len(group)
        if name in streams:
            pull_stream(
                runtime,
                streams[name],
                pages=[[dict(d.payload) for d in group]],
                kind="replay",
                requested_by=requested_by,
            )
        elif name == BILLING_STREAM:
            run_billing(runtime, as_of)
        elif name == DELIVERY_STREAM:  # the address was fixed (or the server): send again
            with runtime.transaction() as session:
                requeue_deliveries(session, [str(d.payload.get("invoice_id")) for d in group])
            run_deliveries(runtime)
        elif name.startswith(PUSH_PREFIX):
            with runtime.transaction() as session:
                for letter in group:
                    session.execute(
                        update(OutboxItem)
                        .where(
                            OutboxItem.destination == name.removeprefix(PUSH_PREFIX),
                            OutboxItem.entity == letter.entity,
                            OutboxItem.canonical_id == letter.external_id,
                            OutboxItem.status == "failed",
                        )
                        .values(status="pending", last_error=None)
                    )
    # what the replay may have queued: re-pulled records and re-billed invoices can go anywhere, a
    # failed push only to its own destination, a re-sent mail nowhere (support waits for this)
    pushed = {n.removeprefix(PUSH_PREFIX) for n in by_stream if n.startswith(PUSH_PREFIX)}
    anywhere = any(n in streams or n == BILLING_STREAM for n in by_stream)
    for destination in runtime.settings.destinations:
        if anywhere or destination.name in pushed:
            push_destination(runtime, destination)
    with runtime.transaction() as session:
        after = {d.id: d.status for d in session.scalars(select(DeadLetter).where(DeadLetter.id.in_(ids)))}
        result.still_failing = sum(1 for status in after.values() if status == "open")
        result.resolved = sum(1 for status in after.values() if status == "resolved")
        # a replayed letter nobody re-opened went through
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.id.in_(ids), DeadLetter.status == "replayed")
            .values(status="resolved")
        )
        result.resolved += sum(1 for status in after.values() if status == "replayed")
        session.add(
            SyncRun(
                kind="replay",
                stream="dead-letters",
                status="ok" if not result.still_failing else "partial",
                finished_at=utcnow(),
                counts={
                    "requested_by": requested_by,
                    "replayed": result.replayed,
                    "resolved": result.resolved,
                    "still_failing": result.still_failing,
                },
            )
        )
    return result


# -- resync ------------------------------------------------------------------------------------------
def stream_for(runtime: Runtime, connection: str, sobject: str) -> StreamSettings:
    for stream in runtime.settings.streams:
        if stream.connection == connection and stream.object.lower() == sobject.lower():
            return stream
    known = ", ".join(f"{s.connection} {s.object}" for s in runtime.settings.streams)
    raise ValueError(f"no stream reads {sobject} from {connection} (streams: {known})")


def resync_record(
    runtime: Runtime, connection: str, sobject: str, record_id: str, requested_by: str
) -> PullResult:
    """Read one record again (one API call) and store and re-send it even if nothing changed."""
    stream = stream_for(runtime, connection, sobject)
    record = runtime.salesforce(connection).get(stream.object, record_id)
    return pull_stream(
        runtime, stream, pages=[[record]], kind="resync", requested_by=requested_by, force=True
    )


def resync_customer(
    runtime: Runtime, connection: str, account_id: str, requested_by: str
) -> list[PullResult]:
    """One customer and everything that hangs off it (its orders, their lines...), read again and re-sent.

    What "hangs off" comes from the specs: a stream whose spec looks up a resynced entity (an order's
    ``customer_id`` from ``AccountId``) is read for those ids only; then the streams that look up
    *its* entity, and so on. The cursors do not move.
    """
    account_stream = next(
        (s for s in runtime.settings.streams if s.connection == connection and s.entity == "customer"), None
    )
    if account_stream is None:
        raise ValueError(f"no customer stream reads from {connection}")
    connector = runtime.salesforce(connection)
    record = connector.get(account_stream.object, account_id)
    results = [
        pull_stream(
            runtime, account_stream, pages=[[record]], kind="resync", requested_by=requested_by, force=True
        )
    ]
    resynced: dict[str, set[str]] = {"customer": {account_id}}
    pending = [s for s in runtime.settings.streams if s.connection == connection and s is not account_stream]
    progress = True
    while pending and progress:
        progress = False
        for stream in list(pending):
            spec = runtime.spec(stream.mapping)
            links = [rule.arg for rule in spec.rules if rule.source == "lookup" and rule.arg[0] in resynced]
            if not links:
                continue
            pending.remove(stream)
            progress = True
            ref_entity, _, field = links[0]
            ids = resynced[ref_entity]
            seen: set[str] = set()

            pages = _related(connector, spec, query_fields(spec), field, ids, seen)
            results.append(
                pull_stream(
                    runtime, stream, pages=pages, kind="resync", requested_by=requested_by, force=True
                )
            )
            resynced.setdefault(stream.entity, set()).update(seen)
    return results


def _related(
    connector: SalesforceConnector,
    spec: MappingSpec,
    fields: list[str],
    by: str,
    values: set[str],
    seen: set[str],
) -> Iterator[list[dict[str, Any]]]:
    """The records of ``spec.object`` whose ``by`` is one of ``values``; their ids go into ``seen``."""
    key = spec.key or "Id"
    for page in connector.related_pages(spec.object, fields, by, values):
        seen.update(str(record[key]) for record in page)
        yield page


def resync_stream(
    runtime: Runtime, stream_name: str, since: dt.datetime | None, requested_by: str
) -> PullResult:
    """A bounded backfill from ``since`` (or the whole stream); the stream's cursor does not move."""
    streams = {s.name: s for s in runtime.settings.streams}
    if stream_name not in streams:
        raise ValueError(f"no stream {stream_name!r} (streams: {', '.join(streams)})")
    start = since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return pull_stream(runtime, streams[stream_name], since=start, kind="resync", requested_by=requested_by)


# -- runs and status ---------------------------------------------------------------------------------
def run_dict(run: SyncRun) -> dict[str, Any]:
    duration = max(0.0, (run.finished_at - run.started_at).total_seconds()) if run.finished_at else None
    return {
        "id": run.id,
        "kind": run.kind,
        "stream": run.stream,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": round(duration, 3) if duration is not None else None,
        "counts": run.counts,
        "error": run.error,
    }


def list_runs(runtime: Runtime, stream: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    query = select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)
    if stream:
        query = query.where(SyncRun.stream == stream)
    with runtime.sessions() as session:
        return [run_dict(r) for r in session.scalars(query)]


def status(runtime: Runtime, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    with runtime.sessions() as session:
        latest = session.execute(select(SyncRun.stream, func.max(SyncRun.id)).group_by(SyncRun.stream)).all()
        last_runs = {stream: run_dict(session.get_one(SyncRun, run_id)) for stream, run_id in latest}
        outbox = {
            f"{dest}/{state}": n
            for dest, state, n in session.execute(
                select(OutboxItem.destination, OutboxItem.status, func.count())
                .where(OutboxItem.status.in_(("pending", "unknown", "failed")))
                .group_by(OutboxItem.destination, OutboxItem.status)
            )
        }
        letters = dict(
            session.execute(
                select(DeadLetter.stream, func.count())
                .where(DeadLetter.status == "open")
                .group_by(DeadLetter.stream)
            ).all()
        )
        # where invoices stand with their customers: pending, delivered, failed, print
        deliveries = dict(
            session.execute(
                select(Invoice.delivery_status, func.count())
                .where(Invoice.delivery_status.is_not(None))
                .group_by(Invoice.delivery_status)
            ).all()
        )
    failures = {name: run for name, run in last_runs.items() if run["status"] in ("failed", "stopped")}
    next_runs = {
        schedule.name: (
            fire.isoformat() if (fire := schedule.trigger().get_next_fire_time(None, now)) else None
        )
        for schedule in runtime.settings.schedules
    }
    return {
        "last_runs": last_runs,
        "failing": sorted(failures),
        "outbox": outbox,
        "dead_letters": letters,
        "invoice_deliveries": deliveries,
        "next_runs": next_runs,
    }
