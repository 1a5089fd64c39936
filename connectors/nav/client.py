"""Dynamics NAV / Business Central page and codeunit SOAP services, on zeep.

What it adds to zeep, and why:

* one zeep client per service per connector, its WSDL read from ``wsdl_dir`` or fetched once and
  kept in a file cache (``wsdl_cache_dir``), so a restart costs no WSDL round trips; the service
  address always comes from the settings, never from the WSDL (saved WSDLs name another host);
* a timeout on WSDL loading and on every operation (zeep sets none), the CA file honoured and
  proxy/CA environment variables ignored (:class:`connectors.http.DefaultsSession`);
* NAV's conventions as Python: records are dicts in the page's shape (``{"No": ..., "SalesLines":
  {"Sales_Invoice_Line": [...]}}``), money is :class:`~decimal.Decimal` both ways (a float is
  refused), ``ReadMultiple`` paged by ``bookmarkKey``, filters in NAV's syntax;
* one error taxonomy (:mod:`connectors.nav.errors`) and short in-call retries of failures that
  applied nothing; a write that may have been applied raises :class:`OutcomeUnknownError` at once;
  a write to a page whose WSDL offers no such operation (a read-only page) is a :class:`FatalError`
  raised before anything is sent;
* payment statuses read back from page ``PaymentStatusEntries`` (what ``RecordPaymentStatus``
  appended), as an auditor would check them: :meth:`NavConnector.payment_statuses` and
  :meth:`NavConnector.latest_payment_status`.

Identity: a record's stable id is its ``No`` (the primary key); its version is ``Key``, which NAV
changes on every modification and ``Update`` must send back. A connector instance is not
thread-safe; use one per worker thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import zeep
import zeep.cache
import zeep.exceptions
import zeep.helpers
from requests.auth import AuthBase, HTTPBasicAuth
from zeep.transports import Transport

from connectors.errors import (
    ConnectorError,
    FatalError,
    OutcomeUnknownError,
    RecordError,
    RetryableError,
)
from connectors.http import DefaultsSession
from connectors.nav.errors import SYSTEM, StaleRecordError, redact, translate
from connectors.nav.schema import PAGES, PAYMENT_STATUS_ENTRIES, PAYMENT_STATUS_STATUSES, option_name
from connectors.nav.settings import NavSettings
from connectors.nav.wsdl import codeunit_namespace, page_namespace
from connectors.retry import RetryPolicy

__all__ = [
    "BATCH_SIZE",
    "NavConnector",
    "WriteResult",
    "quote_filter_value",
    "remote_identity",
]

BATCH_SIZE = 100  # records per CreateMultiple in create_batch: one NAV transaction each
_FILTER_VALUES = 100  # values per find_by filter ...
_FILTER_CHARS = 1000  # ... and characters, keeping one criteria string reasonable
_FILTER_SPECIALS = set("|&()<>=.*?@'%\"")
_BLANK_DATE = "0001-01-01"  # NAV's 0D, "no date" (zeep would write date(1, 1, 1) as "1-01-01")
#: Option names page PaymentStatusEntries publishes (``Partially_Paid``) -> billsync's statuses.
_STATUS_OF_OPTION = {option_name(status): status for status in PAYMENT_STATUS_STATUSES}
_T = TypeVar("_T")

# zeep ships py.typed but leaves most functions unannotated; use them through Any.
_Client: Any = zeep.Client
_Transport: Any = Transport
_serialize: Any = zeep.helpers.serialize_object

Kind = Literal["Page", "Codeunit"]


def quote_filter_value(value: str) -> str:
    """``value`` as a literal in a NAV filter: quoted when it holds filter syntax (``A|B``, ``1..2``)."""
    if value == "" or any(char in _FILTER_SPECIALS for char in value) or value != value.strip():
        return "'" + value.replace("'", "''") + "'"
    return value


def remote_identity(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(No, Key)`` of a record NAV returned: the stable id and the version a binding keeps."""
    return str(record["No"]), str(record["Key"])


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one record of :meth:`NavConnector.create_batch`, in input order."""

    index: int
    record: dict[str, Any] | None
    error: ConnectorError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _check_money(value: Any, path: str = "record") -> None:
    """Refuse floats anywhere in a payload: a binary fraction would not be the amount meant."""
    if isinstance(value, float):
        raise TypeError(f"float at {path}: use Decimal so no cent is lost")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"non-finite Decimal at {path}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_money(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_money(item, f"{path}[{i}]")


def _plain(value: Any) -> Any:
    """zeep objects -> dicts and lists, without the elements NAV left out (None)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _records(value: Any, page: str) -> list[dict[str, Any]]:
    """The records of a ``<Page>_List`` result (zeep object, dict or None)."""
    if value is None:
        return []
    data = _plain(_serialize(value, dict))
    if isinstance(data, Mapping):
        data = data.get(page) or []
    return [dict(row) for row in data]


class WsdlFileCache(zeep.cache.Base):
    """WSDLs on disk, one file per URL, replaced atomically; ``ttl_seconds=0`` never expires.

    A file cache rather than zeep's SqliteCache: many ``billsync`` processes start at once (workers,
    the crash test) and a rename is atomic where a shared SQLite file can be locked.
    """

    def __init__(self, directory: Path, ttl_seconds: int) -> None:
        self.directory = directory
        self.ttl_seconds = ttl_seconds

    def _path(self, url: str) -> Path:
        return self.directory / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.wsdl"

    def add(self, url: str, content: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, self._path(url))

    def get(self, url: str) -> bytes | None:
        path = self._path(url)
        try:
            if self.ttl_seconds and time.time() - path.stat().st_mtime > self.ttl_seconds:
                return None
            return path.read_bytes()
        except OSError:
            return None


class _NavSession(DefaultsSession):
    """Counts requests and keeps the last response (zeep's TransportError drops its headers)."""

    def __init__(self, *, timeout: float, verify: bool | str, on_request: Callable[[str], None]) -> None:
        super().__init__(timeout=timeout, verify=verify)
        self._on_request = on_request
        self.last_response: requests.Response | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.last_response = None
        self._on_request(method.decode() if isinstance(method, bytes) else method)
        response = super().request(method, url, *args, **kwargs)
        self.last_response = response
        return response


class NavConnector:
    """Reads and writes one NAV company; every method raises only :mod:`connectors.errors` classes
    (plus ``TypeError``/``ValueError`` for a malformed call)."""

    def __init__(
        self,
        settings: NavSettings,
        *,
        retry_attempts: int = 3,
        retry_max_wait: float = 30.0,
        retry_backoff: float = 0.5,
        retry_jitter: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        """``retry`` replaces the policy built from the ``retry_*``/``sleep`` arguments; whatever the
        policy, an :class:`OutcomeUnknownError` is never retried here (NAV writes carry no idempotency
        key: the caller looks the write up first)."""
        self.settings = settings
        self.api_calls = 0
        self.wsdl_fetches = 0
        self.batch_size = max(1, batch_size)
        policy = retry or RetryPolicy(
            attempts=max(1, retry_attempts),
            backoff=retry_backoff,
            max_wait=retry_max_wait,
            jitter=retry_jitter,
            sleep=sleep,
        )
        self.retry = policy.with_(never_retry=(*policy.never_retry, OutcomeUnknownError))
        self._secrets = [settings.password.get_secret_value()]
        self._session = _NavSession(
            timeout=settings.timeout_seconds, verify=settings.ca_file or True, on_request=self._count
        )
        self._session.auth = self._auth()
        cache = (
            WsdlFileCache(Path(settings.wsdl_cache_dir), settings.wsdl_cache_seconds)
            if settings.wsdl_cache_dir
            else None
        )
        self._transport = _Transport(
            session=self._session,
            timeout=settings.timeout_seconds,
            operation_timeout=settings.operation_timeout_seconds,
            cache=cache,
        )
        self._zeep_settings = zeep.Settings(
            strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True
        )
        self._services: dict[tuple[Kind, str], Any] = {}

    def _auth(self) -> AuthBase:
        password = self.settings.password.get_secret_value()
        if self.settings.auth == "ntlm":
            try:
                from requests_ntlm import HttpNtlmAuth
            except ImportError as exc:
                raise FatalError(
                    "auth: ntlm needs the requests-ntlm package (pip install requests-ntlm)", system=SYSTEM
                ) from exc
            auth: AuthBase = HttpNtlmAuth(self.settings.username, password)
            return auth
        return HTTPBasicAuth(self.settings.username, password)

    def _count(self, method: str) -> None:
        self.api_calls += 1
        if method.upper() == "GET":
            self.wsdl_fetches += 1

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> NavConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- services --------------------------------------------------------------------------------
    def _wsdl_source(self, kind: Kind, name: str) -> str:
        if self.settings.wsdl_dir:
            directory = Path(self.settings.wsdl_dir)
            for suffix in (".xml", ".wsdl"):
                path = directory / f"{kind.lower()}-{name}{suffix}"
                if path.is_file():
                    return str(path)
        return self.settings.service_url(kind, name)

    def service(self, kind: Kind, name: str) -> Any:
        """The zeep service proxy of page or codeunit ``name``, loading its WSDL on first use."""
        cached = self._services.get((kind, name))
        if cached is not None:
            return cached
        source = self._wsdl_source(kind, name)

        def load() -> Any:
            return _Client(source, transport=self._transport, settings=self._zeep_settings)

        client = self._call(load, write=False)
        namespace = page_namespace(name) if kind == "Page" else codeunit_namespace(name)
        bindings = list(client.wsdl.bindings)
        binding = f"{{{namespace}}}{name}_Binding"
        if binding not in bindings:
            if len(bindings) != 1:
                raise FatalError(f"{source} has no binding {binding}", system=SYSTEM)
            binding = bindings[0]
        proxy = client.create_service(binding, self.settings.service_url(kind, name))
        self._services[(kind, name)] = proxy
        return proxy

    def _page_operation(self, page: str, operation: str) -> Any:
        """Operation ``operation`` of page ``page``; FatalError when its WSDL does not offer it."""
        proxy = self.service("Page", page)
        try:
            return getattr(proxy, operation)
        except AttributeError:
            raise FatalError(
                f"page {page} does not offer {operation} (a read-only page?): nothing was sent",
                system=SYSTEM,
            ) from None

    # -- page writes -----------------------------------------------------------------------------
    def create(self, page: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Create one record; NAV fills ``No`` from its number series when it is left out."""
        _check_money(record)
        operation = self._page_operation(page, "Create")
        result = self._call(lambda: operation(**{page: dict(record)}), write=True)
        return dict(_plain(_serialize(result, dict)))

    def create_multiple(self, page: str, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create ``records`` in one CreateMultiple call: one NAV transaction, all or nothing."""
        if not records:
            return []
        _check_money(list(records))
        operation = self._page_operation(page, "CreateMultiple")
        payload = {page: [dict(r) for r in records]}
        result = self._call(lambda: operation(**{f"{page}_List": payload}), write=True)
        return _records(result, page)

    def create_batch(self, page: str, records: Sequence[Mapping[str, Any]]) -> list[WriteResult]:
        """Create ``records`` in CreateMultiple calls of ``batch_size``, each record succeeding on its own.

        A chunk refused for one record's sake (a RecordError rolls the whole chunk back) is sent again
        record by record, so only the bad records carry an error. When a whole call fails otherwise,
        its records carry that error (OutcomeUnknownError: look them up before resending) and later
        chunks are not sent (RetryableError, or the same Auth/Fatal/RateLimited error).
        """
        results: list[WriteResult] = []
        failure: ConnectorError | None = None

        def unsent() -> ConnectorError:
            assert failure is not None
            if isinstance(failure, OutcomeUnknownError) or type(failure) is RetryableError:
                return RetryableError("not sent: an earlier call of this batch failed", system=SYSTEM)
            return failure  # auth, permission, throttle: they apply to the rest as much

        for start in range(0, len(records), self.batch_size):
            chunk = records[start : start + self.batch_size]
            indexes = range(start, start + len(chunk))
            if failure is not None:
                results += [WriteResult(i, None, unsent()) for i in indexes]
                continue
            try:
                created = self.create_multiple(page, chunk)
                results += [WriteResult(i, row, None) for i, row in zip(indexes, created, strict=True)]
            except RecordError:
                for i, record in zip(indexes, chunk, strict=True):
                    if failure is not None:
                        results.append(WriteResult(i, None, unsent()))
                        continue
                    try:
                        results.append(WriteResult(i, self.create(page, record), None))
                    except RecordError as exc:
                        results.append(WriteResult(i, None, exc))
                    except ConnectorError as exc:
                        failure = exc
                        results.append(WriteResult(i, None, exc))
            except ConnectorError as exc:
                failure = exc
                results += [WriteResult(i, None, exc) for i in indexes]
        return results

    def update(self, page: str, record: Mapping[str, Any], *, retry_stale: bool = False) -> dict[str, Any]:
        """Update one record identified by its ``Key``; only the fields given change.

        A ``Key`` that is no longer current raises :class:`StaleRecordError`: :meth:`read` the record
        for its new ``Key`` and apply the change again. ``retry_stale=True`` does that once itself
        (the record must carry its ``No``): right for fields billsync owns, wrong when the caller must
        first see what changed in NAV, hence opt-in; line Keys in ``SalesLines`` are not refreshed.
        ``None`` leaves a field unchanged; ``""`` blanks it.
        """
        if not record.get("Key"):
            raise ValueError(f"update of a {page} record needs its Key (read it first)")
        _check_money(record)
        operation = self._page_operation(page, "Update")

        def send(body: Mapping[str, Any]) -> dict[str, Any]:
            result = self._call(lambda: operation(**{page: dict(body)}), write=True)
            return dict(_plain(_serialize(result, dict)))

        try:
            return send(record)
        except StaleRecordError:
            if not retry_stale or not record.get("No"):
                raise
            current = self.read(page, str(record["No"]))
            if current is None:
                raise
            return send({**record, "Key": current["Key"]})

    def delete(self, page: str, key: str) -> bool:
        """Delete the record whose current ``Key`` this is."""
        operation = self._page_operation(page, "Delete")
        return bool(self._call(lambda: operation(Key=key), write=True))

    # -- page reads ------------------------------------------------------------------------------
    def read(self, page: str, no: str | int) -> dict[str, Any] | None:
        """The record with primary key ``no``, or None (NAV answers an empty Read_Result).

        The key is the page's key field: ``No``, or ``Entry_No`` for ``PaymentStatusEntries``.
        """
        proxy = self.service("Page", page)
        key_field = PAGES[page].key_field if page in PAGES else "No"
        result = self._call(lambda: proxy.Read(**{key_field: no}), write=False)
        return None if result is None else dict(_plain(_serialize(result, dict)))

    def read_multiple(
        self, page: str, filters: Mapping[str, str] | None = None, set_size: int = 200
    ) -> Iterator[dict[str, Any]]:
        """Records matching ``filters`` (field -> NAV criteria such as ``"A|B"`` or ``"10000..20000"``).

        Pages of ``set_size``, each asked with the previous page's last ``Key`` as ``bookmarkKey``,
        until NAV returns an empty page. Values meant literally go through :func:`quote_filter_value`.
        """
        if set_size < 1:
            raise ValueError("set_size must be at least 1 (0 would make NAV return everything at once)")
        proxy = self.service("Page", page)
        criteria = [{"Field": field, "Criteria": value} for field, value in (filters or {}).items()]
        if not criteria:  # ReadMultiple needs one filter; a blank one on the key field = all
            spec = PAGES.get(page)
            field = spec.key_field if spec is not None and spec.key_field != "Key" else "No"
            criteria = [{"Field": field, "Criteria": ""}]
        bookmark: str | None = None
        while True:
            mark = bookmark

            def read_page(mark: str | None = mark) -> Any:
                return proxy.ReadMultiple(filter=criteria, bookmarkKey=mark, setSize=set_size)

            rows = _records(self._call(read_page, write=False), page)
            if not rows:
                return
            yield from rows
            bookmark = rows[-1]["Key"]

    def find_by(self, page: str, field: str, values: Collection[str]) -> dict[str, dict[str, Any]]:
        """Records whose ``field`` is one of ``values``, keyed by the value asked (first match wins).

        How a write of unknown outcome is looked up before it is retried: SalesInvoice by
        ``External_Document_No`` (billsync's invoice number), Customer by ``No``. One ReadMultiple per
        chunk, with NAV's ``value1|value2`` OR filter. Code fields are upper case in NAV, so a value
        matches its upper-case form too.
        """
        wanted = sorted({str(v) for v in values if str(v) != ""})
        found: dict[str, dict[str, Any]] = {}
        by_upper: dict[str, list[str]] = {}
        for value in wanted:
            by_upper.setdefault(value.upper(), []).append(value)
        chunk: list[str] = []
        chunks: list[list[str]] = []
        length = 0
        for value in wanted:
            quoted = quote_filter_value(value)
            if chunk and (len(chunk) >= _FILTER_VALUES or length + len(quoted) + 1 > _FILTER_CHARS):
                chunks.append(chunk)
                chunk, length = [], 0
            chunk.append(quoted)
            length += len(quoted) + 1
        if chunk:
            chunks.append(chunk)
        for quoted_values in chunks:
            for row in self.read_multiple(
                page, {field: "|".join(quoted_values)}, set_size=len(quoted_values) * 2
            ):
                actual = row.get(field)
                if actual is None:
                    continue
                for asked in by_upper.get(str(actual).upper(), []):
                    found.setdefault(asked, row)
        return found

    # -- codeunits -------------------------------------------------------------------------------
    def call_codeunit(
        self, codeunit: str, operation: str, parameters: Mapping[str, Any], *, write: bool = True
    ) -> Any:
        """Call a codeunit function with named parameters; its ``return_value`` is returned."""
        _check_money(parameters)
        proxy = self.service("Codeunit", codeunit)
        method = getattr(proxy, operation)
        return self._call(lambda: method(**dict(parameters)), write=write)

    def record_payment_status(
        self,
        invoice_no: str,
        status: str,
        amount_paid: Decimal,
        amount_due: Decimal,
        currency_code: str,
        paid_on: dt.date | None = None,
    ) -> bool:
        """Record an invoice's payment status through codeunit ``PaymentStatus``.

        Idempotent in NAV by (invoice_no, status): sending the same status again records nothing and
        returns False, so a call of unknown outcome can simply be sent again. True: newly recorded.
        """
        if not isinstance(amount_paid, Decimal) or not isinstance(amount_due, Decimal):
            raise TypeError("amounts must be Decimal")
        parameters = {
            "invoiceNo": invoice_no,
            "status": status,
            "currencyCode": currency_code,
            "amountPaid": amount_paid,
            "amountDue": amount_due,
            "paidOn": paid_on or _BLANK_DATE,
        }
        return bool(self.call_codeunit("PaymentStatus", "RecordPaymentStatus", parameters))

    def payment_statuses(self, status: str | None = None, *, set_size: int = 200) -> list[dict[str, Any]]:
        """The payment-status entries NAV holds (page ``PaymentStatusEntries``), in ``Entry_No`` order.

        Each is the page's record (``Key``, ``Entry_No``, ``Invoice_No``, ``Status``, ``Amount_Paid``,
        ``Amount_Due``, ``Currency_Code``, ``Paid_On`` when set) with ``Status`` in the vocabulary
        :meth:`record_payment_status` takes (``Partially Paid``, not NAV's option name
        ``Partially_Paid``). ``status`` keeps only entries of that status. Read by ReadMultiple in
        pages of ``set_size``.
        """
        filters: dict[str, str] = {}
        if status is not None:
            option = option_name(status)
            if option not in _STATUS_OF_OPTION:
                raise ValueError(
                    f"unknown payment status {status!r}; one of {', '.join(PAYMENT_STATUS_STATUSES)}"
                )
            filters["Status"] = quote_filter_value(option)
        entries = []
        for row in self.read_multiple(PAYMENT_STATUS_ENTRIES.name, filters, set_size=set_size):
            published = str(row.get("Status", ""))
            entries.append({**row, "Status": _STATUS_OF_OPTION.get(published, published)})
        return entries

    def latest_payment_status(self, *, set_size: int = 200) -> dict[str, str]:
        """Each invoice's current payment status in NAV: invoice No -> status of its last entry.

        Entries are appended, so the current one is the entry with the highest ``Entry_No``.
        (``RecordPaymentStatus`` records a status once per invoice: an invoice that returns to a
        status it had before keeps the later one as its current status.)
        """
        latest: dict[str, tuple[int, str]] = {}
        for entry in self.payment_statuses(set_size=set_size):
            invoice_no, entry_no = str(entry["Invoice_No"]), int(entry["Entry_No"])
            if invoice_no not in latest or entry_no > latest[invoice_no][0]:
                latest[invoice_no] = (entry_no, str(entry["Status"]))
        return {invoice_no: status for invoice_no, (_, status) in latest.items()}

    # -- plumbing --------------------------------------------------------------------------------
    def _attempt(self, send: Callable[[], _T], *, write: bool) -> _T:
        """One call, with any failure translated to the taxonomy."""
        try:
            return send()
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc) or "got an unexpected" in str(exc):
                # zeep refuses a field the WSDL does not publish: a mapping problem, not this record's
                raise FatalError(
                    redact(f"field not in the NAV service: {exc}", self._secrets), system=SYSTEM
                ) from exc
            raise
        except Exception as exc:
            response = self._session.last_response
            translated = translate(
                exc,
                write=write,
                status=response.status_code if response is not None else None,
                headers=response.headers if response is not None else None,
                secrets=self._secrets,
            )
            if translated is None:
                raise
            raise translated from exc

    def _call(self, send: Callable[[], _T], *, write: bool) -> _T:
        """Short retries of failures that applied nothing (:attr:`retry`); OutcomeUnknownError at once."""
        return self.retry.call(lambda: self._attempt(send, write=write), write=write)
