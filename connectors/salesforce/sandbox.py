"""A Salesforce org on loopback HTTPS, speaking the REST API's wire format, for tests, demo and benchmarks.

What it emulates (each shape checked against ``shared/fixtures/salesforce``):

- SOAP ``login`` (``POST /services/Soap/u/<ver>``) answering ``serverUrl`` = this sandbox, and the real
  ``INVALID_LOGIN`` fault (HTTP 500) for wrong credentials; the OAuth password flow on
  ``/services/oauth2/token``;
- ``GET /services/data/`` (versions), ``query``/``queryAll`` with a SOQL subset (:mod:`.soql`), and
  ``queryMore`` through a relative ``nextRecordsUrl`` (``/services/data/v59.0/query/01g...-2000``),
  2,000 records a page (``Sforce-Query-Options: batchSize=`` between 200 and 2,000 honoured);
- sObject rows: ``GET``/``PATCH`` by Id, ``POST`` create, ``GET``/``PATCH`` by external id (upsert,
  201 created / 200 updated / 300 several matches), minimal ``describe``;
- sObject Collections upsert (``PATCH composite/sobjects/<object>/<external id field>``): at most 200
  records (``EXCEEDED_ID_LIMIT`` beyond), the field must be an External ID, one UpsertResult per record
  in order, per-record errors (unknown or read-only field, restricted picklist, wrong type, bad
  reference, missing or repeated external id, several matches, :meth:`lock_records`), ``allOrNone``;
- sObject Collections update (``PATCH composite/sobjects``, records of any type carrying their ``Id``),
  one SaveResult per record, ``allOrNone``, the same per-record checks;
- billsync's custom object ``Billsync_Invoice__c`` (``Invoice_Number__c`` its external id) and its
  custom fields on Account and Order (payment status, balance, last payment; the payment profile), with
  their restricted picklists, email and length checks on every write path, shown by ``describe``;
- the errors the connector must survive: ``INVALID_FIELD``, ``MALFORMED_QUERY``, ``INVALID_TYPE``,
  ``NOT_FOUND``, ``INVALID_SESSION_ID`` (after :meth:`expire_sessions`, or once on the next call after
  :meth:`expire_session_once`), ``REQUEST_LIMIT_EXCEEDED`` (the daily ``api_limit``, or
  :meth:`fail_next`), 5xx and slow answers (:meth:`delay_next`);
- the base class's random faults (``SalesforceSandbox(faults=0.1, seed=1)``) on every authenticated
  call (never on logins), with Salesforce's bodies: ``REQUEST_LIMIT_EXCEEDED`` (HTTP 403, the status
  Salesforce uses; the ``Retry-After`` header is the emulator's addition, Salesforce sends none),
  ``UNKNOWN_EXCEPTION`` (500), ``SERVER_UNAVAILABLE`` (503), timeouts and dropped connections.

Records are stored per sObject with 18-character Ids carrying the real key prefixes and checksum.

Every authenticated REST answer carries ``Sforce-Limit-Info: api-usage=N/M`` and ``GET .../limits/``
answers ``DailyApiRequests {Max, Remaining}`` among the org's other limits, as a real org does. Real
limits (``SalesforceSandbox(limits="real", daily_requests=15_000, latency=0.05)``; off by default):
the daily allowance is counted over a rolling ``budget_window_seconds`` (24 hours; ``limits_clock``
drives it in tests) and defaults to 15,000 requests, a Developer Edition org's (the
``limits_response.json`` fixture); past it every call gets HTTP 403 ``REQUEST_LIMIT_EXCEEDED``
"TotalRequests Limit exceeded.". Without ``limits`` the allowance is ``api_limit`` (a million) and never
rolls. The 2,000 records a query page and 200 records a collection hold in every mode.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from connectors.salesforce.client import encode_json
from connectors.salesforce.schema import (
    CUSTOM_FIELDS,
    CUSTOM_OBJECTS,
    EXTERNAL_ID_FIELDS,
    FIELD_LENGTHS,
    PICKLIST_VALUES,
    READ_ONLY_FIELDS,
    SYSTEM_FIELDS,
)
from connectors.salesforce.schema import STANDARD_FIELDS as DEFAULT_SCHEMA
from connectors.salesforce.soql import (
    Literal,
    Name,
    Query,
    SoqlError,
    error_pointer,
    format_datetime,
    is_date_text,
    is_datetime_text,
    is_identifier,
    parse,
    parse_datetime,
)
from connectors.sandbox import Request, Response, Sandbox, SlidingWindow

API_VERSIONS = [
    ("57.0", "Spring '23"),
    ("58.0", "Summer '23"),
    ("59.0", "Winter '24"),
    ("60.0", "Spring '24"),
    ("61.0", "Summer '24"),
    ("62.0", "Winter '25"),
    ("63.0", "Spring '25"),
    ("64.0", "Summer '25"),
    ("65.0", "Winter '26"),
]
DEFAULT_VERSION = "59.0"
MAX_BATCH, MIN_BATCH = 2000, 200
#: The daily API allowance under ``limits="real"``: a Developer Edition org's (Enterprise Edition
#: starts at 100,000 and grows with licences; pass ``daily_requests``).
REAL_DAILY_REQUESTS = 15_000
DAY_SECONDS = 86_400.0
LIMIT_MODES = ("off", "real")
#: The other entries of ``GET /limits/`` (their Max; Remaining equals it here), as the fixture lists them.
_OTHER_LIMITS = {
    "ConcurrentAsyncGetReportInstances": 200,
    "ConcurrentSyncReportRuns": 20,
    "DailyAsyncApexExecutions": 250000,
    "DailyBulkApiRequests": 5000,
    "DailyDurableGenericStreamingApiEvents": 10000,
    "DailyDurableStreamingApiEvents": 10000,
    "DailyGenericStreamingApiEvents": 10000,
    "DailyStreamingApiEvents": 10000,
    "DailyWorkflowEmails": 390,
    "DataStorageMB": 5,
    "DurableStreamingApiConcurrentClients": 20,
    "FileStorageMB": 20,
    "HourlyAsyncReportRuns": 1200,
    "HourlyDashboardRefreshes": 200,
    "HourlyDashboardResults": 5000,
    "HourlyDashboardStatuses": 999999999,
    "HourlyODataCallout": 10000,
    "HourlySyncReportRuns": 500,
    "HourlyTimeBasedWorkflow": 50,
    "MassEmail": 10,
    "SingleEmail": 15,
    "StreamingApiConcurrentClients": 20,
}
#: Records per sObject collection request.
MAX_COLLECTION = 200
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\Z")
_USER_REFERENCES = frozenset({"ownerid", "createdbyid", "lastmodifiedbyid"})

KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "User": "005",
    "Product2": "01t",
    "PricebookEntry": "01u",
    "Pricebook2": "01s",
    "Order": "801",
    "OrderItem": "802",
    "Organization": "00D",
}


_NUMBER_TYPES = {"double", "currency", "int", "percent"}
_TEXT_TYPES = {"string", "textarea", "email", "phone", "url", "picklist"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_ID_TYPES = {"id", "reference"}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def with_checksum(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce Id (the case-insensitive suffix)."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _CHECKSUM[bits]
    return id15 + suffix


def make_id(prefix: str, number: int) -> str:
    """``<key prefix><pod 'Dx'>0<9 base62 digits>`` plus checksum: sortable in creation order."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
        if number == 0:
            break
    return with_checksum(f"{prefix}Dx0{digits.rjust(9, '0')}")


def _errors(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    error: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        error["fields"] = fields
    return [error]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status,
        encode_json(body).encode(),
        headers=headers or {},
        content_type="application/json;charset=UTF-8",
    )


class ApiError(Exception):
    """Raised inside handlers; becomes the Salesforce error body."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.response = _json(status, _errors(code, message, fields))


NOT_FOUND_MESSAGE = "The requested resource does not exist"
SESSION_EXPIRED = _errors("INVALID_SESSION_ID", "Session expired or invalid")
LIMIT_EXCEEDED = _errors("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
_DEFAULT_FAULT_BODIES: dict[int, Any] = {
    401: SESSION_EXPIRED,
    403: LIMIT_EXCEEDED,
    500: _errors(
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567-89 (-1)",
    ),
    503: _errors("SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again later."),
}

_INVALID_LOGIN_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
    "<faultcode>INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security "
    'token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">'
    "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, "
    "security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
    "</soapenv:Body></soapenv:Envelope>"
)


@dataclass
class _Fault:
    remaining: int
    kinds: frozenset[str] | None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    delay: float = 0.0


@dataclass
class _Step:
    """One hop of a field path: the reference field followed and the relationship name it answers to."""

    relationship: str
    field: str


@dataclass
class _Path:
    steps: list[_Step]
    field: str  # canonical final field name
    type: str
    text: str


@dataclass
class _Cursor:
    sobject: str
    rows: list[dict[str, Any]]
    batch: int


class SalesforceSandbox(Sandbox):
    """The emulated org; see the module docstring for the API surface.

    Test controls: :meth:`add_records`, :meth:`touch`, :meth:`records`, :meth:`define_fields`,
    :meth:`restrict_picklist`, :meth:`lock_records`,
    :meth:`expire_sessions`, :meth:`fail_next`, :meth:`delay_next`, ``now`` (the clock), ``api_limit``,
    ``calls`` / ``calls_by_kind``.
    """

    system = "salesforce"

    def __init__(
        self,
        *,
        username: str = "demo@billsync.example",
        password: str = "billsync-demo-pass",
        security_token: str = "DemoToken0123456789ab",
        now: Callable[[], dt.datetime] | None = None,
        api_limit: int = 1_000_000,
        port: int = 0,
        tls: bool = True,
        cert_dir: Path | None = None,
        limits: str | None = None,
        daily_requests: int | None = None,
        budget_window_seconds: float = DAY_SECONDS,
        limits_clock: Callable[[], float] = time.monotonic,
        **faults: Any,
    ) -> None:
        """``faults``: the base class's ``faults=``, ``seed=``, ``fault_delay=``, ``fault_kinds=``...
        and ``latency=``. ``limits="real"``: the daily allowance (``daily_requests``, default 15,000)
        rolls over ``budget_window_seconds`` of ``limits_clock``; otherwise it is ``daily_requests`` or
        ``api_limit`` and never rolls."""
        super().__init__(port=port, tls=tls, cert_dir=cert_dir, **faults)
        if (limits or "off") not in LIMIT_MODES:
            raise ValueError(f"limits must be one of {LIMIT_MODES}, got {limits!r}")
        self.limits = limits if limits != "off" else None
        if daily_requests is not None:
            api_limit = daily_requests
        elif self.limits is not None:
            api_limit = REAL_DAILY_REQUESTS
        self._budget_window = budget_window_seconds
        self._limits_clock = limits_clock
        self._rolling: SlidingWindow | None = None
        self._initial = (username, password, security_token, api_limit)
        self.now: Callable[[], dt.datetime] = now or (lambda: dt.datetime.now(dt.UTC))
        self.calls_by_kind: Counter[str] = Counter()
        self._state = threading.RLock()
        self.org_id = make_id("00D", 1)
        self.user_id = make_id("005", 1)
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._schema: dict[str, dict[str, tuple[str, str]]] = {}  # sobject -> lower name -> (name, type)
        self._sobjects: dict[str, str] = {}  # lower -> canonical
        self._prefixes: dict[str, str] = {}  # sobject -> key prefix
        self._by_prefix: dict[str, str] = {}
        self._data: dict[str, dict[str, dict[str, Any]]] = {}
        self._external_ids: dict[str, set[str]] = {}  # sobject -> lower names marked External ID
        self._picklists: dict[str, dict[str, tuple[str, ...]]] = {}  # sobject -> lower name -> values
        self._locks: dict[tuple[str, str], int] = {}  # (sobject, external id) -> answers left locked
        self._sessions: set[str] = set()
        self._faults: list[_Fault] = []
        self._expire_once = False
        self._initial_faults = (self.fault_share, self.fault_kinds, self.fault_delay, self.fault_applied)
        self.reset()
        self._register_routes()

    def reset(self) -> None:
        """Back to an empty org with the constructor's credentials, limit and fault share; counters to zero.

        Cheaper than a new sandbox (no new certificate, no server restart), so a test module can share one.
        """
        with self._state:
            self.username, self.password, self.security_token, self.api_limit = self._initial
            self.api_usage = 0
            if self.limits is not None:  # the calls of the last 24 hours, whatever the limit
                self._rolling = SlidingWindow(1, self._budget_window, clock=self._limits_clock)
            self._serial = 0
            self._locator_serial = 0
            for table in (
                self._sessions,
                self._cursors,
                self._schema,
                self._sobjects,
                self._prefixes,
                self._by_prefix,
                self._data,
                self._external_ids,
                self._picklists,
                self._locks,
            ):
                table.clear()
            self._faults = []
            self._expire_once = False
            share, kinds, delay, applied = self._initial_faults
            self.set_faults(share, kinds=kinds, delay=delay, applied=applied)
            self.faults_injected.clear()
            for sobject, fields in DEFAULT_SCHEMA.items():
                self.define_fields(sobject, fields)
            self._define_billsync_objects()
            self.calls_by_kind.clear()
        self.reset_counters()

    # -- persistence (the demo continues the same org across runs) -----------------------------------
    def save_state(self, path: Path) -> None:
        """Write the org's records and schema to ``path`` (JSON; money stays exact)."""
        with self._state:
            state = {
                "serial": self._serial,
                "schema": {k: {f: list(v) for f, v in fields.items()} for k, fields in self._schema.items()},
                "sobjects": self._sobjects,
                "prefixes": self._prefixes,
                "by_prefix": self._by_prefix,
                "data": self._data,
                "external_ids": {k: sorted(v) for k, v in self._external_ids.items()},
                "picklists": {k: {f: list(v) for f, v in p.items()} for k, p in self._picklists.items()},
            }
            path.write_text(json.dumps(state, default=_encode_exact), encoding="utf-8")

    def load_state(self, path: Path) -> None:
        """Resume from :meth:`save_state`; sessions and query cursors start empty."""
        state = json.loads(path.read_text(encoding="utf-8"), object_hook=_decode_exact)
        with self._state:
            self._serial = int(state["serial"])
            self._schema = {
                k: {f: (v[0], v[1]) for f, v in fields.items()} for k, fields in state["schema"].items()
            }
            self._sobjects = dict(state["sobjects"])
            self._prefixes = dict(state["prefixes"])
            self._by_prefix = dict(state["by_prefix"])
            self._data = state["data"]
            self._external_ids = {k: set(v) for k, v in state.get("external_ids", {}).items()}
            self._picklists = {
                k: {f: tuple(v) for f, v in p.items()} for k, p in state.get("picklists", {}).items()
            }
            self._define_billsync_objects()  # a state saved before they existed gains them

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    # -- state helpers (also the test API) ---------------------------------------------------------
    def _ensure_sobject(self, sobject: str) -> str:
        if not is_identifier(sobject):
            raise ValueError(f"not an sObject name: {sobject!r}")
        with self._state:
            canonical = self._sobjects.get(sobject.lower())
            if canonical is not None:
                return canonical
            self._sobjects[sobject.lower()] = sobject
            prefix = KEY_PREFIXES.get(sobject)
            if prefix is None:  # custom objects get a0..., a1..., like a real org
                n = sum(1 for p in self._prefixes.values() if p.startswith("a"))
                prefix = "a" + _BASE62[n // 62] + _BASE62[n % 62]
            self._prefixes[sobject] = prefix
            self._by_prefix[prefix] = sobject
            self._schema[sobject] = {name.lower(): (name, kind) for name, kind in SYSTEM_FIELDS.items()}
            self._data[sobject] = {}
            return sobject

    def define_fields(
        self,
        sobject: str,
        fields: Mapping[str, str] | Iterable[str],
        *,
        external_ids: Iterable[str] = (),
    ) -> None:
        """Declare fields (name -> type, or names typed ``string``); unknown objects become custom objects.

        ``external_ids``: fields (declared here or before) marked "External ID", the only ones a
        collection upsert matches on. On an object with none marked, any ``__c`` field counts as one
        (as the sandbox always allowed for the single-record upsert).
        """
        canonical = self._ensure_sobject(sobject)
        items = fields.items() if isinstance(fields, Mapping) else ((name, "string") for name in fields)
        with self._state:
            schema = self._schema[canonical]
            for name, kind in items:
                if not is_identifier(name):
                    raise ValueError(f"not a field name: {name!r}")
                schema.setdefault(name.lower(), (name, kind))
            for name in external_ids:
                if name.lower() not in schema:
                    raise ValueError(f"{canonical} has no field {name!r} to mark as an external id")
                self._external_ids.setdefault(canonical, set()).add(name.lower())

    def _define_billsync_objects(self) -> None:
        """billsync's own custom objects, their external ids, its custom fields on standard objects and
        the restricted picklists (idempotent)."""
        for sobject, fields in CUSTOM_OBJECTS.items():
            self.define_fields(sobject, fields, external_ids=EXTERNAL_ID_FIELDS.get(sobject, ()))
        for sobject, fields in CUSTOM_FIELDS.items():
            self.define_fields(sobject, fields)
        for (sobject, name), values in PICKLIST_VALUES.items():
            self.restrict_picklist(sobject, name, values)

    def restrict_picklist(self, sobject: str, field: str, values: Iterable[str]) -> None:
        """Make ``field`` a restricted picklist: writes of any other value are refused per record."""
        canonical = self._ensure_sobject(sobject)
        with self._state:
            if field.lower() not in self._schema[canonical]:
                raise ValueError(f"{canonical} has no field {field!r}")
            self._picklists.setdefault(canonical, {})[field.lower()] = tuple(values)

    def lock_records(self, sobject: str, external_ids: Iterable[str], *, times: int = 1) -> None:
        """The next ``times`` collection upserts of these records answer ``UNABLE_TO_LOCK_ROW`` for them
        (another transaction holds the row), while the rest of each request goes through."""
        canonical = self._ensure_sobject(sobject)
        with self._state:
            for value in external_ids:
                self._locks[(canonical, str(value))] = times

    def _is_external_id(self, sobject: str, name: str) -> bool:
        marked = self._external_ids.get(sobject)
        if marked:
            return name.lower() in marked
        return name.lower().endswith("__c")

    def _field(self, sobject: str, name: str) -> tuple[str, str] | None:
        return self._schema[sobject].get(name.lower())

    def _next_id(self, sobject: str) -> str:
        self._serial += 1
        return make_id(self._prefixes[sobject], self._serial)

    def _attributes(self, sobject: str, record_id: str, version: str = DEFAULT_VERSION) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}

    @staticmethod
    def _infer_type(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, (int, float, Decimal)):
            return "double"
        if isinstance(value, dt.datetime) or (isinstance(value, str) and is_datetime_text(value)):
            return "datetime"
        if isinstance(value, dt.date) or (isinstance(value, str) and is_date_text(value)):
            return "date"
        return "string"

    def _store_value(self, kind: str, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return format_datetime(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, float):
            return Decimal(repr(value))
        if kind == "datetime" and isinstance(value, str) and is_datetime_text(value):
            return format_datetime(parse_datetime(value))
        return value

    def _apply(
        self, sobject: str, record: dict[str, Any], changes: Mapping[str, Any], *, extend: bool
    ) -> None:
        for name, value in changes.items():
            known = self._field(sobject, name)
            if known is None:
                if not extend:
                    raise ApiError(
                        400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}"
                    )
                self.define_fields(sobject, {name: self._infer_type(value)})
                known = (name, self._infer_type(value))
            record[known[0]] = self._store_value(known[1], value)

    def add_records(self, sobject: str, records: list[dict[str, Any]]) -> list[str]:
        """Insert records (unknown fields are added to the schema); returns their new 18-char Ids.

        ``CreatedDate``/``SystemModstamp`` default to ``now()``; pass them (datetime or API text) to
        place records in time.
        """
        canonical = self._ensure_sobject(sobject)
        ids: list[str] = []
        with self._state:
            stamp = format_datetime(self.now())
            for given in records:
                record_id = given.get("Id") or self._next_id(canonical)
                record: dict[str, Any] = {
                    "attributes": self._attributes(canonical, record_id),
                    "Id": record_id,
                    "IsDeleted": False,
                    "CreatedDate": stamp,
                    "CreatedById": self.user_id,
                    "LastModifiedDate": stamp,
                    "LastModifiedById": self.user_id,
                    "SystemModstamp": stamp,
                }
                self._apply(canonical, record, {k: v for k, v in given.items() if k != "Id"}, extend=True)
                if "SystemModstamp" in given and "LastModifiedDate" not in given:
                    record["LastModifiedDate"] = record["SystemModstamp"]
                self._data[canonical][record_id] = record
                ids.append(record_id)
        return ids

    def touch(self, sobject: str, record_id: str, **changes: Any) -> dict[str, Any]:
        """Change a record as a Salesforce user would: fields updated, ``SystemModstamp`` set to now."""
        canonical = self._ensure_sobject(sobject)
        with self._state:
            record = self._data[canonical][record_id]
            self._apply(canonical, record, changes, extend=True)
            stamp = format_datetime(self.now())
            record["SystemModstamp"] = record["LastModifiedDate"] = stamp
            return copy.deepcopy(record)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the stored records of ``sobject``, in insertion order, with ``attributes``."""
        canonical = self._sobjects.get(sobject.lower())
        if canonical is None:
            return []
        with self._state:
            return copy.deepcopy(list(self._data[canonical].values()))

    def expire_sessions(self) -> None:
        """Invalidate every session: the next call gets 401 ``INVALID_SESSION_ID`` (re-login needed)."""
        with self._state:
            self._sessions.clear()

    def expire_session_once(self) -> None:
        """The next authenticated call finds its session expired (401 ``INVALID_SESSION_ID``), as a
        session timing out in the middle of a run does; a new login works as usual."""
        with self._state:
            self._expire_once = True

    def arm_run_events(self) -> list[str]:
        """Once per run: the session expires under the next call."""
        self.expire_session_once()
        return ["expired_session"]

    def fault_response(self, kind: str, request: Request) -> Response:
        """Salesforce's bodies: REQUEST_LIMIT_EXCEEDED (403), UNKNOWN_EXCEPTION (500),
        SERVER_UNAVAILABLE (503)."""
        if kind == "throttle":
            return _json(403, LIMIT_EXCEEDED, {"Retry-After": self.retry_after_header()})
        status = 500 if kind == "server_error" else 503
        return _json(status, _DEFAULT_FAULT_BODIES[status])

    def fail_next(
        self,
        status: int = 503,
        body: Any = None,
        *,
        count: int = 1,
        kinds: Iterable[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with ``status`` and ``body``.

        The default body is the real one for 401/403 (``REQUEST_LIMIT_EXCEEDED``)/500/503. ``kinds`` limits
        the fault to call kinds (``query``, ``query_more``, ``upsert``, ``login``...); by default every
        call but logins.
        """
        if body is None:
            body = _DEFAULT_FAULT_BODIES.get(status, _errors("UNKNOWN_EXCEPTION", f"injected HTTP {status}"))
        with self._state:
            self._faults.append(
                _Fault(count, frozenset(kinds) if kinds else None, status=status, body=body, headers=headers)
            )

    def delay_next(self, seconds: float, *, count: int = 1, kinds: Iterable[str] | None = None) -> None:
        """Hold the next ``count`` matching calls for ``seconds`` before answering (to provoke timeouts)."""
        with self._state:
            self._faults.append(_Fault(count, frozenset(kinds) if kinds else None, delay=seconds))

    def _take_faults(self, kind: str) -> list[_Fault]:
        taken: list[_Fault] = []
        with self._state:
            for fault in self._faults:
                applies = kind in fault.kinds if fault.kinds is not None else kind not in ("login", "oauth")
                if applies and fault.remaining > 0:
                    fault.remaining -= 1
                    taken.append(fault)
            self._faults = [f for f in self._faults if f.remaining > 0]
        return taken

    # -- routing ---------------------------------------------------------------------------------
    def _register_routes(self) -> None:
        v = r"/services/data/v(?P<version>\d+\.\d)"
        add = self._add
        add("POST", r"/services/Soap/u/(?P<version>\d+\.\d)", "login", self._soap_login, auth=False)
        add("POST", r"/services/oauth2/token", "oauth", self._oauth_token, auth=False)
        add("GET", r"/services/data/?", "versions", self._versions, auth=False)
        add("GET", v + r"/?", "resources", self._resources)
        add("GET", v + r"/(?P<endpoint>query|queryAll)/?", "query", self._query)
        add(
            "GET",
            v + r"/(?:query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)",
            "query_more",
            self._query_more,
        )
        add("GET", v + r"/limits/?", "limits", self._limits)
        add("POST", v + r"/sobjects/(?P<sobject>\w+)/?", "sobject_create", self._create)
        add("GET", v + r"/sobjects/(?P<sobject>\w+)/describe/?", "describe", self._describe)
        add("GET", v + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)", "sobject_get", self._get)
        add("PATCH", v + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)", "sobject_update", self._update)
        add(
            "GET",
            v + r"/sobjects/(?P<sobject>\w+)/(?P<field>\w+)/(?P<value>[^/]+)",
            "sobject_get",
            self._get_by,
        )
        add(
            "PATCH", v + r"/sobjects/(?P<sobject>\w+)/(?P<field>\w+)/(?P<value>[^/]+)", "upsert", self._upsert
        )
        add(
            "PATCH",
            v + r"/composite/sobjects/(?P<sobject>\w+)/(?P<field>\w+)/?",
            "collection_upsert",
            self._upsert_collection,
        )
        add("PATCH", v + r"/composite/sobjects/?", "collection_update", self._update_collection)

    def _add(
        self,
        method: str,
        pattern: str,
        kind: str,
        handler: Callable[[Request], Response],
        *,
        auth: bool = True,
    ) -> None:
        def serve(request: Request) -> Response:
            with self._state:
                self.calls_by_kind[kind] += 1
            for fault in self._take_faults(kind):
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    return _json(fault.status, fault.body, fault.headers)
            try:
                if request.match is not None and "version" in request.match.groupdict():
                    if request.match["version"] not in {ver for ver, _ in API_VERSIONS}:
                        raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
                if auth:
                    self._authenticate(request)
                response = handler(request)
            except ApiError as error:
                response = error.response
            if auth:
                response.headers.setdefault(
                    "Sforce-Limit-Info", f"api-usage={self.api_usage}/{self.api_limit}"
                )
            return response

        self.route(method, pattern, serve, faults=auth)  # never a login or the version list

    def not_found(self, request: Request) -> Response:
        return _json(404, _errors("NOT_FOUND", NOT_FOUND_MESSAGE))

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        over = False
        with self._state:
            valid = scheme.lower() in ("bearer", "oauth") and token.strip() in self._sessions
            if valid and self._expire_once:
                self._expire_once = False
                self._sessions.clear()
                self.faults_injected["expired_session"] += 1
                valid = False
            if valid:
                if self._rolling is not None:
                    self.api_usage = self._rolling.add()
                else:
                    self.api_usage += 1
                over = self.api_usage > self.api_limit
        if not valid:
            raise _Reply(_json(401, SESSION_EXPIRED, {"WWW-Authenticate": "Token"}))
        if over:
            raise _Reply(_json(403, LIMIT_EXCEEDED))

    def _new_session(self) -> str:
        session_id = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
        with self._state:
            self._sessions.add(session_id)
        return session_id

    def _credentials_ok(self, username: str, password: str) -> bool:
        return username == self.username and password in (self.password + self.security_token,)

    # -- login -------------------------------------------------------------------------------------
    def _soap_login(self, request: Request) -> Response:
        try:
            root = ET.fromstring(request.body)
        except ET.ParseError:
            return Response(500, _INVALID_LOGIN_FAULT, content_type="text/xml;charset=UTF-8")
        username = root.findtext(".//{*}username") or ""
        password = root.findtext(".//{*}password") or ""
        if not self._credentials_ok(username, password):
            return Response(500, _INVALID_LOGIN_FAULT, content_type="text/xml;charset=UTF-8")
        version = request.match["version"] if request.match else DEFAULT_VERSION
        session_id = self._new_session()
        base = self.base_url
        body = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
   <soapenv:Body>
      <loginResponse>
         <result>
            <metadataServerUrl>{base}/services/Soap/m/{version}/{self.org_id[:15]}</metadataServerUrl>
            <passwordExpired>false</passwordExpired>
            <sandbox>true</sandbox>
            <serverUrl>{base}/services/Soap/u/{version}/{self.org_id[:15]}</serverUrl>
            <sessionId>{escape(session_id)}</sessionId>
            <userId>{self.user_id}</userId>
            <userInfo>
               <accessibilityMode>false</accessibilityMode>
               <currencySymbol>$</currencySymbol>
               <orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>
               <orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>
               <orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>
               <orgHasPersonAccounts>false</orgHasPersonAccounts>
               <organizationId>{self.org_id}</organizationId>
               <organizationMultiCurrency>false</organizationMultiCurrency>
               <organizationName>billsync sandbox</organizationName>
               <profileId>00eDx0000000001AAA</profileId>
               <roleId xsi:nil="true" />
               <sessionSecondsValid>7200</sessionSecondsValid>
               <userDefaultCurrencyIsoCode xsi:nil="true" />
               <userEmail>{escape(self.username)}</userEmail>
               <userFullName>Demo User</userFullName>
               <userId>{self.user_id}</userId>
               <userLanguage>en_US</userLanguage>
               <userLocale>en_US</userLocale>
               <userName>{escape(self.username)}</userName>
               <userTimeZone>UTC</userTimeZone>
               <userType>Standard</userType>
               <userUiSkin>Theme3</userUiSkin>
            </userInfo>
         </result>
      </loginResponse>
   </soapenv:Body>
</soapenv:Envelope>
"""
        return Response(200, body, content_type="text/xml;charset=UTF-8")

    def _oauth_token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "password":
            return _json(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
        if not self._credentials_ok(form.get("username", ""), form.get("password", "")):
            return _json(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        return _json(
            200,
            {
                "access_token": self._new_session(),
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{self.org_id}/{self.user_id}",
                "token_type": "Bearer",
                "issued_at": str(int(self.now().timestamp() * 1000)),
                "signature": secrets.token_urlsafe(32),
            },
        )

    # -- metadata ----------------------------------------------------------------------------------
    def _versions(self, request: Request) -> Response:
        return _json(
            200,
            [
                {"label": label, "url": f"/services/data/v{ver}", "version": ver}
                for ver, label in API_VERSIONS
            ],
        )

    def _resources(self, request: Request) -> Response:
        base = f"/services/data/v{request.match['version'] if request.match else DEFAULT_VERSION}"
        names = ["limits", "query", "queryAll", "sobjects"]
        return _json(200, {name: f"{base}/{name}" for name in names})

    def _limits(self, request: Request) -> Response:
        """The org's limits in the real shape; ``DailyApiRequests`` is live (this call included)."""
        with self._state:
            remaining = max(0, self.api_limit - self.api_usage)
            body = {name: {"Max": most, "Remaining": most} for name, most in _OTHER_LIMITS.items()}
            body["DailyApiRequests"] = {"Max": self.api_limit, "Remaining": remaining}
        return _json(200, dict(sorted(body.items())))

    def _sobject_or_404(self, name: str) -> str:
        canonical = self._sobjects.get(name.lower())
        if canonical is None:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return canonical

    def _describe(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        base = f"/services/data/v{request.match['version']}/sobjects/{sobject}"
        picklists = self._picklists.get(sobject, {})
        fields = [
            {
                "name": name,
                "type": kind,
                "label": _label(name),
                "length": _length(sobject, name, kind),
                "custom": name.endswith("__c"),
                "nillable": name.lower() not in READ_ONLY_FIELDS,
                "createable": name.lower() not in READ_ONLY_FIELDS,
                "updateable": name.lower() not in READ_ONLY_FIELDS,
                "externalId": self._is_external_id(sobject, name),
                "idLookup": name == "Id" or name.endswith("__c"),
                "defaultValue": None,
                "restrictedPicklist": name.lower() in picklists,
                "picklistValues": [
                    {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}
                    for value in picklists.get(name.lower(), ())
                ],
            }
            for name, kind in self._schema[sobject].values()
        ]
        return _json(
            200,
            {
                "name": sobject,
                "label": sobject,
                "custom": sobject.endswith("__c"),
                "keyPrefix": self._prefixes[sobject],
                "queryable": True,
                "createable": True,
                "updateable": True,
                "fields": fields,
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
            },
        )

    # -- query -------------------------------------------------------------------------------------
    def _query(self, request: Request) -> Response:
        assert request.match is not None
        version = request.match["version"]
        text = request.arg("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        batch = self._batch_size(request.headers.get("sforce-query-options", ""))
        with self._state:
            try:
                query = parse(text)
                sobject, rows = self._run(query, text, version)
            except SoqlError as error:
                position = error.position if error.position is not None else 0
                raise ApiError(400, error.code, error_pointer(text, position, error.message)) from None
            if query.count_only:
                return _json(200, {"totalSize": len(rows), "done": True, "records": []})
            if len(rows) <= batch:
                return _json(200, {"totalSize": len(rows), "done": True, "records": rows})
            self._locator_serial += 1
            locator = make_id("01g", self._locator_serial)
            self._cursors[locator] = _Cursor(sobject, rows, batch)
            while len(self._cursors) > 100:  # like the org's open-cursor limit: oldest closed first
                self._cursors.popitem(last=False)
        return self._page(version, locator, 0)

    def _query_more(self, request: Request) -> Response:
        assert request.match is not None
        with self._state:
            if request.match["locator"] not in self._cursors:
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(request.match["version"], request.match["locator"], int(request.match["offset"]))

    def _page(self, version: str, locator: str, offset: int) -> Response:
        with self._state:
            cursor = self._cursors[locator]
            rows = cursor.rows[offset : offset + cursor.batch]
            end = offset + len(rows)
            body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
            if end < len(cursor.rows):
                body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
            body["records"] = rows
        return _json(200, body)

    @staticmethod
    def _batch_size(options: str) -> int:
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "batchsize" and value.strip().isdigit():
                return max(MIN_BATCH, min(MAX_BATCH, int(value)))
        return MAX_BATCH

    def _run(self, query: Query, text: str, version: str) -> tuple[str, list[dict[str, Any]]]:
        sobject = self._sobjects.get(query.sobject.path.lower())
        if sobject is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{query.sobject.path}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
                query.sobject.position,
            )
        selected: list[_Path] = []
        for name in query.fields:
            path = self._resolve(sobject, name)
            if any(p.text.lower() == path.text.lower() for p in selected):
                raise SoqlError("INVALID_FIELD", f"duplicate field selected: {name.path}", name.position)
            selected.append(path)
        conditions = [(self._resolve(sobject, c.name), c) for c in query.where]
        for path, condition in conditions:
            self._check_literal(path, condition.name, condition.value)
        order = [(self._resolve(sobject, key.name), key) for key in query.order_by]

        matched = [
            record
            for record in self._data[sobject].values()
            if all(
                self._matches(self._value(record, path), path.type, c.op, c.value) for path, c in conditions
            )
        ]
        for path, key in reversed(order):
            present = [r for r in matched if self._value(r, path) is not None]
            missing = [r for r in matched if self._value(r, path) is None]
            present.sort(key=self._sorter(path), reverse=key.descending)
            matched = present + missing if key.nulls_last else missing + present
        matched = matched[query.offset :]
        if query.limit is not None:
            matched = matched[: query.limit]
        if query.count_only:
            return sobject, [{} for _ in matched]
        return sobject, [self._project(sobject, record, selected, version) for record in matched]

    def _sorter(self, path: _Path) -> Callable[[dict[str, Any]], Any]:
        def key(record: dict[str, Any]) -> Any:
            return _sort_key(path.type, self._value(record, path))

        return key

    def _resolve(self, sobject: str, name: Name) -> _Path:
        segments = name.path.split(".")
        current: str | None = sobject
        steps: list[_Step] = []
        for relationship in segments[:-1]:
            assert current is not None
            if relationship.lower().endswith("__r"):
                ref = self._field(current, relationship[:-3] + "__c")
            else:
                ref = self._field(current, relationship + "Id")
            if ref is None or ref[1] not in _ID_TYPES:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{relationship}' in field path. If you are attempting to use "
                    "a custom relationship, be sure to append the '__r' after the custom relationship name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                    name.position,
                )
            rel_name = ref[0][:-3] + "__r" if ref[0].endswith("__c") else ref[0][:-2]
            steps.append(_Step(rel_name, ref[0]))
            current = self._target(current, ref[0], rel_name)
            if current is None:  # nothing to validate against yet: accept the rest of the path
                return _Path(steps, segments[-1], "string", name.path)
        assert current is not None
        found = self._field(current, segments[-1])
        if found is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{segments[-1]}' on entity '{current}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or "
                "the describe call for the appropriate names.",
                name.position,
            )
        text = ".".join([*(s.relationship for s in steps), found[0]])
        return _Path(steps, found[0], found[1], text)

    def _target(self, sobject: str, field: str, relationship: str) -> str | None:
        """The object a reference field points to: by naming convention, else by a stored value's prefix."""
        if field in ("OwnerId", "CreatedById", "LastModifiedById"):
            return self._sobjects.get("user")
        if field == "ParentId":
            return sobject
        by_name = self._sobjects.get(relationship.lower())
        if by_name is not None:
            return by_name
        for record in self._data[sobject].values():
            value = record.get(field)
            if isinstance(value, str) and value[:3] in self._by_prefix:
                return self._by_prefix[value[:3]]
        return None

    def _lookup(self, record_id: Any) -> dict[str, Any] | None:
        if not isinstance(record_id, str):
            return None
        sobject = self._by_prefix.get(record_id[:3])
        return self._data[sobject].get(record_id) if sobject else None

    def _value(self, record: dict[str, Any] | None, path: _Path) -> Any:
        for step in path.steps:
            if record is None:
                return None
            record = self._lookup(record.get(step.field))
        if record is None:
            return None
        return record.get(path.field)

    def _project(
        self, sobject: str, record: dict[str, Any], paths: list[_Path], version: str
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": self._attributes(sobject, record["Id"], version)}
        for path in paths:
            self._put(row, record, path.steps, path, version)
        return row

    def _put(
        self, row: dict[str, Any], record: dict[str, Any], steps: list[_Step], path: _Path, version: str
    ) -> None:
        if not steps:
            row[path.field] = record.get(path.field)
            return
        step = steps[0]
        parent = self._lookup(record.get(step.field))
        if parent is None:
            row[step.relationship] = None
            return
        nested = row.get(step.relationship)
        if nested is None:
            nested = {"attributes": self._attributes(parent["attributes"]["type"], parent["Id"], version)}
            row[step.relationship] = nested
        self._put(nested, parent, steps[1:], path, version)

    def _check_literal(self, path: _Path, name: Name, value: Literal | tuple[Literal, ...]) -> None:
        """Refuse a literal of the wrong type, as Salesforce does (the classic: a quoted datetime)."""
        if path.type in _NUMBER_TYPES:
            expected, kind = "double", "number"
        else:
            expected, kind = {
                "datetime": ("dateTime", "datetime"),
                "date": ("date", "date"),
                "boolean": ("boolean", "boolean"),
            }.get(path.type, ("string", "string"))
        for literal in value if isinstance(value, tuple) else (value,):
            if literal.kind in ("null", kind):
                continue
            quoting = (
                "should be enclosed in quotes" if kind == "string" else "should not be enclosed in quotes"
            )
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{name.path}' must be of type {expected} and {quoting}",
                name.position,
            )

    @staticmethod
    def _matches(actual: Any, kind: str, op: str, expected: Literal | tuple[Literal, ...]) -> bool:
        if isinstance(expected, tuple):
            hit = any(SalesforceSandbox._matches(actual, kind, "=", e) for e in expected)
            return hit if op == "IN" else not hit
        if expected.kind == "null":
            return (actual is None) == (op == "=") if op in ("=", "!=") else False
        if actual is None:
            return op == "!="
        left, right = _sort_key(kind, actual), _sort_key(kind, expected.value)
        if op == "LIKE":
            return _like(str(expected.value), str(actual))
        return bool(
            {
                "=": left == right,
                "!=": left != right,
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
            }[op]
        )

    # -- sObject rows ------------------------------------------------------------------------------
    def _get(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        with self._state:
            record = self._data[sobject].get(request.match["id"])
            if record is None:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
            return _json(
                200, self._full_record(sobject, record, request.match["version"], request.arg("fields"))
            )

    def _full_record(
        self, sobject: str, record: dict[str, Any], version: str, fields: str | None
    ) -> dict[str, Any]:
        names = [n for n, _ in self._schema[sobject].values()]
        if fields:
            names = []
            for name in fields.split(","):
                found = self._field(sobject, name.strip())
                if found is None:
                    raise ApiError(
                        400, "INVALID_FIELD", f"No such column '{name.strip()}' on sobject of type {sobject}"
                    )
                names.append(found[0])
        body: dict[str, Any] = {"attributes": self._attributes(sobject, record["Id"], version)}
        body.update({name: record.get(name) for name in names})
        return body

    def _get_by(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        with self._state:
            field, matches = self._by_external_id(
                sobject, request.match["field"], unquote(request.match["value"])
            )
            if not matches:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
            if len(matches) > 1:
                return self._multiple(matches, request.match["version"])
            return _json(
                200, self._full_record(sobject, matches[0], request.match["version"], request.arg("fields"))
            )

    def _by_external_id(self, sobject: str, field: str, value: str) -> tuple[str, list[dict[str, Any]]]:
        found = self._field(sobject, field)
        if found is None:
            raise ApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        name = found[0]
        return name, [
            r for r in self._data[sobject].values() if r.get(name) is not None and str(r[name]) == value
        ]

    def _multiple(self, matches: list[dict[str, Any]], version: str) -> Response:
        return _json(
            300, [self._attributes(r["attributes"]["type"], r["Id"], version)["url"] for r in matches]
        )

    def _body(self, request: Request, sobject: str) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}", parse_float=Decimal)
        except (ValueError, InvalidOperation):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON object"
            ) from None
        if not isinstance(body, dict):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from a non-object"
            )
        body.pop("attributes", None)
        read_only = [name for name in body if name.lower() in READ_ONLY_FIELDS]
        if read_only:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                read_only,
            )
        for name in body:
            if self._field(sobject, name) is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
        for error in self._value_errors(sobject, body, references=False):
            raise ApiError(400, error["statusCode"], error["message"], error["fields"])
        return body

    def _insert(self, sobject: str, body: dict[str, Any]) -> str:
        return self.add_records(sobject, [body])[0]

    def _modify(self, sobject: str, record: dict[str, Any], body: dict[str, Any]) -> None:
        self._apply(sobject, record, body, extend=False)
        record["SystemModstamp"] = record["LastModifiedDate"] = format_datetime(self.now())
        record["LastModifiedById"] = self.user_id

    def _create(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        with self._state:
            record_id = self._insert(sobject, self._body(request, sobject))
        return _json(201, {"id": record_id, "success": True, "errors": []})

    def _update(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        with self._state:
            record = self._data[sobject].get(request.match["id"])
            if record is None:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
            self._modify(sobject, record, self._body(request, sobject))
        return Response(204)

    def _upsert(self, request: Request) -> Response:
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        value = unquote(request.match["value"])
        with self._state:
            field, matches = self._by_external_id(sobject, request.match["field"], value)
            body = self._body(request, sobject)
            if len(matches) > 1:
                return self._multiple(matches, request.match["version"])
            if matches:
                self._modify(sobject, matches[0], body)
                return _json(200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False})
            if field == "Id":
                raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
            record_id = self._insert(sobject, {**body, field: value})
        return _json(201, {"id": record_id, "success": True, "errors": [], "created": True})

    # -- sObject collections -----------------------------------------------------------------------
    def _upsert_collection(self, request: Request) -> Response:
        """``PATCH composite/sobjects/<object>/<field>``: validate every record, then apply the valid
        ones (or none, with ``allOrNone``); one UpsertResult per record, in the request's order."""
        assert request.match is not None
        sobject = self._sobject_or_404(request.match["sobject"])
        records, all_or_none = self._collection_body(request, sobject)
        with self._state:
            found = self._field(sobject, request.match["field"])
            if found is None:
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {request.match['field']}",
                )
            field = found[0]
            if not self._is_external_id(sobject, field):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"Field name provided, {field} is not an External ID or indexed field for {sobject}",
                )
            keys = [_key_text(record.get(field)) for record in records]
            repeated = {key for key, n in Counter(k for k in keys if k is not None).items() if n > 1}
            plans: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []  # (errors, matches)
            for record, key in zip(records, keys, strict=True):
                errors = self._record_errors(sobject, field, record, key, repeated)
                matches: list[dict[str, Any]] = []
                if not errors and key is not None:
                    matches = self._by_external_id(sobject, field, key)[1]
                    if len(matches) > 1:
                        ids = ", ".join(m["Id"] for m in matches)
                        errors = [
                            _item_error(
                                "DUPLICATE_EXTERNAL_ID",
                                f"{field}: more than one record found for external id field: [{ids}]",
                                [field],
                            )
                        ]
                plans.append((errors, matches))
            rollback = all_or_none and any(errors for errors, _ in plans)
            results: list[dict[str, Any]] = []
            for record, (errors, matches) in zip(records, plans, strict=True):
                if errors:
                    results.append({"success": False, "errors": errors})
                elif rollback:
                    message = (
                        "Record rolled back because not all records were valid and the request was using "
                        "AllOrNone header"
                    )
                    results.append(
                        {
                            "success": False,
                            "errors": [_item_error("ALL_OR_NONE_OPERATION_ROLLED_BACK", message, [])],
                        }
                    )
                elif matches:
                    self._modify(sobject, matches[0], record)
                    results.append({"id": matches[0]["Id"], "success": True, "errors": [], "created": False})
                else:
                    record_id = self._insert(sobject, record)
                    results.append({"id": record_id, "success": True, "errors": [], "created": True})
        return _json(200, results)

    def _update_collection(self, request: Request) -> Response:
        """``PATCH composite/sobjects``: update up to 200 records, of any types, each named by its
        ``Id``; the valid ones are applied (none with ``allOrNone``), one SaveResult per record."""
        typed, all_or_none = self._collection_records(request)
        with self._state:
            plans: list[tuple[str, dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]] = []
            for kind, record in typed:
                sobject = self._sobjects.get(kind.lower())
                if sobject is None:
                    raise ApiError(400, "INVALID_TYPE", f"sObject type '{kind}' is not supported.")
                body = {k: v for k, v in record.items() if k != "Id"}
                target, errors = self._update_target(sobject, record.get("Id"))
                if not errors:
                    errors = self._record_field_errors(sobject, body) or self._value_errors(sobject, body)
                plans.append((sobject, target, body, errors))
            rollback = all_or_none and any(errors for *_, errors in plans)
            results: list[dict[str, Any]] = []
            for sobject, target, body, errors in plans:
                if errors:
                    results.append({"success": False, "errors": errors})
                elif rollback:
                    message = (
                        "Record rolled back because not all records were valid and the request was using "
                        "AllOrNone header"
                    )
                    results.append(
                        {
                            "success": False,
                            "errors": [_item_error("ALL_OR_NONE_OPERATION_ROLLED_BACK", message, [])],
                        }
                    )
                else:
                    assert target is not None
                    self._modify(sobject, target, body)
                    results.append({"id": target["Id"], "success": True, "errors": []})
        return _json(200, results)

    def _update_target(
        self, sobject: str, record_id: Any
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The record an update names by ``Id``, or why Salesforce would refuse it."""
        if record_id is None or record_id == "":
            return None, [_item_error("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])]
        prefix = self._prefixes[sobject]
        if not isinstance(record_id, str) or not _RECORD_ID.match(record_id) or record_id[:3] != prefix:
            message = f"{sobject} ID: id value of incorrect type: {record_id}"
            return None, [_item_error("MALFORMED_ID", message, ["Id"])]
        full = record_id if len(record_id) == 18 else with_checksum(record_id)
        target = self._data[sobject].get(full)
        if target is None:
            return None, [_item_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])]
        return target, []

    def _record_field_errors(self, sobject: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Unknown or read-only field names in one record of a collection."""
        unknown = [name for name in record if self._field(sobject, name) is None]
        if unknown:
            return [
                _item_error("INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", [name])
                for name in unknown
            ]
        read_only = [name for name in record if name.lower() in READ_ONLY_FIELDS]
        if read_only:
            message = (
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set."
            )
            return [_item_error("INVALID_FIELD_FOR_INSERT_UPDATE", message, read_only)]
        return []

    def _collection_body(self, request: Request, sobject: str) -> tuple[list[dict[str, Any]], bool]:
        typed, all_or_none = self._collection_records(request)
        for kind, _ in typed:
            if kind.lower() != sobject.lower():
                raise ApiError(
                    400,
                    "INVALID_TYPE",
                    f"The SObject type {kind} does not match the type in the URI: {sobject}",
                )
        return [record for _, record in typed], all_or_none

    def _collection_records(self, request: Request) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The ``records`` of a collection request as (``attributes.type``, fields), and ``allOrNone``."""
        try:
            body = json.loads(request.body or b"{}", parse_float=Decimal)
        except (ValueError, InvalidOperation):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON object"
            ) from None
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "Cannot deserialize instance of SObject[] from the request"
            )
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )
        cleaned: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            attributes = record.get("attributes")
            kind = attributes.get("type") if isinstance(attributes, dict) else None
            if not kind:
                raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
            cleaned.append((str(kind), {k: v for k, v in record.items() if k != "attributes"}))
        return cleaned, bool(isinstance(body, dict) and body.get("allOrNone", False))

    def _record_errors(
        self, sobject: str, field: str, record: dict[str, Any], key: str | None, repeated: set[str]
    ) -> list[dict[str, Any]]:
        """Why Salesforce would refuse this one record of a collection (empty: it would not)."""
        named = self._record_field_errors(sobject, record)
        if named:
            return named
        if key is None:
            return [_item_error("MISSING_ARGUMENT", f"{field} not specified", [field])]
        if key in repeated:
            return [_item_error("DUPLICATE_VALUE", f"Duplicate external id specified: {key}", [field])]
        if self._locks.get((sobject, key), 0) > 0:
            self._locks[(sobject, key)] -= 1
            return [
                _item_error(
                    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", []
                )
            ]
        return self._value_errors(sobject, record)

    def _value_errors(
        self, sobject: str, record: Mapping[str, Any], *, references: bool = True
    ) -> list[dict[str, Any]]:
        """Per-field refusals of the values of a record whose field names are known: restricted
        picklist, type, email address, length and (``references``) the records referenced."""
        errors: list[dict[str, Any]] = []
        picklists = self._picklists.get(sobject, {})
        for name, value in record.items():
            real, kind = self._field(sobject, name) or (name, "string")
            label = _label(real)
            if value is None:
                continue
            allowed = picklists.get(real.lower())
            limit = FIELD_LENGTHS.get((sobject, real))
            if allowed is not None and value not in allowed:
                errors.append(
                    _item_error(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{label}: bad value for restricted picklist field: {value}",
                        [real],
                    )
                )
            elif not _fits(kind, value):
                errors.append(
                    _item_error(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        [real],
                    )
                )
            elif limit is not None and len(value) > limit:
                errors.append(
                    _item_error(
                        "STRING_TOO_LONG",
                        f"{label}: data value too large: {value} (max length={limit})",
                        [real],
                    )
                )
            elif kind == "email" and value and not _EMAIL.match(value):
                errors.append(
                    _item_error("INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {value}", [real])
                )
            elif references and kind == "reference" and real.lower() not in _USER_REFERENCES:
                if not isinstance(value, str) or not _RECORD_ID.match(value):
                    errors.append(
                        _item_error("MALFORMED_ID", f"{label}: id value of incorrect type: {value}", [real])
                    )
                elif self._lookup(value if len(value) == 18 else with_checksum(value)) is None:
                    errors.append(
                        _item_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [real])
                    )
        return errors


def _label(name: str) -> str:
    """A field's label as error messages show it: ``Payment_Status__c`` -> ``Payment Status``."""
    return name[:-3].replace("_", " ") if name.endswith("__c") else name


def _length(sobject: str, name: str, kind: str) -> int:
    """``describe``'s ``length``: billsync's own limits, 255 for other text fields, 0 otherwise."""
    return FIELD_LENGTHS.get((sobject, name), 255 if kind in _TEXT_TYPES else 0)


def _item_error(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    """One entry of a collection result's ``errors`` (``statusCode``, unlike a request error's ``errorCode``)."""
    return {"statusCode": code, "message": message, "fields": fields}


def _key_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _fits(kind: str, value: Any) -> bool:
    """Whether a JSON value can be stored in a field of this type."""
    if kind in _NUMBER_TYPES:
        return isinstance(value, (int, Decimal)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        return isinstance(value, str) and is_date_text(value)
    if kind == "datetime":
        return isinstance(value, str) and is_datetime_text(value)
    return isinstance(value, str)


class _Reply(ApiError):
    """An ApiError carrying a ready-made response (auth and limit answers)."""

    def __init__(self, response: Response) -> None:
        Exception.__init__(self, "reply")
        self.response = response


def _sort_key(kind: str, value: Any) -> Any:
    """A comparable form of a stored value or literal, by field type (SOQL compares text case-insensitively)."""
    if kind == "datetime":
        return parse_datetime(value) if isinstance(value, str) else value
    if kind == "date":
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if kind in _NUMBER_TYPES:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "boolean":
        return bool(value)
    if kind in _ID_TYPES:
        return str(value)
    return str(value).casefold()


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def _encode_exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime | dt.date):
        return {"$" + type(value).__name__: value.isoformat()}
    raise TypeError(f"cannot save {type(value).__name__} in the sandbox state")


def _decode_exact(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "$decimal":
            return Decimal(value)
        if key == "$datetime":
            return dt.datetime.fromisoformat(value)
        if key == "$date":
            return dt.date.fromisoformat(value)
    return obj
