"""The one table that turns Dynamics NAV / Business Central SOAP failures into billsync's taxonomy.

NAV answers every failed page or codeunit call with HTTP 500 and a SOAP 1.1 fault whose
``faultstring`` is the C/AL or AL error text and whose ``faultcode`` names the .NET exception type
(``a:Microsoft.Dynamics.Nav.Types.Exceptions.NavCSideException`` for application errors,
``a:System.NullReferenceException`` and friends for server trouble). A fault means NAV rolled the
transaction back, so nothing was applied. Faults are classified by message first, then by code::

    faultstring / faultcode / status            class                  why
    "Another user has modified the record"      StaleRecordError       re-read the Key, re-apply once
    "... already exists"                        DuplicateRecordError   look the record up, bind to it
    "You do not have the following permissions" FatalError             the NAV user lacks a permission
    "The Company ... does not exist"            FatalError             wrong company in the settings
    "is null!" (a parameter left out)           FatalError             a client bug, not this record
    "... does not exist"                        RecordNotFoundError    dead-letter (a RecordError)
    "must have a value", "is not valid", ...    RecordError            dead-letter, fix the data
    "was locked by another user", deadlock      RetryableError         try again shortly
    "Object reference not set", a:System.*      RetryableError         server trouble, try again
    any other fault                             RecordError            C/AL refused this record
    HTTP 401                                    AuthError              credentials refused
    HTTP 403, 404, other 4xx                    FatalError             permissions, URL, company
    HTTP 429                                    RateLimitedError       honour Retry-After
    HTTP 503, connection refused                RetryableError         not processed; resend
    HTTP 500/502/504 without a fault, timeout,  OutcomeUnknownError    a write may have been applied:
    reset or garbled reply after a write                               look it up before resending

Every message goes through :func:`redact`, so the password never reaches an error or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import requests
import zeep.exceptions

from connectors.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.retry import parse_retry_after

__all__ = [
    "DuplicateRecordError",
    "RecordNotFoundError",
    "StaleRecordError",
    "classify_fault",
    "parse_retry_after",
    "redact",
    "translate",
    "translate_fault",
    "translate_status",
    "translate_transport",
]

SYSTEM = "nav"
DEFAULT_RETRY_AFTER = 30.0


class StaleRecordError(RecordError):
    """The ``Key`` sent is not the record's current one: read it again and re-apply the change once."""


class DuplicateRecordError(RecordError):
    """A record with this primary key already exists: look it up and bind to it instead."""


class RecordNotFoundError(RecordError):
    """The record (or one it refers to, such as the invoice's customer) does not exist."""


#: (pattern on the faultstring, class), first match wins. Case-insensitive.
FAULT_MESSAGES: tuple[tuple[str, type[ConnectorError]], ...] = (
    (r"another user has modified the record", StaleRecordError),
    (r"already exists", DuplicateRecordError),
    (r"you do not have the following permissions|not authorized|permission", FatalError),
    (r"\bcompany\b.*\bdoes not exist", FatalError),
    (r"\bis null!|service .* was not found|method .* was not found", FatalError),
    (r"was locked by another user|deadlock|please retry the activity|timed out", RetryableError),
    (r"object reference not set|server was unable to process|service is not available", RetryableError),
    (r"does not exist|cannot be found", RecordNotFoundError),
    (
        r"must have a value|is not valid|not a valid|can't be evaluated|cannot be evaluated|must be",
        RecordError,
    ),
)

#: (pattern on the faultcode, class) for faults no message pattern matched.
FAULT_CODES: tuple[tuple[str, type[ConnectorError]], ...] = (
    (r"NavPermissionException|SecurityException|Unauthorized", FatalError),
    (r"\bSystem\.|\bs:Server\b|ServiceBroker|Timeout|SqlException", RetryableError),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove known secrets and anything that looks like a Basic/NTLM/Bearer credential."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)\b(basic|bearer|ntlm|negotiate)\s+[A-Za-z0-9._~+/=-]+", r"\1 ***", text)


def fault_detail_text(detail: Any) -> str:
    """The text of a fault's ``<detail>`` (an lxml element, a string or None), whitespace-collapsed."""
    if detail is None:
        return ""
    if isinstance(detail, str | bytes):
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else detail
        text = re.sub(r"<[^>]+>", " ", text)
    else:
        text = " ".join(detail.itertext())
    return " ".join(text.split())


def classify_fault(message: str, code: str | None) -> type[ConnectorError]:
    """The class for a SOAP fault, from :data:`FAULT_MESSAGES` then :data:`FAULT_CODES`."""
    for pattern, cls in FAULT_MESSAGES:
        if re.search(pattern, message, re.IGNORECASE | re.DOTALL):
            return cls
    for pattern, cls in FAULT_CODES:
        if code and re.search(pattern, code):
            return cls
    return RecordError


def translate_fault(fault: zeep.exceptions.Fault, *, secrets: Iterable[str | None] = ()) -> ConnectorError:
    """Translate a SOAP fault; the faultstring (or its detail) is the message."""
    message = " ".join(str(fault.message or "").split()) or fault_detail_text(fault.detail) or "SOAP fault"
    code = str(fault.code) if fault.code else None
    cls = classify_fault(message, code)
    short_code = code.rsplit(".", 1)[-1] if code else None
    return cls(redact(message, secrets), code=short_code, system=SYSTEM)


def translate_status(
    status: int,
    *,
    write: bool,
    body: str = "",
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> ConnectorError:
    """Translate an HTTP failure that carried no SOAP fault (gateway pages, 401, WSDL fetches)."""
    snippet = " ".join(re.sub(r"<[^>]+>", " ", body).split())[:200]
    message = redact(f"HTTP {status}" + (f": {snippet}" if snippet else ""), secrets)
    code = str(status)
    if status == 401:
        return AuthError(f"{message} (check username/password and the auth scheme)", code=code, system=SYSTEM)
    if status == 429:
        retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return RateLimitedError(
            message,
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
            code=code,
            system=SYSTEM,
        )
    if status in (408, 503):
        return RetryableError(message, code=code, system=SYSTEM)
    if status >= 500:
        if write:
            return OutcomeUnknownError(
                f"{message} after the write was sent; look it up before retrying", code=code, system=SYSTEM
            )
        return RetryableError(message, code=code, system=SYSTEM)
    return FatalError(message, code=code, system=SYSTEM)


def translate_transport(exc: requests.RequestException, *, write: bool) -> ConnectorError:
    """Translate a requests failure; a write that may have reached NAV becomes OutcomeUnknownError."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return FatalError(f"{name}: TLS verification failed (check ca_file)", system=SYSTEM)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        return translate_status(
            response.status_code, write=write, body=response.text, headers=response.headers
        )
    not_sent = isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError)
        and "NewConnectionError" in repr(exc.args)  # refused / DNS: nothing left this machine
    )
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        if write and not not_sent:
            return OutcomeUnknownError(
                f"{name} after the write was sent; look it up before retrying", system=SYSTEM
            )
        return RetryableError(f"{name}: NAV did not answer in time or refused the connection", system=SYSTEM)
    return FatalError(f"{name}: request could not be built or sent", system=SYSTEM)


def translate(
    exc: Exception,
    *,
    write: bool,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> ConnectorError | None:
    """Translate anything zeep or requests raised during a call; None for exceptions we do not own.

    ``status`` and ``headers`` are those of the last HTTP response: zeep drops the headers (and with
    them ``Retry-After``) and reports a non-200 XML or XHTML page without a Fault as "Unknown fault".
    """
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, zeep.exceptions.Fault):
        if exc.message == "Unknown fault occured":  # non-200 XML without a Fault element
            return translate_status(
                status or 500,
                write=write,
                body=fault_detail_text(exc.detail),
                headers=headers,
                secrets=secrets,
            )
        return translate_fault(exc, secrets=secrets)
    if isinstance(exc, zeep.exceptions.TransportError):
        body = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else ""
        if exc.status_code == 200:  # a 200 whose body is not XML: the write may well have happened
            return translate_status(502, write=write, body="garbled 200 reply", secrets=secrets)
        return translate_status(exc.status_code, write=write, body=body, headers=headers, secrets=secrets)
    if isinstance(exc, requests.RequestException):
        return translate_transport(exc, write=write)
    if isinstance(exc, zeep.exceptions.ValidationError):
        # raised by zeep before sending: this record lacks a value the WSDL requires
        return RecordError(redact(f"invalid record: {exc}", secrets), system=SYSTEM)
    if isinstance(exc, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError):
        if write:
            return OutcomeUnknownError(f"unreadable reply after a write: {exc}", system=SYSTEM)
        return RetryableError(f"unreadable reply: {exc}", system=SYSTEM)
    if isinstance(exc, zeep.exceptions.LookupError | zeep.exceptions.WsdlSyntaxError):
        return FatalError(f"the WSDL does not match: {exc}", system=SYSTEM)
    return None
