"""A real SMTP server on 127.0.0.1 that keeps what it receives: for tests and ``billsync demo``.

Mail code is only trustworthy when it has talked to a real server: replies, refused recipients,
STARTTLS and AUTH all behave as in production here (aiosmtpd speaks the protocol), but nothing
leaves the machine. Failures are rehearsed with rules: ``sink.fail("x@example.com", 451)`` answers
451 to that recipient (``times=1``: once, then it is accepted), ``stage="data"`` refuses the
message after DATA instead. A slow server is rehearsed with a hold: ``hold = sink.hold(address)``
keeps the next transaction for ``address`` waiting at RCPT (or after DATA) until
``hold.release()``, so a test can kill the sender while the server has not yet accepted the message;
a client that goes away during a hold abandons the transaction and nothing is recorded.

::

    with SmtpSink() as sink:
        mailer = Mailer(sink.mail_settings(from_address="billing@example.com"))
        ...
        sink.messages[0].message["Subject"]
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sync_engine.settings import MailSettings

__all__ = ["FailRule", "Hold", "ReceivedMessage", "SmtpSink"]

Stage = Literal["rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: the envelope as the server saw it and the parsed content."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage

    @property
    def text(self) -> str:
        """The plain-text body (line ends as ``\\n``)."""
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content()).replace("\r\n", "\n")

    @property
    def html(self) -> str | None:
        part = self.message.get_body(preferencelist=("html",))
        return None if part is None else str(part.get_content()).replace("\r\n", "\n")

    def attachments(self) -> list[tuple[str, str, bytes]]:
        """``(filename, content type, content)`` of each attachment."""
        return [
            (str(p.get_filename()), p.get_content_type(), bytes(p.get_content()))
            for p in self.message.iter_attachments()
        ]


@dataclass
class FailRule:
    address: str  # lower-cased; "*" matches every recipient
    code: int
    text: str
    stage: Stage
    times: int | None  # None: for ever
    used: int = 0


@dataclass
class Hold:
    """One transaction kept waiting (see :meth:`SmtpSink.hold`).

    ``reached`` is set when a transaction is held, ``abandoned`` when its client went away while
    held (the transaction is then dropped, as a server drops one whose client vanished).
    """

    address: str  # lower-cased; "*" matches every recipient
    stage: Stage
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)
    taken: bool = False

    def wait(self, timeout: float = 10.0) -> None:
        """Return once a transaction is held (raises ``TimeoutError`` otherwise)."""
        if not self.reached.wait(timeout):
            raise TimeoutError(f"no transaction for {self.address} reached {self.stage} in {timeout} s")

    def release(self) -> None:
        """Let the held transaction go on (released before one arrived: none will wait)."""
        self.released.set()

    async def _block(self) -> None:
        self.reached.set()
        try:
            while not self.released.is_set():
                await asyncio.sleep(0.01)  # not Event.wait: the server's loop serves other clients
        except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client is gone
            self.abandoned.set()
            raise


@dataclass
class _Handler:
    sink: SmtpSink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self.sink._note_rcpt(address)
        hold = self.sink._take_hold([address], "rcpt")
        if hold is not None:
            await hold._block()
        rule = self.sink._take_rule(address, "rcpt")
        if rule is not None:
            return f"{rule.code} {rule.text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        hold = self.sink._take_hold(list(envelope.rcpt_tos), "data")
        if hold is not None:
            await hold._block()
        for address in envelope.rcpt_tos:
            rule = self.sink._take_rule(address, "data")
            if rule is not None:
                return f"{rule.code} {rule.text}"
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.sink._received(
            ReceivedMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=raw,
                message=parsed,
            )
        )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's controller, listening on a free port (``port=0``) and telling which one."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink:
    """An SMTP server on ``host`` (a free port unless given) that records every accepted message.

    ``starttls``: a server TLS context offered through STARTTLS; ``implicit_tls``: a context for
    TLS from the first byte (``security: tls``). ``credentials``: ``(username, password)`` required
    through AUTH (only over TLS when a TLS context is given).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._rules: list[FailRule] = []
        self._holds: list[Hold] = []
        self._rcpt_attempts: list[str] = []
        self._credentials = credentials
        kwargs: dict[str, Any] = {}
        if starttls is not None:
            kwargs["tls_context"] = starttls
        if credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = starttls is not None or implicit_tls is not None
        self._controller = _Controller(
            _Handler(self), hostname=host, port=port, ssl_context=implicit_tls, **kwargs
        )
        self._running = False

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> SmtpSink:
        if not self._running:
            self._controller.start()
            self._running = True
        return self

    def stop(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.release()
        if self._running:
            self._controller.stop()
            self._running = False
            self._controller.port = self._port  # a restart picks a free port again

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        port: int = self._controller.port
        return port

    def mail_settings(self, from_address: str = "billing@example.com", **overrides: Any) -> MailSettings:
        """``MailSettings`` pointing at this sink (plain SMTP unless ``overrides`` say otherwise)."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": "none",
            "from_address": from_address,
            "timeout_seconds": 10,
        }
        values.update(overrides)
        return MailSettings(**values)

    # ----------------------------------------------------------------------------- messages

    @property
    def messages(self) -> list[ReceivedMessage]:
        """What was accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def rcpt_attempts(self) -> list[str]:
        """Every address offered in RCPT TO, refused or not, in order."""
        with self._lock:
            return list(self._rcpt_attempts)

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        wanted = address.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m.rcpt_tos)]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._rcpt_attempts.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """The messages once at least ``count`` arrived (raises ``TimeoutError`` otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(messages)} of {count} messages arrived in {timeout} s")
            time.sleep(0.02)

    # -------------------------------------------------------------------------------- rules

    def fail(
        self,
        address: str,
        code: int = 550,
        text: str | None = None,
        *,
        stage: Stage = "rcpt",
        times: int | None = None,
    ) -> FailRule:
        """Answer ``code`` for ``address`` ("*": anyone) at RCPT or after DATA, ``times`` times."""
        default = "Requested action not taken: mailbox unavailable" if code >= 500 else "Try again later"
        rule = FailRule(address.lower(), code, text or default, stage, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    def hold(self, address: str, *, stage: Stage = "rcpt") -> Hold:
        """Keep the next transaction for ``address`` ("*": any) waiting until ``release()``.

        ``stage="rcpt"``: at its RCPT TO (before any content was sent); ``"data"``: after the
        content arrived, before the server answers. Either way the server has not accepted the
        message while it is held. Holds one transaction; later ones go through.
        """
        hold = Hold(address.lower(), stage)
        with self._lock:
            self._holds.append(hold)
        return hold

    def _take_hold(self, addresses: list[str], stage: Stage) -> Hold | None:
        wanted = {a.lower() for a in addresses}
        with self._lock:
            for hold in self._holds:
                if hold.taken or hold.stage != stage or not (hold.address == "*" or hold.address in wanted):
                    continue
                hold.taken = True
                return hold
        return None

    def _take_rule(self, address: str, stage: Stage) -> FailRule | None:
        wanted = address.lower()
        with self._lock:
            for rule in self._rules:
                if rule.stage != stage or rule.address not in (wanted, "*"):
                    continue
                if rule.times is not None and rule.used >= rule.times:
                    continue
                rule.used += 1
                return rule
        return None

    def _note_rcpt(self, address: str) -> None:
        with self._lock:
            self._rcpt_attempts.append(address)

    def _received(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if (
            self._credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)
