"""Shared plumbing for the loopback sandboxes that emulate vendor APIs.

A sandbox is a threaded HTTP server on 127.0.0.1 (HTTPS with a self-signed certificate generated at
start, because the vendor clients insist on https), with a router of ``(method, regex) -> handler``
and a counter of the calls it received. Each connector's sandbox subclasses :class:`Sandbox` and
registers its routes; tests and the demo start it with ``with SalesforceSandbox() as sf: ...``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
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

    ``calls`` counts every request received (the number the benchmarks and the demo report);
    ``calls_by_route`` breaks it down by ``"METHOD /pattern"``.
    """

    system = "sandbox"

    def __init__(self, *, port: int = 0, tls: bool = True, cert_dir: Path | None = None) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.RLock()
        self.calls = 0
        self.calls_by_route: Counter[str] = Counter()
        self._port = port
        self._tls = tls
        self._cert_dir = cert_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cert_file: Path | None = None

    # -- routing ---------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern + r"\Z"), handler))

    def dispatch(self, request: Request) -> Response:
        for method, pattern, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.match(request.path)
            if match:
                with self._lock:
                    self.calls += 1
                    self.calls_by_route[f"{method} {_label(pattern.pattern[:-2])}"] += 1
                request.match = match
                return handler(request)
        with self._lock:
            self.calls += 1
        return self.not_found(request)

    def not_found(self, request: Request) -> Response:
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def reset_counters(self) -> None:
        with self._lock:
            self.calls = 0
            self.calls_by_route.clear()

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
                try:
                    response = sandbox.dispatch(request)
                except Exception as exc:  # a sandbox bug must surface as a 500, not a hang
                    response = Response(500, {"error": f"sandbox error: {exc!r}"})
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
