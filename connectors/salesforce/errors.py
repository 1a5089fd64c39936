"""Salesforce errors translated into the connector taxonomy, from one table.

simple-salesforce raises by HTTP status (``SalesforceMalformedRequest`` for 400, ``SalesforceExpiredSession``
for 401, ...) and keeps the body, a list of ``{"message", "errorCode"}``. The errorCode decides first
(:data:`ERROR_CODES`), then the status (:data:`STATUS_FALLBACK`), then the transport exception
(:func:`translate`). Every message passes through :func:`redact`, so a password, security token or
session id can never leak into an error, a log line or the dead-letter table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError

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

SYSTEM = "salesforce"


class DuplicateValueError(RecordError):
    """A unique field (or an external id sent twice in one request) already holds this value."""


class ApiBudgetError(FatalError):
    """billsync stopped itself before the org's daily API allowance ran into the reserve it leaves to
    the org's other integrations (see :mod:`connectors.salesforce.limits`): nothing was sent."""


class StaleRecordError(RecordError):
    """Declared for the destination interface only: an upsert by external id carries no version, so
    Salesforce never answers "stale" to billsync's writes and nothing raises this."""


#: errorCode -> class. Anything not listed falls back on the HTTP status.
ERROR_CODES: dict[str, type[ConnectorError]] = {
    # the session: the connector logs in again once per attempt; still refused -> give up
    "INVALID_SESSION_ID": AuthError,
    "INVALID_LOGIN": AuthError,
    "LOGIN_MUST_USE_SECURITY_TOKEN": AuthError,
    "INVALID_AUTH_HEADER": AuthError,
    "invalid_grant": AuthError,
    "invalid_client": AuthError,
    # throttling (the 24h API allowance or the concurrent long-running request limit)
    "REQUEST_LIMIT_EXCEEDED": RateLimitedError,
    "CONCURRENT_REQUEST_LIMIT_EXCEEDED": RateLimitedError,
    # transient on the server side
    "SERVER_UNAVAILABLE": RetryableError,
    "UNABLE_TO_LOCK_ROW": RetryableError,
    "QUERY_TIMEOUT": RetryableError,
    "UNKNOWN_EXCEPTION": RetryableError,
    "INVALID_QUERY_LOCATOR": RetryableError,  # the cursor expired: start the page run again
    # configuration: wrong object/field names, missing permissions -> stop the stream
    "INVALID_FIELD": FatalError,
    "MALFORMED_QUERY": FatalError,
    "INVALID_TYPE": FatalError,
    "INVALID_QUERY_FILTER_OPERATOR": FatalError,
    "INVALID_FIELD_FOR_INSERT_UPDATE": FatalError,
    "INSUFFICIENT_ACCESS": FatalError,
    "API_DISABLED_FOR_ORG": FatalError,
    "API_CURRENTLY_DISABLED": FatalError,
    "FUNCTIONALITY_NOT_ENABLED": FatalError,
    "NOT_FOUND": RecordError,  # a record; "external ID field does not exist" is special-cased below
    # one record refused -> dead-letter it
    "REQUIRED_FIELD_MISSING": RecordError,
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": RecordError,
    "FIELD_INTEGRITY_EXCEPTION": RecordError,
    "DUPLICATE_VALUE": DuplicateValueError,
    "DUPLICATES_DETECTED": RecordError,
    "DUPLICATE_EXTERNAL_ID": RecordError,
    "STRING_TOO_LONG": RecordError,
    "NUMBER_OUTSIDE_VALID_RANGE": RecordError,
    "INVALID_CROSS_REFERENCE_KEY": RecordError,
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": RecordError,
    "INVALID_EMAIL_ADDRESS": RecordError,
    "INSUFFICIENT_ACCESS_OR_READONLY": RecordError,
    "ENTITY_IS_DELETED": RecordError,
    "ENTITY_IS_LOCKED": RecordError,
    "MALFORMED_ID": RecordError,
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": RecordError,
    "JSON_PARSER_ERROR": RecordError,
}

#: HTTP status -> class when the errorCode is unknown. 4xx not listed: FatalError on reads, RecordError
#: on writes (a write is about one record; a read failing that way is a configuration problem).
STATUS_FALLBACK: dict[int, type[ConnectorError]] = {
    300: RecordError,  # several records share the external id
    401: AuthError,
    403: FatalError,
    404: RecordError,
    429: RateLimitedError,
}

#: errorCode -> class for one record's result inside an sObject collection: the request itself went
#: through, so a code that is a configuration problem for a whole call concerns this record's values.
RECORD_RESULT_CODES: dict[str, type[ConnectorError]] = {
    "INVALID_FIELD_FOR_INSERT_UPDATE": RecordError,
}

_EXTERNAL_ID_FIELD_MISSING = "external ID field does not exist"
_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)'")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _errors_of(content: Any) -> list[tuple[str | None, str]]:
    """``[(errorCode, message)]`` from a REST error body (list, OAuth dict, bytes or text)."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return [(None, content.strip()[:500])]
    if isinstance(content, dict):
        content = [content]
    found: list[tuple[str | None, str]] = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict):
                code = item.get("errorCode") or item.get("error")
                message = item.get("message") or item.get("error_description") or ""
                found.append((str(code) if code else None, str(message)))
            else:  # the 300 Multiple Choices body is a list of record URLs
                found.append((None, str(item)))
    return found


def _class_for(
    codes: Sequence[str | None], messages: Sequence[str], status: int, write: bool
) -> type[ConnectorError]:
    for code, message in zip(codes, messages, strict=True):
        if code == "NOT_FOUND" and _EXTERNAL_ID_FIELD_MISSING in message:
            return FatalError  # a wrong field name in the mapping, not a missing record
        if code in ERROR_CODES:
            return ERROR_CODES[code]
    if status in STATUS_FALLBACK:
        return STATUS_FALLBACK[status]
    if status >= 500:
        return RetryableError
    return RecordError if write else FatalError


def _from_salesforce_error(
    exc: SalesforceError, what: str, write: bool, retry_after: str | None = None
) -> ConnectorError:
    errors = _errors_of(exc.content)
    codes = [code for code, _ in errors]
    messages = [message for _, message in errors]
    cls = _class_for(codes, messages, exc.status, write)
    detail = "; ".join(
        f"{code}: {_one_line(message)}" if code else _one_line(message) for code, message in errors
    )
    column = next((m.group(1) for m in map(_NO_SUCH_COLUMN.search, messages) if m), None)
    prefix = f"{what} failed (HTTP {exc.status})"
    if column is not None:
        prefix += f": unknown field {column!r}"
    code = next((c for c in codes if c), None)
    message = f"{prefix}: {detail}" if detail else prefix
    if cls is RateLimitedError:
        # Salesforce itself sends no Retry-After with REQUEST_LIMIT_EXCEEDED; a proxy or the sandbox may
        wait = parse_retry_after(retry_after)
        return RateLimitedError(message, retry_after=wait, code=code, system=SYSTEM)
    return cls(message, code=code, system=SYSTEM)


def record_result_error(
    errors: Sequence[Any], *, what: str, secrets: Iterable[str | None] = ()
) -> ConnectorError:
    """The taxonomy error for one failed record of a collection (``errors`` as Salesforce sends them:
    ``[{"statusCode", "message", "fields"}]``). Unknown codes are RecordError: only this record failed."""
    parts: list[str] = []
    cls: type[ConnectorError] | None = None
    first_code: str | None = None
    for item in errors:
        if not isinstance(item, dict):
            parts.append(_one_line(str(item)))
            continue
        code = item.get("statusCode") or item.get("errorCode")
        code = str(code) if code else None
        message = _one_line(str(item.get("message") or ""))
        fields = [str(f) for f in item.get("fields") or []]
        text = f"{code}: {message}" if code else message
        parts.append(text + (f" (fields: {', '.join(fields)})" if fields else ""))
        if code is not None:
            first_code = first_code or code
            found = RECORD_RESULT_CODES.get(code) or ERROR_CODES.get(code)
            cls = cls or found
    cls = cls or RecordError
    message = redact(f"{what} failed: {'; '.join(parts) or 'no error detail'}", secrets)
    if cls is RateLimitedError:
        return RateLimitedError(message, code=first_code, system=SYSTEM)
    return cls(message, code=first_code, system=SYSTEM)


def _from_login_failure(
    exc: SalesforceAuthenticationFailed, username: str | None, status: int | None
) -> ConnectorError:
    """A SOAP ``LoginFault`` (INVALID_LOGIN...) is an AuthError; anything else answered there is not."""
    who = f" for user {username!r}" if username else ""
    code = exc.code
    if isinstance(code, int):
        status, code = code, None
    if code is None:  # not a login fault: an HTML error page, a proxy, a wrong login_url
        cls: type[ConnectorError]
        if status is not None and (status >= 500 or status == 429):
            cls = RetryableError
        elif status in (401, 403):
            cls = AuthError
        else:
            cls = FatalError
        where = f"HTTP {status}" if status is not None else "no login fault"
        return cls(
            f"Salesforce login{who} failed ({where}): the login endpoint did not answer like Salesforce; "
            "check login_url",
            code=str(status) if status is not None else None,
            system=SYSTEM,
        )
    cls = ERROR_CODES.get(code, AuthError)
    if cls not in (RetryableError, RateLimitedError):
        cls = AuthError
    hint = (
        " Check username, password and security token in the Salesforce settings." if cls is AuthError else ""
    )
    reason = exc.auth_message.strip().rstrip(".")
    return cls(f"Salesforce login{who} failed: {reason}.{hint}", code=code, system=SYSTEM)


def translate(
    exc: BaseException,
    *,
    what: str = "Salesforce call",
    write: bool = False,
    username: str | None = None,
    login_status: int | None = None,
    retry_after: str | None = None,
) -> ConnectorError | None:
    """The taxonomy error for ``exc``, or None when it is not a vendor/transport error (a bug: re-raise).

    ``retry_after`` is the ``Retry-After`` header of the failed answer, if any (simple-salesforce's
    exceptions drop the headers).
    """
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, SalesforceAuthenticationFailed):
        return _from_login_failure(exc, username, login_status)
    if isinstance(exc, SalesforceError):
        return _from_salesforce_error(exc, what, write, retry_after)
    if isinstance(exc, requests.exceptions.SSLError):
        return FatalError(f"{what}: TLS verification failed ({exc}); check ca_file", system=SYSTEM)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RetryableError(f"{what}: connection timed out", code="timeout", system=SYSTEM)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        if write:
            return OutcomeUnknownError(
                f"{what}: no answer in time; it may have been applied", code="timeout", system=SYSTEM
            )
        return RetryableError(f"{what}: no answer in time", code="timeout", system=SYSTEM)
    if isinstance(exc, requests.exceptions.Timeout):
        return RetryableError(f"{what}: timed out", code="timeout", system=SYSTEM)
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ),
    ):
        return FatalError(f"{what}: bad URL ({exc}); check login_url", system=SYSTEM)
    if isinstance(exc, requests.exceptions.ConnectionError):
        cls = OutcomeUnknownError if write else RetryableError
        return cls(f"{what}: connection failed ({type(exc).__name__})", code="connection", system=SYSTEM)
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return RetryableError(f"{what}: the answer was not JSON", system=SYSTEM)
    if isinstance(exc, requests.exceptions.RequestException):
        return RetryableError(f"{what}: {type(exc).__name__}", system=SYSTEM)
    return None


@contextmanager
def translated(
    *,
    what: str = "Salesforce call",
    write: bool = False,
    secrets: Callable[[], Iterable[str | None]] | Iterable[str | None] = (),
    username: str | None = None,
    login_status: Callable[[], int | None] | None = None,
    retry_after: Callable[[], str | None] | None = None,
) -> Iterator[None]:
    """Run a block, re-raising vendor and transport errors as taxonomy errors with secrets redacted.

    ``secrets`` may be a callable, read when an error happens (a login inside the block makes a new
    session id); ``login_status`` gives the HTTP status of the last login answer, ``retry_after`` the
    ``Retry-After`` header of the last answer.
    """
    try:
        yield
    except ConnectorError:
        raise
    except Exception as exc:
        status = login_status() if login_status is not None else None
        wait = retry_after() if retry_after is not None else None
        error = translate(
            exc, what=what, write=write, username=username, login_status=status, retry_after=wait
        )
        if error is None:
            raise
        error.message = redact(error.message, list(secrets() if callable(secrets) else secrets))
        error.args = (error.message,)
        raise error from exc
