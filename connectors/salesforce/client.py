"""Salesforce connector: incremental reads by ``SystemModstamp`` and external-id upserts.

Built on simple-salesforce over a :class:`SalesforceSession` that adds what the library lacks: a
timeout and a trust setting on every request, the login host replaced by ``settings.login_url`` (the
library hard-codes ``login.salesforce.com``), and a count of HTTP calls. Numbers are parsed as
``Decimal`` so money never goes through float. Every vendor error leaves as a ``connectors.errors``
class (see :mod:`connectors.salesforce.errors`).

The org's daily API allowance: every answer's ``Sforce-Limit-Info`` feeds an
:class:`~connectors.salesforce.limits.ApiBudget` shared by the process's connectors of the org, and a
call that would eat into ``daily_api_reserve_percent`` of it is not sent: it raises ``ApiBudgetError``
(a FatalError) instead, before Salesforce starts refusing every integration of the org.

Retries: every read (query page, get) and every upsert (idempotent by its external id, one record or a
collection of 200) runs under the shared :class:`connectors.retry.RetryPolicy`. The session is renewed by the connector, not by the
library (which would log in up to three times in a row and hide why): an ``INVALID_SESSION_ID``
answer leads to one new login and one resend in that attempt; refused again, it is an AuthError.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.login import SalesforceLogin

from connectors.errors import AuthError, ConnectorError, OutcomeUnknownError, RecordError, RetryableError
from connectors.http import DefaultsSession
from connectors.retry import RetryPolicy
from connectors.salesforce.errors import SYSTEM, record_result_error, translated
from connectors.salesforce.limits import ApiBudget, shared_budget
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.soql import datetime_literal, format_datetime, is_field_path, is_identifier

#: The hosts simple-salesforce posts username/password logins to.
LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
#: Records per query page; Salesforce's maximum and default batch size.
PAGE_SIZE = 2000
#: Records per sObject collection request (the API refuses more with EXCEEDED_ID_LIMIT).
COLLECTION_SIZE = 200
#: Values per ``IN (...)`` of :meth:`SalesforceConnector.find_by` (well under SOQL's 100,000 characters).
FIND_CHUNK = 200
CURSOR_FIELD = "SystemModstamp"
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\Z")
_T = TypeVar("_T")


class SalesforceSession(DefaultsSession):
    """A :class:`DefaultsSession` that sends logins to ``login_url`` and counts requests.

    ``transport`` lets a caller supply its own ``requests.Session`` (adapters, proxies): requests then go
    through it, still with the login rewrite, the defaults and the counting. ``budget`` (the org's daily
    API allowance) is checked before and updated after every call but logins, which do not count.
    """

    def __init__(
        self,
        *,
        timeout: float,
        verify: bool | str,
        login_url: str,
        transport: requests.Session | None = None,
        budget: ApiBudget | None = None,
    ) -> None:
        super().__init__(timeout=timeout, verify=verify)
        self.login_url = login_url.rstrip("/")
        self.calls = 0
        self.last_login_status: int | None = None
        self.last_retry_after: str | None = None
        self._transport = transport
        self.budget = budget
        self._count_lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        login = False
        for host in LOGIN_HOSTS:
            if target.startswith(host + "/"):
                target, login = self.login_url + target[len(host) :], True
                break
        budget = None if login else self.budget
        ticket = budget.before_call() if budget is not None else 0  # ApiBudgetError: nothing sent
        with self._count_lock:
            self.calls += 1
        limit_info: str | None = None
        try:
            if self._transport is not None:
                if kwargs.get("timeout") is None:
                    kwargs["timeout"] = self.default_timeout
                kwargs.setdefault("verify", self.verify)
                response = self._transport.request(method, target, *args, **kwargs)
            else:
                response = super().request(method, target, *args, **kwargs)
            limit_info = response.headers.get("Sforce-Limit-Info")
        finally:
            if budget is not None:
                budget.after_call(ticket, limit_info)
        if login:  # simple-salesforce drops the status of a failed login; keep it for the error
            self.last_login_status = response.status_code
        # ... and the headers of a failed call: keep Retry-After for the RateLimitedError
        self.last_retry_after = response.headers.get("Retry-After")
        return response


def _json_value(value: Any) -> str:
    """JSON text for a write body, with Decimal written as an exact JSON number (never via float)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} to Salesforce")
        return format(value, "f")
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{_json_value(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_value(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return json.dumps(format_datetime(value))
    if isinstance(value, dt.date):
        return json.dumps(value.isoformat())
    if isinstance(value, float):
        raise TypeError("floats are not sent to Salesforce; use Decimal")
    return json.dumps(value)


def encode_json(value: Any) -> str:
    """Serialise a payload for Salesforce (Decimal exact, datetimes in the API's format)."""
    return _json_value(value)


def _strip_attributes(value: Any) -> Any:
    """Drop ``attributes`` everywhere: the record, parent relationships, child sub-query records."""
    if isinstance(value, dict):
        return {key: _strip_attributes(item) for key, item in value.items() if key != "attributes"}
    if isinstance(value, list):
        return [_strip_attributes(item) for item in value]
    return value


_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_string(value: str) -> str:
    """A SOQL string literal: quotes and backslashes escaped, so a value can never end the literal."""
    return "'" + "".join(_SOQL_ESCAPES.get(char, char) for char in value) + "'"


@dataclass(frozen=True)
class CollectionResult:
    """What happened to one record of :meth:`SalesforceConnector.upsert_collection`.

    ``error`` is a taxonomy error: a RecordError (and subclasses) means Salesforce refused this record;
    a RetryableError / AuthError / FatalError means its request failed as a whole (or it was not sent
    because an earlier request failed that way), and an OutcomeUnknownError that it may have been applied.
    """

    external_id: str
    ok: bool
    id: str | None
    created: bool
    error: ConnectorError | None


def _next_page(url: str, timeout: float) -> Callable[[Salesforce], Any]:
    """The ``query_more`` call of one page: retried as is (the locator and offset are in the URL)."""
    return lambda sf: sf.query_more(url, identifier_is_url=True, timeout=timeout)


def build_pull_query(
    sobject: str, fields: Sequence[str], since: dt.datetime | None, lookback_seconds: int = 0
) -> str:
    """The incremental SOQL; names are validated here so no caller text reaches the query unchecked."""
    if not is_identifier(sobject):
        raise ValueError(f"not a Salesforce object name: {sobject!r}")
    bad = [name for name in fields if not is_field_path(name)]
    if bad:
        raise ValueError(f"not Salesforce field names: {bad!r}")
    wanted: list[str] = []
    for name in ["Id", CURSOR_FIELD, *fields]:
        if name.lower() not in {w.lower() for w in wanted}:
            wanted.append(name)
    query = f"SELECT {', '.join(wanted)} FROM {sobject}"
    if since is not None:
        start = since - dt.timedelta(seconds=lookback_seconds)
        query += f" WHERE {CURSOR_FIELD} >= {datetime_literal(start)}"
    return query + f" ORDER BY {CURSOR_FIELD}, Id"


class SalesforceConnector:
    """Reads and writes one Salesforce org. Logs in lazily, on the first call that needs a session.

    Not thread-safe (neither is simple-salesforce's client): one connector per worker thread.
    ``retry`` is the in-call retry policy (default: 3 attempts, 1 s backoff with jitter, 30 s cap).
    """

    system = "salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.logins = 0
        #: the org's daily API allowance as Salesforce last reported it, shared by the process
        self.api_budget = shared_budget(
            (settings.login_url.rstrip("/"), settings.username), settings.daily_api_reserve_percent
        )
        if isinstance(session, SalesforceSession):
            self._session = session
            if self._session.budget is None:
                self._session.budget = self.api_budget
        else:
            self._session = SalesforceSession(
                timeout=settings.timeout_seconds,
                verify=settings.ca_file or True,
                login_url=settings.login_url,
                transport=session,
                budget=self.api_budget,
            )
        self._sf: Salesforce | None = None

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def api_calls(self) -> int:
        """HTTP requests sent so far (logins and re-logins included)."""
        return self._session.calls

    def _secrets(self) -> list[str | None]:
        token = self.settings.security_token
        return [
            self.settings.password.get_secret_value(),
            token.get_secret_value() if token else None,
            self._sf.session_id if self._sf is not None else None,
        ]

    def _translated(self, what: str, *, write: bool = False) -> Any:
        return translated(
            what=what,
            write=write,
            secrets=self._secrets,
            username=self.settings.username,
            login_status=lambda: self._session.last_login_status,
            retry_after=lambda: self._session.last_retry_after,
        )

    def connect(self) -> None:
        """Log in now (SOAP username/password) instead of on the first call; raises AuthError if refused."""
        if self._sf is not None:
            return
        token = self.settings.security_token
        with self._translated("Salesforce login"):
            # The library's own SOAP login, but the client is built on the session id: with
            # username/password it would re-login by itself, up to 3 times per call.
            session_id, instance = SalesforceLogin(
                username=self.settings.username,
                password=self.settings.password.get_secret_value(),
                # "" not None: simple-salesforce picks SOAP login only when a token is given
                security_token=token.get_secret_value() if token else "",
                sf_version=self.settings.api_version,
                session=self._session,
                domain="login",  # rewritten to settings.login_url by the session
            )
            self.logins += 1
            self._sf = Salesforce(
                session_id=session_id,
                instance=instance,
                version=self.settings.api_version,
                session=self._session,
                parse_float=Decimal,
                object_pairs_hook=dict,
            )

    def _call(self, what: str, send: Callable[[Salesforce], _T], *, write: bool = False) -> _T:
        """``send(client)`` under the retry policy, logging in again once per attempt if the session
        expired (the first request of a new session is answered like any other)."""

        def attempt() -> _T:
            try:
                with self._translated(what, write=write):
                    return send(self.client)
            except AuthError as error:
                if error.code != "INVALID_SESSION_ID":
                    raise
            self._sf = None  # expired: one new login, one resend
            with self._translated(what, write=write):
                return send(self.client)

        return self.retry.call(attempt, write=write)

    @property
    def client(self) -> Salesforce:
        """The logged-in simple-salesforce client (for calls this class does not wrap)."""
        self.connect()
        assert self._sf is not None
        return self._sf

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SalesforceConnector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------
    def pull_pages(
        self, sobject: str, fields: Sequence[str], since: dt.datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Records changed at or after ``since - lookback``, one list per API page (up to 2,000).

        The same calls as simple-salesforce's ``query_all_iter`` (``query`` then ``query_more`` on each
        relative ``nextRecordsUrl``) but page by page, so the caller can commit after each page.
        Records come in ``SystemModstamp, Id`` order without their ``attributes``; naive ``since`` is UTC.
        """
        soql = build_pull_query(sobject, fields, since, self.settings.lookback_seconds)
        what = f"query {sobject}"
        timeout = self.settings.timeout_seconds
        result = self._call(what, lambda sf: sf.query(soql, timeout=timeout))
        while True:
            records: list[dict[str, Any]] = [_strip_attributes(record) for record in result["records"]]
            if records:
                yield records
            if result.get("done", True):
                return
            result = self._call(what, _next_page(result["nextRecordsUrl"], timeout))

    def related_pages(
        self, sobject: str, fields: Sequence[str], field: str, values: Collection[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """Every record whose ``field`` (e.g. ``AccountId``) is one of ``values``, page by page.

        For a resync of one customer and what hangs off it: one query per 200 values (SOQL's IN
        list stays well under the query length limit), values escaped.
        """
        if not is_field_path(field):
            raise ValueError(f"not a Salesforce field name: {field!r}")
        base = build_pull_query(sobject, fields, None)
        head, order = base.rsplit(" ORDER BY ", 1)
        wanted = sorted(set(values))
        timeout = self.settings.timeout_seconds
        for start in range(0, len(wanted), 200):
            in_list = ", ".join(soql_string(v) for v in wanted[start : start + 200])
            soql = f"{head} WHERE {field} IN ({in_list}) ORDER BY {order}"
            what = f"query {sobject} by {field}"
            result = self._call(what, _query(soql, timeout))
            while True:
                records = [_strip_attributes(record) for record in result["records"]]
                if records:
                    yield records
                if result.get("done", True):
                    break
                result = self._call(what, _next_page(result["nextRecordsUrl"], timeout))

    def pull(
        self, sobject: str, fields: Sequence[str], since: dt.datetime | None
    ) -> Iterator[dict[str, Any]]:
        """The records of :meth:`pull_pages`, one at a time (pages are still fetched lazily)."""
        for page in self.pull_pages(sobject, fields, since):
            yield from page

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        """One record by Id (all fields, no ``attributes``); a missing record raises RecordError."""
        if not is_identifier(sobject) or not _RECORD_ID.match(record_id):
            raise ValueError(f"bad object name or id: {sobject!r}/{record_id!r}")
        timeout = self.settings.timeout_seconds
        result = self._call(
            f"get {sobject} {record_id}",
            lambda sf: sf.restful(f"sobjects/{sobject}/{record_id}", timeout=timeout),
        )
        record: dict[str, Any] = _strip_attributes(dict(result or {}))
        return record

    # -- writes ----------------------------------------------------------------------------------
    def upsert(
        self, sobject: str, external_id_field: str, external_id: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Create or update the record whose ``external_id_field`` equals ``external_id``.

        Idempotent by construction (PATCH on the external id), so it is retried after a timeout too;
        if the retries end without an answer the error is OutcomeUnknownError (it may have been applied).
        Returns Salesforce's ``{"id", "success", "errors", "created"}``; before API 46.0 an update
        answers 204 with no body, reported as ``{"id": None, "success": True, "errors": [], "created": False}``.
        """
        if not is_identifier(sobject) or not is_identifier(external_id_field):
            raise ValueError(f"bad object or field name: {sobject!r}.{external_id_field!r}")
        bad = [name for name in fields if not is_identifier(name)]
        if bad:
            raise ValueError(f"not Salesforce field names: {bad!r}")
        path = f"sobjects/{sobject}/{external_id_field}/{quote(str(external_id), safe='')}"
        body = encode_json(fields)
        timeout = self.settings.timeout_seconds
        result = self._call(
            f"upsert {sobject} {external_id_field}={external_id}",
            lambda sf: sf.restful(path, method="PATCH", data=body, timeout=timeout),
            write=True,
        )
        if result is None:
            return {"id": None, "success": True, "errors": [], "created": False}
        return dict(result)

    def upsert_collection(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[CollectionResult]:
        """Create or update many records by ``external_id_field`` (sObject Collections, API 46.0+).

        ``PATCH composite/sobjects/{sobject}/{external_id_field}`` with ``allOrNone: false``, 200 records
        a request, so one refused record never holds back the others. Returns one result per record, in
        order. Raises only ValueError (bad names), never for a failed request: a request that still fails
        after the retries marks its records with that error; if that error is not a RecordError, the
        records not sent yet are marked "not sent" (a RetryableError) instead of failing the same way.

        Idempotent (an upsert by external id), so a timed-out request is sent again under the retry
        policy; records refused with a retryable code (UNABLE_TO_LOCK_ROW) are sent again, alone, with
        the policy's waits. A record without a value for ``external_id_field`` is refused here.
        With ``external_id_field="Id"`` the records are updated by their Id (never created).
        """
        if not is_identifier(sobject) or not is_identifier(external_id_field):
            raise ValueError(f"bad object or field name: {sobject!r}.{external_id_field!r}")
        bad = sorted({name for record in records for name in record if not is_identifier(name)})
        if bad:
            raise ValueError(f"not Salesforce field names: {bad!r}")
        keys = [_external_value(record.get(external_id_field)) for record in records]
        results: dict[int, CollectionResult] = {}
        sendable: list[int] = []
        for index, key in enumerate(keys):
            if key is None:
                error = RecordError(
                    f"upsert {sobject}: the record has no {external_id_field} to match on",
                    code="MISSING_EXTERNAL_ID",
                    system=SYSTEM,
                )
                results[index] = CollectionResult("", False, None, False, error)
            else:
                sendable.append(index)
        stop: ConnectorError | None = None
        for start in range(0, len(sendable), COLLECTION_SIZE):
            chunk = sendable[start : start + COLLECTION_SIZE]
            if stop is None:
                done, stop = self._upsert_chunk(sobject, external_id_field, records, keys, chunk)
                results.update(done)
                continue
            for index in chunk:
                not_sent = RetryableError(
                    f"upsert {sobject}: not sent, an earlier request failed: {stop.message}",
                    code=stop.code,
                    system=SYSTEM,
                )
                results[index] = CollectionResult(str(keys[index]), False, None, False, not_sent)
        return [results[index] for index in range(len(records))]

    def _upsert_chunk(
        self,
        sobject: str,
        field: str,
        records: Sequence[Mapping[str, Any]],
        keys: Sequence[str | None],
        chunk: list[int],
    ) -> tuple[dict[int, CollectionResult], ConnectorError | None]:
        """One request, then its records refused with a retryable code sent again on their own.

        Returns the results and the error that ended the request as a whole, if one did and it is not
        about the records (the caller then stops sending)."""
        results: dict[int, CollectionResult] = {}
        todo, attempt = chunk, 1
        while True:
            answered, request_error = self._send_collection(sobject, field, records, keys, todo)
            results.update(answered)
            if request_error is not None:
                return results, None if isinstance(request_error, RecordError) else request_error
            again = [i for i in todo if isinstance(results[i].error, RetryableError)]
            if not again:
                return results, None
            error = results[again[0]].error
            if self.retry.gives_up(attempt, error):
                return results, None
            self.retry.sleep(self.retry.wait(attempt, error))
            todo, attempt = again, attempt + 1

    def _send_collection(
        self,
        sobject: str,
        field: str,
        records: Sequence[Mapping[str, Any]],
        keys: Sequence[str | None],
        indexes: list[int],
    ) -> tuple[dict[int, CollectionResult], ConnectorError | None]:
        """One PATCH of up to 200 records: per-record results, or the request's error on each of them."""
        # Matching on Id is an update of existing records (``PATCH composite/sobjects``): the same
        # call, idempotent too, but it never creates one.
        path = "composite/sobjects" if field == "Id" else f"composite/sobjects/{sobject}/{field}"
        body = encode_json(
            {
                "allOrNone": False,
                "records": [
                    {
                        "attributes": {"type": sobject},
                        **{k: v for k, v in records[i].items() if k != "attributes"},
                    }
                    for i in indexes
                ],
            }
        )
        timeout = self.settings.timeout_seconds
        what = f"upsert {len(indexes)} {sobject} by {field}"
        try:
            answer = self._call(
                what,
                lambda sf: sf.restful(path, method="PATCH", data=body, timeout=timeout),
                write=True,
            )
            if not isinstance(answer, list) or len(answer) != len(indexes):
                got = f"{len(answer)} results" if isinstance(answer, list) else type(answer).__name__
                raise OutcomeUnknownError(
                    f"{what}: expected {len(indexes)} results, got {got}", code="bad_answer", system=SYSTEM
                )
        except ConnectorError as error:
            failed = {i: CollectionResult(str(keys[i]), False, None, False, error) for i in indexes}
            return failed, error
        out: dict[int, CollectionResult] = {}
        for i, item in zip(indexes, answer, strict=True):
            key = str(keys[i])
            item = item if isinstance(item, dict) else {}
            if item.get("success") is True:
                record_id = item.get("id")
                created = bool(item.get("created"))
                out[i] = CollectionResult(key, True, str(record_id) if record_id else None, created, None)
                continue
            refused = record_result_error(
                item.get("errors") or [], what=f"upsert {sobject} {field}={key}", secrets=self._secrets()
            )
            out[i] = CollectionResult(key, False, None, False, refused)
        return out, None

    def find_by(
        self,
        sobject: str,
        field: str,
        values: Collection[str],
        fields: Sequence[str] = (),
    ) -> dict[str, dict[str, Any]]:
        """The records whose ``field`` (a text field) is one of ``values``, keyed by that value.

        ``SELECT Id, SystemModstamp, <field>, <fields> ... WHERE <field> IN (...) ORDER BY Id``, 200
        values a query, each escaped. Used to learn whether a write whose outcome is unknown happened.
        If two records share a value (impossible for an external id), the oldest Id wins.
        """
        if not is_identifier(sobject) or not is_identifier(field):
            raise ValueError(f"bad object or field name: {sobject!r}.{field!r}")
        bad = [name for name in fields if not is_field_path(name)]
        if bad:
            raise ValueError(f"not Salesforce field names: {bad!r}")
        wanted: list[str] = []
        for name in ["Id", CURSOR_FIELD, field, *fields]:
            if name.lower() not in {w.lower() for w in wanted}:
                wanted.append(name)
        unique = list(dict.fromkeys(str(v) for v in values))
        found: dict[str, dict[str, Any]] = {}
        timeout = self.settings.timeout_seconds
        what = f"find {sobject} by {field}"
        for start in range(0, len(unique), FIND_CHUNK):
            literals = ", ".join(soql_string(v) for v in unique[start : start + FIND_CHUNK])
            soql = f"SELECT {', '.join(wanted)} FROM {sobject} WHERE {field} IN ({literals}) ORDER BY Id"
            result = self._call(what, _query(soql, timeout))
            while True:
                for record in result["records"]:
                    clean: dict[str, Any] = _strip_attributes(record)
                    value = next((v for k, v in clean.items() if k.lower() == field.lower()), None)
                    if value is not None:
                        found.setdefault(_external_value(value) or "", clean)
                if result.get("done", True):
                    break
                result = self._call(what, _next_page(result["nextRecordsUrl"], timeout))
        return found


def _query(soql: str, timeout: float) -> Callable[[Salesforce], Any]:
    return lambda sf: sf.query(soql, timeout=timeout)


def _external_value(value: Any) -> str | None:
    """An external id as text (a Decimal without exponent); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)
