"""A loopback emulator of QuickBooks Online v3 (Customer, Item, Invoice, CreditMemo, Payment, PaymentMethod,
CDC) and Intuit's OAuth2 server.

It speaks the real JSON shapes (entity envelopes, ``QueryResponse``, ``Fault``, ``BatchItemResponse``,
the gateway's lower-case 401 body and the 429 throttle as XML), keeps state, and enforces the limits
the connector has to live with: rotating refresh tokens, expiring access tokens, 30 items per batch,
1,000 rows per query page, SyncToken optimistic locking, unique names, ``?requestid=`` idempotency.
Payments are applied as QBO applies them: each line's ``LinkedTxn`` must be an open Invoice of the same
customer, no line may exceed the invoice's open ``Balance``, the lines may not exceed ``TotalAmt`` (the
rest is ``UnappliedAmt``); applying, changing or deleting a payment moves the invoice's ``Balance``,
``LinkedTxn``, ``SyncToken`` and ``LastUpdatedTime``. A CreditMemo is a sales form like an Invoice (same
customer, currency, item and line rules, one DocNumber sequence); its ``Balance`` and ``RemainingCredit``
are its ``TotalAmt`` less what payments applied of it. It is applied to an invoice as QBO's API documents:
a Payment (usually of ``TotalAmt`` 0) with one line linking the Invoice and one linking the CreditMemo, each
of the amount applied; ``TotalAmt`` must cover the invoice lines less the credit lines (the rest is
``UnappliedAmt``), the credit lines may not exceed the memo's ``RemainingCredit`` nor the invoice lines,
and applying, changing or deleting the payment moves the memo's ``Balance``, ``RemainingCredit`` and
``LinkedTxn`` as it moves the invoice's. An Invoice is voided as python-quickbooks' ``Invoice.void``
asks (``POST invoice?operation=void`` with ``Id`` and ``SyncToken``): it stays, with every amount zeroed
(lines, ``TotalAmt``, ``Balance``, tax), quantities and unit prices dropped and "Voided" before its
``PrivateNote`` (the response of Intuit's documentation); one with payments applied is refused with a
6000 business validation fault. Change Data Capture (``GET .../cdc``) answers the
entities changed since a time within the last 30 days, deletions as ``status: Deleted``.
Approximations are marked as such where the real error code is not documented. Each request runs on
its own server thread; all state changes happen under the base class's re-entrant ``_lock``.

Real limits (``QuickBooksSandbox(limits="real", latency=0.05)``; off by default): per company (realm),
500 API requests in any 60 seconds, 40 of them batch requests, 10 in flight; one more is answered as
QBO answers it, HTTP 429 with the 3001 ``ThrottleExceeded`` XML and no ``Retry-After`` (Intuit
documents none: "wait 60 seconds before retrying"). ``window_seconds`` and ``limits_clock`` shorten or
drive the window in tests; :meth:`QuickBooksSandbox.client_limits` are the connector settings that
match. The 30 items a batch and 1,000 rows a query (a larger ``MAXRESULTS`` is capped, not refused,
as QBO does) hold in every mode.

Faults: the scripted ones (:meth:`~QuickBooksSandbox.throttle_next`, ``fail_next``, ``stall_next``,
``expire_access_tokens``, ``stale_next_update``) and the base class's random share
(``QuickBooksSandbox(faults=0.1, seed=1)``), answered with QBO's own bodies: the 3001 throttle XML with
``Retry-After``, the 10000 SystemFault for 500, the gateway's HTML for 503. The OAuth endpoints are
never faulted at random.

Usage::

    with QuickBooksSandbox() as qbo:
        connector = QuickBooksConnector(qbo.settings(), MemoryTokenStore())
        qbo.throttle_next(1, retry_after=0)
        qbo.record_payment(customer_id, Decimal("50.00"), {invoice_id: Decimal("50.00")}, "2024-05-02")
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from connectors.quickbooks.client import dumps_exact
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.sandbox import Admission, ConcurrencyGate, Handler, Request, Response, Sandbox, SlidingWindow

ENTITIES = {
    "customer": "Customer",
    "item": "Item",
    "invoice": "Invoice",
    "creditmemo": "CreditMemo",
    "payment": "Payment",
    "paymentmethod": "PaymentMethod",
}
BATCH_LIMIT = 30
PAGE_LIMIT = 1000
#: QBO's throttles per realm and app (developer.intuit.com, "API call limits and throttles").
REQUESTS_PER_MINUTE = 500
BATCH_REQUESTS_PER_MINUTE = 40
MAX_CONCURRENT = 10
LIMIT_MODES = ("off", "real")
DEFAULT_PAGE = 100  # QBO's MAXRESULTS when a query gives none
CDC_LIMIT = 1000  # objects in one CDC answer, all entities together (Intuit: "a maximum of 1,000")
CDC_LOOKBACK = dt.timedelta(days=30)  # the oldest changedSince CDC accepts
PAYMENT_REF_MAX = 21  # characters of Payment.PaymentRefNum
#: The payment methods of a fresh sandbox company: (Id, Name, Type). QBO's sample company has Cash,
#: Check and card brands; the others are what a European accountant adds (and the mapping specs map).
DEFAULT_PAYMENT_METHODS = (
    ("1", "Cash", "NON_CREDIT_CARD"),
    ("2", "Check", "NON_CREDIT_CARD"),
    ("3", "Credit Card", "CREDIT_CARD"),
    ("4", "Direct Debit", "NON_CREDIT_CARD"),
    ("5", "Bank Transfer", "NON_CREDIT_CARD"),
    ("6", "Visa", "CREDIT_CARD"),
)
_BUSINESS = "A business validation error has occurred while processing your request"

_PACIFIC = dt.timezone(dt.timedelta(hours=-7))
_CENT = Decimal("0.01")
_CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "EUR": "Euro",
    "GBP": "British Pound Sterling",
    "CAD": "Canadian Dollar",
    "AUD": "Australian Dollar",
}

# Real body of a 429 from QBO (quickbooks-ruby spec/fixtures/too_many_requests_error.xml).
THROTTLE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse time="2016-12-07T15:27:09.527-08:00" xmlns="http://schema.intuit.com/finance/v3">
  <Fault type="SERVICE">
    <Error code="3001">
      <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
      <Detail>The request limit was reached.  Try again later</Detail>
    </Error>
  </Fault>
</IntuitResponse>
"""


class QboFault(Exception):
    """A validation/business error to return as a QBO ``Fault``."""

    def __init__(
        self, code: str, message: str, detail: str, *, element: str = "", kind: str = "ValidationFault"
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code, self.message, self.detail, self.element, self.kind = code, message, detail, element, kind

    def fault(self) -> dict[str, Any]:
        error = {"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}
        return {"Error": [error], "type": self.kind}


def _now_text(timespec: str = "milliseconds") -> str:
    return dt.datetime.now(_PACIFIC).isoformat(timespec=timespec)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status, dumps_exact(body).encode(), headers or {}, content_type="application/json;charset=UTF-8"
    )


def _json_text(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), content_type="application/json;charset=UTF-8")


def _wrap(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "time": _now_text()}


def _fault_response(fault: QboFault, status: int = 400) -> Response:
    return _json(status, _wrap({"Fault": fault.fault()}))


def _missing(name: str) -> QboFault:
    return QboFault(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        element=name,
    )


def _invalid_ref(what: str) -> QboFault:
    return QboFault(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {what} assigned to this transaction has been deleted or does not exist.",
    )


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise QboFault("2090", "Invalid Number", f"{field} is not a number", element=field)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise QboFault("2090", "Invalid Number", f"{field} is not a number", element=field) from None


def _ref_value(entity: Mapping[str, Any], name: str) -> str | None:
    ref = entity.get(name)
    if isinstance(ref, Mapping) and ref.get("value") not in (None, ""):
        return str(ref["value"])
    return None


def _field(entity: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; QBO matches property names case-insensitively in queries, which is
    how its documented ``Metadata.LastUpdatedTime`` finds the ``MetaData`` the entities carry."""
    current: Any = entity
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        if part in current:
            current = current[part]
        else:
            lower = part.lower()
            current = next((v for k, v in current.items() if str(k).lower() == lower), None)
    if isinstance(current, Mapping) and "value" in current:
        return current["value"]
    return current


# -- the QBO-SQL subset --------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])"
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,|\*)|(?P<word>[A-Za-z_][\w.]*))"
)


class _QueryError(Exception):
    pass


def _tokens(statement: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = statement.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _QueryError(f'Encountered "{text[pos : pos + 10]}" at column {pos + 1}')
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "str":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        out.append((kind, raw))
        pos = match.end()
    return out


class _Query:
    """``SELECT * | COUNT(*) | f, g FROM E [WHERE ...] [ORDER BY f [DESC]] [STARTPOSITION n] [MAXRESULTS m]``."""

    def __init__(self, statement: str) -> None:
        self.tokens = _tokens(statement)
        self.pos = 0
        self.count = False
        self.fields: list[str] | None = None
        self.conditions: list[tuple[str, str, Any]] = []
        self.order: list[tuple[str, bool]] = []
        self.start = 1
        self.max_results = DEFAULT_PAGE
        self._parse()

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise _QueryError('Encountered "<EOF>"')
        self.pos += 1
        return token

    def _keyword(self, *words: str) -> bool:
        token = self._peek()
        if token and token[0] == "word" and token[1].upper() in words:
            self.pos += 1
            return True
        return False

    def _expect(self, value: str) -> None:
        kind, raw = self._next()
        if raw.upper() != value:
            raise _QueryError(f'Encountered "{raw}", expected "{value}"')

    def _value(self) -> Any:
        kind, raw = self._next()
        if kind == "str":
            return raw
        if kind == "num":
            return Decimal(raw)
        if kind == "word" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise _QueryError(f'Encountered "{raw}", expected a value')

    def _parse(self) -> None:
        self._expect("SELECT")
        if self._keyword("COUNT"):
            self._expect("(")
            self._expect("*")
            self._expect(")")
            self.count = True
        elif self._peek() == ("op", "*"):
            self.pos += 1
        else:
            self.fields = []
            while True:
                kind, raw = self._next()
                if kind != "word":
                    raise _QueryError(f'Encountered "{raw}"')
                self.fields.append(raw)
                if self._peek() != ("op", ","):
                    break
                self.pos += 1
        self._expect("FROM")
        kind, raw = self._next()
        if kind != "word":
            raise _QueryError(f'Encountered "{raw}", expected an entity')
        self.entity = raw
        if self._keyword("WHERE"):
            while True:
                self._condition()
                if not self._keyword("AND"):
                    break
        while self._peek() is not None:
            if self._keyword("ORDERBY") or (self._keyword("ORDER") and self._keyword("BY")):
                while True:
                    kind, raw = self._next()
                    descending = self._keyword("DESC")
                    if not descending:
                        self._keyword("ASC")
                    self.order.append((raw, descending))
                    if self._peek() != ("op", ","):
                        break
                    self.pos += 1
            elif self._keyword("STARTPOSITION"):
                self.start = self._position()
            elif self._keyword("MAXRESULTS"):
                self.max_results = min(self._position(), PAGE_LIMIT)
            else:
                raise _QueryError(f'Encountered "{self._next()[1]}"')

    def _position(self) -> int:
        kind, raw = self._next()
        if kind != "num" or "." in raw:
            raise _QueryError(f'Encountered "{raw}", expected an integer')
        value = int(raw)
        if value < 1:
            raise QboFault(
                "4001",
                "Invalid query",
                f"QueryValidationError: value {value} is too small. Min allowed value is 1",
            )
        return value

    def _condition(self) -> None:
        kind, field = self._next()
        if kind != "word":
            raise _QueryError(f'Encountered "{field}", expected a property')
        if self._keyword("IN"):
            self._expect("(")
            values = [self._value()]
            while self._peek() == ("op", ","):
                self.pos += 1
                values.append(self._value())
            self._expect(")")
            self.conditions.append((field, "IN", values))
        elif self._keyword("LIKE"):
            self.conditions.append((field, "LIKE", self._value()))
        else:
            op_kind, op = self._next()
            if op_kind != "op" or op not in ("=", "<", ">", "<=", ">=", "!=", "<>"):
                raise _QueryError(f'Encountered "{op}", expected an operator')
            self.conditions.append((field, op, self._value()))

    def matches(self, entity: Mapping[str, Any]) -> bool:
        for field, op, expected in self.conditions:
            actual = _field(entity, field)
            if actual is None:
                return False
            if op == "IN":
                if not any(_compare(actual, value) == 0 for value in expected):
                    return False
            elif op == "LIKE":
                pattern = "^" + ".*".join(re.escape(part) for part in str(expected).split("%")) + "$"
                if not re.match(pattern, str(actual), re.IGNORECASE | re.DOTALL):
                    return False
            else:
                result = _compare(actual, expected)
                ok = {
                    "=": result == 0,
                    "!=": result != 0,
                    "<>": result != 0,
                    "<": result < 0,
                    ">": result > 0,
                    "<=": result <= 0,
                    ">=": result >= 0,
                }[op]
                if not ok:
                    return False
        return True


_DATETIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\Z"
)


def _moment(value: Any) -> dt.datetime | None:
    """A date or date-time text as an aware datetime; QBO reads one without an offset in the
    company's time zone (Pacific here). None when ``value`` is not such a text."""
    text = str(value)
    if not _DATETIME_TEXT.match(text):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_PACIFIC)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    try:
        return (1, Decimal(str(value)))
    except InvalidOperation:
        pass
    moment = _moment(value)
    if moment is not None:
        return (2, moment)
    return (3, str(value).lower())


def _compare(actual: Any, expected: Any) -> int:
    if isinstance(expected, bool) or isinstance(actual, bool):
        a, b = str(actual).lower(), str(expected).lower()
        return (a > b) - (a < b)
    try:
        x, y = Decimal(str(actual)), Decimal(str(expected))
        return (x > y) - (x < y)
    except InvalidOperation:
        pass
    t, u = _moment(actual), _moment(expected)
    if t is not None and u is not None:
        return (t > u) - (t < u)
    a, b = str(actual).lower(), str(expected).lower()
    return (a > b) - (a < b)


class QuickBooksSandbox(Sandbox):
    """QBO v3 + OAuth2 on loopback HTTPS; fixed demo credentials, state in memory."""

    system = "quickbooks"
    realm_id = "9341453050298464"
    client_id = "ABbillsyncSandboxClient0000000000000000000000000"
    client_secret = "billsync-sandbox-client-secret-0000000000"
    initial_refresh_token = "AB11800000000billsyncSandboxInitialRefreshToken"

    def __init__(
        self,
        *,
        access_token_ttl: float = 3600,
        refresh_token_ttl: float = 8_726_400,
        home_currency: str = "USD",
        multicurrency: bool = True,
        limits: str | None = None,
        window_seconds: float = 60.0,
        requests_per_window: int = REQUESTS_PER_MINUTE,
        batch_requests_per_window: int = BATCH_REQUESTS_PER_MINUTE,
        max_concurrent: int = MAX_CONCURRENT,
        limits_clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        """``limits="real"`` enforces QBO's throttles (see the module docstring) over windows of
        ``window_seconds`` measured by ``limits_clock``; ``latency`` and the fault options go to
        :class:`~connectors.sandbox.Sandbox`."""
        super().__init__(**kwargs)
        if (limits or "off") not in LIMIT_MODES:
            raise ValueError(f"limits must be one of {LIMIT_MODES}, got {limits!r}")
        self.limits = limits if limits != "off" else None
        self.window_seconds = window_seconds
        self._requests_window = SlidingWindow(requests_per_window, window_seconds, clock=limits_clock)
        self._batch_window = SlidingWindow(batch_requests_per_window, window_seconds, clock=limits_clock)
        self._gate = ConcurrencyGate(max_concurrent)
        self._limits_lock = threading.Lock()
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.home_currency = home_currency
        self.multicurrency = multicurrency
        self._refresh_token = self.initial_refresh_token
        self._refresh_expires = time.time() + refresh_token_ttl
        self._access_tokens: dict[str, float] = {}
        self._store: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES.values()}
        self._next_id: dict[str, int] = {name: 1 for name in ENTITIES.values()}
        self._next_doc_number = 1001
        self._names: dict[str, dict[str, str]] = {"Customer": {}, "Item": {}}  # lower-case name -> Id
        self._deleted: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES.values()}
        self._links: dict[str, dict[str, Decimal]] = {}  # Invoice Id -> Payment Id -> amount applied
        self._credit_links: dict[str, dict[str, Decimal]] = {}  # CreditMemo Id -> Payment Id -> amount used
        self._voided: set[str] = set()  # Invoice Ids voided
        #: Invoice Id -> voids applied through the API (a resend answered from the request-id cache,
        #: or a void of a void invoice, applies nothing)
        self.voids_applied: Counter[str] = Counter()
        self._clock_offset = dt.timedelta(0)
        self.cdc_limit = CDC_LIMIT
        self._by_request_id: dict[str, Response] = {}
        self._hidden: set[tuple[str, str]] = set()  # created earlier in the running batch
        self._throttle: list[float | None] = []
        self._failures: list[int] = []
        self._stalls: list[float] = []
        self._stale_updates = 0
        self._expire_once = False
        self.refreshes = 0
        self.applied_writes = 0
        self._seed_payment_methods()
        self.route("GET", r"/\.well-known/openid_configuration/?", self._discovery, faults=False)
        self.route("POST", r"/oauth2/v1/tokens/bearer", self._token, faults=False)
        company = r"/v3/company/(?P<realm>[^/]+)"
        entity = r"(?P<entity>customer|item|invoice|creditmemo|payment|paymentmethod)"
        self.route("POST", rf"{company}/{entity}", self._api(self._write, write=True))
        self.route("GET", rf"{company}/{entity}/(?P<id>[^/]+)", self._api(self._read))
        self.route("POST", rf"{company}/query", self._api(self._query))
        self.route("GET", rf"{company}/query", self._api(self._query))
        self.route("POST", rf"{company}/batch", self._api(self._batch, write=True))
        self.route("GET", rf"{company}/cdc", self._api(self._cdc))

    def __enter__(self) -> QuickBooksSandbox:
        self.start()
        return self

    # -- addresses and settings ------------------------------------------------------------------
    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/v1/tokens/bearer"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid_configuration/"

    def settings(self, **overrides: Any) -> QuickBooksSettings:
        """Connector settings pointing at this sandbox with its demo credentials."""
        values: dict[str, Any] = {
            "type": "quickbooks",
            "company_id": self.realm_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.initial_refresh_token,
            "environment": "sandbox",
            "api_url": self.base_url,
            "token_url": self.token_url,
            "ca_file": str(self.cert_file) if self.cert_file else None,
            **self.client_limits(),
        }
        values.update(overrides)
        return QuickBooksSettings(**values)

    def client_limits(self) -> dict[str, Any]:
        """The connection settings whose client-side limits match this sandbox's: the real ones (with
        its window) under ``limits="real"``, none otherwise (an unthrottled emulator needs no pacing)."""
        if self.limits is None:
            return {
                "rate_limit_requests": None,
                "rate_limit_batch_requests": None,
                "max_concurrent_requests": None,
            }
        return {
            "rate_limit_requests": self._requests_window.limit,
            "rate_limit_batch_requests": self._batch_window.limit,
            "max_concurrent_requests": self._gate.limit,
            "rate_limit_window_seconds": self.window_seconds,
        }

    # -- real limits -----------------------------------------------------------------------------
    def admit(self, request: Request, label: str) -> Admission:
        """QBO's throttles per realm: 10 in flight, then 500 requests and 40 batch requests in any
        window; one more gets the 429 ThrottleExceeded XML. The OAuth endpoints are not the API's."""
        if self.limits is None or "{realm}" not in label:
            return None, None
        realm = request.match["realm"] if request.match is not None else ""
        if not self._gate.enter(realm):
            return self._limit_refusal("concurrent"), None
        batch = label.endswith("/batch")
        with self._limits_lock:  # both windows or neither
            if not self._requests_window.has_room(realm):
                refused = "requests_per_minute"
            elif batch and not self._batch_window.has_room(realm):
                refused = "batch_requests_per_minute"
            else:
                refused = ""
                self._requests_window.add(realm)
                if batch:
                    self._batch_window.add(realm)
        if refused:
            self._gate.leave(realm)
            return self._limit_refusal(refused), None
        return None, lambda: self._gate.leave(realm)

    def _limit_refusal(self, limit: str) -> Response:
        with self._lock:
            self.limit_refusals[limit] += 1
        return Response(429, THROTTLE_XML, content_type="application/xml")

    @property
    def peak_in_flight(self) -> int:
        """The most API requests this sandbox has had in flight for its company at once (real limits)."""
        return self._gate.peak[self.realm_id]

    # -- the company's clock ---------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """The company's current time (Pacific, as the sandbox company is), moved by :meth:`advance_clock`."""
        return dt.datetime.now(_PACIFIC) + self._clock_offset

    def advance_clock(self, delta: dt.timedelta) -> None:
        """Move the company's clock (``MetaData`` times, default ``TxnDate``, the CDC window, the
        ``time`` of answers) by ``delta``; tokens keep real time. For tests of "changed since"."""
        with self._lock:
            self._clock_offset += delta

    def _now_text(self, timespec: str = "milliseconds") -> str:
        return self.now().isoformat(timespec=timespec)

    def _wrap(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "time": self._now_text()}

    # -- fault injection -------------------------------------------------------------------------
    def throttle_next(self, n: int = 1, retry_after: float | None = None) -> None:
        """The next ``n`` API calls get QBO's 429 throttle XML (with ``Retry-After`` if given)."""
        with self._lock:
            self._throttle.extend([retry_after] * n)

    def fail_next(self, status: int = 500, n: int = 1) -> None:
        """The next ``n`` API calls fail with ``status`` (500: SystemFault 10000; 502-504: gateway)."""
        with self._lock:
            self._failures.extend([status] * n)

    def stall_next(self, seconds: float, n: int = 1) -> None:
        """The next ``n`` API calls are processed, then answered only after ``seconds`` (timeouts)."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (the next API call gets 401/3200)."""
        with self._lock:
            self._access_tokens = {token: 0.0 for token in self._access_tokens}

    def expire_access_tokens_once(self) -> None:
        """The next API call finds its access token expired (401/3200) even if it was issued after
        this call; the refresh that follows rotates the refresh token, as it does every hour in QBO."""
        with self._lock:
            self._expire_once = True

    def stale_next_update(self, n: int = 1) -> None:
        """The next ``n`` updates (single or batch item) and voids get the real 5010 Stale Object
        fault, as if someone had edited the entity in QBO just before; nothing is applied."""
        with self._lock:
            self._stale_updates += n

    def arm_run_events(self) -> list[str]:
        """Once per run: the access token expires under the next API call (a refresh, which rotates
        the refresh token) and the next update, if the run makes one, meets a stale SyncToken."""
        self.expire_access_tokens_once()
        self.stale_next_update()
        return ["expired_token", "stale_sync_token"]

    def fault_response(self, kind: str, request: Request) -> Response:
        """QBO's own answers: the 3001 throttle XML (429), the 10000 SystemFault (500), the gateway's
        HTML page (503)."""
        if kind == "throttle":
            headers = {"Retry-After": self.retry_after_header()}
            return Response(429, THROTTLE_XML, headers, content_type="application/xml")
        return self._failure(500 if kind == "server_error" else 503)

    @property
    def current_refresh_token(self) -> str:
        return self._refresh_token

    # -- inspection and seeding ------------------------------------------------------------------
    def entities(self, entity: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._store[self._name(entity)].values()
            return [copy.deepcopy(row) for row in sorted(rows, key=lambda row: int(row["Id"]))]

    def count(self, entity: str) -> int:
        with self._lock:
            return len(self._store[self._name(entity)])

    def seed(self, entity: str, payloads: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create entities directly (no HTTP, same validation); for fixtures of tests and the demo."""
        with self._lock:
            name = self._name(entity)
            return [copy.deepcopy(self._apply(name, dict(payload), api=False)) for payload in payloads]

    def record_payment(
        self,
        customer_id: str,
        amount: Decimal,
        invoice_ids_and_amounts: Mapping[str, Decimal] | Iterable[tuple[str, Decimal]],
        txn_date: dt.date | str,
        reference: str | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        """Receive a payment as an accountant does in the QBO UI ("Receive payment"): no API call is
        counted, the same rules apply (a refused one raises :class:`QboFault`). ``amount`` is the
        money received; the part not applied to the invoices is left unapplied (a customer credit).
        ``method`` is a payment method's name (a new one is added, as the UI's "Add new" does) or Id."""
        if not isinstance(amount, Decimal):
            raise TypeError("amount must be a Decimal")
        pairs = (
            list(invoice_ids_and_amounts.items())
            if isinstance(invoice_ids_and_amounts, Mapping)
            else list(invoice_ids_and_amounts)
        )
        if any(not isinstance(applied, Decimal) for _, applied in pairs):
            raise TypeError("applied amounts must be Decimals")
        payload: dict[str, Any] = {
            "CustomerRef": {"value": str(customer_id)},
            "TotalAmt": amount,
            "TxnDate": txn_date if isinstance(txn_date, str) else txn_date.isoformat(),
            "Line": [
                {"Amount": applied, "LinkedTxn": [{"TxnId": str(invoice_id), "TxnType": "Invoice"}]}
                for invoice_id, applied in pairs
            ],
        }
        if reference is not None:
            payload["PaymentRefNum"] = reference
        with self._lock:
            if method is not None:
                payload["PaymentMethodRef"] = {"value": self._payment_method_id(method)}
            return copy.deepcopy(self._apply("Payment", payload, api=False))

    def delete_payment(self, payment_id: str) -> None:
        """Delete a payment as an accountant does in the UI: its invoices are open again by its amounts
        and CDC reports it as ``Deleted``."""
        with self._lock:
            current = self._store["Payment"].get(str(payment_id))
            if current is None:
                raise KeyError(f"no Payment {payment_id}")
            self._delete("Payment", {"Id": current["Id"], "SyncToken": current["SyncToken"]}, api=False)

    def invoice_balance(self, invoice_id: str) -> Decimal:
        """The open balance of an invoice (what the customer still owes on it)."""
        with self._lock:
            invoice = self._store["Invoice"].get(str(invoice_id))
            if invoice is None:
                raise KeyError(f"no Invoice {invoice_id}")
            return _decimal(invoice["Balance"], "Balance")

    def credit_memo_remaining(self, credit_memo_id: str) -> Decimal:
        """The credit of a credit memo not applied yet (its ``RemainingCredit``)."""
        with self._lock:
            memo = self._store["CreditMemo"].get(str(credit_memo_id))
            if memo is None:
                raise KeyError(f"no CreditMemo {credit_memo_id}")
            return _decimal(memo["RemainingCredit"], "RemainingCredit")

    def _payment_method_id(self, method: str) -> str:
        methods = self._store["PaymentMethod"]
        if method in methods:
            return method
        for row in methods.values():
            if str(row["Name"]).lower() == method.lower():
                return str(row["Id"])
        return str(self._apply("PaymentMethod", {"Name": method}, api=False)["Id"])

    def _seed_payment_methods(self) -> None:
        now = self._now_text("seconds")
        for method_id, name, kind in DEFAULT_PAYMENT_METHODS:
            self._store["PaymentMethod"][method_id] = {
                "Name": name,
                "Active": True,
                "Type": kind,
                "domain": "QBO",
                "sparse": False,
                "Id": method_id,
                "SyncToken": "0",
                "MetaData": {"CreateTime": now, "LastUpdatedTime": now},
            }
        self._next_id["PaymentMethod"] = len(DEFAULT_PAYMENT_METHODS) + 1

    def save_state(self, path: Path) -> None:
        """Write companies, tokens and the request-id cache to ``path`` so a later run can resume."""
        with self._lock:
            state = {
                "realm_id": self.realm_id,
                "store": self._store,
                "deleted": self._deleted,
                "clock_offset": str(self._clock_offset.total_seconds()),
                "next_id": self._next_id,
                "next_doc_number": self._next_doc_number,
                "voided": sorted(self._voided, key=int),
                "refresh_token": self._refresh_token,
                "refresh_expires": str(self._refresh_expires),
                "access_tokens": {token: str(expires) for token, expires in self._access_tokens.items()},
                "by_request_id": {
                    key: {"status": r.status, "body": r.encoded()[0].decode("utf-8")}
                    for key, r in self._by_request_id.items()
                },
            }
            path.write_text(dumps_exact(state), encoding="utf-8")

    def load_state(self, path: Path) -> None:
        """Resume from :meth:`save_state`: same entities, the same valid tokens, the same cache."""
        state = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        with self._lock:
            self._store = {name: dict(state["store"].get(name, {})) for name in ENTITIES.values()}
            self._next_id = {name: int(state["next_id"].get(name, 1)) for name in ENTITIES.values()}
            if "PaymentMethod" not in state["store"]:  # saved before payments were emulated
                self._seed_payment_methods()
            deleted = state.get("deleted", {})
            self._deleted = {name: dict(deleted.get(name, {})) for name in ENTITIES.values()}
            self._clock_offset = dt.timedelta(seconds=float(state.get("clock_offset", "0")))
            self._links, self._credit_links = {}, {}
            for payment in self._store["Payment"].values():
                for links, txn_type in ((self._links, "Invoice"), (self._credit_links, "CreditMemo")):
                    for txn_id, applied in _allocations(payment, txn_type).items():
                        links.setdefault(txn_id, {})[payment["Id"]] = applied
            self._next_doc_number = int(state["next_doc_number"])
            self._voided = {str(invoice_id) for invoice_id in state.get("voided", [])}
            self._refresh_token = state["refresh_token"]
            self._refresh_expires = float(state["refresh_expires"])
            self._access_tokens = {token: float(expires) for token, expires in state["access_tokens"].items()}
            self._by_request_id = {
                key: _json_text(int(cached["status"]), cached["body"])
                for key, cached in state["by_request_id"].items()
            }
            self._names = {
                name: {
                    str(row["FullyQualifiedName"]).lower(): row["Id"] for row in self._store[name].values()
                }
                for name in ("Customer", "Item")
            }

    @staticmethod
    def _name(entity: str) -> str:
        return ENTITIES[entity.lower()]

    # -- OAuth2 ----------------------------------------------------------------------------------
    def _discovery(self, request: Request) -> Response:
        base = self.base_url
        return _json(
            200,
            {
                "issuer": f"{base}/op/v1",
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": self.token_url,
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "address", "phone"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            },
        )

    def _token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _json(401, {"error": "invalid_client"})
        form = parse_qs(request.body.decode("utf-8"))
        if form.get("grant_type", [""])[0] != "refresh_token":
            return _json(400, {"error": "unsupported_grant_type"})
        presented = form.get("refresh_token", [""])[0]
        with self._lock:
            if presented != self._refresh_token or time.time() >= self._refresh_expires:
                return _json(400, {"error": "invalid_grant"})
            self._refresh_token = "AB11" + secrets.token_urlsafe(36)
            self._refresh_expires = time.time() + self.refresh_token_ttl
            access = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.." + secrets.token_urlsafe(48)
            self._access_tokens[access] = time.time() + self.access_token_ttl
            self.refreshes += 1
            return _json(
                200,
                {
                    "x_refresh_token_expires_in": int(self.refresh_token_ttl),
                    "refresh_token": self._refresh_token,
                    "access_token": access,
                    "token_type": "bearer",
                    "expires_in": int(self.access_token_ttl),
                },
            )

    # -- API plumbing ----------------------------------------------------------------------------
    def _api(self, handler: Handler, *, write: bool = False) -> Handler:
        def serve(request: Request) -> Response:
            denied = self._authenticate(request)
            if denied is not None:
                return denied
            stall = 0.0
            with self._lock:
                if self._throttle:
                    retry_after = self._throttle.pop(0)
                    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
                    return Response(429, THROTTLE_XML, headers, content_type="application/xml")
                if self._failures:
                    return self._failure(self._failures.pop(0))
                if self._stalls:
                    stall = self._stalls.pop(0)
                request_id = request.arg("requestid") if write else None
                cache_key = f"{request.match['realm'] if request.match else ''}:{request_id}"
                cached = self._by_request_id.get(cache_key) if request_id else None
                if cached is not None:
                    response = cached
                else:
                    try:
                        response = handler(request)
                    except QboFault as fault:
                        response = _fault_response(fault)
                    if request_id and response.status == 200:
                        self._by_request_id[cache_key] = response
            if stall:
                time.sleep(stall)
            return response

        return serve

    def _authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self._access_tokens.get(token)
            if self._expire_once and expires is not None and time.time() < expires:
                self._expire_once = False
                self._access_tokens = {issued: 0.0 for issued in self._access_tokens}
                expires = 0.0
        if expires is not None and time.time() < expires and request.match is not None:
            if request.match["realm"] != self.realm_id:
                return _json(403, self._gateway_fault("AuthorizationFailed", "003100", 403, None, "3100"))
            return None
        detail = "Token expired: access token is no longer valid" if expires is not None else "Token invalid"
        if expires is not None:
            with self._lock:
                self.faults_injected["expired_token"] += 1
        return _json(401, self._gateway_fault("AuthenticationFailed", "003200", 401, detail, "3200"))

    @staticmethod
    def _gateway_fault(
        message: str, code6: str, status: int, detail: str | None, code: str
    ) -> dict[str, Any]:
        """The lower-case envelope QBO's gateway returns for 401/403 (seen in python-quickbooks #250)."""
        return {
            "warnings": None,
            "intuitObject": None,
            "fault": {
                "error": [
                    {
                        "message": f"message={message}; errorCode={code6}; statusCode={status}",
                        "detail": detail,
                        "code": code,
                        "element": None,
                    }
                ],
                "type": "AUTHENTICATION" if status == 401 else "SERVICE",
            },
            "report": None,
            "queryResponse": None,
            "batchItemResponse": [],
            "attachableResponse": [],
            "syncErrorResponse": None,
            "requestId": None,
            "time": int(time.time() * 1000),
            "status": None,
            "cdcresponse": [],
        }

    @staticmethod
    def _failure(status: int) -> Response:
        if status == 500:
            fault = QboFault(
                "10000",
                "An application error has occurred while processing your request",
                "System Failure Error: injected by the sandbox",
                kind="SystemFault",
            )
            return _fault_response(fault, 500)
        if status in (502, 503, 504):
            return Response(status, f"<html><body><h1>{status}</h1></body></html>", content_type="text/html")
        fault = QboFault(str(status), f"HTTP {status}", "injected by the sandbox", kind="SERVICE")
        return _fault_response(fault, status)

    # -- handlers --------------------------------------------------------------------------------
    def _write(self, request: Request) -> Response:
        assert request.match is not None
        name = ENTITIES[request.match["entity"]]
        payload = _load(request.body)
        operation = request.arg("operation")
        if operation == "delete" and name in _DELETABLE:
            return _json(200, self._wrap({name: self._delete(name, payload)}))
        if operation == "void" and name == "Invoice":
            return _json(200, self._wrap({name: self._void(name, payload)}))
        if operation not in (None, "update"):
            raise QboFault("500", "Unsupported Operation", f"Operation {operation} is not supported.")
        entity = self._apply(name, payload)
        return _json(200, self._wrap({name: entity}))

    def _read(self, request: Request) -> Response:
        assert request.match is not None
        name = ENTITIES[request.match["entity"]]
        entity = self._store[name].get(request.match["id"])
        if entity is None:
            raise _not_found()
        return _json(200, self._wrap({name: entity}))

    def _query(self, request: Request) -> Response:
        statement = request.arg("query") if request.method == "GET" else request.body.decode("utf-8")
        return _json(200, self._wrap({"QueryResponse": self._run_query(statement or "")}))

    def _cdc(self, request: Request) -> Response:
        """``GET cdc?entities=A,B&changedSince=...``: every entity of those types changed (or deleted)
        at or after ``changedSince``, one ``QueryResponse`` per type in the order asked, oldest change
        first, at most :attr:`cdc_limit` objects in all (what is over the limit is left out, as QBO
        does: ask for a shorter window). ``changedSince`` is compared to the whole second, because
        ``LastUpdatedTime`` shows whole seconds."""
        listed = request.arg("entities")
        if not listed:
            raise _missing("entities")
        changed_since = request.arg("changedSince")
        if not changed_since:
            raise _missing("changedSince")
        names: list[str] = []
        for raw in listed.split(","):
            name = ENTITIES.get(raw.strip().lower())
            if name is None:  # approximation: QBO's code for an unknown CDC entity is undocumented
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:entities specified is unsupported or invalid: {raw.strip()}",
                    element="entities",
                )
            if name not in names:
                names.append(name)
        since = _moment(changed_since)
        if since is None:
            raise QboFault(
                "2010",
                "Request has invalid or unsupported property",
                f"Property Name:changedSince specified is unsupported or invalid: {changed_since}",
                element="changedSince",
            )
        if since < self.now() - CDC_LOOKBACK:
            # QBO's message (seen in QuickBooksSharp #19); the code is an approximation.
            raise QboFault(
                "5030",
                "Feature Not Supported",
                f"Operation cdc with changedSince date {changed_since} which is older than fixed days "
                "is not supported.",
                element="changedSince",
            )
        since = since.replace(microsecond=0)
        left = self.cdc_limit
        answers: list[dict[str, Any]] = []
        for name in names:
            changed = [
                row
                for row in [*self._store[name].values(), *self._deleted[name].values()]
                if _updated(row) >= since
            ]
            changed.sort(key=lambda row: (_updated(row), int(row["Id"])))
            changed = changed[: max(left, 0)]
            left -= len(changed)
            if changed:
                answers.append(
                    {
                        name: copy.deepcopy(changed),
                        "startPosition": 1,
                        "maxResults": len(changed),
                        "totalCount": len(changed),
                    }
                )
            else:
                answers.append({})
        return _json(200, self._wrap({"CDCResponse": [{"QueryResponse": answers}]}))

    def _run_query(self, statement: str) -> dict[str, Any]:
        try:
            query = _Query(statement)
        except _QueryError as exc:
            raise QboFault("4000", "Error parsing query", f"QueryParserError: {exc}") from None
        name = ENTITIES.get(query.entity.lower())
        if name is None:
            raise QboFault("4000", "Error parsing query", f"QueryParserError: Invalid entity {query.entity}")
        rows = [row for row in self._store[name].values() if query.matches(row)]
        if query.count:
            return {"totalCount": len(rows)}
        rows.sort(key=lambda row: int(row["Id"]))
        for field, descending in reversed(query.order):

            def key(row: dict[str, Any], path: str = field) -> tuple[int, Any]:
                return _sort_key(_field(row, path))

            rows.sort(key=key, reverse=descending)
        page = rows[query.start - 1 : query.start - 1 + query.max_results]
        if not page:
            return {}
        if query.fields is not None:
            keep = {field.split(".")[0] for field in query.fields} | {"Id", "SyncToken", "MetaData", "domain"}
            page = [{k: v for k, v in row.items() if k in keep} | {"sparse": True} for row in page]
        return {name: copy.deepcopy(page), "startPosition": query.start, "maxResults": len(page)}

    def _batch(self, request: Request) -> Response:
        body = _load(request.body)
        items = body.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise _missing("BatchItemRequest")
        if len(items) > BATCH_LIMIT:  # the real code is undocumented; the limit is not
            raise QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: a batch may hold at most {BATCH_LIMIT} BatchItemRequest items.",
            )
        answers = []
        self._hidden = set()
        try:
            for item in items:
                answers.append(self._batch_item(item))
        finally:
            self._hidden = set()
        return _json(200, self._wrap({"BatchItemResponse": answers}))

    def _batch_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        bid = item.get("bId")
        try:
            if "Query" in item:
                return {"bId": bid, "QueryResponse": self._run_query(str(item["Query"]))}
            names = [key for key in item if key in ENTITIES.values()]
            if not names:
                raise QboFault("500", "Unsupported Operation", "Operation is not supported for this entity.")
            name = names[0]
            operation = item.get("operation")
            if operation == "delete" and name in _DELETABLE:
                return {"bId": bid, name: self._delete(name, dict(item[name]))}
            if operation not in ("create", "update"):
                raise QboFault("500", "Unsupported Operation", f"Operation {operation} is not supported.")
            payload = dict(item[name])
            if operation == "create" and "Id" in payload:
                raise QboFault("2010", "Request has invalid or unsupported property", "Property Name:Id")
            if operation == "update" and "Id" not in payload:
                raise _missing("Id")
            entity = self._apply(name, payload)
            self._hidden.add((name, entity["Id"]))
            return {"bId": bid, name: entity}
        except QboFault as fault:
            return {"bId": bid, "Fault": fault.fault()}

    # -- entity rules ----------------------------------------------------------------------------
    def _apply(self, name: str, payload: dict[str, Any], *, api: bool = True) -> dict[str, Any]:
        """Create, or update when the body has an Id (full update, or merge when sparse).

        ``api=False`` (seeding) is never hit by a scheduled stale-SyncToken fault."""
        now = self._now_text("seconds")
        store = self._store[name]
        if "Id" in payload:
            current = store.get(str(payload["Id"]))
            if current is None:
                raise _not_found()
            self._check_version(current, payload, api=api)
            merged = {**current, **payload} if payload.get("sparse") else dict(payload)
            merged["MetaData"] = {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": now}
            merged["Id"], merged["SyncToken"] = current["Id"], str(int(current["SyncToken"]) + 1)
        else:
            merged = dict(payload)
            merged["MetaData"] = {"CreateTime": now, "LastUpdatedTime": now}
            merged["Id"], merged["SyncToken"] = str(self._next_id[name]), "0"
        merged["domain"], merged["sparse"] = "QBO", False
        rules = {
            "Customer": self._customer,
            "Item": self._item,
            "Invoice": self._invoice,
            "CreditMemo": self._credit_memo,
            "Payment": self._payment,
            "PaymentMethod": self._payment_method,
        }
        entity = rules[name](merged)
        if "Id" not in payload:
            self._next_id[name] += 1
        previous = store.get(entity["Id"])
        if name in self._names:
            names = self._names[name]
            if previous is not None:
                names.pop(str(previous["FullyQualifiedName"]).lower(), None)
            names[str(entity["FullyQualifiedName"]).lower()] = entity["Id"]
        store[entity["Id"]] = entity
        if name == "Payment":
            self._settle(entity["Id"], previous, entity, now)
        self.applied_writes += 1
        return copy.deepcopy(entity)

    def _check_version(self, current: Mapping[str, Any], payload: Mapping[str, Any], *, api: bool) -> None:
        """Refuse a write naming an old SyncToken (5010), or one the test scheduled to be stale."""
        stale = str(payload.get("SyncToken")) != current["SyncToken"]
        if api and not stale and self._stale_updates > 0:
            self._stale_updates -= 1
            self.faults_injected["stale_sync_token"] += 1
            stale = True
        if stale:
            raise QboFault(
                "5010",
                "Stale Object Error",
                "Stale Object Error : You and billsync were working on this at the same time. "
                "billsync finished before you did, so your work was not saved.",
            )

    def _delete(self, name: str, payload: Mapping[str, Any], *, api: bool = True) -> dict[str, Any]:
        """``?operation=delete``: the entity goes, a tombstone stays for CDC; QBO's answer body."""
        if "Id" not in payload:
            raise _missing("Id")
        if "SyncToken" not in payload:
            raise _missing("SyncToken")
        current = self._store[name].get(str(payload["Id"]))
        if current is None:
            raise _not_found()
        self._check_version(current, payload, api=api)
        now = self._now_text("seconds")
        del self._store[name][current["Id"]]
        if name == "Payment":
            self._settle(current["Id"], current, None, now)
        self._deleted[name][current["Id"]] = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": current["Id"],
            "MetaData": {"LastUpdatedTime": now},
        }
        self.applied_writes += 1
        return {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}

    def voided(self, invoice_id: str) -> bool:
        """Whether the invoice has been voided."""
        with self._lock:
            return str(invoice_id) in self._voided

    def _void(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``?operation=void``: the invoice stays, every amount zeroed; QBO's answer is the invoice.

        Refused (6000) while payments are applied to it: an accountant deletes or unapplies them
        first. Voiding a void invoice again changes nothing (approximation: QBO's answer to that is
        undocumented)."""
        if "Id" not in payload:
            raise _missing("Id")
        if "SyncToken" not in payload:
            raise _missing("SyncToken")
        current = self._store[name].get(str(payload["Id"]))
        if current is None:
            raise _not_found()
        self._check_version(current, payload, api=True)
        if current["Id"] in self._voided:
            return copy.deepcopy(current)
        applied = sum(self._links.get(current["Id"], {}).values(), Decimal("0"))
        if applied:  # approximation of QBO's words; the refusal and its code are QBO's
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: This transaction has payments applied to it "
                f"({applied}). Delete or unapply the payments before you void it.",
            )
        now = self._now_text("seconds")
        voided = copy.deepcopy(current)
        for line in voided.get("Line") or []:
            line["Amount"] = Decimal("0")
            detail = line.get("SalesItemLineDetail")
            if isinstance(detail, dict):
                detail.pop("Qty", None)
                detail.pop("UnitPrice", None)
        note = str(voided.get("PrivateNote") or "")
        voided["PrivateNote"] = f"Voided {note}" if note else "Voided"
        voided["TotalAmt"] = voided["HomeTotalAmt"] = voided["Balance"] = Decimal("0")
        voided["Deposit"] = Decimal("0")
        voided["TxnTaxDetail"] = {"TotalTax": Decimal("0")}
        voided["LinkedTxn"] = []
        voided["SyncToken"] = str(int(current["SyncToken"]) + 1)
        voided["MetaData"] = {**current["MetaData"], "LastUpdatedTime": now}
        self._store[name][current["Id"]] = voided
        self._voided.add(current["Id"])
        self.voids_applied[current["Id"]] += 1
        self.applied_writes += 1
        return copy.deepcopy(voided)

    def _settle(
        self, payment_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, now: str
    ) -> None:
        """Move the open balances of the invoices and credit memos a payment applies by what it applies
        now instead of before; one whose application changed gets a new SyncToken and LastUpdatedTime,
        as in QBO. A credit memo's ``RemainingCredit`` follows its ``Balance``."""
        for txn_type, all_links in (("Invoice", self._links), ("CreditMemo", self._credit_links)):
            was, now_applied = _allocations(before, txn_type), _allocations(after, txn_type)
            for txn_id in sorted(set(was) | set(now_applied), key=int):
                old, new = was.get(txn_id, Decimal("0")), now_applied.get(txn_id, Decimal("0"))
                links = all_links.setdefault(txn_id, {})
                if new:
                    links[payment_id] = new
                else:
                    links.pop(payment_id, None)
                txn = self._store[txn_type].get(txn_id)
                if txn is None or old == new:
                    continue
                txn["Balance"] = _decimal(txn["Balance"], "Balance") - (new - old)
                if txn_type == "CreditMemo":
                    txn["RemainingCredit"] = txn["Balance"]
                txn["LinkedTxn"] = _payment_links(all_links.get(txn_id, {}), txn.get("LinkedTxn"))
                txn["SyncToken"] = str(int(txn["SyncToken"]) + 1)
                txn["MetaData"] = {**txn["MetaData"], "LastUpdatedTime": now}

    def _unique(self, name: str, value: str, own_id: str) -> None:
        """Names are unique per entity type, ignoring case (QBO answers 6240)."""
        other = self._names[name].get(value.lower())
        if other is not None and other != own_id:
            raise QboFault(
                "6240", "Duplicate Name Exists Error", f"The name supplied already exists. : Id={other}"
            )

    def _currency(self, code: str) -> dict[str, str]:
        return {"value": code, "name": _CURRENCY_NAMES.get(code, code)}

    def _customer(self, entity: dict[str, Any]) -> dict[str, Any]:
        name = entity.get("DisplayName")
        if not name:
            raise _missing("DisplayName")
        self._unique("Customer", str(name), entity["Id"])
        currency = _ref_value(entity, "CurrencyRef") or self.home_currency
        if currency != self.home_currency and not self.multicurrency:
            raise QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: Multicurrency is not enabled for this company.",
            )
        entity["CurrencyRef"] = self._currency(currency)
        entity.setdefault("Active", True)
        entity.setdefault("Job", False)
        entity.setdefault("BillWithParent", False)
        entity.setdefault("Taxable", False)
        entity.setdefault("Balance", Decimal("0"))
        entity.setdefault("BalanceWithJobs", Decimal("0"))
        entity.setdefault("PreferredDeliveryMethod", "Print")
        entity["FullyQualifiedName"] = name
        entity.setdefault("PrintOnCheckName", name)
        return entity

    def _item(self, entity: dict[str, Any]) -> dict[str, Any]:
        name = entity.get("Name")
        if not name:
            raise _missing("Name")
        self._unique("Item", str(name), entity["Id"])
        entity.setdefault("Type", "Service")
        entity.setdefault("Active", True)
        entity.setdefault("Taxable", False)
        entity.setdefault("TrackQtyOnHand", False)
        entity["UnitPrice"] = _decimal(entity.get("UnitPrice", 0), "UnitPrice")
        entity.setdefault("IncomeAccountRef", {"value": "79", "name": "Sales of Product Income"})
        entity["FullyQualifiedName"] = name
        return entity

    def _visible(self, name: str, entity_id: str | None) -> dict[str, Any] | None:
        if entity_id is None or (name, entity_id) in self._hidden:
            return None
        return self._store[name].get(entity_id)

    def _sales_form(self, entity: dict[str, Any]) -> Decimal:
        """What an Invoice and a CreditMemo share: the customer and its currency, the lines (their items,
        ``Qty * UnitPrice``, the SubTotalLine QBO adds), DocNumber and TxnDate. Returns the total."""
        customer_id = _ref_value(entity, "CustomerRef")
        if customer_id is None:
            raise _missing("CustomerRef")
        customer = self._visible("Customer", customer_id)
        if customer is None:
            raise _invalid_ref("Customer")
        lines = entity.get("Line")
        if not isinstance(lines, list) or not [
            line for line in lines if line.get("DetailType") != "SubTotalLineDetail"
        ]:
            raise _missing("Line")
        customer_currency = customer["CurrencyRef"]["value"]
        currency = _ref_value(entity, "CurrencyRef") or customer_currency
        if currency != customer_currency:
            raise QboFault(
                "6000",
                "A business validation error has occurred while processing your request",
                f"Business Validation Error: The transaction currency ({currency}) must match the "
                f"customer's currency ({customer_currency}).",
                element="CurrencyRef",
            )
        subtotal, discount, out = Decimal("0"), Decimal("0"), []
        for number, line in enumerate(
            (ln for ln in lines if ln.get("DetailType") != "SubTotalLineDetail"), 1
        ):
            line = dict(line)
            kind = line.get("DetailType")
            if kind == "SalesItemLineDetail":
                detail = dict(line.get("SalesItemLineDetail") or {})
                item = self._visible("Item", _ref_value(detail, "ItemRef"))
                if item is None:
                    raise _invalid_ref("Item")
                detail["ItemRef"] = {"value": item["Id"], "name": item["Name"]}
                if "Amount" not in line:
                    raise _missing("Amount")
                amount = _decimal(line["Amount"], "Amount")
                if "Qty" in detail and "UnitPrice" in detail:
                    product = _decimal(detail["Qty"], "Qty") * _decimal(detail["UnitPrice"], "UnitPrice")
                    if product.quantize(_CENT, ROUND_HALF_UP) != amount.quantize(_CENT, ROUND_HALF_UP):
                        raise QboFault(
                            "6070",
                            "Amount is not equal to UnitPrice * Qty",
                            f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}",
                            element="Amount",
                        )
                line["SalesItemLineDetail"] = detail
                line["Amount"] = amount.quantize(_CENT, ROUND_HALF_UP)
                subtotal += line["Amount"]
            elif kind == "DiscountLineDetail":
                line["Amount"] = _decimal(line.get("Amount", 0), "Amount").quantize(_CENT, ROUND_HALF_UP)
                discount += line["Amount"]
            elif kind != "DescriptionOnly":
                raise QboFault("2010", "Request has invalid or unsupported property", f"DetailType:{kind}")
            line["Id"], line["LineNum"] = str(number), number
            out.append(line)
        out.append({"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
        entity["Line"] = out
        entity["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        entity["CurrencyRef"] = self._currency(currency)
        entity.setdefault("ExchangeRate", Decimal("1"))
        if not entity.get("DocNumber"):  # invoices and credit memos share QBO's sales-form sequence
            entity["DocNumber"] = str(self._next_doc_number)
            self._next_doc_number += 1
        entity.setdefault("TxnDate", self.now().date().isoformat())
        return subtotal - discount

    def _sales_totals(self, entity: dict[str, Any], total: Decimal, applied: Decimal) -> None:
        entity["TotalAmt"] = total
        entity["HomeTotalAmt"] = (total * _decimal(entity["ExchangeRate"], "ExchangeRate")).quantize(_CENT)
        entity["Balance"] = total - applied
        entity.setdefault("TxnTaxDetail", {"TotalTax": Decimal("0")})

    def _sales_flags(self, entity: dict[str, Any]) -> None:
        entity.setdefault("EmailStatus", "NotSet")
        entity.setdefault("PrintStatus", "NotSet")
        entity.setdefault("ApplyTaxAfterDiscount", False)

    def _invoice(self, entity: dict[str, Any]) -> dict[str, Any]:
        total = self._sales_form(entity)
        entity.setdefault("DueDate", entity["TxnDate"])
        applied = sum(self._links.get(entity["Id"], {}).values(), Decimal("0"))
        if total < applied:  # approximation: QBO refuses this, its exact words are undocumented
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: The invoice total ({total}) is less than the payments "
                f"applied to it ({applied}). Unapply or delete the payments first.",
                element="Line",
            )
        self._sales_totals(entity, total, applied)
        entity["LinkedTxn"] = _payment_links(self._links.get(entity["Id"], {}), entity.get("LinkedTxn"))
        self._sales_flags(entity)
        return entity

    def _credit_memo(self, entity: dict[str, Any]) -> dict[str, Any]:
        """A customer's credit (QBO's CreditMemo): lines like an invoice's; ``Balance`` and
        ``RemainingCredit`` are what payments have not applied of it yet."""
        total = self._sales_form(entity)
        if total < 0:  # approximation: QBO refuses a negative credit memo, its exact words are undocumented
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: The credit memo total ({total}) cannot be negative.",
                element="Line",
            )
        applied = sum(self._credit_links.get(entity["Id"], {}).values(), Decimal("0"))
        if total < applied:  # approximation, as for an invoice
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: The credit memo total ({total}) is less than the credit "
                f"already applied from it ({applied}). Unapply or delete the payments first.",
                element="Line",
            )
        self._sales_totals(entity, total, applied)
        entity["RemainingCredit"] = entity["Balance"]
        entity["LinkedTxn"] = _payment_links(
            self._credit_links.get(entity["Id"], {}), entity.get("LinkedTxn")
        )
        self._sales_flags(entity)
        return entity

    def _payment_method(self, entity: dict[str, Any]) -> dict[str, Any]:
        name = entity.get("Name")
        if not name:
            raise _missing("Name")
        for row in self._store["PaymentMethod"].values():
            if row["Id"] != entity["Id"] and str(row["Name"]).lower() == str(name).lower():
                raise QboFault(
                    "6240",
                    "Duplicate Name Exists Error",
                    f"The name supplied already exists. : Id={row['Id']}",
                )
        entity.setdefault("Active", True)
        entity.setdefault("Type", "NON_CREDIT_CARD")
        return entity

    def _payment(self, entity: dict[str, Any]) -> dict[str, Any]:
        """A customer payment (Receive Payment), applied to open invoices of that customer, maybe using
        the remaining credit of its credit memos (the documented way to apply a CreditMemo)."""
        customer_id = _ref_value(entity, "CustomerRef")
        if customer_id is None:
            raise _missing("CustomerRef")
        customer = self._visible("Customer", customer_id)
        if customer is None:
            raise _invalid_ref("Customer")
        if entity.get("TotalAmt") is None:
            raise _missing("TotalAmt")
        total = _decimal(entity["TotalAmt"], "TotalAmt").quantize(_CENT, ROUND_HALF_UP)
        if total < 0:  # approximation: a refund is a RefundReceipt in QBO, never a negative Payment
            raise QboFault(
                "6000",
                _BUSINESS,
                "Business Validation Error: The payment amount cannot be negative.",
                element="TotalAmt",
            )
        customer_currency = customer["CurrencyRef"]["value"]
        currency = _ref_value(entity, "CurrencyRef") or customer_currency
        if currency != customer_currency:
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: The transaction currency ({currency}) must match the "
                f"customer's currency ({customer_currency}).",
                element="CurrencyRef",
            )
        reference = entity.get("PaymentRefNum")
        if reference is not None:
            reference = str(reference)
            if len(reference) > PAYMENT_REF_MAX:
                raise QboFault(
                    "2050",
                    "String length is either shorter or longer than supported by specification",
                    f"String length specified does not match the supported length. Min:0 "
                    f"Max:{PAYMENT_REF_MAX} supplied length:{len(reference)}",
                    element="PaymentRefNum",
                )
            entity["PaymentRefNum"] = reference
        method_id = _ref_value(entity, "PaymentMethodRef")
        if method_id is not None:
            method = self._store["PaymentMethod"].get(method_id)
            if method is None:
                raise _invalid_ref("PaymentMethod")
            entity["PaymentMethodRef"] = {"value": method["Id"], "name": method["Name"]}
        elif "PaymentMethodRef" in entity:
            del entity["PaymentMethodRef"]
        lines = entity.get("Line") or []
        if not isinstance(lines, list):
            raise QboFault("2010", "Request has invalid or unsupported property", "Property Name:Line")
        previous = self._store["Payment"].get(entity["Id"])
        before = {kind: _allocations(previous, kind) for kind in ("Invoice", "CreditMemo")}
        wanted: dict[tuple[str, str], Decimal] = {}
        applied = {"Invoice": Decimal("0"), "CreditMemo": Decimal("0")}
        out = []
        for line in lines:
            if not isinstance(line, Mapping):
                raise QboFault("2010", "Request has invalid or unsupported property", "Property Name:Line")
            if line.get("Amount") is None:
                raise _missing("Line.Amount")
            amount = _decimal(line["Amount"], "Amount").quantize(_CENT, ROUND_HALF_UP)
            if amount < 0:
                raise QboFault(
                    "6000",
                    _BUSINESS,
                    "Business Validation Error: A payment line cannot be negative.",
                    element="Amount",
                )
            links = line.get("LinkedTxn")
            links = [links] if isinstance(links, Mapping) else links
            if not isinstance(links, list) or not links or not isinstance(links[0], Mapping):
                raise _missing("LinkedTxn")
            if len(links) > 1:  # approximation: QBO's documented form is one LinkedTxn per line
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    "Property Name:LinkedTxn: one linked transaction per payment line (link the Invoice "
                    "and the CreditMemo on separate lines)",
                    element="LinkedTxn",
                )
            txn_type, txn_id = links[0].get("TxnType"), str(links[0].get("TxnId") or "")
            if txn_type not in ("Invoice", "CreditMemo"):  # QBO also takes JournalEntry...; not emulated
                raise QboFault(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:TxnType:{txn_type}",
                    element="LinkedTxn",
                )
            if not txn_id:
                raise _missing("LinkedTxn.TxnId")
            txn = self._visible(txn_type, txn_id)
            if txn is None:
                raise _invalid_ref(txn_type)
            label = "Invoice" if txn_type == "Invoice" else "Credit Memo"
            if txn["CustomerRef"]["value"] != customer["Id"]:  # approximation of QBO's words
                raise QboFault(
                    "6000",
                    _BUSINESS,
                    f"Business Validation Error: {label} {txn_id} belongs to another customer; a payment "
                    f"can only be applied to the {'invoices' if txn_type == 'Invoice' else 'credits'} "
                    "of its own customer.",
                    element="LinkedTxn",
                )
            open_balance = _decimal(txn["Balance"], "Balance") + before[txn_type].get(txn_id, Decimal("0"))
            wanted[txn_type, txn_id] = wanted.get((txn_type, txn_id), Decimal("0")) + amount
            if wanted[txn_type, txn_id] > open_balance:  # approximation of QBO's words, the code is its 6000
                what = "to Invoice" if txn_type == "Invoice" else "from Credit Memo"
                left = "open balance" if txn_type == "Invoice" else "remaining credit"
                raise QboFault(
                    "6000",
                    _BUSINESS,
                    f"Business Validation Error: The amount applied {what} {txn.get('DocNumber')} "
                    f"({wanted[txn_type, txn_id]}) is more than its {left} ({open_balance}).",
                    element="Line.Amount",
                )
            applied[txn_type] += amount
            out.append(
                {
                    "Amount": amount,
                    "LinkedTxn": [{"TxnId": txn["Id"], "TxnType": txn_type}],
                    "LineEx": _line_ex(txn["Id"], open_balance, txn.get("DocNumber")),
                }
            )
        # QBO: what the payment pays = the invoice lines less the credit lines; the rest of TotalAmt is
        # left unapplied (a customer credit), so a zero payment's credit lines must equal its invoice lines.
        net = applied["Invoice"] - applied["CreditMemo"]
        if net < 0:  # approximation of QBO's words, the code is its 6000
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: The credits applied ({applied['CreditMemo']}) are more than the "
                f"amount applied to invoices ({applied['Invoice']}); a payment cannot be negative.",
                element="Line.Amount",
            )
        if net > total:  # the words QBO shows for it (as relayed by Order Time's sync docs)
            raise QboFault(
                "6000",
                _BUSINESS,
                f"Business Validation Error: Amount applied is greater than payment or refund amount. "
                f"Applied: {net}, payment: {total}.",
                element="TotalAmt",
            )
        entity["Line"] = out
        entity["TotalAmt"] = total
        entity["UnappliedAmt"] = total - net
        entity["CustomerRef"] = {"value": customer["Id"], "name": customer["DisplayName"]}
        entity["CurrencyRef"] = self._currency(currency)
        entity.setdefault("ExchangeRate", Decimal("1"))
        entity.setdefault("TxnDate", self.now().date().isoformat())
        if entity.get("ProcessPayment"):  # charging a card goes through QuickBooks Payments
            raise QboFault(
                "6000",
                _BUSINESS,
                "Business Validation Error: ProcessPayment is not supported by this company.",
                element="ProcessPayment",
            )
        entity["ProcessPayment"] = False
        return entity


_DELETABLE = frozenset({"Payment"})


def _allocations(payment: Mapping[str, Any] | None, txn_type: str = "Invoice") -> dict[str, Decimal]:
    """Invoice (or CreditMemo) Id -> amount a payment applies of it (its lines added up)."""
    out: dict[str, Decimal] = {}
    for line in (payment or {}).get("Line") or []:
        links = line.get("LinkedTxn") or []
        if links and links[0].get("TxnType") == txn_type:
            txn_id = str(links[0]["TxnId"])
            out[txn_id] = out.get(txn_id, Decimal("0")) + _decimal(line["Amount"], "Amount")
    return out


def _payment_links(payments: Iterable[str], given: Any) -> list[dict[str, Any]]:
    """The ``LinkedTxn`` of an invoice or credit memo: what it links itself (an Estimate...) and the
    payments that applied it, by Id."""
    others = [
        dict(link)
        for link in (given if isinstance(given, list) else [])
        if isinstance(link, Mapping) and link.get("TxnType") != "Payment"
    ]
    return others + [{"TxnId": payment_id, "TxnType": "Payment"} for payment_id in sorted(payments, key=int)]


def _line_ex(invoice_id: str, open_balance: Decimal, doc_number: Any) -> dict[str, Any]:
    """The ``LineEx`` QBO adds to a payment line (its XML ``NameValue`` list in JAXB's JSON form)."""
    pairs = [("txnId", invoice_id), ("txnOpenBalance", format(open_balance, "f"))]
    if doc_number:
        pairs.append(("txnReferenceNumber", str(doc_number)))
    return {
        "any": [
            {
                "name": "{http://schema.intuit.com/finance/v3}NameValue",
                "declaredType": "com.intuit.schema.finance.v3.NameValue",
                "scope": "javax.xml.bind.JAXBElement$GlobalScope",
                "value": {"Name": key, "Value": value},
                "nil": False,
                "globalScope": True,
                "typeSubstituted": False,
            }
            for key, value in pairs
        ]
    }


def _updated(row: Mapping[str, Any]) -> dt.datetime:
    moment = _moment(row["MetaData"]["LastUpdatedTime"])
    assert moment is not None
    return moment


def _not_found() -> QboFault:
    return QboFault(
        "610",
        "Object Not Found",
        "Object Not Found : Something you're trying to use has been made inactive. "
        "Check the fields with accounts, customers, items, vendors or employees.",
    )


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8") or "null", parse_float=Decimal)
    except ValueError:
        raise QboFault(
            "2000", "Request Body is Invalid", "Request body could not be parsed as JSON"
        ) from None
    if not isinstance(data, dict):
        raise QboFault("2000", "Request Body is Invalid", "Request body must be a JSON object")
    return data
