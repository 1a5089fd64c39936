"""Salesforce connector: incremental reads by ``SystemModstamp`` and external-id upserts.

Built on simple-salesforce over a :class:`SalesforceSession` that adds what the library lacks: a
timeout and a trust setting on every request, the login host replaced by ``settings.login_url`` (the
library hard-codes ``login.salesforce.com``), and a count of HTTP calls. Numbers are parsed as
``Decimal`` so money never goes through float. Every vendor error leaves as a ``connectors.errors``
class (see :mod:`connectors.salesforce.errors`).

Retries: every read (query page, get) and every upsert (idempotent by its external id) runs under the
shared :class:`connectors.retry.RetryPolicy`. The session is renewed by the connector, not by the
library (which would log in up to three times in a row and hide why): an ``INVALID_SESSION_ID``
answer leads to one new login and one resend in that attempt; refused again, it is an AuthError.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.login import SalesforceLogin

from connectors.errors import AuthError
from connectors.http import DefaultsSession
from connectors.retry import RetryPolicy
from connectors.salesforce.errors import translated
from connectors.salesforce.settings import SalesforceSettings
from connectors.salesforce.soql import datetime_literal, format_datetime, is_field_path, is_identifier

#: The hosts simple-salesforce posts username/password logins to.
LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
#: Records per query page; Salesforce's maximum and default batch size.
PAGE_SIZE = 2000
CURSOR_FIELD = "SystemModstamp"
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\Z")
_T = TypeVar("_T")


class SalesforceSession(DefaultsSession):
    """A :class:`DefaultsSession` that sends logins to ``login_url`` and counts requests.

    ``transport`` lets a caller supply its own ``requests.Session`` (adapters, proxies): requests then go
    through it, still with the login rewrite, the defaults and the counting.
    """

    def __init__(
        self,
        *,
        timeout: float,
        verify: bool | str,
        login_url: str,
        transport: requests.Session | None = None,
    ) -> None:
        super().__init__(timeout=timeout, verify=verify)
        self.login_url = login_url.rstrip("/")
        self.calls = 0
        self.last_login_status: int | None = None
        self.last_retry_after: str | None = None
        self._transport = transport
        self._count_lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        login = False
        for host in LOGIN_HOSTS:
            if target.startswith(host + "/"):
                target, login = self.login_url + target[len(host) :], True
                break
        with self._count_lock:
            self.calls += 1
        if self._transport is not None:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.default_timeout
            kwargs.setdefault("verify", self.verify)
            response = self._transport.request(method, target, *args, **kwargs)
        else:
            response = super().request(method, target, *args, **kwargs)
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
        if isinstance(session, SalesforceSession):
            self._session = session
        else:
            self._session = SalesforceSession(
                timeout=settings.timeout_seconds,
                verify=settings.ca_file or True,
                login_url=settings.login_url,
                transport=session,
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
