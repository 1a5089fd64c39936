"""The translation table: NAV SOAP faults and HTTP failures, as zeep raises them, to billsync's classes.

Fault bodies are the synthetic NAV-style envelopes in ``fixtures/`` (see its README); each is fed
through zeep's own reply processing, so the test covers what zeep really raises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
import zeep

from connectors.errors import (
    AuthError,
    ConnectorError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.nav.errors import (
    DuplicateRecordError,
    RecordNotFoundError,
    StaleRecordError,
    parse_retry_after,
    redact,
    translate,
    translate_transport,
)
from connectors.nav.wsdl import page_wsdl

Raise = Callable[..., Exception]


@pytest.fixture(scope="module")
def zeep_reply(tmp_path_factory: pytest.TempPathFactory) -> Raise:
    """Feed an HTTP response to zeep's Create reply processing and return what it raises."""
    path: Path = tmp_path_factory.mktemp("wsdl") / "page-Customer.xml"
    path.write_text(page_wsdl("Customer", "http://nav.invalid/Page/Customer"), encoding="utf-8")
    client = zeep.Client(str(path))
    binding = client.service._binding

    def reply(body: bytes, status: int = 500, headers: dict[str, str] | None = None) -> Exception:
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.headers.update({"Content-Type": "text/xml; charset=utf-8", **(headers or {})})
        try:
            binding.process_reply(client, binding.get("Create"), response)
        except Exception as exc:  # the point: whatever zeep raises
            return exc
        raise AssertionError("zeep accepted an error reply")

    return reply


def translated(
    exc: Exception, *, write: bool = True, status: int | None = 500, **kw: object
) -> ConnectorError:
    result = translate(exc, write=write, status=status, **kw)  # type: ignore[arg-type]
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("stale", StaleRecordError),
        ("duplicate", DuplicateRecordError),
        ("not_found", RecordNotFoundError),
        ("must_have_value", RecordError),
        ("not_valid", RecordError),
        ("unknown_application", RecordError),
        ("null_reference", RetryableError),
        ("locked", RetryableError),
        ("permission", FatalError),
        ("null_parameter", FatalError),
    ],
)
def test_each_nav_fault_lands_in_its_class(
    fixture: str, expected: type[ConnectorError], zeep_reply: Raise, fault_body: Callable[[str], bytes]
) -> None:
    exc = zeep_reply(fault_body(fixture))
    assert isinstance(exc, zeep.exceptions.Fault)
    error = translated(exc)
    assert type(error) is expected
    assert error.system == "nav"
    assert error.message and "\n" not in error.message  # the faultstring, on one line


def test_fault_keeps_the_nav_message_and_exception_name(
    zeep_reply: Raise, fault_body: Callable[[str], bytes]
) -> None:
    error = translated(zeep_reply(fault_body("duplicate")))
    assert error.message == "The Customer already exists. Identification fields and values: No.='C00010'"
    assert error.code == "NavCSideRecordExistsException"
    assert str(error).startswith("[nav NavCSideRecordExistsException] The Customer already exists")


def test_stale_and_duplicate_are_record_errors_so_one_record_is_dead_lettered_not_the_stream(
    zeep_reply: Raise, fault_body: Callable[[str], bytes]
) -> None:
    assert isinstance(translated(zeep_reply(fault_body("stale"))), RecordError)
    assert isinstance(translated(zeep_reply(fault_body("duplicate"))), RecordError)


@pytest.mark.parametrize(
    ("status", "write", "expected"),
    [
        (401, False, AuthError),
        (403, False, FatalError),
        (404, True, FatalError),
        (400, True, FatalError),
        (503, True, RetryableError),  # not processed: safe to resend even a write
        (500, False, RetryableError),
        (500, True, OutcomeUnknownError),  # a gateway error page after a write: maybe applied
        (502, True, OutcomeUnknownError),
        (504, True, OutcomeUnknownError),
    ],
)
def test_http_failures_without_a_fault(
    status: int, write: bool, expected: type[ConnectorError], zeep_reply: Raise
) -> None:
    for body in (b"", b"<html><body><h1>Error</h1></body></html>", b"Service Unavailable <"):
        error = translated(zeep_reply(body, status), write=write, status=status)
        assert type(error) is expected, (status, body)
        assert error.code == str(status)


def test_throttle_honours_retry_after_in_seconds_and_as_http_date(zeep_reply: Raise) -> None:
    exc = zeep_reply(b"", 429)
    seconds = translated(exc, status=429, headers={"Retry-After": "7"})
    assert isinstance(seconds, RateLimitedError) and seconds.retry_after == 7.0
    when = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120), usegmt=True)
    dated = translated(exc, status=429, headers={"Retry-After": when})
    assert isinstance(dated, RateLimitedError) and 100 < (dated.retry_after or 0) <= 120
    assert parse_retry_after("not a date") is None


def test_garbled_200_after_a_write_is_outcome_unknown() -> None:
    exc = zeep.exceptions.TransportError("invalid XML", status_code=200, content=b"<<<")
    assert isinstance(translated(exc, write=True, status=200), OutcomeUnknownError)
    assert type(translated(exc, write=False, status=200)) is RetryableError


def test_timeouts_and_connection_failures() -> None:
    read_timeout = requests.ReadTimeout("read timed out")
    assert isinstance(translate_transport(read_timeout, write=True), OutcomeUnknownError)
    assert type(translate_transport(read_timeout, write=False)) is RetryableError
    # nothing left this machine: a write is safe to resend
    assert (
        type(translate_transport(requests.ConnectTimeout("connect timed out"), write=True)) is RetryableError
    )
    assert isinstance(translate_transport(requests.exceptions.SSLError("bad cert"), write=False), FatalError)


def test_zeep_validation_error_is_this_records_problem() -> None:
    error = translated(zeep.exceptions.ValidationError("Missing element Customer"), write=True)
    assert type(error) is RecordError


def test_unrelated_exceptions_are_not_swallowed() -> None:
    assert translate(KeyError("bug"), write=False) is None


def test_the_password_never_appears_in_a_translated_error(zeep_reply: Raise) -> None:
    secret = "s3cret-Pa55word"
    body = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
        b"<faultcode>a:System.Exception</faultcode><faultstring>login s3cret-Pa55word failed; "
        b"Authorization: Basic QklMTFNZTkM6czNjcmV0</faultstring></s:Fault></s:Body></s:Envelope>"
    )
    error = translated(zeep_reply(body), secrets=[secret])
    assert secret not in str(error)
    assert "QklMTFNZTkM6czNjcmV0" not in str(error)
    assert redact("NTLM TlRMTVNTUAAB", []) == "NTLM ***"
