"""Shared plumbing for the loopback sandboxes that emulate vendor APIs.

A sandbox is a threaded HTTP server on 127.0.0.1 (HTTPS with a self-signed certificate generated at
start, because the vendor clients insist on https), with a router of ``(method, regex) -> handler``
and a counter of the calls it received. Each connector's sandbox subclasses :class:`Sandbox` and
registers its routes; tests and the demo start it with ``with SalesforceSandbox() as sf: ...``.

Fault injection (``Sandbox(faults=0.1, seed=7)`` or :meth:`Sandbox.set_faults`) answers that share of
API calls with one of :data:`FAULT_KINDS`, because production integrations die of exactly these:

- ``throttle``: the vendor's rate-limit answer with ``Retry-After`` (seconds, or an HTTP date);
- ``server_error`` / ``unavailable``: the vendor's 500 / 503 bodies;
- ``timeout``: no answer for ``fault_delay`` seconds (clients must time out sooner);
- ``drop``: the connection is closed without an answer.

For ``timeout`` and ``drop`` the call is *sometimes* processed first (``fault_applied`` share, half by
default): the real "outcome unknown" case, where a write happened but its answer was lost. Each
subclass renders the vendor-correct bodies (:meth:`Sandbox.fault_response`) and adds the vendor's
scheduled events (expired session, stale version...) in :meth:`Sandbox.arm_run_events`. Token, login,
WSDL and discovery endpoints are never faulted unless a route opts in (``route(..., faults=True)``).

Vendor limits (off by default, so tests and the demo run at loopback speed): ``latency=0.05`` holds
every answer that long (a WAN round trip), and a subclass's ``limits="real"`` refuses what the vendor
would, through :meth:`Sandbox.admit` with the shared parts below: :class:`SlidingWindow` ("N requests a
minute" per key, counted at arrival) and :class:`ConcurrencyGate` ("N in flight" per key, the next one
refused, never queued). Their clocks and window lengths are injectable so tests do not wait a minute.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import random
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), self.content_type or "application/json;charset=UTF-8"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain;charset=UTF-8"
        return self.body, self.content_type or "application/octet-stream"


Handler = Callable[[Request], Response]

#: What a faulted call gets (see the module docstring).
FAULT_KINDS: tuple[str, ...] = ("throttle", "server_error", "unavailable", "timeout", "drop")
#: Endpoints a route does not fault unless it opts in: tokens, logins, WSDL/XSD and discovery documents.
_NEVER_FAULTED = re.compile(r"(?i)wsdl|\.xsd\b|/\.well-known/|/oauth2?/|/token|/login|/services/soap/u/")


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    label: str
    faults: bool | None


@dataclass(frozen=True)
class Fault:
    """One injected fault: its kind and, for timeout/drop, whether the call was processed first."""

    kind: str
    applied: bool = False


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds, per key: a vendor's "N requests a minute".

    Events are counted when admitted (the server's arrival time); refused ones are not counted.
    Thread-safe. ``clock`` (monotonic seconds) is injectable so a test moves time instead of waiting.
    """

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a sliding window needs a limit >= 1 and a window > 0 seconds")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def has_room(self, key: str = "") -> bool:
        with self._lock:
            return len(self._current(key, self._clock())) < self.limit

    def add(self, key: str = "") -> int:
        """Count one event whatever the limit (e.g. a call that is answered over the limit); returns
        the count in the window, this one included."""
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            events.append(now)
            return len(events)

    def admit(self, key: str = "") -> bool:
        """Count one event if the window has room; False (nothing counted) when it is full."""
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True

    def count(self, key: str = "") -> int:
        with self._lock:
            return len(self._current(key, self._clock()))

    def retry_after(self, key: str = "") -> float:
        """Seconds until the window has room again (0 when it has room now)."""
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            if len(events) < self.limit:
                return 0.0
            return max(0.0, events[len(events) - self.limit] + self.window - now)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


class ConcurrencyGate:
    """At most ``limit`` requests in flight per key; one more is refused at once (never queued), as a
    vendor's "10 concurrent requests" answers the 11th. ``peak`` keeps the most seen in flight."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency gate needs a limit >= 1")
        self.limit = limit
        self._in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, key: str = "") -> bool:
        with self._lock:
            if self._in_flight[key] >= self.limit:
                return False
            self._in_flight[key] += 1
            self.peak[key] = max(self.peak[key], self._in_flight[key])
            return True

    def leave(self, key: str = "") -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight[key] - 1)

    def in_flight(self, key: str = "") -> int:
        with self._lock:
            return self._in_flight[key]


#: What :meth:`Sandbox.admit` returns: a refusal to send (or None) and what to call when the request
#: is answered (or None).
Admission = tuple[Response | None, Callable[[], None] | None]


def _label(pattern: str) -> str:
    """``/v3/company/(?P<realm>[^/]+)/batch`` -> ``/v3/company/{realm}/batch`` for call reports."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def make_self_signed_cert(directory: Path, stem: str = "sandbox") -> tuple[Path, Path]:
    """Write a fresh key and a self-signed certificate for 127.0.0.1/localhost; return their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billsync sandbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Sandbox:
    """A loopback HTTP(S) server with routes, state kept by the subclass, and call counting.

    ``calls`` counts every request received (the number the benchmarks and the demo report), faulted
    ones included; ``calls_by_route`` breaks it down by ``"METHOD /pattern"``; ``faults_injected``
    counts the faults served by kind (``"<kind>_after_apply"`` for a timeout/drop processed first, and
    the subclasses' scheduled events such as ``"expired_session"``).
    """

    system = "sandbox"
    #: seconds asked for in ``Retry-After`` by throttle faults (small: clients honour it)
    fault_retry_after: float = 1.0

    def __init__(
        self,
        *,
        port: int = 0,
        tls: bool = True,
        cert_dir: Path | None = None,
        faults: float = 0.0,
        seed: int | None = None,
        fault_delay: float = 2.0,
        fault_kinds: Iterable[str] | None = None,
        fault_applied: float = 0.5,
        latency: float = 0.0,
    ) -> None:
        """``latency``: seconds every routed answer is held (a WAN round trip; 0: none)."""
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.latency = latency
        #: requests refused by the vendor limits (:meth:`admit`), by the limit's name
        self.limit_refusals: Counter[str] = Counter()
        self._routes: list[_Route] = []
        self._lock = threading.RLock()
        self.calls = 0
        self.calls_by_route: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self._fault_random = random.Random(seed)
        self._stopping = threading.Event()
        self.fault_share = 0.0
        self.fault_delay = fault_delay
        self.fault_kinds: tuple[str, ...] = FAULT_KINDS
        self.fault_applied = fault_applied
        self.set_faults(faults, seed, kinds=fault_kinds)
        self._port = port
        self._tls = tls
        self._cert_dir = cert_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cert_file: Path | None = None

    # -- routing ---------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler, *, faults: bool | None = None) -> None:
        """Serve ``method`` on paths matching ``pattern``.

        ``faults``: True/False forces fault injection on or off for this route; None (default) faults
        it unless it looks like a token, login, WSDL or discovery endpoint (:meth:`faultable`).
        """
        method = method.upper()
        self._routes.append(
            _Route(method, re.compile(pattern + r"\Z"), handler, f"{method} {_label(pattern)}", faults)
        )

    def _find(self, request: Request) -> _Route | None:
        """The route for ``request`` (``request.match`` set), counting the call either way."""
        for route in self._routes:
            if route.method != request.method:
                continue
            match = route.pattern.match(request.path)
            if match:
                with self._lock:
                    self.calls += 1
                    self.calls_by_route[route.label] += 1
                request.match = match
                return route
        with self._lock:
            self.calls += 1
        return None

    def dispatch(self, request: Request) -> Response:
        """Answer ``request`` without fault injection."""
        route = self._find(request)
        return route.handler(request) if route is not None else self.not_found(request)

    def handle(self, request: Request) -> Response | None:
        """Answer ``request``, injecting a fault when one is drawn; None means "close, no answer"."""
        route = self._find(request)
        if route is None:
            return self.not_found(request)
        refusal, release = self.admit(request, route.label)
        try:
            if self.latency > 0:
                self._stopping.wait(self.latency)
            if refusal is not None:
                return refusal
            return self._handle_admitted(request, route)
        finally:
            if release is not None:
                release()

    def admit(self, request: Request, label: str) -> Admission:
        """The vendor's limits, checked when a request arrives (before latency and faults) on the route
        ``label`` (``"POST /v3/company/{realm}/batch"``): a refusal to answer instead, and a callable
        run once the request is answered (e.g. leaving a :class:`ConcurrencyGate`). The base class
        enforces none."""
        return None, None

    def _handle_admitted(self, request: Request, route: _Route) -> Response | None:
        fault = self._draw_fault(request, route)
        if fault is None:
            return _run(route.handler, request)
        with self._lock:
            self.faults_injected[fault.kind] += 1
            if fault.applied:
                self.faults_injected[f"{fault.kind}_after_apply"] += 1
        if fault.kind not in ("timeout", "drop"):
            return self.fault_response(fault.kind, request)
        response = _run(route.handler, request) if fault.applied else None
        if fault.kind == "timeout":
            self._stopping.wait(self.fault_delay)  # the client gives up meanwhile
        return response if fault.kind == "timeout" else None

    def not_found(self, request: Request) -> Response:
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def reset_counters(self) -> None:
        with self._lock:
            self.calls = 0
            self.calls_by_route.clear()

    # -- fault injection -------------------------------------------------------------------------
    def set_faults(
        self,
        share: float,
        seed: int | None = None,
        *,
        kinds: Iterable[str] | None = None,
        delay: float | None = None,
        applied: float | None = None,
    ) -> None:
        """Fault ``share`` (0..1) of the API calls from now on; 0 turns injection off.

        ``seed`` restarts the random sequence (a sequential client then sees the same faults every
        run); ``kinds`` limits the draw to some of :data:`FAULT_KINDS` (None: all of them); ``delay``
        is how long a timeout holds the call and ``applied`` the share of timeouts/drops processed
        before the answer is lost (None: unchanged).
        """
        if not 0.0 <= share <= 1.0 or not 0.0 <= (applied or 0.0) <= 1.0:
            raise ValueError("the fault share and the applied share are between 0 and 1")
        if delay is not None and delay < 0:
            raise ValueError("the fault delay must not be negative")
        chosen = tuple(kinds) if kinds is not None else FAULT_KINDS
        unknown = sorted(set(chosen) - set(FAULT_KINDS))
        if unknown or not chosen:
            raise ValueError(f"fault kinds must be some of {FAULT_KINDS}, got {unknown or 'none'}")
        with self._lock:
            self.fault_share = share
            self.fault_kinds = chosen
            if seed is not None:
                self._fault_random.seed(seed)
            if delay is not None:
                self.fault_delay = delay
            if applied is not None:
                self.fault_applied = applied

    def faultable(self, request: Request) -> bool:
        """Whether a call on a route without an explicit ``faults=`` may be faulted."""
        return not _NEVER_FAULTED.search(request.path) and "wsdl" not in {k.lower() for k in request.query}

    def _draw_fault(self, request: Request, route: _Route) -> Fault | None:
        if self.fault_share <= 0.0:
            return None
        if not (route.faults if route.faults is not None else self.faultable(request)):
            return None
        with self._lock:
            if self._fault_random.random() >= self.fault_share:
                return None
            kind = self._fault_random.choice(self.fault_kinds)
            applied = kind in ("timeout", "drop") and self._fault_random.random() < self.fault_applied
        return Fault(kind, applied)

    def retry_after_header(self) -> str:
        """A ``Retry-After`` value of :attr:`fault_retry_after`: delta-seconds or, at random, an HTTP date."""
        with self._lock:
            as_date = self._fault_random.random() < 0.5
        seconds = self.fault_retry_after
        if as_date:
            return email.utils.formatdate(time.time() + seconds, usegmt=True)
        return f"{seconds:g}"

    def fault_response(self, kind: str, request: Request) -> Response:
        """The answer of an injected ``throttle``/``server_error``/``unavailable``; subclasses give the
        vendor's own bodies (this generic one is plain JSON)."""
        if kind == "throttle":
            return Response(
                429, {"error": "rate limited"}, headers={"Retry-After": self.retry_after_header()}
            )
        status = 500 if kind == "server_error" else 503
        return Response(status, {"error": f"injected {kind}"})

    def arm_run_events(self) -> list[str]:
        """Schedule the vendor's once-per-run events (an expired session, a stale version...) on the
        next calls; returns their names. The demo calls it at the start of a faulted run."""
        return []

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "sandbox not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        sandbox = self
        self._stopping.clear()

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without TCP_NODELAY each answer waits for
                # the client's delayed ACK (~40 ms a call), which would distort every benchmark.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                response = sandbox.handle(request)
                if response is None:  # an injected drop: close without a status line
                    self.close_connection = True
                    return
                payload, content_type = response.encoded()
                self.send_response(response.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        class _Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                """A client that gave up (timeout tests) is not a sandbox error worth a traceback."""
                if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
                    super().handle_error(request, client_address)

        server = _Server(("127.0.0.1", self._port), _Handler)
        if self._tls:
            if self._cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="billsync-sandbox-")
                self._cert_dir = Path(self._tmp.name)
            cert, key = make_self_signed_cert(self._cert_dir, self.system)
            self.cert_file = cert
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.system}-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers holding an injected timeout
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run(handler: Handler, request: Request) -> Response:
    try:
        return handler(request)
    except Exception as exc:  # a sandbox bug must surface as a 500, not a hang
        return Response(500, {"error": f"sandbox error: {exc!r}"})
