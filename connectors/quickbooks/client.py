"""QuickBooks Online connector: raw QBO v3 JSON in and out, on python-quickbooks and intuit-oauth.

What it adds to the libraries, and why:

* every request has a timeout, a CA file and ignores proxy/CA environment variables (none of the
  libraries does this);
* OAuth2 refresh with rotation persisted before use (:mod:`connectors.quickbooks.auth`), also after
  a 401 in the middle of a run;
* idempotent writes: every write carries ``?requestid=``; batch items carry the caller's key as
  ``bId`` and the batch a request id derived from those keys, so a retried identical call is answered
  from QBO's request-id cache instead of being applied twice;
* one error taxonomy (:mod:`connectors.quickbooks.errors`) and the shared in-call retry policy
  (:class:`connectors.retry.RetryPolicy`: bounded, jittered, ``Retry-After`` honoured; longer waits
  are raised for the job layer); a write whose earlier attempt may have been applied ends as
  ``OutcomeUnknownError`` whatever the last error was; ``update(..., retry_stale=True)`` and
  :meth:`QuickBooksConnector.void` (``?operation=void``, with a request id too) re-read the SyncToken
  once after a 5010;
* exact money: Decimal in payloads is written as a JSON number digit for digit (python-quickbooks'
  own ``DecimalEncoder`` writes it as a *string*), and JSON numbers in responses parse to Decimal;
* QBO's throttles respected rather than hit: a :class:`~connectors.ratelimit.RateLimiter` shared by
  every connector of the process for the same company paces API calls to ``rate_limit_requests`` and
  batch calls to ``rate_limit_batch_requests`` per ``rate_limit_window_seconds``, with at most
  ``max_concurrent_requests`` in flight (the settings; QBO's 500 and 40 a minute and 10 by default);
  a 429 that still comes (another process, another app) goes through the retry policy like any;
* incremental reads: :meth:`QuickBooksConnector.changes` (Change Data Capture, deletions included,
  falling back to queries when CDC's 1,000-object answer is full) and
  :meth:`QuickBooksConnector.query_changed` (``LastUpdatedTime`` pages that neither skip nor repeat
  rows when many share one second, which a plain STARTPOSITION walk does while rows change).

A connector instance is not thread-safe; use one per worker thread (they may share a token store, and
share the rate limiter by themselves).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from oauthlib.oauth2 import InsecureTransportError
from oauthlib.oauth2.rfc6749.utils import is_secure_transport
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException
from requests_oauthlib import OAuth2Session

from connectors.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    OutcomeUnknownError,
    RecordError,
    RetryableError,
)
from connectors.quickbooks.auth import TokenManager, utcnow
from connectors.quickbooks.errors import (
    SYSTEM,
    ChangeWindowError,
    FaultError,
    StaleObjectError,
    translate_errors,
    translate_fault,
    translate_response,
    translate_transport,
)
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.quickbooks.tokens import TokenStore
from connectors.ratelimit import Rate, RateLimiter, shared_limiter
from connectors.retry import RetryPolicy

__all__ = [
    "BATCH_SIZE",
    "CDC_LIMIT",
    "CDC_LOOKBACK",
    "PAGE_SIZE",
    "BatchItem",
    "BatchResult",
    "ChangeSet",
    "QuickBooksConnector",
    "dumps_exact",
    "write_request_id",
]

BATCH_SIZE = 30  # QBO's maximum number of BatchItemRequest entries
PAGE_SIZE = 1000  # QBO's maximum MAXRESULTS
CDC_LIMIT = 1000  # objects in one Change Data Capture answer, all entities together
CDC_LOOKBACK = dt.timedelta(days=30)  # the oldest changedSince CDC accepts
_IN_CHUNK = 50  # values per ``IN (...)`` lookup, keeping the statement short
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchItem:
    """One write of a batch; ``key`` (from the caller's outbox row) becomes the QBO ``bId``."""

    key: str
    entity: str  # "Customer" | "Item" | "Invoice" | any QBO business object
    operation: Literal["create", "update"]
    payload: Mapping[str, Any]
    remote_id: str | None = None  # updates: the QBO Id ...
    remote_version: str | None = None  # ... and the SyncToken it was last seen with

    def body(self) -> Mapping[str, Any]:
        """The entity as QBO expects it: an update is sparse and names the version it replaces."""
        if self.operation == "create":
            return self.payload
        if self.remote_id is None:
            raise ValueError(f"update of {self.entity} {self.key} needs remote_id")
        return {**self.payload, "Id": self.remote_id, "SyncToken": self.remote_version or "0", "sparse": True}


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one :class:`BatchItem`: the entity QBO returned, or the translated error."""

    key: str
    ok: bool
    entity: dict[str, Any] | None
    error: ConnectorError | None


@dataclass(frozen=True)
class ChangeSet:
    """What changed in QBO since a time: entities by type, in QBO's JSON shape, oldest change first.

    A deleted entity comes as ``{"domain": "QBO", "status": "Deleted", "Id": ..., "MetaData":
    {"LastUpdatedTime": ...}}``. ``time`` is QBO's clock when it answered: the ``since`` of the next
    pull (never the caller's clock). ``truncated``: CDC's answer was full (1,000 objects), so the live
    entities were re-read with ``LastUpdatedTime`` queries instead; deletions past that limit are not
    known and need a reconciliation by Id.
    """

    entities: dict[str, list[dict[str, Any]]]
    time: dt.datetime | None
    truncated: bool = False


#: Entities whose queries skip inactive records by default (QBO "name list" entities).
_NAME_LIST_ENTITIES = frozenset({"Customer", "Item", "Vendor", "Employee", "Account", "Class", "Department"})


def remote_identity(entity: Mapping[str, Any]) -> tuple[str, str]:
    """``(Id, SyncToken)`` of an entity QBO returned: what a binding keeps to update it later."""
    return str(entity["Id"]), str(entity.get("SyncToken", "0"))


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send non-finite Decimal {value!r} to QuickBooks")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("float in a QuickBooks payload: use Decimal so no cent is lost")
    if value is None or isinstance(value, (str, bool, int)):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"payload keys must be str, got {key!r}")
            items.append(f"{json.dumps(key)}: {_encode(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_encode(item) for item in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} in a QuickBooks payload")


def dumps_exact(value: Any) -> str:
    """JSON text with every Decimal written as a number with exactly its digits (never via float)."""
    return _encode(value)


def retry_request_id(request_id: str, attempt: int = 1) -> str:
    """The request id of a *different* write derived from ``request_id`` (a re-read update), within
    QBO's 50-character limit; stable, so a crash and rerun reuse it."""
    derived = f"{request_id}-r{attempt}"
    if len(derived) <= 50:
        return derived
    return f"bsr-{hashlib.sha256(derived.encode()).hexdigest()[:40]}"


def write_request_id(key: str) -> str:
    """The ``requestid`` of a single write keyed by ``key`` (an outbox key may be longer than QBO's
    50 characters): the same key always gives the same id."""
    return f"bsw-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def batch_request_id(keys: Sequence[str]) -> str:
    """The ``requestid`` of a batch call: the same keys always give the same id."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return f"bsb-{digest[:36]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _field_value(entity: Mapping[str, Any], path: str) -> Any:
    current: Any = entity
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    if isinstance(current, Mapping) and "value" in current:
        return current["value"]  # a reference such as CustomerRef compares by its value
    return current


def _instant(value: Any) -> dt.datetime | None:
    """QBO's ISO time text (``2016-04-13T07:34:40-07:00``) as an aware datetime, None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _aware(since: dt.datetime) -> dt.datetime:
    if since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    return since.replace(microsecond=0)  # QBO times have whole seconds: round down, never skip


def _last_updated(row: Mapping[str, Any]) -> dt.datetime | None:
    return _instant(_field_value(row, "MetaData.LastUpdatedTime"))


def _rows(page: Mapping[str, Any], entity: str) -> list[dict[str, Any]]:
    response = page.get("QueryResponse") or {}
    for key, value in response.items():
        if key.lower() == entity.lower() and isinstance(value, list):
            return value
    return []


class _ApiSession(OAuth2Session):  # type: ignore[misc]
    """The ``qb.session`` python-quickbooks sends through: defaults on every request, no token logs.

    OAuth2Session.request logs the token dict and all headers at DEBUG, so this subclass adds the
    bearer header itself and goes straight to ``requests.Session.request``. It also encodes str bodies
    as UTF-8 (http.client would use Latin-1 and fail on other names) and keeps the last response, from
    which errors are translated with their status and ``Retry-After``.
    """

    def __init__(
        self,
        client_id: str,
        *,
        timeout: float,
        verify: bool | str,
        on_request: Callable[[], None],
        limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(client_id)
        self.trust_env = False
        self.verify = verify
        self._timeout = timeout
        self._on_request = on_request
        self._limiter = limiter
        self.last_response: requests.Response | None = None

    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        if not is_secure_transport(url):
            raise InsecureTransportError()
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        kwargs.setdefault("verify", self.verify)
        merged = dict(headers or {})
        if self.access_token:
            merged["Authorization"] = f"Bearer {self.access_token}"
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.last_response = None
        self._on_request()
        if self._limiter is None:
            response = requests.Session.request(self, method, url, data=data, headers=merged, **kwargs)
        else:
            kinds = (
                ("request", "batch") if urlsplit(url).path.rstrip("/").endswith("/batch") else ("request",)
            )
            with self._limiter.slot(*kinds):
                response = requests.Session.request(self, method, url, data=data, headers=merged, **kwargs)
        self.last_response = response
        return response


def rate_limiter_for(settings: QuickBooksSettings) -> RateLimiter | None:
    """The process's limiter for the company of ``settings`` (None when every limit is off); connectors
    with the same endpoint, company and limits share it, whichever thread they run on."""
    rates = {}
    if settings.rate_limit_requests is not None:
        rates["request"] = Rate(settings.rate_limit_requests, settings.rate_limit_window_seconds)
    if settings.rate_limit_batch_requests is not None:
        rates["batch"] = Rate(settings.rate_limit_batch_requests, settings.rate_limit_window_seconds)
    if not rates and settings.max_concurrent_requests is None:
        return None
    key = (
        "quickbooks",
        settings.api_url or settings.environment,
        settings.company_id,
        tuple(sorted(rates.items())),
        settings.max_concurrent_requests,
    )
    return shared_limiter(key, lambda: RateLimiter(rates, max_in_flight=settings.max_concurrent_requests))


class QuickBooksConnector:
    """Reads and writes one QBO company; every method raises only :mod:`connectors.errors` classes."""

    def __init__(
        self,
        settings: QuickBooksSettings,
        token_store: TokenStore,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        retry_attempts: int = 3,
        retry_max_wait: float = 30.0,
        retry_backoff: float = 1.0,
        retry_jitter: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``retry`` replaces the policy built from the ``retry_*``/``sleep`` arguments."""
        self.settings = settings
        self.api_calls = 0
        self.cdc_limit = CDC_LIMIT
        self._clock = clock
        self.retry = retry or RetryPolicy(
            attempts=max(1, retry_attempts),
            backoff=retry_backoff,
            max_wait=retry_max_wait,
            jitter=retry_jitter,
            sleep=sleep,
        )
        self.tokens = TokenManager(settings, token_store, clock=clock, on_request=self._count_call)
        #: shared by the process's connectors of this company (None: no client-side limits)
        self.rate_limiter = rate_limiter_for(settings)
        self._session = _ApiSession(
            settings.client_id,
            timeout=settings.timeout_seconds,
            verify=settings.ca_file or True,
            on_request=self._count_call,
            limiter=self.rate_limiter,
        )
        self.qb = QuickBooks(
            company_id=settings.company_id,
            minorversion=settings.minorversion,
            use_decimal=True,
        )
        self.qb.session = self._session
        self.qb.sandbox = settings.environment == "sandbox"
        if settings.api_url:
            base = settings.api_url.rstrip("/")
            base = base if base.endswith("/v3") else base + "/v3"
            self.qb.api_url_v3 = self.qb.sandbox_api_url_v3 = base
        self._session.access_token = self.tokens.access_token()

    def _count_call(self) -> None:
        self.api_calls += 1

    def close(self) -> None:
        self._session.close()

    # -- writes ----------------------------------------------------------------------------------
    def create(self, entity: str, payload: Mapping[str, Any], *, request_id: str) -> dict[str, Any]:
        """Create one entity; the same ``request_id`` never creates it twice."""
        self._check_entity(entity)
        body = dumps_exact(payload)
        result = self._call(lambda: self.qb.create_object(entity, body, request_id=request_id), write=True)
        return dict(result[entity])

    def update(
        self, entity: str, payload: Mapping[str, Any], *, request_id: str, retry_stale: bool = False
    ) -> dict[str, Any]:
        """Update one entity (payload has ``Id`` and ``SyncToken``; add ``"sparse": True`` to merge).

        ``retry_stale``: on a stale SyncToken (5010) read the current one and send the update once more
        (with a derived request id): right for sparse updates of fields billsync owns, wrong when the
        caller must see what changed in QBO first, hence opt-in. A second 5010 is raised.
        """
        self._check_entity(entity)
        if "Id" not in payload or "SyncToken" not in payload:
            raise ValueError("an update payload needs Id and SyncToken")
        try:
            return self._update_once(entity, payload, request_id)
        except StaleObjectError:
            if not retry_stale:
                raise
        current = self.get(entity, str(payload["Id"]))
        fresh = {**payload, "SyncToken": str(current.get("SyncToken", "0"))}
        return self._update_once(entity, fresh, retry_request_id(request_id))

    def void(self, entity: str, entity_id: str, sync_token: str | None, *, request_id: str) -> dict[str, Any]:
        """Void one transaction the way python-quickbooks' ``Invoice.void`` does (``POST
        <entity>?operation=void`` with ``Id`` and ``SyncToken``), with a ``requestid`` so a resend is
        answered from QBO's cache instead of voiding twice. Returns the voided entity (amounts zeroed,
        ``PrivateNote`` "Voided").

        A stale or unknown ``sync_token`` (5010) re-reads the current one and voids once more with a
        derived request id: a void carries no data of ours that a newer version could contradict.
        QBO refuses (6000, a :class:`RecordError`) an invoice with payments applied.
        """
        self._check_entity(entity)
        try:
            return self._void_once(entity, entity_id, sync_token or "0", request_id)
        except StaleObjectError:
            current = self.get(entity, entity_id)
        return self._void_once(
            entity, entity_id, str(current.get("SyncToken", "0")), retry_request_id(request_id)
        )

    def _void_once(self, entity: str, entity_id: str, sync_token: str, request_id: str) -> dict[str, Any]:
        body = dumps_exact({"Id": entity_id, "SyncToken": sync_token})
        url = f"{self.qb.api_url}/company/{self.qb.company_id}/{entity.lower()}"
        result = self._call(
            lambda: self.qb.make_request(
                "POST", url, body, params={"operation": "void"}, request_id=request_id
            ),
            write=True,
        )
        return dict(result[entity])

    def _update_once(self, entity: str, payload: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        body = dumps_exact(payload)
        result = self._call(lambda: self.qb.update_object(entity, body, request_id=request_id), write=True)
        return dict(result[entity])

    def batch(self, items: Sequence[BatchItem]) -> list[BatchResult]:
        """Write ``items`` in batches of 30; results in input order, each item succeeding on its own.

        If a whole batch call fails (throttled, down, timed out) its items carry that error and the
        remaining chunks are not sent (their items carry a RetryableError, or the same AuthError /
        RateLimitedError / FatalError, which applies to them as much).
        """
        keys = [item.key for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("batch keys must be unique")
        for item in items:
            self._check_entity(item.entity)
            if item.operation not in ("create", "update"):
                raise ValueError(f"unsupported batch operation {item.operation!r}")
        results: dict[str, BatchResult] = {}
        failure: ConnectorError | None = None
        for start in range(0, len(items), BATCH_SIZE):
            chunk = items[start : start + BATCH_SIZE]
            if failure is not None:
                unsent = failure
                if isinstance(failure, OutcomeUnknownError) or type(failure) is RetryableError:
                    unsent = RetryableError("not sent: an earlier batch of this call failed", system=SYSTEM)
                for item in chunk:
                    results[item.key] = BatchResult(item.key, False, None, unsent)
                continue
            try:
                results.update(self._batch_chunk(chunk))
            except ConnectorError as exc:
                failure = exc
                for item in chunk:
                    results[item.key] = BatchResult(item.key, False, None, exc)
        return [results[key] for key in keys]

    def _batch_chunk(self, chunk: Sequence[BatchItem]) -> dict[str, BatchResult]:
        body = dumps_exact(
            {
                "BatchItemRequest": [
                    {"bId": item.key, "operation": item.operation, item.entity: item.body()} for item in chunk
                ]
            }
        )
        request_id = batch_request_id([item.key for item in chunk])
        url = f"{self.qb.api_url}/company/{self.qb.company_id}/batch"
        data = self._call(lambda: self.qb.make_request("POST", url, body, request_id=request_id), write=True)
        answers = {
            str(answer.get("bId")): answer
            for answer in data.get("BatchItemResponse") or []
            if isinstance(answer, Mapping)
        }
        results = {}
        for item in chunk:
            answer = answers.get(item.key)
            error: ConnectorError
            if answer is None:
                error = OutcomeUnknownError("item missing from the batch response", system=SYSTEM)
                results[item.key] = BatchResult(item.key, False, None, error)
            elif isinstance(answer.get("Fault"), Mapping):
                error = translate_fault(answer["Fault"], secrets=self.tokens.secrets())
                results[item.key] = BatchResult(item.key, False, None, error)
            else:
                entity = answer.get(item.entity)
                if entity is None:
                    entity = next(
                        (v for k, v in answer.items() if k != "bId" and isinstance(v, Mapping)), None
                    )
                results[item.key] = BatchResult(item.key, True, dict(entity or {}), None)
        return results

    # -- reads -----------------------------------------------------------------------------------
    def get(self, entity: str, entity_id: str) -> dict[str, Any]:
        """Read one entity by Id (RecordError when it does not exist)."""
        self._check_entity(entity)
        result = self._call(lambda: self.qb.get_single_object(entity, entity_id), write=False)
        return dict(result[entity])

    def query(self, statement: str) -> Iterator[dict[str, Any]]:
        """Rows of a QBO-SQL ``SELECT * FROM ...``, fetched 1,000 at a time with STARTPOSITION."""
        match = re.search(r"\bFROM\s+(\w+)", statement, re.IGNORECASE)
        if match is None:
            raise ValueError("query needs a FROM clause")
        entity = match.group(1)
        if re.search(r"\b(STARTPOSITION|MAXRESULTS)\b", statement, re.IGNORECASE):
            yield from _rows(self._query_page(statement), entity)
            return
        start = 1
        while True:
            page_statement = f"{statement.rstrip()} STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}"
            rows = _rows(self._query_page(page_statement), entity)
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            start += len(rows)

    def count(self, entity: str, where: str | None = None) -> int:
        """``SELECT COUNT(*) FROM entity [WHERE ...]`` (one call, whatever the number of rows)."""
        self._check_entity(entity)
        statement = f"SELECT COUNT(*) FROM {entity}" + (f" WHERE {where}" if where else "")
        response = self._query_page(statement).get("QueryResponse") or {}
        return int(response.get("totalCount", 0))

    def find_by(self, entity: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]:
        """Entities whose ``field`` is one of ``values``, keyed by that value (first match wins).

        This is how a write whose outcome is unknown is looked up before retrying, e.g. Invoices by
        DocNumber or Customers by DisplayName.
        """
        self._check_entity(entity)
        if not _FIELD.match(field):
            raise ValueError(f"not a field name: {field!r}")
        wanted = sorted(set(values))
        found: dict[str, dict[str, Any]] = {}
        # Name lists return only active records unless asked; an inactive one is still a match.
        also_inactive = " AND Active IN (true, false)" if entity in _NAME_LIST_ENTITIES else ""
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            in_list = ", ".join(f"'{_escape(value)}'" for value in chunk)
            for row in self.query(f"SELECT * FROM {entity} WHERE {field} IN ({in_list}){also_inactive}"):
                value = _field_value(row, field)
                if value is not None:
                    found.setdefault(str(value), row)
        return found

    def changed_since(self, entities: Sequence[str], since: dt.datetime) -> dict[str, list[dict[str, Any]]]:
        """Entities of these types changed (or deleted) at or after ``since``; see :meth:`changes`."""
        return self.changes(entities, since).entities

    def changes(self, entities: Sequence[str], since: dt.datetime) -> ChangeSet:
        """One Change Data Capture call (``GET cdc?entities=...&changedSince=...``), e.g. for
        ``["Payment", "Invoice"]``: every type asked is a key of the result, empty lists included.

        ``since`` (aware) is inclusive and rounded down to the second, so a pull starting from the
        previous answer's ``time`` may see an entity twice but never misses one. Raises
        :class:`ChangeWindowError` (without a call when the local clock already tells) if ``since`` is
        more than 30 days ago. When CDC's answer is full (:attr:`cdc_limit` objects), each type is
        re-read with :meth:`query_changed` and the result is marked ``truncated``.
        """
        names = list(dict.fromkeys(entities))
        if not names:
            raise ValueError("changes() needs at least one entity")
        for name in names:
            self._check_entity(name)
        since = _aware(since)
        if since < self._clock() - CDC_LOOKBACK:
            raise ChangeWindowError(
                f"Change Data Capture looks back {CDC_LOOKBACK.days} days at most; "
                f"{since.isoformat()} is older: re-read with query_changed()",
                code="cdc_window",
                system=SYSTEM,
            )
        changed_since = since.isoformat()
        try:
            data = self._call(
                lambda: self.qb.change_data_capture(",".join(names), changed_since), write=False
            )
        except RecordError as exc:
            if "older than" in exc.message:  # QBO's clock says so where ours did not
                raise ChangeWindowError(exc.message, code=exc.code, system=SYSTEM) from exc
            raise
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        by_lower = {name.lower(): name for name in names}
        total = 0
        for block in (data or {}).get("CDCResponse") or []:
            for response in (block or {}).get("QueryResponse") or []:
                for key, rows in (response or {}).items():
                    wanted = by_lower.get(str(key).lower())
                    if wanted is not None and isinstance(rows, list):
                        found[wanted].extend(dict(row) for row in rows if isinstance(row, Mapping))
                        total += len(rows)
        truncated = total >= self.cdc_limit
        if truncated:
            for name in names:
                live = [row for page in self.query_changed(name, since) for row in page]
                live_ids = {str(row.get("Id")) for row in live}
                deleted = [
                    row
                    for row in found[name]
                    if row.get("status") == "Deleted" and str(row.get("Id")) not in live_ids
                ]
                found[name] = live + deleted
        return ChangeSet(found, _instant((data or {}).get("time")), truncated)

    def query_changed(
        self, entity: str, since: dt.datetime, page_size: int = PAGE_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of the ``entity`` rows whose ``MetaData.LastUpdatedTime`` is at or after ``since``,
        oldest first (inactive name-list rows included; deletions cannot be seen this way).

        Pages by time, not by position: each query starts at the last time seen (``>=``), and rows of
        that second already yielded are dropped, so a row updated meanwhile moves to a later page
        instead of shifting another one out of sight. Only when a whole page shares one second does it
        step on by STARTPOSITION, overlapping one row: if that row is not the one last seen, rows left
        that second meanwhile and the second is read again from its start. A row changed during the
        walk may come twice (its newer version last).
        """
        self._check_entity(entity)
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        cursor = _aware(since)
        also_inactive = " AND Active IN (true, false)" if entity in _NAME_LIST_ENTITIES else ""
        seen: set[str] = set()  # Ids yielded whose LastUpdatedTime is the cursor
        skip = 0  # rows of the cursor's second stepped over by position
        while True:
            overlap = 1 if skip else 0
            statement = (
                f"SELECT * FROM {entity} WHERE Metadata.LastUpdatedTime >= '{cursor.isoformat()}'"
                f"{also_inactive} ORDERBY Metadata.LastUpdatedTime"
                f" STARTPOSITION {skip + 1 - overlap} MAXRESULTS {page_size}"
            )
            rows = _rows(self._query_page(statement), entity)
            if overlap and (not rows or str(rows[0].get("Id")) not in seen):
                skip = 0  # the second shrank under us: read it again from its start
                continue
            fresh = [row for row in rows if str(row.get("Id")) not in seen]
            if fresh:
                yield fresh
            if len(rows) < page_size:
                return
            last = _last_updated(rows[-1])
            if last is None:
                raise FatalError(
                    f"{entity} {rows[-1].get('Id')} has no MetaData.LastUpdatedTime", system=SYSTEM
                )
            if last == cursor:  # the whole page is one second: step over it by position
                skip += len(rows) - overlap
            else:
                cursor, skip, seen = last, 0, set()
            seen.update(str(row.get("Id")) for row in rows if _last_updated(row) == cursor)

    def _query_page(self, statement: str) -> dict[str, Any]:
        return dict(self._call(lambda: self.qb.query(statement), write=False))

    # -- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _check_entity(entity: str) -> None:
        if entity not in QuickBooks._BUSINESS_OBJECTS:
            raise ValueError(f"{entity!r} is not a QuickBooks Online business object")

    def _attempt(self, send: Callable[[], _T], *, write: bool) -> _T:
        """One HTTP call, with any failure translated to the taxonomy."""
        try:
            return send()
        except requests.RequestException as exc:
            raise translate_transport(exc, write=write) from exc
        except InsecureTransportError as exc:
            raise FatalError("QuickBooks API URL must be https", system=SYSTEM) from exc
        except QuickbooksException as exc:
            response = self._session.last_response
            if response is not None:
                raise translate_response(
                    response.status_code, response.headers, response.text, secrets=self.tokens.secrets()
                ) from exc
            code = exc.error_code if isinstance(exc.error_code, int) and exc.error_code else None
            raise translate_errors(
                "", [FaultError(code=code, message=str(exc.message))], secrets=self.tokens.secrets()
            ) from exc

    def _with_auth(self, send: Callable[[], _T], *, write: bool) -> _T:
        """Refresh once on a 401/3200 and send again (a refused request applied nothing)."""
        self._session.access_token = self.tokens.access_token()
        try:
            return self._attempt(send, write=write)
        except AuthError:
            failed = self._session.access_token
            self._session.access_token = self.tokens.refresh(failed_access_token=failed)
            return self._attempt(send, write=write)

    def _call(self, send: Callable[[], _T], *, write: bool) -> _T:
        """Short in-call retries of retryable failures; writes are safe to resend (same requestid).

        Whatever ends the retries of a write (even an auth or TLS failure), if an earlier attempt may
        have been applied the caller gets OutcomeUnknownError and must look the write up first.
        """
        return self.retry.call(lambda: self._with_auth(send, write=write), write=write)
