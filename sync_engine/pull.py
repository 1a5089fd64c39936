"""Inbound: read a CRM stream since its cursor, map each record to the canonical model, and store
entity, binding and cursor in one transaction per page. A bad record is dead-lettered; the page and
the run go on. An unchanged payload (same hash as last time) is skipped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from mappings.canonical import validate_entity
from mappings.engine import Mapper, MappingError, path_getter
from mappings.spec import MappingSpec
from mappings.transforms import cast_datetime
from sync_engine.bindings import (
    BindingLookups,
    bindings_by_canonical,
    bindings_by_external,
    canonical_id_for,
    canonical_json,
    payload_hash,
    text_hash,
)
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.gc_pause import collector_paused
from sync_engine.outbox import Owed, enqueue_many
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import StreamSettings
from sync_engine.store.bulk import JSONText, insert_rows
from sync_engine.store.inlist import one_of
from sync_engine.store.models import Binding, CanonicalRecord, DeadLetter, StreamCursor, SyncRun, utcnow

CURSOR_FIELD = "SystemModstamp"
MISSING_BINDING = "MissingBinding"
RETRY_BATCH = 2000
#: Ids per ``IN (...)`` when a page's records are read in bulk (well under SQLite's variable limit).
ID_CHUNK = 500


@dataclass
class PullResult:
    stream: str
    read: int = 0
    written: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    pages: int = 0
    cursor: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def query_fields(spec: MappingSpec) -> list[str]:
    """The fields to read: what the spec uses, the record id and the cursor field."""
    return sorted({*spec.source_fields, spec.key or "Id", CURSOR_FIELD})


def describe_validation(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in exc.errors())


def destinations_for(runtime: Runtime, entity: str) -> list[str]:
    return [d.name for d in runtime.settings.destinations if entity in d.mappings]


def pull_stream(
    runtime: Runtime,
    stream: StreamSettings,
    progress: Callable[[int], None] | None = None,
    *,
    since: dt.datetime | None = None,
    pages: Iterable[list[dict[str, Any]]] | None = None,
    kind: str = "pull",
    requested_by: str | None = None,
    force: bool = False,
) -> PullResult:
    """Read ``stream`` and store what changed.

    The normal run reads from the stream's cursor and moves it forward. A resync passes ``since``
    (a bounded backfill) or ``pages`` (records it fetched itself): then the cursor is left alone,
    so a backfill never makes the next regular run skip anything.
    """
    with collector_paused():  # bulk work on plain data: see sync_engine.gc_pause
        return _pull_stream(runtime, stream, progress, since, pages, kind, requested_by, force)


def _pull_stream(
    runtime: Runtime,
    stream: StreamSettings,
    progress: Callable[[int], None] | None,
    since: dt.datetime | None,
    pages: Iterable[list[dict[str, Any]]] | None,
    kind: str,
    requested_by: str | None,
    force: bool,
) -> PullResult:
    spec = runtime.spec(stream.mapping)
    system = stream.connection
    result = PullResult(stream=stream.name)
    outbound_to = destinations_for(runtime, stream.entity)
    regular = since is None and pages is None

    with runtime.transaction() as session:
        cursor_row = session.get(StreamCursor, stream.name)
        cursor = cursor_row.value if cursor_row else None
        run = SyncRun(
            kind=kind, stream=stream.name, counts={"requested_by": requested_by} if requested_by else {}
        )
        session.add(run)
        session.flush()
        run_id = run.id
    if regular:
        since = cast_datetime(cursor, None) if cursor else None
    connector = runtime.salesforce(stream.connection)
    calls_before = connector.api_calls
    if pages is None:
        pages = connector.pull_pages(spec.object, query_fields(spec), since)

    status, error = "ok", None
    try:
        for page in pages:
            runtime.checkpoint()  # a stop request (SIGTERM) ends the run here, between pages
            result.pages += 1
            with runtime.transaction() as session:
                lookups = BindingLookups(session, {spec.system: system})
                mapper = Mapper(spec, lookups)
                _store_page(
                    session,
                    runtime,
                    stream,
                    mapper,
                    lookups,
                    page,
                    system,
                    outbound_to,
                    run_id,
                    result,
                    force=force,
                )
                if regular:
                    _advance_cursor(session, stream.name, page, result)
            if progress:
                progress(len(page))
        if regular:
            _retry_waiting(runtime, stream, spec, system, outbound_to, run_id, result)
    except BaseException as exc:  # Ctrl-C and stop requests included: the run did not finish
        status, error = (
            ("stopped" if isinstance(exc, StopRequested) else "failed"),
            f"{type(exc).__name__}: {exc}",
        )
        raise
    finally:
        with runtime.transaction() as session:
            run_row = session.get(SyncRun, run_id)
            assert run_row is not None
            run_row.status = "partial" if status == "ok" and result.dead_lettered else status
            run_row.error = error
            run_row.finished_at = utcnow()
            run_row.counts = {
                **({"requested_by": requested_by} if requested_by else {}),
                "read": result.read,
                "written": result.written,
                "unchanged": result.unchanged,
                "dead_lettered": result.dead_lettered,
                "pages": result.pages,
                "api_calls": {stream.connection: connector.api_calls - calls_before},
            }
    return result


def _advance_cursor(session: Any, stream: str, page: list[dict[str, Any]], result: PullResult) -> None:
    newest = max((str(r.get(CURSOR_FIELD)) for r in page if r.get(CURSOR_FIELD)), default=None)
    if newest is None:
        return
    row = session.get(StreamCursor, stream)
    if row is None:
        session.add(StreamCursor(stream=stream, value=newest))
    elif row.value is None or cast_datetime(newest, None) > cast_datetime(row.value, None):
        row.value = newest
    result.cursor = newest


def _store_page(
    session: Any,
    runtime: Runtime,
    stream: StreamSettings,
    mapper: Mapper,
    lookups: BindingLookups,
    page: list[dict[str, Any]],
    system: str,
    outbound_to: list[str],
    run_id: int,
    result: PullResult,
    *,
    force: bool = False,
) -> None:
    """Store one page. ``force`` (a resync): map and send even records whose payload is unchanged."""
    spec = mapper.spec
    entity = stream.entity
    keyed: list[tuple[str | None, dict[str, Any]]] = []
    key_of = path_getter(spec.key or "Id")
    for raw in page:
        value = key_of(raw)
        keyed.append((str(value) if value not in (None, "") else None, raw))
    existing = bindings_by_external(session, system, entity, [k for k, _ in keyed if k])
    for rule in spec.rules:  # prime cross-reference lookups: one query per referenced entity
        if rule.source == "lookup":
            ref_entity, _, path = rule.arg
            read = path_getter(path)
            values = {str(v) for _, raw in keyed if (v := read(raw)) not in (None, "")}
            lookups.prime(system, ref_entity, values, inbound=True)

    resolved: list[str] = []
    todo: list[tuple[str, dict[str, Any], str, Any]] = []  # (external id, payload, hash, binding)
    for external_id, raw in keyed:
        result.read += 1
        clean = dict(raw)  # a copy without Salesforce's "attributes" (copy-then-pop: 10x a filter)
        clean.pop("attributes", None)
        if external_id is None:
            message = f"the record has no {spec.key}"
            _dead(session, stream, system, entity, None, clean, message, "MappingError", run_id, result)
            continue
        raw_hash = payload_hash(clean)
        binding = existing.get(external_id)
        if binding is not None and binding.payload_hash == raw_hash and not force:
            result.unchanged += 1
            continue
        todo.append((external_id, clean, raw_hash, binding))
    mapped = mapper.map_many([clean for _, clean, _, _ in todo])  # the page, a rule at a time
    # What the page's records already are, read in bulk: a query per record would also flush the
    # session once per record, which made a page cost as many round trips as it has records.
    canonical_ids = {
        external_id: binding.canonical_id if binding else canonical_id_for(system, entity, external_id)
        for external_id, _, _, binding in todo
    }
    records = _records_by_id(session, set(canonical_ids.values()))
    by_canonical = bindings_by_canonical(
        session, system, entity, [canonical_ids[e] for e, _, _, binding in todo if binding is None]
    )
    owed: list[Owed] = []
    # New records and bindings go in as rows, in one bulk insert each (COPY on PostgreSQL); a record
    # seen twice in the page updates its pending row.
    new_records: dict[str, dict[str, Any]] = {}
    new_bindings: dict[str, dict[str, Any]] = {}
    for (external_id, clean, raw_hash, _binding), outcome in zip(todo, mapped, strict=True):
        if isinstance(outcome, MappingError):
            # A record that only waits for another (its account not pulled yet) is retried on every
            # run from the dead letters, since the cursor has moved past it.
            kind = MISSING_BINDING if outcome.only_missing_bindings else "MappingError"
            _dead(session, stream, system, entity, external_id, clean, str(outcome), kind, run_id, result)
            continue
        try:
            data = validate_entity(entity, outcome)
        except ValidationError as exc:
            message = describe_validation(exc)
            _dead(
                session,
                stream,
                system,
                entity,
                external_id,
                clean,
                message,
                "ValidationError",
                run_id,
                result,
            )
            continue
        canonical_id = canonical_ids[external_id]
        text = canonical_json(data)  # serialised once: hashed, and stored as it is when new
        data_hash = text_hash(text)
        changed = _store_record(records, new_records, canonical_id, entity, data, text, data_hash)
        version = clean.get(CURSOR_FIELD)
        remote_version = str(version) if version else None
        binding = existing.get(external_id) or by_canonical.get(canonical_id)
        if binding is not None:
            binding.external_id, binding.remote_version, binding.payload_hash = (
                external_id,
                remote_version,
                raw_hash,
            )
            existing[external_id] = by_canonical[canonical_id] = binding
        else:
            new_bindings[canonical_id] = {
                "system": system,
                "entity": entity,
                "external_id": external_id,
                "canonical_id": canonical_id,
                "remote_version": remote_version,
                "payload_hash": raw_hash,
            }
        lookups.remember(system, entity, external_id, canonical_id)
        if changed or force:
            action = "resync" if force else "upsert"
            owed.extend(Owed(d, entity, canonical_id, action, data_hash[:16]) for d in outbound_to)
        result.written += 1
        resolved.append(external_id)
    insert_rows(session, CanonicalRecord, new_records.values())
    insert_rows(session, Binding, new_bindings.values())
    enqueue_many(session, owed, fresh=new_records.keys())
    resolve_dead_letters(session, stream=stream.name, entity=entity, external_ids=resolved)
    session.flush()


def _store_record(
    records: dict[str, CanonicalRecord],
    new_records: dict[str, dict[str, Any]],
    canonical_id: str,
    entity: str,
    data: dict[str, Any],
    text: str,
    data_hash: str,
) -> bool:
    """Store the canonical record (a new row, or the loaded one updated); True when it changed.
    ``text``: ``data`` as JSON, hashed into ``data_hash``."""
    pending = new_records.get(canonical_id)
    if pending is not None:  # seen earlier in this page
        changed = bool(pending["payload_hash"] != data_hash)
        pending["data"], pending["payload_hash"] = JSONText(text), data_hash
        return changed
    record = records.get(canonical_id)
    if record is None:
        new_records[canonical_id] = {
            "id": canonical_id,
            "entity": entity,
            "data": JSONText(text),
            "payload_hash": data_hash,
        }
        return True
    if record.payload_hash == data_hash:
        return False
    record.data, record.payload_hash = data, data_hash
    return True


def _records_by_id(session: Any, ids: set[str]) -> dict[str, CanonicalRecord]:
    wanted = sorted(ids)
    found: dict[str, CanonicalRecord] = {}
    for start in range(0, len(wanted), ID_CHUNK):
        chunk = wanted[start : start + ID_CHUNK]
        found.update(
            (r.id, r)
            for r in session.scalars(
                select(CanonicalRecord).where(one_of(session, CanonicalRecord.id, chunk))
            )
        )
    return found


def _retry_waiting(
    runtime: Runtime,
    stream: StreamSettings,
    spec: Any,
    system: str,
    outbound_to: list[str],
    run_id: int,
    result: PullResult,
) -> None:
    """Map again the records that were only waiting for a referenced record (stored payloads)."""
    with runtime.transaction() as session:
        payloads = [
            dict(letter.payload)
            for letter in session.scalars(
                select(DeadLetter)
                .where(
                    DeadLetter.stream == stream.name,
                    DeadLetter.status == "open",
                    DeadLetter.error_type == MISSING_BINDING,
                )
                .order_by(DeadLetter.id)
                .limit(RETRY_BATCH)
            )
        ]
        if payloads:
            lookups = BindingLookups(session, {spec.system: system})
            before = result.read
            _store_page(
                session,
                runtime,
                stream,
                Mapper(spec, lookups),
                lookups,
                payloads,
                system,
                outbound_to,
                run_id,
                result,
            )
            result.read = before  # retried, not read from the source again


def _dead(
    session: Any,
    stream: StreamSettings,
    system: str,
    entity: str,
    external_id: str | None,
    payload: dict[str, Any],
    error: str,
    error_type: str,
    run_id: int,
    result: PullResult,
) -> None:
    record_dead_letter(
        session,
        stream=stream.name,
        system=system,
        entity=entity,
        external_id=external_id,
        payload=payload,
        error=error,
        error_type=error_type,
        run_id=run_id,
    )
    result.dead_lettered += 1


def stream_cursor(runtime: Runtime, stream: str) -> str | None:
    with runtime.sessions() as session:
        return session.scalars(select(StreamCursor.value).where(StreamCursor.stream == stream)).first()
