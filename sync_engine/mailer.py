"""Sending mail (reminders, invoices) over SMTP, with failures sorted into "retry" and "give up".

Why not ``smtplib.send_message``: it sends to every recipient it can and merely *returns* the
refused ones, so a reminder whose customer address is refused would still reach the Bcc archive
and look delivered. Here one SMTP transaction is driven step by step: a refused primary recipient
aborts the transaction (RSET) before any copy goes out; a refused Bcc copy is logged and the
customer's mail still goes.

Failures carry the SMTP code and text and are classified by what the caller should do:

- :class:`TemporaryMailError` (4xx, a dropped connection, a timeout): nothing is lost, try again
  later. Its subclass :class:`MailUnavailableError` means no message can go now whoever it is for
  (cannot connect, TLS or login fails, the sender is refused): stop the batch, fix, resend.
- :class:`PermanentMailError` (5xx for this message or a recipient, e.g. 550 unknown mailbox):
  sending it again will not help.

The caller chooses the Message-ID (:func:`message_id`) from a key of its own, so a message resent
after a crash carries the same Message-ID and the receiving side can recognise the duplicate.
The password is used for ``AUTH`` only: never logged, never put into an exception.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses, parseaddr
from types import TracebackType
from typing import Any

from sync_engine.logging import add_secret, get_logger
from sync_engine.settings import MailSettings

__all__ = [
    "Attachment",
    "MailError",
    "MailUnavailableError",
    "Mailer",
    "PermanentMailError",
    "TemporaryMailError",
    "customer_addresses",
    "message_id",
    "valid_address",
]

log = get_logger("billsync.mailer")

_ID_LEFT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class MailError(Exception):
    """A message was not sent. ``code``/``text``: the SMTP reply (None when there was no reply)."""

    def __init__(self, text: str, *, code: int | None = None, recipients: Sequence[str] = ()) -> None:
        self.code = code
        self.text = text
        self.recipients = tuple(recipients)
        super().__init__(f"{code} {text}" if code is not None else text)


class TemporaryMailError(MailError):
    """Try again later: a 4xx reply, a dropped connection, a timeout."""


class MailUnavailableError(TemporaryMailError):
    """No message can go now, whoever it is for: connection, TLS, login or sender refused."""


class PermanentMailError(MailError):
    """This message will never be accepted as it is (a 5xx reply, e.g. 550 unknown mailbox)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


def message_id(key: str, domain: str = "billsync") -> str:
    """A Message-ID that is the same every time for the same ``key``: ``<key@domain>``.

    Characters a Message-ID cannot hold are replaced, with a short hash of the original key added
    so that two keys differing only in such characters still get different ids.
    """
    left = _ID_LEFT.sub("-", key).strip(".") or "message"
    left = re.sub(r"\.{2,}", ".", left)
    if left != key:
        left += "." + hashlib.sha256(key.encode()).hexdigest()[:10]
    right = _ID_LEFT.sub("-", domain).strip(".") or "billsync"
    return f"<{left}@{right}>"


def addr_spec(address: str) -> str:
    """``Billing <billing@example.com>`` -> ``billing@example.com``."""
    return parseaddr(address)[1] or address.strip()


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _reply_error(code: int, text: bytes | str, recipients: Sequence[str] = ()) -> MailError:
    """The error for an SMTP reply that is not 2xx/3xx."""
    message = _decode(text)
    if code == 421:  # the server is closing the connection: nothing goes until it is back
        return MailUnavailableError(message, code=code, recipients=recipients)
    if 400 <= code < 500:
        return TemporaryMailError(message, code=code, recipients=recipients)
    return PermanentMailError(message, code=code, recipients=recipients)


class Mailer:
    """Sends :class:`~email.message.EmailMessage` through the SMTP server of ``MailSettings``.

    Used as a context manager it keeps one connection for a batch (opened at the first message,
    reopened after a failure); outside one, each :meth:`send` connects and disconnects.
    """

    def __init__(self, settings: MailSettings, *, local_hostname: str | None = None) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._batch = False
        if settings.password is not None:
            add_secret(settings.password.get_secret_value())

    # ---------------------------------------------------------------------------- composing

    @property
    def sender_domain(self) -> str:
        """The domain of ``from_address`` (for Message-IDs), ``billsync`` if it has none."""
        _, _, domain = addr_spec(self.settings.from_address).rpartition("@")
        return domain or "billsync"

    def compose(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        message_id: str,
        attachments: Sequence[Attachment] = (),
        headers: Sequence[tuple[str, str]] = (),
        date: dt.datetime | None = None,
    ) -> EmailMessage:
        """A message from the configured sender: plain text, an optional HTML alternative, files.

        ``subject`` is put on one line (a line break in it would end the header). The settings'
        Bcc addresses are not in the message: :meth:`send` adds them to the envelope only.
        """
        message = EmailMessage()
        message["From"] = self.settings.from_address
        message["To"] = to if isinstance(to, str) else ", ".join(to)
        if self.settings.reply_to:
            message["Reply-To"] = self.settings.reply_to
        message["Subject"] = " ".join(subject.split())
        message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        for name, value in headers:
            message[name] = value
        # quoted-printable: 7-bit safe whatever the server says about 8BITMIME
        message.set_content(text, cte="quoted-printable")
        if html is not None:
            message.add_alternative(html, subtype="html", cte="quoted-printable")
        for attachment in attachments:
            maintype, _, subtype = attachment.mime_type.partition("/")
            message.add_attachment(
                attachment.content,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=attachment.filename,
            )
        return message

    # ------------------------------------------------------------------------------ sending

    def __enter__(self) -> Mailer:
        self._batch = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._batch = False
        self.close()

    def close(self) -> None:
        """Say QUIT (if still connected) and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def envelope(self, message: EmailMessage) -> tuple[str, list[str], list[str]]:
        """``(sender, primary recipients, Bcc recipients)`` of ``message`` (addr-specs)."""
        primary = [a for _, a in getaddresses([str(v) for v in message.get_all("To", [])])]
        primary += [a for _, a in getaddresses([str(v) for v in message.get_all("Cc", [])])]
        bcc = [a for _, a in getaddresses([str(v) for v in message.get_all("Bcc", [])])]
        bcc += [addr_spec(a) for a in self.settings.bcc]
        primary = list(dict.fromkeys(a for a in primary if a))
        bcc = [a for a in dict.fromkeys(bcc) if a and a not in primary]
        sender = addr_spec(str(message.get("From") or self.settings.from_address))
        return sender, primary, bcc

    def send(self, message: EmailMessage) -> None:
        """Send ``message`` to its To/Cc and, as blind copies, its Bcc header and the settings' Bcc.

        The Bcc header is never transmitted. Raises :class:`TemporaryMailError` (and its subclass
        :class:`MailUnavailableError`) or :class:`PermanentMailError`; returns when the server
        accepted the message for the primary recipients.
        """
        sender, primary, bcc = self.envelope(message)
        if not primary:
            raise PermanentMailError("the message has no recipient (To/Cc)")
        outgoing = copy.copy(message)  # EmailMessage.__delitem__ rebuilds the header list
        del outgoing["Bcc"]
        international = any(not a.isascii() for a in (sender, *primary, *bcc))
        policy = SMTP_POLICY.clone(utf8=True) if international else SMTP_POLICY
        data = outgoing.as_bytes(policy=policy)
        try:
            smtp = self._connection()
            self._transaction(smtp, sender, primary, bcc, data, international)
        except MailError as exc:
            if isinstance(exc, MailUnavailableError):
                self._drop()
            raise
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TemporaryMailError(f"the server closed the connection: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise _reply_error(exc.smtp_code, exc.smtp_error, primary) from exc
        except TimeoutError as exc:
            self._drop()
            raise TemporaryMailError(f"timed out talking to {self._where()}") from exc
        except OSError as exc:  # reset, broken pipe
            self._drop()
            raise TemporaryMailError(f"connection to {self._where()} failed: {exc}") from exc
        finally:
            if not self._batch:
                self.close()

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        sender: str,
        primary: list[str],
        bcc: list[str],
        data: bytes,
        international: bool,
    ) -> None:
        options: list[str] = []
        if international:
            if not smtp.has_extn("smtputf8"):
                raise PermanentMailError(
                    "an address is not ASCII and the server does not support SMTPUTF8",
                    recipients=primary,
                )
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        code, reply = smtp.mail(sender, options)
        if code != 250:
            self._rset(smtp)
            error = _reply_error(code, reply, primary)
            if isinstance(error, PermanentMailError):  # the sender is refused: so is every message
                raise MailUnavailableError(f"sender {sender} refused: {error.text}", code=code) from None
            raise error
        refused: list[tuple[str, int, bytes]] = []
        for address in primary:
            code, reply = smtp.rcpt(address)
            if code not in (250, 251):
                refused.append((address, code, reply))
        if refused:
            self._rset(smtp)
            permanent = [r for r in refused if r[1] >= 500]
            address, code, reply = (permanent or refused)[0]
            error = _reply_error(code, reply, [r[0] for r in refused])
            error.args = (f"{address} refused: {error.args[0]}",)
            raise error
        for address in bcc:
            code, reply = smtp.rcpt(address)
            if code not in (250, 251):
                log.warning("bcc copy refused", recipient=address, code=code, reply=_decode(reply))
        try:
            code, reply = smtp.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
            self._rset(smtp)
            raise _reply_error(exc.smtp_code, exc.smtp_error, primary) from None
        if code != 250:
            raise _reply_error(code, reply, primary)

    @staticmethod
    def _rset(smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            pass

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = self._where()
        if s.security == "none" and s.username and s.host not in _LOOPBACK:
            raise MailUnavailableError(
                f"refusing to send the SMTP password to {where} unencrypted (security: none); "
                "use starttls or tls"
            )
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host,
                    s.port,
                    local_hostname=self.local_hostname,
                    timeout=s.timeout_seconds,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    s.host, s.port, local_hostname=self.local_hostname, timeout=s.timeout_seconds
                )
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if s.username:
                password = s.password.get_secret_value() if s.password is not None else ""
                smtp.login(s.username, password)
            return smtp
        except smtplib.SMTPAuthenticationError as exc:
            _close(smtp)
            raise MailUnavailableError(
                f"login as {s.username} at {where} refused: {_decode(exc.smtp_error)}", code=exc.smtp_code
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            _close(smtp)
            raise MailUnavailableError(f"{where}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            _close(smtp)
            raise MailUnavailableError(
                f"{where} refused the connection: {_decode(exc.smtp_error)}", code=exc.smtp_code
            ) from None
        except ssl.SSLError as exc:
            _close(smtp)
            raise MailUnavailableError(f"TLS with {where} failed: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, unknown host
            _close(smtp)
            raise MailUnavailableError(f"cannot connect to {where}: {exc}") from None


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


def mailbox(name: str | None, address: str) -> str:
    """``"Name" <address>`` as a header value (just the address when there is no name)."""
    if not name:
        return address
    try:
        return str(Address(display_name=" ".join(name.split()), addr_spec=address))
    except (ValueError, IndexError):
        return address


_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]+@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}$", re.UNICODE
)


def valid_address(address: str) -> bool:
    """A plausible ``local@domain.tld`` (what can be checked before asking the server)."""
    return bool(_ADDRESS.match(address)) and len(address) <= 254 and ".." not in address


def customer_addresses(customer: Mapping[str, Any] | None) -> list[str]:
    """Where invoices and reminders go: ``billing_email``, else ``email`` (either may list several,
    separated by commas or semicolons). Every entry that has an ``@`` is kept, valid or not, so a
    broken address is reported rather than silently dropped."""
    data = customer or {}
    raw = data.get("billing_email") or data.get("email")
    values = [str(v) for v in raw] if isinstance(raw, list | tuple) else [str(raw or "")]
    found: list[str] = []
    for value in values:
        for part in _split_addresses(value):
            name, address = parseaddr(part)
            # the parser turns a broken address (ap@@x) into pieces: keep what was written instead
            if not address or address.count("@") != part.count("@") - name.count("@"):
                address = part.strip().strip("<>").strip()
            if "@" in address:
                found.append(address.strip())
    return list(dict.fromkeys(found))


def _split_addresses(value: str) -> list[str]:
    """Split a header-like list on commas and semicolons outside quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        if char in ",;" and not quoted and not angle:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]
