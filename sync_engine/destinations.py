"""One interface over the systems billsync writes to, so the dispatcher (push.py) knows no vendor.

Each adapter turns a batch of :class:`Write` into per-item :class:`Outcome` and says how to find a
record by a field (for writes whose outcome is unknown), how to re-read one, and which of its
errors mean "the name exists already" and "your version is stale".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from connectors.errors import ConnectorError, FatalError, OutcomeUnknownError, RecordError
from connectors.nav.client import NavConnector
from connectors.nav.client import remote_identity as nav_identity
from connectors.nav.errors import DuplicateRecordError, StaleRecordError
from connectors.quickbooks.client import BatchItem, QuickBooksConnector, write_request_id
from connectors.quickbooks.client import remote_identity as qbo_identity
from connectors.quickbooks.errors import DuplicateNameError, StaleObjectError
from connectors.salesforce.client import CollectionResult, SalesforceConnector
from connectors.salesforce.errors import DuplicateValueError
from connectors.salesforce.errors import StaleRecordError as SalesforceStaleError
from connectors.salesforce.schema import EXTERNAL_ID_FIELDS

#: The NAV codeunit operation that records an invoice's payment status (not a page).
PAYMENT_STATUS = "PaymentStatus"


def _date_or_none(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


@dataclass(frozen=True)
class Write:
    key: str  # deterministic, from the outbox row: the idempotency key where the vendor has one
    object: str
    #: ``void``: cancel the record at ``remote_id`` (version ``remote_version``), which stays there
    operation: Literal["create", "update", "void"]
    payload: Mapping[str, Any]
    remote_id: str | None = None
    remote_version: str | None = None


@dataclass(frozen=True)
class Outcome:
    key: str
    ok: bool
    entity: dict[str, Any] | None
    error: ConnectorError | None


class Destination(Protocol):
    duplicate_error: type[RecordError]
    stale_error: type[RecordError]
    max_batch: int  # writes one call may carry

    @property
    def api_calls(self) -> int: ...

    def write(self, items: Sequence[Write]) -> list[Outcome]: ...

    def find_by(self, obj: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]: ...

    def get(self, obj: str, remote_id: str) -> dict[str, Any]: ...

    def identity(self, remote: Mapping[str, Any]) -> tuple[str, str]: ...


class QuickBooksDestination:
    """QBO: batches of 30 with bId = key and a deterministic requestid; sparse updates by SyncToken."""

    duplicate_error: type[RecordError] = DuplicateNameError
    stale_error: type[RecordError] = StaleObjectError
    max_batch = 30  # the batch endpoint's limit

    def __init__(self, connector: QuickBooksConnector) -> None:
        self.connector = connector

    @property
    def api_calls(self) -> int:
        return self.connector.api_calls

    def write(self, items: Sequence[Write]) -> list[Outcome]:
        """Creates and updates in batches; voids one call each (QBO voids an invoice only through its
        own endpoint), with a request id derived from the key."""
        outcomes = {w.key: self._void(w) for w in items if w.operation == "void"}
        batch = [
            BatchItem(
                key=w.key,
                entity=w.object,
                operation=w.operation,
                payload=w.payload,
                remote_id=w.remote_id,
                remote_version=w.remote_version,
            )
            for w in items
            if w.operation != "void"
        ]
        if batch:
            for r in self.connector.batch(batch):
                outcomes[r.key] = Outcome(r.key, r.ok, r.entity, r.error)
        return [outcomes[w.key] for w in items]

    def _void(self, w: Write) -> Outcome:
        if w.remote_id is None:
            error = RecordError(f"cannot void {w.object}: it is not in QuickBooks yet", system="quickbooks")
            return Outcome(w.key, False, None, error)
        try:
            voided = self.connector.void(
                w.object, w.remote_id, w.remote_version, request_id=write_request_id(w.key)
            )
        except ConnectorError as exc:
            return Outcome(w.key, False, None, exc)
        return Outcome(w.key, True, voided, None)

    def find_by(self, obj: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]:
        return self.connector.find_by(obj, field, values)

    def get(self, obj: str, remote_id: str) -> dict[str, Any]:
        return self.connector.get(obj, remote_id)

    def identity(self, remote: Mapping[str, Any]) -> tuple[str, str]:
        return qbo_identity(remote)


class NavDestination:
    """Dynamics NAV / Business Central pages: CreateMultiple per chunk, Update by the record's Key.

    NAV writes carry no idempotency key, so the lookup of an unknown outcome by ``match_on`` is
    the only protection against a duplicate; the dispatcher always does it.
    """

    duplicate_error: type[RecordError] = DuplicateRecordError
    stale_error: type[RecordError] = StaleRecordError
    max_batch = 100  # records per CreateMultiple call

    def __init__(self, connector: NavConnector) -> None:
        self.connector = connector

    @property
    def api_calls(self) -> int:
        return self.connector.api_calls

    def write(self, items: Sequence[Write]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {w.key: _no_void(w, "nav") for w in items if w.operation == "void"}
        by_object: dict[str, list[Write]] = {}
        for w in items:
            if w.operation == "void":
                continue
            if w.object == PAYMENT_STATUS:
                outcomes[w.key] = self._payment_status(w)
            elif w.operation == "create":
                by_object.setdefault(w.object, []).append(w)
        for obj, creates in by_object.items():
            results = self.connector.create_batch(obj, [dict(w.payload) for w in creates])
            for w, result in zip(creates, results, strict=True):
                outcomes[w.key] = Outcome(w.key, result.ok, result.record, result.error)
        for w in items:
            if w.operation != "update" or w.object == PAYMENT_STATUS:
                continue
            try:
                record = self.connector.update(
                    w.object, {**w.payload, "Key": w.remote_version, "No": w.remote_id}
                )
                outcomes[w.key] = Outcome(w.key, True, record, None)
            except ConnectorError as exc:
                outcomes[w.key] = Outcome(w.key, False, None, exc)
        return [outcomes[w.key] for w in items]

    def _payment_status(self, w: Write) -> Outcome:
        """The codeunit call; idempotent in NAV by (invoice, status), so a resend is harmless."""
        p = w.payload
        try:
            self.connector.record_payment_status(
                str(p["invoiceNo"]),
                str(p["status"]),
                p["amountPaid"],
                p["amountDue"],
                str(p["currencyCode"]),
                _date_or_none(p.get("paidOn")),
            )
        except ConnectorError as exc:
            return Outcome(w.key, False, None, exc)
        return Outcome(w.key, True, {"No": p["invoiceNo"], "Key": f"{p['status']}"}, None)

    def find_by(self, obj: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]:
        if obj == PAYMENT_STATUS:
            return {}  # nothing to look up: resending a status records it at most once
        return self.connector.find_by(obj, field, values)

    def get(self, obj: str, remote_id: str) -> dict[str, Any]:
        record = self.connector.read(obj, remote_id)
        if record is None:
            raise RecordError(f"{obj} {remote_id} does not exist in NAV", system="nav")
        return record

    def identity(self, remote: Mapping[str, Any]) -> tuple[str, str]:
        return nav_identity(remote)


class SalesforceDestination:
    """Salesforce: upserts by an external id field, in sObject collections of 200 (``allOrNone: false``).

    Create and update are the same call: the record is matched by its external id (the spec's
    ``match_on``, which the payload carries), so a resend after a timeout updates the record it may
    have created instead of duplicating it, and no version is needed (``stale_error`` never occurs).
    ``external_ids`` maps an object to that field; billsync's own objects are known already
    (``Billsync_Invoice__c`` -> ``Invoice_Number__c``). Several writes of one record in a batch are
    sent once (the last one: the outbox keeps them in order) and all get its outcome.
    """

    duplicate_error: type[RecordError] = DuplicateValueError
    stale_error: type[RecordError] = SalesforceStaleError
    max_batch = 200  # records per sObject collection request

    def __init__(self, connector: SalesforceConnector, external_ids: Mapping[str, str] | None = None) -> None:
        self.connector = connector
        self.external_ids = {obj: fields[0] for obj, fields in EXTERNAL_ID_FIELDS.items()}
        self.external_ids.update(external_ids or {})

    @property
    def api_calls(self) -> int:
        return self.connector.api_calls

    def write(self, items: Sequence[Write]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {
            w.key: _no_void(w, "salesforce") for w in items if w.operation == "void"
        }
        by_object: dict[str, list[Write]] = {}
        for w in items:
            if w.operation != "void":
                by_object.setdefault(w.object, []).append(w)
        for obj, writes in by_object.items():
            field = self.external_ids.get(obj)
            if field is None and all(w.payload.get("Id") for w in writes):
                field = "Id"  # records that carry their Id (e.g. an Account's balance) are updated by it
            if field is None:
                error = FatalError(
                    f"no external id field to upsert Salesforce {obj} by; set match_on in its mapping spec",
                    system="salesforce",
                )
                outcomes.update({w.key: Outcome(w.key, False, None, error) for w in writes})
                continue
            sent: list[Write] = []
            position: dict[str, int] = {}  # external id -> its place in ``sent``
            owner: dict[str, int] = {}  # write key -> the place in ``sent`` whose result it gets
            for w in writes:
                value = w.payload.get(field)
                external_id = None if value is None else str(value)
                if external_id is not None and external_id in position:
                    sent[position[external_id]] = w  # a later write of the same record supersedes it
                else:
                    sent.append(w)
                    if external_id is not None:
                        position[external_id] = len(sent) - 1
                owner[w.key] = position[external_id] if external_id is not None else len(sent) - 1
            results = self.connector.upsert_collection(obj, field, [dict(w.payload) for w in sent])
            for w in writes:
                outcomes[w.key] = _salesforce_outcome(w.key, field, results[owner[w.key]])
        return [outcomes[w.key] for w in items]

    def find_by(self, obj: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]:
        return self.connector.find_by(obj, field, values)

    def get(self, obj: str, remote_id: str) -> dict[str, Any]:
        return self.connector.get(obj, remote_id)

    def identity(self, remote: Mapping[str, Any]) -> tuple[str, str]:
        """``(Id, SystemModstamp)``; an upsert result has no modstamp, and none is needed to upsert."""
        record_id = remote.get("Id") or remote.get("id")
        return str(record_id or ""), str(remote.get("SystemModstamp") or "")


def _no_void(w: Write, system: str) -> Outcome:
    """Systems that learn of a void through the invoice's status (``invoice_status``) have no void."""
    error = FatalError(
        f"{system} has no void operation: map invoice_void only to QuickBooks destinations "
        "(the ERP and the CRM learn of a void through invoice_status)",
        system=system,
    )
    return Outcome(w.key, False, None, error)


def _salesforce_outcome(key: str, field: str, result: CollectionResult) -> Outcome:
    if not result.ok:
        return Outcome(key, False, None, result.error)
    if not result.id:  # cannot happen from API 46.0 on; look the record up rather than bind nothing
        error = OutcomeUnknownError(
            f"Salesforce accepted {field}={result.external_id} without returning its Id", system="salesforce"
        )
        return Outcome(key, False, None, error)
    entity = {"Id": result.id, field: result.external_id, "created": result.created}
    return Outcome(key, True, entity, None)
