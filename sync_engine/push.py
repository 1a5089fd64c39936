"""Outbound: drain the outbox of one QuickBooks destination, exactly once per change.

Per entity (customers, then items, then invoices, so references resolve), in batches:
1. rows whose previous attempt has an unknown outcome are looked up remotely by their natural key
   (DisplayName, Name, DocNumber) and bound if the write did happen;
2. the rest are mapped (canonical -> QBO) and marked ``unknown`` in a committed transaction
   *before* the call, so a crash during the call is detected on restart;
3. the batch goes out with deterministic ``bId``s and ``requestid`` (QBO discards a replay);
4. per item, in one transaction: binding (remote id, SyncToken, payload hash) + row ``sent``; a
   refused record goes to the dead letters; a temporary failure returns the row to ``pending``.

A void (``invoice_void``) is not a record of its own: it acts on the invoice's remote copy, found by the
invoice's binding, after the invoice itself (one not pushed yet is created first, then voided). It is
sent once: its own binding, made when the void succeeds, marks it done; a resend after an unknown
outcome keeps its key, so QBO answers it from its request-id cache instead of voiding again.

One destination is pushed by one process at a time (a lock shared by every process on the store:
two pushers would both see a row in flight and send it twice). With the distributed executor a
destination can be pushed in ``parts``: rows are split by the customer they belong to (customers,
their invoices, voids, statuses, balances), so one customer's writes stay in order in one part, each
part is pushed by one process at a time, and parts run side by side on several workers; rows that
belong to no customer (items, payments, credit notes...) are part 0's, whose push starts with the
items every invoice needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy import BigInteger, ColumnElement, cast, false, func, select, true
from sqlalchemy.dialects.postgresql import BIT

from connectors.errors import AuthError, FatalError, RecordError, RetryableError
from mappings.engine import Mapper, MappingError
from sync_engine.bindings import BindingLookups, bind, bindings_by_canonical, payload_hash
from sync_engine.credit_notes import credit_application_documents, credit_note_document
from sync_engine.dead_letters import record_dead_letter, resolve_dead_letters
from sync_engine.destinations import Destination, Outcome, Write
from sync_engine.invoice_status import invoice_status_document
from sync_engine.invoicing import invoice_document
from sync_engine.outbox import enqueue
from sync_engine.payments import customer_balance_document, order_balance_documents, payment_document
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import DestinationSettings
from sync_engine.store.models import (
    Binding,
    CanonicalRecord,
    CreditNote,
    Invoice,
    OutboxItem,
    Payment,
    SyncRun,
    utcnow,
)
from sync_engine.store.process_lock import process_lock
from sync_engine.voiding import invoice_void_documents

ORDER = (
    "customer",
    "product",
    "invoice",
    "invoice_void",
    "credit_note",
    "invoice_status",
    "payment",
    "credit_application",
    "customer_balance",
    "order_balance",
)

#: Entities written as an operation on the remote copy of another entity: (that entity, operation).
ACTS_ON: Final[dict[str, tuple[str, Literal["void"]]]] = {"invoice_void": ("invoice", "void")}
#: Entities written once: a binding means done (an invoice is never rewritten, a void never repeated).
WRITTEN_ONCE: Final = ("invoice", *ACTS_ON)
#: Entities split into parts by customer: keyed by the customer itself, or by the invoice's customer.
BY_CUSTOMER: Final = ("customer", "customer_balance")
BY_INVOICE_CUSTOMER: Final = ("invoice", "invoice_void", "invoice_status")


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
    #: another process was pushing this destination (or part): nothing was done, try again later
    busy: bool = False


@dataclass
class _Prepared:
    """One outbox row ready to send, as plain values: no ORM object outlives its transaction."""

    row_id: int
    key: str
    canonical_id: str
    doc: dict[str, Any]
    payload: dict[str, Any]
    operation: Literal["create", "update", "void"]
    natural_key: str
    outcome_unknown: bool
    remote_id: str | None
    remote_version: str | None
    sent_match_key: str | None  # what the previous, unknown-outcome attempt was sent with
    sent_hash: str | None


def push_destination(
    runtime: Runtime,
    destination: DestinationSettings,
    progress: Callable[[int], None] | None = None,
    *,
    part: tuple[int, int] | None = None,
) -> PushResult:
    """Drain the destination's outbox, or only part ``(index, count)`` of it (see the module docstring).

    Returns at once with ``busy`` set when another process pushes the same destination or part."""
    if part is not None and part[1] <= 1:
        part = None
    if part is not None and not 0 <= part[0] < part[1]:
        raise ValueError(f"part {part[0]} of {part[1]} does not exist")
    if part is not None and runtime.engine.dialect.name != "postgresql":
        raise ValueError("a destination is pushed in parts only on PostgreSQL")
    lock_name = f"push-{destination.name}"
    with process_lock(runtime.engine, lock_name, shared=part is not None) as whole:
        if part is None:
            if not whole:
                return PushResult(destination=destination.name, busy=True)
            return _push_locked(runtime, destination, progress, None)
        with process_lock(runtime.engine, f"{lock_name}-{part[0]}-of-{part[1]}") as mine:
            if not (whole and mine):
                return PushResult(destination=destination.name, busy=True)
            return _push_locked(runtime, destination, progress, part)


def _push_locked(
    runtime: Runtime,
    destination: DestinationSettings,
    progress: Callable[[int], None] | None,
    part: tuple[int, int] | None,
) -> PushResult:
    connector = runtime.destination(destination.connection)
    calls_before = connector.api_calls
    result = PushResult(destination=destination.name)
    stream = destination.name if part is None else f"{destination.name}#{part[0] + 1}/{part[1]}"
    # items first when in parts: every part's invoices need them, and only part 0 pushes them
    order = ORDER if part is None else ("product", *(e for e in ORDER if e != "product"))
    with runtime.transaction() as session:
        run = SyncRun(kind="push", stream=stream)
        session.add(run)
        session.flush()
        run_id = run.id
    status, error = "ok", None
    try:
        for entity in order:
            if entity in destination.mappings:
                _push_entity(runtime, destination, connector, entity, run_id, result, progress, part)
    except BaseException as exc:  # Ctrl-C and database errors too: the run did not finish
        status = "stopped" if isinstance(exc, StopRequested) else "failed"
        error = f"{type(exc).__name__}: {exc}"
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
    connector: Destination,
    entity: str,
    run_id: int,
    result: PushResult,
    progress: Callable[[int], None] | None,
    part: tuple[int, int] | None = None,
) -> None:
    """Batches of up to the destination's limit; no network call ever runs inside a database transaction
    (on SQLite a transaction holds the write lock, and a token refresh must be able to commit)."""
    spec = runtime.spec(destination.mappings[entity])  # type: ignore[index]
    qbo_entity, natural_field = spec.object, spec.match_on or ""
    last_id = 0
    while True:
        runtime.checkpoint()  # a stop request ends the push here, between batches
        batch_size = min(destination.batch_size or connector.max_batch, connector.max_batch)
        prepared, last_id = _prepare(
            runtime, destination, entity, natural_field, last_id, run_id, result, batch_size, part
        )
        if last_id < 0:
            return
        # Writes whose outcome is unknown (timeout, crash mid-call): did they happen? Look them up
        # by the key they were *sent* with (the record may have been renamed since). One query.
        unknown = [p for p in prepared if p.outcome_unknown and p.operation == "create" and p.sent_match_key]
        found = (
            connector.find_by(qbo_entity, natural_field, [str(p.sent_match_key) for p in unknown])
            if unknown
            else {}
        )
        unknown_ids = {p.row_id for p in unknown}
        with runtime.transaction() as session:
            to_send = []
            rows = _rows_by_id(session, [p.row_id for p in prepared])
            for p in prepared:
                row = rows[p.row_id]
                remote = found.get(str(p.sent_match_key)) if p.row_id in unknown_ids else None
                if remote is not None:
                    _adopt(
                        session,
                        destination.name,
                        entity,
                        row,
                        connector.identity(remote),
                        p.sent_hash,
                        payload_hash(p.doc),
                    )
                    result.adopted += 1
                    continue
                if row.status == "pending":  # a fresh attempt gets a fresh key; a resend keeps its key
                    row.attempts += 1
                row.status = "unknown"  # in flight: committed before the call
                row.sent_match_key, row.sent_hash = p.natural_key or None, payload_hash(p.doc)
                p.key = f"{row.idempotency_key}#{row.attempts}"
                to_send.append(p)
        if not to_send:
            continue
        items = [
            Write(
                key=p.key,
                object=qbo_entity,
                operation=p.operation,
                payload=p.payload,
                remote_id=p.remote_id,
                remote_version=p.remote_version,
            )
            for p in to_send
        ]
        try:
            results = connector.write(items)
        except RetryableError as exc:  # batch() reports call failures per item; this is a safety net
            with runtime.transaction() as session:
                for row in _rows_by_id(session, [p.row_id for p in to_send]).values():
                    row.last_error = str(exc)  # stays "unknown": looked up before the next attempt
            result.retry_later += len(to_send)
            continue
        _apply_results(
            runtime,
            connector,
            to_send,
            results,
            destination.name,
            entity,
            qbo_entity,
            natural_field,
            run_id,
            result,
        )
        if progress:
            progress(len(to_send))


def _prepare(
    runtime: Runtime,
    destination: DestinationSettings,
    entity: str,
    natural_field: str,
    after_id: int,
    run_id: int,
    result: PushResult,
    batch_size: int,
    part: tuple[int, int] | None = None,
) -> tuple[list[_Prepared], int]:
    """Map the next batch of open outbox rows; returns them and the last row id (-1 when none left).

    Rows that need no call (already in the destination with the same data) are closed here; rows
    that cannot be mapped go to the dead letters, or wait when they only miss a binding."""
    spec = runtime.spec(destination.mappings[entity])  # type: ignore[index]
    system = destination.name
    with runtime.transaction() as session:
        # One query per open status: each walks the (destination, status, id) index in id order and
        # stops at the batch size; with ``status IN (...)`` PostgreSQL would read and sort every open
        # row of the destination for every batch (quadratic in the outbox's depth).
        query = (
            select(OutboxItem)
            .where(
                OutboxItem.destination == destination.name,
                OutboxItem.entity == entity,
                OutboxItem.id > after_id,
                _in_part(entity, part),
            )
            .order_by(OutboxItem.id)
            .limit(batch_size)
        )
        rows = sorted(
            (
                row
                for status in ("pending", "unknown")
                for row in session.scalars(query.where(OutboxItem.status == status))
            ),
            key=lambda row: row.id,
        )[:batch_size]
        if not rows:
            return [], -1
        mapper = Mapper(
            spec, BindingLookups(session, {spec.system: system}, {spec.system: destination.connection})
        )
        ids = [r.canonical_id for r in rows]
        documents = _documents(session, entity, ids)
        bound = bindings_by_canonical(session, system, entity, ids)
        acts_on = ACTS_ON.get(entity)
        targets = bindings_by_canonical(session, system, acts_on[0], ids) if acts_on else {}
        prepared: list[_Prepared] = []
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
            same = (
                binding is not None and binding.payload_hash == payload_hash(doc) and row.action != "resync"
            )
            if binding is not None and (entity in WRITTEN_ONCE or same):
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
            operation: Literal["create", "update", "void"] = "create" if binding is None else "update"
            if acts_on is not None:
                target = targets.get(row.canonical_id)
                if target is None:  # the record it acts on has not reached the destination yet
                    row.last_error = f"waiting for the {acts_on[0]} to reach {system}"
                    result.deferred += 1
                    continue
                binding, operation = target, acts_on[1]
            prepared.append(
                _Prepared(
                    row_id=row.id,
                    key=row.idempotency_key,
                    canonical_id=row.canonical_id,
                    doc=doc,
                    payload=payload,
                    operation=operation,
                    natural_key=str(payload.get(natural_field, "")),
                    outcome_unknown=row.status == "unknown",
                    remote_id=binding.external_id if binding else None,
                    remote_version=binding.remote_version if binding else None,
                    sent_match_key=row.sent_match_key,
                    sent_hash=row.sent_hash,
                )
            )
        return prepared, rows[-1].id


def _apply_results(
    runtime: Runtime,
    connector: Destination,
    sent: Sequence[_Prepared],
    results: Sequence[Outcome],
    system: str,
    entity: str,
    qbo_entity: str,
    natural_field: str,
    run_id: int,
    result: PushResult,
) -> None:
    by_key = {r.key: r for r in results}
    stop: AuthError | FatalError | None = None

    # A name that exists already (made by hand, or by a write we lost track of) is adopted, not
    # duplicated; look those up before opening the transaction.
    def failed_with(kind: type[Exception]) -> list[_Prepared]:
        return [p for p in sent if isinstance(getattr(by_key.get(p.key), "error", None), kind)]

    duplicates = [p.natural_key for p in failed_with(connector.duplicate_error) if natural_field]
    existing = connector.find_by(qbo_entity, natural_field, duplicates) if duplicates else {}
    # A stale SyncToken means the record changed in QBO since we last wrote it (or our previous
    # update did land): take the current version and send the update again on the next pass.
    fresh_versions = {
        p.canonical_id: connector.get(qbo_entity, str(p.remote_id))
        for p in failed_with(connector.stale_error)
        if p.operation == "update"  # a void re-reads the version itself; a second stale one is refused
    }
    with runtime.transaction() as session:
        # the batch's rows and bindings in one query each, its dead letters closed in one statement
        rows = _rows_by_id(session, [p.row_id for p in sent])
        bindings = bindings_by_canonical(session, system, entity, [p.canonical_id for p in sent])
        delivered: list[str] = []
        for p in sent:
            row = rows[p.row_id]
            outcome = by_key.get(p.key)
            if outcome is not None and outcome.ok and outcome.entity is not None:
                identity = connector.identity(outcome.entity)
                bindings[p.canonical_id] = _bind_remote(
                    session, system, entity, row, identity, payload_hash(p.doc), bindings.get(p.canonical_id)
                )
                delivered.append(p.canonical_id)
                if entity in ACTS_ON:  # the record acted on has a new version now
                    _new_version(session, system, ACTS_ON[entity][0], p.canonical_id, identity[1])
                result.sent[entity] = result.sent.get(entity, 0) + 1
                continue
            error = outcome.error if outcome is not None else None
            if isinstance(error, connector.duplicate_error) and p.natural_key in existing:
                # Created by hand, or by a write we lost track of: adopt it, then write our data on it.
                _adopt(
                    session,
                    system,
                    entity,
                    row,
                    connector.identity(existing[p.natural_key]),
                    None,
                    payload_hash(p.doc),
                )
                result.adopted += 1
            elif p.canonical_id in fresh_versions:
                remote = fresh_versions[p.canonical_id]
                external_id, version = connector.identity(remote)
                bind(
                    session,
                    system=system,
                    entity=entity,
                    external_id=external_id,
                    canonical_id=p.canonical_id,
                    remote_version=version,
                    hash_=None,
                )
                row.status, row.last_error = "pending", str(error)
                result.retry_later += 1
            elif isinstance(error, RecordError):
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
                # No answer for this item (timeout, throttling, auth, TLS...): it may have been
                # applied, so it stays "unknown" and is looked up before it is sent again.
                row.last_error = str(error) if error else "no result for this item in the batch response"
                result.retry_later += 1
                if isinstance(error, AuthError | FatalError):
                    stop = stop or error
        resolve_dead_letters(session, stream=f"push:{system}", entity=entity, external_ids=delivered)
    if stop is not None:
        raise stop  # after committing what we learned: a person must fix credentials or config


def _in_part(entity: str, part: tuple[int, int] | None) -> ColumnElement[bool]:
    """The outbox rows of part ``(index, count)``, by a hash of the customer they belong to."""
    if part is None:
        return true()
    index, count = part
    if entity in BY_CUSTOMER:
        owner: Any = OutboxItem.canonical_id
    elif entity in BY_INVOICE_CUSTOMER:
        owner = select(Invoice.customer_id).where(Invoice.id == OutboxItem.canonical_id).scalar_subquery()
    else:
        return true() if index == 0 else false()
    # PostgreSQL only (parts need the distributed executor): the first 32 bits of md5, unsigned
    bits = cast(cast(func.concat("x", func.substr(func.md5(owner), 1, 8)), BIT(32)), BigInteger)
    return bits % count == index


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
    if entity == "invoice_void":
        return invoice_void_documents(session, ids)
    if entity == "invoice_status":
        invoices = session.scalars(select(Invoice).where(Invoice.id.in_(ids)))
        return {inv.id: invoice_status_document(inv) for inv in invoices}
    if entity == "payment":
        payments = session.scalars(select(Payment).where(Payment.id.in_(ids)))
        return {p.id: payment_document(p) for p in payments}
    if entity == "credit_note":
        products = {
            data["code"]: cid
            for cid, data in session.execute(
                select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "product")
            )
        }
        notes = session.scalars(select(CreditNote).where(CreditNote.id.in_(ids)))
        return {note.id: credit_note_document(note, products) for note in notes}
    if entity == "credit_application":
        return credit_application_documents(session, ids)
    if entity == "order_balance":
        return order_balance_documents(session, ids)
    if entity == "customer_balance":
        known = set(session.scalars(select(CanonicalRecord.id).where(CanonicalRecord.id.in_(ids))))
        return {cid: customer_balance_document(session, cid) for cid in ids if cid in known}
    rows = session.execute(
        select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.id.in_(ids))
    )
    return {row.id: dict(row.data) for row in rows}


def _rows_by_id(session: Any, ids: list[int]) -> dict[int, OutboxItem]:
    """The batch's outbox rows in one query (a batch is at most a few hundred rows)."""
    rows = {row.id: row for row in session.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids)))}
    missing = set(ids) - rows.keys()
    assert not missing, f"outbox rows {sorted(missing)} vanished during the push"
    return rows


def _bind_remote(
    session: Any,
    system: str,
    entity: str,
    row: OutboxItem,
    remote: tuple[str, str],
    sent_hash: str | None,
    existing: Binding | None,
) -> Binding:
    """Record where the canonical record lives now (remote id, version) and mark the row sent;
    ``existing``: its binding, already looked up (None: it has none)."""
    external_id, version = remote
    binding = bind(
        session,
        system=system,
        entity=entity,
        external_id=external_id,
        canonical_id=row.canonical_id,
        remote_version=version,
        hash_=sent_hash,
        existing=existing,
        looked_up=True,
    )
    _done(row)
    return binding


def _bound(
    session: Any, system: str, entity: str, row: OutboxItem, remote: tuple[str, str], sent_hash: str | None
) -> None:
    """:func:`_bind_remote` for one record, its binding looked up, its dead letters closed;
    ``sent_hash`` is the data the destination holds (None when unknown)."""
    existing = bindings_by_canonical(session, system, entity, [row.canonical_id]).get(row.canonical_id)
    _bind_remote(session, system, entity, row, remote, sent_hash, existing)
    resolve_dead_letters(session, stream=f"push:{system}", entity=entity, external_ids=[row.canonical_id])


def _new_version(session: Any, system: str, entity: str, canonical_id: str, version: str) -> None:
    binding = bindings_by_canonical(session, system, entity, [canonical_id]).get(canonical_id)
    if binding is not None:
        binding.remote_version = version


def _adopt(
    session: Any,
    system: str,
    entity: str,
    row: OutboxItem,
    remote: tuple[str, str],
    sent_hash: str | None,
    current_hash: str,
) -> None:
    """Bind to a record that exists remotely; if it does not hold our current data, queue an update."""
    _bound(session, system, entity, row, remote, sent_hash)
    if entity != "invoice" and sent_hash != current_hash:
        session.flush()
        enqueue(
            session,
            destination=system,
            entity=entity,
            canonical_id=row.canonical_id,
            action="upsert",
            version=current_hash[:16],
        )


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
