"""A loopback emulator of Dynamics NAV page and codeunit SOAP web services.

It publishes WSDLs in NAV's conventions (:mod:`connectors.nav.wsdl`) at
``/<instance>/WS/<Company>/Page/<Service>`` and ``.../Codeunit/<Service>`` and answers the SOAP
operations with state:

* pages ``Customer`` and ``SalesInvoice`` (with ``SalesLines`` of ``Sales_Invoice_Line``): Read,
  ReadMultiple (filters in NAV's syntax: ``a|b``, ``'quoted'``, ``a..b``, ``<>a``, ``>a``, ``*``,
  ``@`` for case-insensitive; paged with ``bookmarkKey``), IsUpdated, Create, CreateMultiple,
  Update, UpdateMultiple (both all-or-nothing, like NAV's single transaction), Delete;
* records keyed by ``No`` (sales invoices numbered from a number series when no ``No`` is given),
  Code fields upper-cased, and a ``Key`` that encodes the primary key and a row version, changing
  on every modification; an Update with an older ``Key`` gets NAV's "Another user has modified the
  record" fault; a duplicate ``No`` gets "The Customer already exists";
* codeunit ``PaymentStatus`` with ``RecordPaymentStatus``, idempotent by (invoiceNo, status), each
  new status appended to the "Payment Status Entry" table with the next ``Entry_No``;
* read-only page ``PaymentStatusEntries`` over that table: Read (by ``Entry_No``) and ReadMultiple
  like the other pages, in ``Entry_No`` order; its WSDL offers nothing else and any other operation
  gets NAV's "Method ... was not found" fault;
* HTTP Basic authentication with fixed demo credentials (real NAV mostly uses NTLM);
* faults on demand (:meth:`NavSandbox.fail_next`, :meth:`fault_next`, :meth:`delay_next`,
  :meth:`stale_next_update`) or at random through the base class (``NavSandbox(faults=0.1, seed=1)``:
  throttle, server error, unavailable, timeout, dropped connection, answered with NAV's bodies by
  :meth:`fault_response`; WSDL downloads are never faulted); SOAP calls counted per operation in
  ``calls_by_operation``.

Fault bodies follow NAV's shape (HTTP 500, ``s:Fault`` with ``faultcode`` in the
``urn:microsoft-dynamics-schemas/error`` namespace); the messages are NAV's wording as documented
by Microsoft. State changes happen under the base class's re-entrant ``_lock``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import operator
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from connectors.nav.schema import (
    CODEUNITS,
    PAGES,
    PAYMENT_STATUS_ENTRIES,
    PAYMENT_STATUS_STATUSES,
    SUBPAGES,
    PageSpec,
    option_name,
)
from connectors.nav.settings import NavSettings
from connectors.nav.wsdl import codeunit_namespace, codeunit_wsdl, page_namespace, page_wsdl
from connectors.sandbox import Request, Response, Sandbox

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ERROR_NS = "urn:microsoft-dynamics-schemas/error"
NAV_EXCEPTION = "Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideException"

#: Fields NAV stores as Code: upper-cased on write and in filters.
CODE_FIELDS = frozenset(
    {
        "No",
        "Post_Code",
        "Country_Region_Code",
        "Currency_Code",
        "Payment_Terms_Code",
        "Sell_to_Customer_No",
        "External_Document_No",
        "Invoice_No",
    }
)
#: Table names NAV's messages use for each page.
TABLES = {
    "Customer": "Customer",
    "SalesInvoice": "Sales Header",
    "Sales_Invoice_Line": "Sales Line",
    "PaymentStatusEntries": "Payment Status Entry",
}
#: The page over ``_payments`` (not a table of ``_data``); its entries are never modified, so the
#: row version in their ``Key`` never changes.
_ENTRIES = PAYMENT_STATUS_ENTRIES.name
_ENTRY_VERSION = 1
_CENT = Decimal("0.01")


class NavFault(Exception):
    """An application error to answer as a SOAP fault (HTTP 500); nothing of the call is applied."""

    def __init__(self, message: str, code: str = NAV_EXCEPTION) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class _Injected:
    remaining: int
    status: int | None = None
    message: str | None = None
    code: str = NAV_EXCEPTION
    delay: float = 0.0
    headers: dict[str, str] | None = None


def fault_envelope(message: str, code: str = NAV_EXCEPTION) -> str:
    """A SOAP 1.1 fault as NAV's service tier writes it."""
    text = escape(message, quote=False)
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENV}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{ERROR_NS}">a:{escape(code)}</faultcode>'
        f'<faultstring xml:lang="en-US">{text}</faultstring>'
        f'<detail><string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">{text}</string></detail>'
        "</s:Fault></s:Body></s:Envelope>"
    )


def _xml(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), content_type="text/xml; charset=utf-8")


def _envelope(body: str) -> Response:
    return _xml(200, f'<Soap:Envelope xmlns:Soap="{SOAP_ENV}"><Soap:Body>{body}</Soap:Body></Soap:Envelope>')


# -- Key: the primary key and a row version, in NAV's "<len>;<base64><len>;<version>;" shape ------
def make_key(parts: Iterable[str], version: int) -> str:
    inner = base64.b64encode("\x1f".join(parts).encode("utf-8")).decode("ascii")
    stamp = str(version)
    return f"{len(inner)};{inner}{len(stamp)};{stamp};"


def parse_key(key: str) -> tuple[list[str], int] | None:
    """``(primary key parts, version)`` of a Key made by :func:`make_key`; None if malformed."""
    try:
        length_text, rest = key.split(";", 1)
        length = int(length_text)
        inner, rest = rest[:length], rest[length:]
        stamp_length_text, rest = rest.split(";", 1)
        stamp = rest[: int(stamp_length_text)]
        if rest[int(stamp_length_text) :] != ";":
            return None
        parts = base64.b64decode(inner, validate=True).decode("utf-8").split("\x1f")
        return parts, int(stamp)
    except (ValueError, UnicodeDecodeError):
        return None


# -- NAV filter expressions ----------------------------------------------------------------------
def _split_outside_quotes(text: str, separators: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _literal(operand: str) -> tuple[str, bool]:
    """``(text, was_quoted)``: ``'a|b'`` is the literal ``a|b`` (``''`` inside is one quote)."""
    operand = operand.strip()
    if len(operand) >= 2 and operand[0] == operand[-1] == "'":
        return operand[1:-1].replace("''", "'"), True
    return operand, False


_COMPARISONS: tuple[tuple[str, Callable[[Any, Any], Any]], ...] = (
    ("<>", operator.ne),
    ("<=", operator.le),
    (">=", operator.ge),
    ("<", operator.lt),
    (">", operator.gt),
    ("=", operator.eq),
)


class _FilterError(Exception):
    pass


def _typed(value: Any, kind: str, text: str | None = None) -> Any:
    source = value if text is None else text
    if kind == "decimal":
        try:
            return Decimal(str(source or "0"))
        except InvalidOperation:
            raise _FilterError(str(source)) from None
    return "" if source is None else str(source)


def criteria_matches(criteria: str, value: Any, kind: str = "string", *, code: bool = False) -> bool:
    """Whether ``value`` passes a NAV filter expression (the subset documented in the module)."""
    if criteria.strip() == "":
        return True
    return any(
        all(_term_matches(term, value, kind, code) for term in _split_outside_quotes(alternative, "&"))
        for alternative in _split_outside_quotes(criteria, "|")
    )


def _term_matches(term: str, value: Any, kind: str, code: bool) -> bool:
    term = term.strip()
    fold = term.startswith("@")
    if fold:
        term = term[1:]

    def norm(text: str) -> Any:
        if code or fold:
            text = text.upper()
        return _typed(None, kind, text)

    actual = _typed(value, kind)
    if isinstance(actual, str) and (code or fold):
        actual = actual.upper()
    literal, quoted = _literal(term)
    if quoted:
        return bool(actual == norm(literal))
    if ".." in term:
        low, high = (_literal(part)[0] for part in term.split("..", 1))
        return bool((low == "" or actual >= norm(low)) and (high == "" or actual <= norm(high)))
    for op, compare in _COMPARISONS:
        if term.startswith(op):
            return bool(compare(actual, norm(_literal(term[len(op) :])[0])))
    if kind == "string" and ("*" in term or "?" in term):
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in norm(term))
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    return bool(actual == norm(term))


# -- the sandbox ---------------------------------------------------------------------------------
class NavSandbox(Sandbox):
    """NAV page and codeunit services on loopback (HTTPS by default); state in memory."""

    system = "nav"
    instance = "DynamicsNAV"
    company = "CRONUS International Ltd."
    username = "BILLSYNC"
    password = "billsync-nav-demo-pass"

    def __init__(
        self,
        *,
        currencies: Iterable[str] = (
            "",
            "USD",
            "EUR",
            "GBP",
            "CAD",
            "AUD",
            "CHF",
            "DKK",
            "SEK",
            "NOK",
            "JPY",
        ),
        invoice_series: tuple[str, int] = ("S-INV", 102201),
        customer_series: tuple[str, int] = ("C", 10000),
        today: dt.date | None = None,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`~connectors.sandbox.Sandbox` (``port``, ``tls``, ``cert_dir``, and
        the random fault injection: ``faults``, ``seed``, ``fault_delay``...)."""
        super().__init__(**kwargs)
        self.currencies = frozenset(currencies)
        self._today = today
        self._series: dict[str, tuple[str, int]] = {
            "SalesInvoice": invoice_series,
            "Customer": customer_series,
        }
        self._data: dict[str, dict[str, dict[str, Any]]] = self._empty_tables()
        self._timestamp = 1000
        self._payments: dict[tuple[str, str], dict[str, Any]] = {}
        self._injected: list[_Injected] = []
        self._stale_updates = 0
        self.calls_by_operation: Counter[str] = Counter()
        self.wsdl_fetches = 0
        company = r"(?P<company>[^/]+)"
        base = rf"/(?P<instance>[^/]+)/WS/{company}/(?P<kind>Page|Codeunit)/(?P<service>[^/]+)"
        self.route("GET", base, self._wsdl, faults=False)
        self.route("POST", base, self._soap, faults=True)

    def __enter__(self) -> NavSandbox:
        self.start()
        return self

    # -- addresses and settings ------------------------------------------------------------------
    @property
    def company_url(self) -> str:
        return f"{self.base_url}/{self.instance}/WS/{quote(self.company, safe='')}/"

    def settings(self, **overrides: Any) -> NavSettings:
        """Connector settings pointing at this sandbox with its demo credentials."""
        values: dict[str, Any] = {
            "type": "nav",
            "base_url": f"{self.base_url}/{self.instance}/WS/",
            "company": self.company,
            "username": self.username,
            "password": self.password,
            "ca_file": str(self.cert_file) if self.cert_file else None,
        }
        values.update(overrides)
        return NavSettings(**values)

    # -- fault injection -------------------------------------------------------------------------
    def fail_next(self, status: int = 500, n: int = 1, *, retry_after: float | None = None) -> None:
        """The next ``n`` SOAP calls get HTTP ``status`` without being processed.

        500 is a server-error fault (``Object reference not set...``, ``a:System.NullReferenceException``),
        401 an empty authentication challenge, 429 carries ``Retry-After`` when given, others an HTML page.
        """
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        with self._lock:
            self._injected.append(_Injected(n, status=status, headers=headers))

    def fault_next(self, message: str, n: int = 1, *, code: str = NAV_EXCEPTION) -> None:
        """The next ``n`` SOAP calls get a fault with this faultstring (nothing applied)."""
        with self._lock:
            self._injected.append(_Injected(n, message=message, code=code))

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """The next ``n`` SOAP calls are processed, then answered after ``seconds`` (timeouts after a write)."""
        with self._lock:
            self._injected.append(_Injected(n, delay=seconds))

    def _take_injected(self) -> _Injected | None:
        with self._lock:
            for item in self._injected:
                if item.remaining > 0:
                    item.remaining -= 1
                    self._injected = [i for i in self._injected if i.remaining > 0]
                    return item
        return None

    def stale_next_update(self, n: int = 1) -> None:
        """The next ``n`` Update calls find their record changed by another user (a stale ``Key``)."""
        with self._lock:
            self._stale_updates += n

    def arm_run_events(self) -> list[str]:
        """Once per run: the next Update meets a Key made stale by another NAV user."""
        self.stale_next_update()
        return ["stale_key"]

    def fault_response(self, kind: str, request: Request) -> Response:
        """NAV's answers to the base class's random faults: a server-error SOAP fault (500), the IIS/
        service-tier 503 page, and Business Central's 429 with ``Retry-After``."""
        if kind == "throttle":
            headers = {"Retry-After": self.retry_after_header()}
            body = b"<html><body><h1>429 Too Many Requests</h1></body></html>"
            return Response(429, body, headers, content_type="text/html")
        return self._injected_response(_Injected(0, status=500 if kind == "server_error" else 503))

    @staticmethod
    def _injected_response(item: _Injected) -> Response:
        if item.message is not None:
            return _xml(500, fault_envelope(item.message, item.code))
        status = item.status or 500
        if status == 500:
            return _xml(
                500,
                fault_envelope(
                    "Object reference not set to an instance of an object.", "System.NullReferenceException"
                ),
            )
        if status == 401:
            return Response(401, b"", {"WWW-Authenticate": 'Basic realm=""'}, content_type="text/html")
        page = f"<html><body><h1>HTTP Error {status}</h1></body></html>"
        return Response(status, page.encode(), dict(item.headers or {}), content_type="text/html")

    # -- inspection, seeding and out-of-band changes ---------------------------------------------
    @staticmethod
    def _empty_tables() -> dict[str, dict[str, dict[str, Any]]]:
        return {page: {} for page in PAGES if page != _ENTRIES}

    def records(self, page: str) -> list[dict[str, Any]]:
        """Every record of ``page`` as the SOAP API returns it (with ``Key``), in primary-key order."""
        spec = PAGES[page]
        with self._lock:
            return [self._public(spec, row) for _, row in self._rows(spec)]

    def count(self, page: str) -> int:
        with self._lock:
            return len(self._rows(PAGES[page]))

    def payment_statuses(self) -> list[dict[str, Any]]:
        """Entries recorded by ``RecordPaymentStatus``, in the order they were recorded."""
        with self._lock:
            return [dict(entry) for entry in self._payments.values()]

    def seed(self, page: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create records directly (no HTTP, same validation); for test fixtures and the demo."""
        spec = self._writable(page)
        with self._lock:
            return [self._public(spec, self._create(spec, dict(record))) for record in records]

    def modify(self, page: str, no: str, **fields: Any) -> dict[str, Any]:
        """Change a record as another NAV user would: its ``Key`` changes, earlier Keys go stale."""
        spec = self._writable(page)
        with self._lock:
            row = self._data[page][no]
            row.update(fields)
            row["_ts"] = self._next_timestamp()
            if page == "Customer":
                row["Last_Date_Modified"] = self._today_text()
            return self._public(spec, row)

    def save_state(self, path: Path) -> None:
        """Write records, number series and payment entries to ``path`` (JSON; money stays exact)."""
        with self._lock:
            state = {
                "timestamp": self._timestamp,
                "series": self._series,
                "data": self._data,
                "payments": list(self._payments.values()),
            }
            path.write_text(json.dumps(state, default=str, indent=None), encoding="utf-8")

    def load_state(self, path: Path) -> None:
        """Resume from :meth:`save_state`."""
        state = json.loads(path.read_text(encoding="utf-8"))
        with self._lock:
            self._timestamp = int(state["timestamp"])
            self._series = {k: (str(v[0]), int(v[1])) for k, v in state["series"].items()}
            self._data = self._empty_tables()
            for page, rows in state["data"].items():
                spec = PAGES[page]
                for no, row in rows.items():
                    self._data[page][no] = self._restore(spec, row)
            self._payments = {}
            for entry in state["payments"]:
                for name in ("amountPaid", "amountDue"):
                    entry[name] = Decimal(entry[name])
                self._payments[(entry["invoiceNo"], entry["status"])] = entry

    @staticmethod
    def _writable(page: str) -> PageSpec:
        spec = PAGES[page]
        if not spec.writable:
            raise ValueError(f"page {page} is read-only: its records come from what billsync records")
        return spec

    def _rows(self, spec: PageSpec) -> list[tuple[Any, dict[str, Any]]]:
        """``(primary key, stored row)`` of a page in primary-key order (the order ReadMultiple pages in)."""
        if spec.name == _ENTRIES:
            entries = sorted(self._payments.values(), key=lambda entry: int(entry["entryNo"]))
            return [(int(entry["entryNo"]), self._entry_row(entry)) for entry in entries]
        return sorted(self._data[spec.name].items())

    @staticmethod
    def _entry_row(entry: Mapping[str, Any]) -> dict[str, Any]:
        """A ``RecordPaymentStatus`` entry as a row of page ``PaymentStatusEntries``."""
        return {
            "Entry_No": int(entry["entryNo"]),
            "Invoice_No": entry["invoiceNo"],
            "Status": option_name(entry["status"]),
            "Amount_Paid": entry["amountPaid"],
            "Amount_Due": entry["amountDue"],
            "Currency_Code": entry["currencyCode"],
            "Paid_On": entry.get("paidOn"),
            "_ts": _ENTRY_VERSION,
        }

    def _row_by_key(self, spec: PageSpec, key: Any) -> dict[str, Any] | None:
        if spec.name == _ENTRIES:
            return next((row for entry_no, row in self._rows(spec) if entry_no == key), None)
        return self._data[spec.name].get(key)

    @staticmethod
    def _restore(spec: PageSpec, row: dict[str, Any]) -> dict[str, Any]:
        for name, kind in spec.fields.items():
            if kind == "decimal" and row.get(name) is not None:
                row[name] = Decimal(row[name])
        for part, sub in spec.parts.items():
            row[part] = [NavSandbox._restore(SUBPAGES[sub], line) for line in row.get(part) or []]
        return row

    # -- HTTP ------------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user.upper() == self.username.upper() and password == self.password

    def _locate(self, request: Request) -> tuple[str, str] | Response:
        """``(kind, service)`` of a request, or the response NAV gives a wrong address or user."""
        if not self._authorized(request):
            return Response(401, b"", {"WWW-Authenticate": 'Basic realm=""'}, content_type="text/html")
        assert request.match is not None
        kind, service = request.match["kind"], unquote(request.match["service"])
        known = PAGES if kind == "Page" else CODEUNITS
        if (
            request.match["instance"] != self.instance
            or unquote(request.match["company"]) != self.company
            or service not in known
        ):
            return Response(404, b"<html><body>Service not found</body></html>", content_type="text/html")
        return kind, service

    def _wsdl(self, request: Request) -> Response:
        located = self._locate(request)
        if isinstance(located, Response):
            return located
        kind, service = located
        address = f"{self.company_url}{kind}/{service}"
        with self._lock:
            self.wsdl_fetches += 1
        text = page_wsdl(service, address) if kind == "Page" else codeunit_wsdl(service, address)
        return _xml(200, text)

    def _soap(self, request: Request) -> Response:
        located = self._locate(request)
        if isinstance(located, Response):
            return located
        kind, service = located
        namespace = page_namespace(service) if kind == "Page" else codeunit_namespace(service)
        try:
            root = ET.fromstring(request.body)
            body = root.find(f"{{{SOAP_ENV}}}Body")
            operation = body[0] if body is not None and len(body) else None
        except ET.ParseError:
            operation = None
        if operation is None or not operation.tag.startswith(f"{{{namespace}}}"):
            return _xml(
                500, fault_envelope("The request is not a SOAP message for this service.", "s:Client")
            )
        name = operation.tag.split("}", 1)[1]
        action = request.headers.get("soapaction", "").strip('"')
        if action != f"{namespace}:{name}":
            return _xml(
                500, fault_envelope(f"SOAPAction '{action}' does not match operation {name}.", "s:Client")
            )
        with self._lock:
            self.calls_by_operation[f"{service}.{name}"] += 1
        injected = self._take_injected()
        if injected is not None and injected.delay == 0:
            return self._injected_response(injected)
        with self._lock:
            try:
                if kind == "Page":
                    result = self._page_operation(PAGES[service], name, operation, namespace)
                else:
                    result = self._codeunit_operation(service, name, operation, namespace)
                response = _envelope(result)
            except NavFault as fault:
                response = _xml(500, fault_envelope(fault.message, fault.code))
        if injected is not None:
            time.sleep(injected.delay)
        return response

    # -- page operations -------------------------------------------------------------------------
    def _page_operation(self, spec: PageSpec, op: str, element: ET.Element, ns: str) -> str:
        name = spec.name

        def child(tag: str) -> ET.Element | None:
            return element.find(f"{{{ns}}}{tag}")

        def text(tag: str) -> str | None:
            node = child(tag)
            return None if node is None else (node.text or "")

        def result(inner: str) -> str:
            return f'<{op}_Result xmlns="{ns}">{inner}</{op}_Result>'

        def records_in(list_tag: str) -> list[dict[str, Any]]:
            holder = child(list_tag)
            if holder is None:
                raise self._null(list_tag, op, name)
            return [self._parse_record(spec, node, ns) for node in holder.findall(f"{{{ns}}}{name}")]

        def listing(rows: list[dict[str, Any]]) -> str:
            return "".join(self._record_xml(spec, row) for row in rows)

        if op not in spec.operations:  # not in the page's WSDL (a read-only page)
            raise NavFault(f"Method {op} was not found in service {name}.", "s:Client")
        if op == "Read":
            no = text(spec.key_field)
            if no is None:
                raise self._null(spec.key_field, op, name)
            row = self._row_by_key(spec, self._value(spec, spec.key_field, no))
            return result(self._record_xml(spec, row) if row else "")
        if op == "ReadMultiple":
            rows = self._read_multiple(spec, element, ns)
            return result(f"<ReadMultiple_Result>{listing(rows)}</ReadMultiple_Result>" if rows else "")
        if op == "IsUpdated":
            row, version = self._by_key(spec, text("Key") or "")
            return result(
                f"<IsUpdated_Result>{'true' if row['_ts'] != version else 'false'}</IsUpdated_Result>"
            )
        if op == "Delete":
            row, version = self._by_key(spec, text("Key") or "")
            self._check_version(spec, row, version)
            del self._data[name][row["No"]]
            return result("<Delete_Result>true</Delete_Result>")
        if op in ("Create", "Update"):
            node = child(name)
            if node is None:
                raise self._null(name, op, name)
            record = self._parse_record(spec, node, ns)
            row = self._create(spec, record) if op == "Create" else self._update(spec, record)
            return result(self._record_xml(spec, row))
        if op in ("CreateMultiple", "UpdateMultiple"):
            records = records_in(f"{name}_List")
            saved = copy.deepcopy((self._data, self._series, self._timestamp))
            try:
                rows = [
                    self._create(spec, r) if op == "CreateMultiple" else self._update(spec, r)
                    for r in records
                ]
            except NavFault:
                self._data, self._series, self._timestamp = saved  # one transaction: all or nothing
                raise
            return result(f"<{name}_List>{listing(rows)}</{name}_List>")
        raise NavFault(f"Operation {op} is not supported by the sandbox.", "s:Client")

    @staticmethod
    def _null(parameter: str, op: str, service: str) -> NavFault:
        return NavFault(
            f"Parameter {parameter} in method {op} in service {service} is null!",
            "Microsoft.Dynamics.Nav.Service.WebServices.ServiceBrokerException",
        )

    def _parse_record(self, spec: PageSpec, node: ET.Element, ns: str) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for item in node:
            field = item.tag.split("}", 1)[-1]
            if field not in spec.fields:
                raise NavFault(f"The element {field} is not a field of {spec.name}.", "s:Client")
            if field in spec.parts:
                sub = SUBPAGES[spec.parts[field]]
                record[field] = [
                    self._parse_record(sub, line, ns) for line in item.findall(f"{{{ns}}}{sub.name}")
                ]
            else:
                record[field] = self._value(spec, field, item.text or "")
        return record

    def _value(self, spec: PageSpec, field: str, text: str) -> Any:
        kind = spec.fields[field]
        if kind == "decimal":
            try:
                return Decimal(text)
            except InvalidOperation:
                raise NavFault(f'The value "{text}" can\'t be evaluated into type Decimal.') from None
        if kind == "integer":
            try:
                return int(text)
            except ValueError:
                raise NavFault(f'The value "{text}" can\'t be evaluated into type Integer.') from None
        if kind == "date":
            try:
                return dt.date.fromisoformat(text).isoformat() if text else None
            except ValueError:
                raise NavFault(f'The value "{text}" can\'t be evaluated into type Date.') from None
        if kind in spec.enums and text not in spec.enums[kind]:
            raise NavFault(f'The value "{text}" can\'t be evaluated into type {kind}.')
        return text.upper() if field in CODE_FIELDS else text

    def _read_multiple(self, spec: PageSpec, element: ET.Element, ns: str) -> list[dict[str, Any]]:
        filters = []
        for node in element.findall(f"{{{ns}}}filter"):
            field = node.findtext(f"{{{ns}}}Field") or ""
            if field not in spec.fields or field == "Key" or field in spec.parts:
                raise NavFault(f'The value "{field}" can\'t be evaluated into type {spec.name}_Fields.')
            filters.append((field, node.findtext(f"{{{ns}}}Criteria") or ""))
        bookmark = element.findtext(f"{{{ns}}}bookmarkKey")
        size_text = element.findtext(f"{{{ns}}}setSize") or "0"
        set_size = int(size_text)
        rows = self._rows(spec)
        if bookmark:
            parsed = parse_key(bookmark)
            if parsed is None:
                raise NavFault("The bookmark key is not valid.")
            after: Any = parsed[0][-1]
            if spec.name == _ENTRIES:
                if not after.isdigit():
                    raise NavFault("The bookmark key is not valid.")
                after = int(after)
            rows = [(no, row) for no, row in rows if no > after]
        out = []
        for _, row in rows:
            ok = True
            for field, criteria in filters:
                numeric = spec.fields[field] in ("decimal", "integer")
                try:
                    ok = criteria_matches(
                        criteria,
                        row.get(field),
                        "decimal" if numeric else "string",
                        code=field in CODE_FIELDS,
                    )
                except _FilterError as exc:
                    kind = "an Integer" if spec.fields[field] == "integer" else "a Decimal"
                    raise NavFault(f'The filter "{exc}" is not valid for {kind} field.') from None
                if not ok:
                    break
            if ok:
                out.append(row)
                if 0 < set_size <= len(out):
                    break
        return out

    # -- writes ----------------------------------------------------------------------------------
    def _next_timestamp(self) -> int:
        self._timestamp += 1
        return self._timestamp

    def _today_text(self) -> str:
        return (self._today or dt.date.today()).isoformat()

    def _next_no(self, page: str) -> str:
        prefix, number = self._series[page]
        while True:
            self._series[page] = (prefix, number + 1)
            candidate = f"{prefix}{number}"
            number += 1
            if candidate not in self._data[page]:
                return candidate

    def _check_currency(self, table: str, no: str, code: str | None) -> None:
        if code and code not in self.currencies:
            raise NavFault(
                f"The field Currency Code of table {table} contains a value ({code}) that cannot be found "
                "in the related table (Currency)."
            )

    def _create(self, spec: PageSpec, record: dict[str, Any]) -> dict[str, Any]:
        name = spec.name
        record.pop("Key", None)
        for field in spec.read_only:
            record.pop(field, None)
        no = record.get("No") or self._next_no(name)
        if len(no) > 20:
            raise NavFault(
                f"The length of the string is {len(no)}, but it must be less than or equal to 20 characters. "
                f"Value: {no}"
            )
        if no in self._data[name]:
            ident = f"No.='{no}'" if name == "Customer" else f"Document Type='Invoice',No.='{no}'"
            raise NavFault(
                f"The {TABLES[name]} already exists. Identification fields and values: {ident}",
                "Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideRecordExistsException",
            )
        row: dict[str, Any] = {"No": no}
        if name == "Customer":
            row.update({k: v for k, v in record.items() if k != "No"})
            self._check_currency("Customer", no, row.get("Currency_Code"))
            row["Last_Date_Modified"] = self._today_text()
        else:
            lines = record.pop("SalesLines", None) or []
            row.update({k: v for k, v in record.items() if k != "No"})
            self._invoice_header(row)
            row["Status"] = "Open"
            row["SalesLines"] = []
            for line in lines:
                self._add_line(row, line)
        row["_ts"] = self._next_timestamp()
        self._data[name][no] = row
        return row

    def _invoice_header(self, row: dict[str, Any]) -> None:
        customer_no = row.get("Sell_to_Customer_No")
        if not customer_no:
            raise NavFault(
                f"Sell-to Customer No. must have a value in Sales Header: Document Type=Invoice, No.={row['No']}. "
                "It cannot be zero or empty."
            )
        customer = self._data["Customer"].get(customer_no)
        if customer is None:
            raise NavFault(
                f"The Customer does not exist. Identification fields and values: No.='{customer_no}'",
                "Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideRecordNotFoundException",
            )
        row["Sell_to_Customer_Name"] = customer.get("Name") or ""
        if not row.get("Currency_Code"):
            row["Currency_Code"] = customer.get("Currency_Code") or ""
        self._check_currency("Sales Header", row["No"], row.get("Currency_Code"))
        today = self._today_text()
        row.setdefault("Posting_Date", today)
        row.setdefault("Document_Date", row["Posting_Date"])

    def _add_line(self, row: dict[str, Any], line: dict[str, Any]) -> None:
        line.pop("Key", None)
        numbers = [existing["_line_no"] for existing in row["SalesLines"]]
        line_no = (max(numbers) if numbers else 0) + 10000
        new = {"Type": "Item", "Quantity": Decimal(0), "Unit_Price": Decimal(0), **line, "_line_no": line_no}
        self._validate_line(row, new)
        new["_ts"] = self._next_timestamp()
        row["SalesLines"].append(new)

    def _validate_line(self, row: dict[str, Any], line: dict[str, Any]) -> None:
        if line.get("Type", "Item") != "_blank_" and not line.get("No"):
            raise NavFault(
                f"No. must have a value in Sales Line: Document Type=Invoice, Document No.={row['No']}, "
                f"Line No.={line['_line_no']}. It cannot be zero or empty."
            )
        quantity = Decimal(line.get("Quantity") or 0)
        price = Decimal(line.get("Unit_Price") or 0)
        line["Line_Amount"] = (quantity * price).quantize(_CENT, rounding=ROUND_HALF_UP)

    def _by_key(self, spec: PageSpec, key: str) -> tuple[dict[str, Any], int]:
        parsed = parse_key(key) if key else None
        if parsed is None:
            raise NavFault(f"The {TABLES[spec.name]} Key is not valid.")
        parts, version = parsed
        no = parts[-1]
        row = self._data[spec.name].get(no)
        if row is None:
            raise NavFault(
                f"The {TABLES[spec.name]} does not exist. Identification fields and values: No.='{no}'",
                "Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideRecordNotFoundException",
            )
        return row, version

    def _check_version(self, spec: PageSpec, row: dict[str, Any], version: int) -> None:
        if row["_ts"] != version:
            raise NavFault(
                f"Another user has modified the record for this {TABLES[spec.name]} after you retrieved it "
                "from the database.\n\nEnter your changes again in the updated window, or start the "
                "interrupted activity again.",
                "Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideException",
            )

    def _update(self, spec: PageSpec, record: dict[str, Any]) -> dict[str, Any]:
        key = record.pop("Key", None)
        if not key:
            raise self._null("Key", "Update", spec.name)
        row, version = self._by_key(spec, key)
        if self._stale_updates > 0 and row["_ts"] == version:
            self._stale_updates -= 1  # another user saves the record just before us
            self.faults_injected["stale_key"] += 1
            row["_ts"] = self._next_timestamp()
        self._check_version(spec, row, version)
        for field in spec.read_only:
            record.pop(field, None)
        record.pop("No", None)  # renames are not emulated
        lines = record.pop("SalesLines", None)
        row.update(record)
        if spec.name == "Customer":
            self._check_currency("Customer", row["No"], row.get("Currency_Code"))
            row["Last_Date_Modified"] = self._today_text()
        else:
            self._invoice_header(row)
            for line in lines or []:
                line_key = line.pop("Key", None)
                if not line_key:
                    self._add_line(row, line)
                    continue
                parsed = parse_key(line_key)
                match = next(
                    (x for x in row["SalesLines"] if parsed and str(x["_line_no"]) == parsed[0][-1]),
                    None,
                )
                if match is None or parsed is None:
                    raise NavFault(
                        f"The Sales Line does not exist. Identification fields and values: Document Type='Invoice',"
                        f"Document No.='{row['No']}'"
                    )
                if match["_ts"] != parsed[1]:
                    self._check_version(SUBPAGES["Sales_Invoice_Line"], match, parsed[1])
                match.update(line)
                self._validate_line(row, match)
                match["_ts"] = self._next_timestamp()
        row["_ts"] = self._next_timestamp()
        return row

    # -- codeunit --------------------------------------------------------------------------------
    def _codeunit_operation(self, service: str, op: str, element: ET.Element, ns: str) -> str:
        spec = CODEUNITS[service].get(op)
        if spec is None:
            raise NavFault(f"Method {op} was not found in service {service}.", "s:Client")
        values: dict[str, Any] = {}
        for param, kind in spec.parameters:
            node = element.find(f"{{{ns}}}{param}")
            if node is None:
                raise self._null(param, op, service)
            text = node.text or ""
            if kind == "decimal":
                try:
                    values[param] = Decimal(text)
                except InvalidOperation:
                    raise NavFault(f'The value "{text}" can\'t be evaluated into type Decimal.') from None
            elif kind == "date":
                values[param] = (
                    None if text in ("", "0001-01-01") else dt.date.fromisoformat(text).isoformat()
                )
            else:
                values[param] = text
        if values["status"] not in PAYMENT_STATUS_STATUSES:
            raise NavFault(
                f"Status '{values['status']}' is not valid. Valid values are: {', '.join(PAYMENT_STATUS_STATUSES)}."
            )
        if not values["invoiceNo"]:
            raise NavFault("Invoice No. must have a value. It cannot be zero or empty.")
        self._check_currency("Payment Status Entry", values["invoiceNo"], values["currencyCode"].upper())
        key = (values["invoiceNo"].upper(), values["status"])
        created = key not in self._payments
        if created:
            self._payments[key] = {
                "entryNo": len(self._payments) + 1,
                **values,
                "invoiceNo": key[0],
                "currencyCode": values["currencyCode"].upper(),
            }
        return f'<{op}_Result xmlns="{ns}"><return_value>{"true" if created else "false"}</return_value></{op}_Result>'

    # -- serialisation ---------------------------------------------------------------------------
    def _key_parts(self, spec: PageSpec, row: dict[str, Any], parent: str | None = None) -> list[str]:
        if spec.name == "Customer":
            return [row["No"]]
        if spec.name == "SalesInvoice":
            return ["Invoice", row["No"]]
        if spec.name == _ENTRIES:
            return [str(row["Entry_No"])]
        return ["Invoice", parent or "", str(row["_line_no"])]

    def _public(self, spec: PageSpec, row: dict[str, Any], parent: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"Key": make_key(self._key_parts(spec, row, parent), row["_ts"])}
        for field in spec.fields:
            if field == "Key" or row.get(field) is None:
                continue
            if field in spec.parts:
                sub = SUBPAGES[spec.parts[field]]
                out[field] = [self._public(sub, line, row["No"]) for line in row[field]]
            else:
                out[field] = row[field]
        return out

    def _record_xml(self, spec: PageSpec, row: dict[str, Any], parent: str | None = None) -> str:
        public = self._public(spec, row, parent)
        parts = []
        for field in spec.fields:
            value = public.get(field)
            if value is None:
                continue
            if field in spec.parts:
                if not value:
                    continue
                sub = SUBPAGES[spec.parts[field]]
                lines = "".join(self._record_xml(sub, line, row["No"]) for line in row[field])
                parts.append(f"<{field}>{lines}</{field}>")
            else:
                text = format(value, "f") if isinstance(value, Decimal) else str(value)
                parts.append(f"<{field}>{escape(text, quote=False)}</{field}>")
        return f"<{spec.name}>{''.join(parts)}</{spec.name}>"
