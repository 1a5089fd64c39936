"""Outbound: drain the outbox of one QuickBooks destination, exactly once per change.

Per entity (customers, then items, then invoices, so references resolve), in batches:
1. rows whose previous attempt has an unknown outcome are looked up remotely by their natural key
   (DisplayName, Name, DocNumber) and bound if the write did happen;
2. the rest are mapped (canonical -> QBO) and marked ``unknown`` in a committed transaction
   *before* the call, so a crash during the call is detected on restart;
3. the batch goes out with deterministic ``bId``s and ``requestid`` (QBO discards a replay);
4. per item, in one transaction: binding (remote id, SyncToken, payload hash) + row ``sent``; a
   refused record goes to the dead letters; a temporary failure returns the row to ``pending``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from connectors.errors import AuthError, FatalError, RecordError, RetryableError
from connectors.quickbooks.client import BatchItem, BatchResult, QuickBooksConnector
from connectors.quickbooks.errors import DuplicateNameError
from mappings.engine import Mapper, MappingError
from sync_engine.bindings import BindingLookups, bind, bindings_by_canonical, payload_hash
from sync_engine.dead_letters import record_dead_letter
from sync_engine.invoicing import invoice_document
from sync_engine.runtime import Runtime
from sync_engine.settings import DestinationSettings
from sync_engine.store.models import CanonicalRecord, Invoice, OutboxItem, SyncRun, utcnow

# canonical entity -> (QBO entity, natural key field in QBO, field of the mapped payload holding it)
ENTITIES: dict[str, tuple[str, str]] = {
    "customer": ("Customer", "DisplayName"),
    "product": ("Item", "Name"),
    "invoice": ("Invoice", "DocNumber"),
}
ORDER = ("customer", "product", "invoice")


@dataclass
class PushResult:
    destination: str
    sent: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    adopted: int = 0
    retry_later: int = 0
    api_calls: int = 0


@dataclass
class _Prepared:
    row: OutboxItem
    payload: dict[str, Any]
    operation: Literal["create", "update"]
    natural_key: str


def push_destination(
    runtime: Runtime, destination: DestinationSettings, progress: Callable[[int], None] | None = None
) -> PushResult:
    connector = runtime.quickbooks(destination.connection)
    calls_before = connector.api_calls
    result = PushResult(destination=destination.name)
    with runtime.transaction() as session:
        run = SyncRun(kind="push", stream=destination.name)
        session.add(run)
        session.flush()
        run_id = run.id
    status, error = "ok", None
    try:
        for entity in ORDER:
            if entity in destination.mappings:
                _push_entity(runtime, destination, connector, entity, run_id, result, progress)
    except (AuthError, FatalError) as exc:
        status, error = "failed", str(exc)
        raise
    finally:
        result.api_calls = connector.api_calls - calls_before
        with runtime.transaction() as session:
            run_row = session.get(SyncRun, run_id)
            assert run_row is not None
            run_row.status = (
                "partial" if status == "ok" and (result.dead_lettered or result.retry_later) else status
            )
            run_row.error = error
            run_row.finished_at = utcnow()
            run_row.counts = {
                "sent": dict(result.sent),
                "unchanged": result.unchanged,
                "deferred": result.deferred,
                "dead_lettered": result.dead_lettered,
                "adopted": result.adopted,
                "api_calls": result.api_calls,
            }
    return result


def _push_entity(
    runtime: Runtime,
    destination: DestinationSettings,
    connector: QuickBooksConnector,
    entity: str,
    run_id: int,
    result: PushResult,
    progress: Callable[[int], None] | None,
) -> None:
    spec = runtime.spec(destination.mappings[entity])  # type: ignore[index]
    qbo_entity, natural_field = ENTITIES[entity]
    system = destination.name
    batch_size = destination.batch_size
    last_id = 0
    while True:
        with runtime.transaction() as session:
            rows = list(
                session.scalars(
                    select(OutboxItem)
                    .where(
                        OutboxItem.destination == destination.name,
                        OutboxItem.entity == entity,
                        OutboxItem.status.in_(("pending", "unknown")),
                        OutboxItem.id > last_id,
                    )
                    .order_by(OutboxItem.id)
                    .limit(batch_size)
                )
            )
            if not rows:
                return
            last_id = rows[-1].id
            lookups = BindingLookups(session, {spec.system: system})
            mapper = Mapper(spec, lookups)
            documents = _documents(session, entity, [r.canonical_id for r in rows])
            bound = bindings_by_canonical(session, system, entity, [r.canonical_id for r in rows])
            prepared: list[_Prepared] = []
            unknown: list[tuple[OutboxItem, dict[str, Any]]] = []
            for row in rows:
                doc = documents.get(row.canonical_id)
                if doc is None:
                    _fail(
                        session,
                        row,
                        run_id,
                        entity,
                        system,
                        {},
                        "the record no longer exists",
                        "NotFound",
                        result,
                    )
                    continue
                binding = bound.get(row.canonical_id)
                doc_hash = payload_hash(doc)
                if binding is not None and (entity == "invoice" or binding.payload_hash == doc_hash):
                    _done(row)
                    result.unchanged += 1
                    continue
                try:
                    payload = mapper.map(doc)
                except MappingError as exc:
                    if exc.only_missing_bindings:
                        row.last_error = str(exc)
                        result.deferred += 1
                    else:
                        _fail(session, row, run_id, entity, system, doc, str(exc), "MappingError", result)
                    continue
                if binding is not None:
                    payload.update(
                        {
                            "Id": binding.external_id,
                            "SyncToken": binding.remote_version or "0",
                            "sparse": True,
                        }
                    )
                    operation: Literal["create", "update"] = "update"
                else:
                    operation = "create"
                item = _Prepared(row, payload, operation, str(payload.get(natural_field, "")))
                if row.status == "unknown" and operation == "create":
                    unknown.append((row, payload))
                prepared.append(item)
            # 1. writes of unknown outcome: did they happen? (one query for the whole batch)
            if unknown:
                found = connector.find_by(
                    qbo_entity, natural_field, [str(p.get(natural_field)) for _, p in unknown]
                )
                for row, payload in unknown:
                    remote = found.get(str(payload.get(natural_field)))
                    if remote is not None:
                        _bound(session, system, entity, row, remote, documents[row.canonical_id])
                        result.adopted += 1
                prepared = [p for p in prepared if p.row.status != "sent"]
            # 2. mark in flight before the call
            for p in prepared:
                p.row.status = "unknown"
                p.row.attempts += 1
        if not prepared:
            continue
        items = [
            BatchItem(key=p.row.idempotency_key, entity=qbo_entity, operation=p.operation, payload=p.payload)
            for p in prepared
        ]
        try:
            results = connector.batch(items)
        except RetryableError as exc:
            with runtime.transaction() as session:
                for p in prepared:
                    in_flight = session.get(OutboxItem, p.row.id)
                    assert in_flight is not None
                    in_flight.last_error = str(exc)  # stays "unknown": looked up before the next attempt
            result.retry_later += len(prepared)
            continue
        _apply_results(
            runtime, connector, prepared, results, system, entity, qbo_entity, natural_field, run_id, result
        )
        if progress:
            progress(len(prepared))


def _apply_results(
    runtime: Runtime,
    connector: QuickBooksConnector,
    prepared: Sequence[_Prepared],
    results: Sequence[BatchResult],
    system: str,
    entity: str,
    qbo_entity: str,
    natural_field: str,
    run_id: int,
    result: PushResult,
) -> None:
    by_key = {r.key: r for r in results}
    with runtime.transaction() as session:
        documents = _documents(session, entity, [p.row.canonical_id for p in prepared])
        for p in prepared:
            row = session.get(OutboxItem, p.row.id)
            assert row is not None
            outcome = by_key.get(row.idempotency_key)
            doc = documents.get(row.canonical_id, {})
            if outcome is not None and outcome.ok and outcome.entity is not None:
                _bound(session, system, entity, row, outcome.entity, doc)
                result.sent[entity] = result.sent.get(entity, 0) + 1
                continue
            error = outcome.error if outcome is not None else None
            if isinstance(error, DuplicateNameError):
                # The name exists already (created by hand, or by a write we lost track of): adopt it.
                remote = connector.find_by(qbo_entity, natural_field, [p.natural_key]).get(p.natural_key)
                if remote is not None:
                    _bound(session, system, entity, row, remote, doc)
                    result.adopted += 1
                    continue
            if isinstance(error, RecordError):
                _fail(
                    session,
                    row,
                    run_id,
                    entity,
                    system,
                    _json_safe(p.payload),
                    str(error),
                    type(error).__name__,
                    result,
                )
            else:
                row.status = "pending" if not isinstance(error, RetryableError) else "unknown"
                row.last_error = str(error) if error else "no result for this item in the batch response"
                result.retry_later += 1


def _documents(session: Any, entity: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    if entity == "invoice":
        products = {
            data["code"]: cid
            for cid, data in session.execute(
                select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "product")
            )
        }
        invoices = session.scalars(select(Invoice).where(Invoice.id.in_(ids)))
        return {inv.id: invoice_document(inv, products) for inv in invoices}
    rows = session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.id.in_(ids))
    )
    return {row.id: dict(row.data) for row in rows}


def _bound(
    session: Any, system: str, entity: str, row: OutboxItem, remote: dict[str, Any], doc: dict[str, Any]
) -> None:
    bind(
        session,
        system=system,
        entity=entity,
        external_id=str(remote["Id"]),
        canonical_id=row.canonical_id,
        remote_version=str(remote.get("SyncToken", "0")),
        hash_=payload_hash(doc),
    )
    _done(row)


def _done(row: OutboxItem) -> None:
    row.status = "sent"
    row.done_at = utcnow()
    row.last_error = None


def _fail(
    session: Any,
    row: OutboxItem,
    run_id: int,
    entity: str,
    system: str,
    payload: dict[str, Any],
    error: str,
    error_type: str,
    result: PushResult,
) -> None:
    row.status = "failed"
    row.last_error = error
    record_dead_letter(
        session,
        stream=f"push:{system}",
        system=system,
        entity=entity,
        external_id=row.canonical_id,
        payload=_json_safe(payload),
        error=error,
        error_type=error_type,
        run_id=run_id,
    )
    result.dead_lettered += 1


def _json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
