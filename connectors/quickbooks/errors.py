"""The one table that turns QuickBooks Online errors into billsync's error taxonomy.

QBO reports errors in three shapes: a JSON ``Fault`` (``{"Fault": {"Error": [...], "type": ...}}``), the
lower-case JSON envelope of its gateway for 401/403 (``{"fault": {"error": [...]}}``) and, for
throttling, an XML ``IntuitResponse`` even when JSON was asked for. python-quickbooks flattens all of
these into exceptions that lose the HTTP status and headers (so ``Retry-After``), which is why the
connector translates from the raw response instead::

    code / status                      class                   why
    3001 ThrottleExceeded, HTTP 429    RateLimitedError        wait Retry-After (default 60 s)
    3200, 100, HTTP 401                AuthError               refresh the token once
    120, 3100 AuthorizationFailed      FatalError              the app lacks permission
    500-599 unsupported operation      FatalError              a bug or a wrong URL
    5010 Stale Object Error            StaleObjectError        re-read, re-apply
    6240 Duplicate Name Exists         DuplicateNameError      look the name up, bind
    CDC changedSince > 30 days old     ChangeWindowError       re-read by LastUpdatedTime queries
    610 Object Not Found, 600-9999     RecordError             dead-letter the record
    10000+ SystemFault, HTTP 5xx       RetryableError          try again later
    timeout / reset after sending      OutcomeUnknownError     look the write up first (writes)
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

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
    "DEFAULT_RETRY_AFTER",
    "SYSTEM",
    "ChangeWindowError",
    "DuplicateNameError",
    "FaultError",
    "StaleObjectError",
    "fault_errors",
    "parse_retry_after",
    "redact",
    "translate_errors",
    "translate_fault",
    "translate_response",
    "translate_transport",
    "xml_fault_errors",
]

SYSTEM = "quickbooks"
DEFAULT_RETRY_AFTER = 60.0

_NS = "{http://schema.intuit.com/finance/v3}"


class StaleObjectError(RecordError):
    """5010: the SyncToken sent is not the current one; re-read the entity and re-apply the change."""


class DuplicateNameError(RecordError):
    """6240: another Customer/Item/... already uses this name; look it up and bind to it instead."""


class ChangeWindowError(FatalError):
    """Change Data Capture looks back 30 days at most: an older ``changedSince`` is refused. The
    stream must re-read by ``LastUpdatedTime`` queries (which cannot show deletions) instead."""


@dataclass(frozen=True)
class FaultError:
    """One ``Error`` element of a QBO fault, whatever the wire shape it came in."""

    code: int | None
    message: str
    detail: str = ""
    element: str = ""


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def fault_errors(fault: Mapping[str, Any]) -> tuple[str, list[FaultError]]:
    """Normalise a JSON fault (``Fault`` or the gateway's lower-case ``fault``) to (type, errors)."""
    raw = fault.get("Error", fault.get("error")) or []
    errors = [
        FaultError(
            code=_as_int(err.get("code")),
            message=str(err.get("Message", err.get("message")) or ""),
            detail=str(err.get("Detail", err.get("detail")) or ""),
            element=str(err.get("element") or ""),
        )
        for err in raw
        if isinstance(err, Mapping)
    ]
    return str(fault.get("type") or ""), errors


def xml_fault_errors(text: str) -> tuple[str, list[FaultError]] | None:
    """Read an ``IntuitResponse``/``Fault`` XML body; None when the body is not such XML."""
    try:
        root = ET.fromstring(text.strip())  # our API peer; expat refuses entity bombs
    except ET.ParseError:
        return None
    fault = root if root.tag.endswith("Fault") else root.find(f"{_NS}Fault")
    if fault is None:
        fault = root.find("Fault")
    if fault is None:
        return None
    errors = []
    for err in fault.iter():
        if not err.tag.endswith("Error"):
            continue
        errors.append(
            FaultError(
                code=_as_int(err.get("code")),
                message=(err.findtext(f"{_NS}Message") or err.findtext("Message") or "").strip(),
                detail=(err.findtext(f"{_NS}Detail") or err.findtext("Detail") or "").strip(),
                element=err.get("element") or "",
            )
        )
    return fault.get("type") or "", errors


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove known secrets and anything that looks like a bearer/basic credential from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", r"\1 ***", text)


def _class_for(code: int | None, fault_type: str, status: int | None) -> type[ConnectorError]:
    if code == 3001 or status == 429:
        return RateLimitedError
    if code in (3200, 100) or status == 401:
        return AuthError
    if code in (120, 3100):
        return FatalError
    if code == 5010:
        return StaleObjectError
    if code == 6240:
        return DuplicateNameError
    if fault_type.lower() == "systemfault":
        return RetryableError
    if code is not None:
        if 1 <= code <= 499:
            return AuthError
        if 500 <= code <= 599:
            return FatalError
        if 600 <= code <= 9999:
            return RecordError
        if code >= 10000:
            # python-quickbooks calls these "severe"; a ValidationFault will fail again the same way.
            return RecordError if fault_type.lower() == "validationfault" else RetryableError
    if status is not None and status >= 500:
        return RetryableError
    if status == 404:
        return FatalError
    return RecordError


def translate_errors(
    fault_type: str,
    errors: list[FaultError],
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> ConnectorError:
    """Build the billsync error for a parsed fault; the first error decides the class."""
    first = errors[0] if errors else FaultError(code=None, message=f"HTTP {status}")
    cls = _class_for(first.code, fault_type, status)
    parts = []
    for err in errors or [first]:
        text = err.message + (f": {err.detail}" if err.detail else "")
        parts.append(text + (f" (element {err.element})" if err.element else ""))
    message = redact("; ".join(parts), secrets)
    code = str(first.code) if first.code is not None else (str(status) if status else None)
    if cls is RateLimitedError:
        retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return RateLimitedError(
            message,
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
            code=code,
            system=SYSTEM,
        )
    return cls(message, code=code, system=SYSTEM)


def translate_fault(
    fault: Mapping[str, Any],
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str | None] = (),
) -> ConnectorError:
    """Translate the inner object of a JSON ``Fault`` (e.g. one batch item's)."""
    fault_type, errors = fault_errors(fault)
    return translate_errors(fault_type, errors, status=status, headers=headers, secrets=secrets)


def translate_response(
    status: int,
    headers: Mapping[str, str],
    text: str,
    *,
    secrets: Iterable[str | None] = (),
) -> ConnectorError:
    """Translate a failed HTTP response body of any shape QBO uses (JSON fault, XML fault, other)."""
    parsed: tuple[str, list[FaultError]] | None = None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        fault = body.get("Fault") or body.get("fault")
        if isinstance(fault, Mapping):
            parsed = fault_errors(fault)
    if parsed is None and text.lstrip().startswith("<"):
        parsed = xml_fault_errors(text)
    if parsed is None or not parsed[1]:
        snippet = " ".join(text.split())[:200]
        parsed = ("", [FaultError(code=None, message=f"HTTP {status}", detail=snippet)])
    return translate_errors(parsed[0], parsed[1], status=status, headers=headers, secrets=secrets)


def translate_transport(exc: requests.RequestException, *, write: bool) -> ConnectorError:
    """Translate a requests failure; a write that may have reached QBO becomes OutcomeUnknownError."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return FatalError(f"{name}: TLS verification failed (check ca_file)", system=SYSTEM)
    not_sent = isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError)
        and "NewConnectionError" in repr(exc.args)  # refused / DNS: nothing left this machine
    )
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        if write and not not_sent:
            return OutcomeUnknownError(
                f"{name} after the write was sent; look it up before retrying", system=SYSTEM
            )
        return RetryableError(
            f"{name}: QuickBooks did not answer in time or refused the connection", system=SYSTEM
        )
    return FatalError(f"{name}: request could not be built or sent", system=SYSTEM)
