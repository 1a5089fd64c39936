"""The error table, fed with the real QBO bodies from shared/fixtures/quickbooks."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from connectors.errors import (
    AuthError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.quickbooks.errors import (
    DuplicateNameError,
    StaleObjectError,
    parse_retry_after,
    translate_fault,
    translate_response,
    translate_transport,
)

Read = Callable[[str], str]

STALE_BODY = json.dumps(
    {
        "Fault": {
            "Error": [
                {
                    "Message": "Stale Object Error",
                    "Detail": "Stale Object Error : You and Jane were working on this at the same time.",
                    "code": "5010",
                    "element": "",
                }
            ],
            "type": "ValidationFault",
        },
        "time": "2024-03-01T10:00:00.000-08:00",
    }
)

# python-quickbooks issue #250: the gateway's lower-case envelope for a refused bearer token.
GATEWAY_401 = (
    '{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=AuthenticationFailed; '
    'errorCode=003200; statusCode=401","detail":"Token expired: secret-access-token","code":"3200",'
    '"element":null}],"type":"AUTHENTICATION"},"report":null,"queryResponse":null,"batchItemResponse":[],'
    '"attachableResponse":[],"syncErrorResponse":null,"requestId":null,"time":1633520295688,"status":null,'
    '"cdcresponse":[]}'
)


@pytest.mark.parametrize(
    "fixture, status",
    [
        ("quickbooks-ruby/too_many_requests_error.xml", 429),
        ("quickbooks-ruby/throttle_exceeded_error.xml", 403),
    ],
)
def test_throttle_xml_is_rate_limited_with_retry_after_header(
    fixture_text: Read, fixture: str, status: int
) -> None:
    error = translate_response(status, {"Retry-After": "7"}, fixture_text(fixture))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7
    assert error.code == "3001"


def test_throttle_without_retry_after_waits_sixty_seconds(fixture_text: Read) -> None:
    error = translate_response(429, {}, fixture_text("quickbooks-ruby/too_many_requests_error.xml"))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 60


def test_retry_after_as_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == 10.0
    assert parse_retry_after("soon") is None


def test_duplicate_name_json_fixture(fixture_text: Read) -> None:
    error = translate_response(400, {}, fixture_text("quickbooks-ruby/json/tax_service_error_dup.json"))
    assert isinstance(error, DuplicateNameError)
    assert isinstance(error, RecordError)
    assert error.code == "6240"
    assert "Duplicate Name Exists Error" in str(error)


def test_duplicate_name_xml_fixture(fixture_text: Read) -> None:
    error = translate_response(400, {}, fixture_text("quickbooks-ruby/customer_duplicate_error.xml"))
    assert isinstance(error, DuplicateNameError)


def test_stale_object_is_its_own_record_error() -> None:
    error = translate_response(400, {}, STALE_BODY)
    assert isinstance(error, StaleObjectError)
    assert isinstance(error, RecordError)


def test_gateway_401_is_auth_error_and_redacts_the_token() -> None:
    error = translate_response(401, {}, GATEWAY_401, secrets=["secret-access-token"])
    assert isinstance(error, AuthError)
    assert error.code == "3200"
    assert "secret-access-token" not in str(error)


def test_bare_401_is_auth_error() -> None:
    assert isinstance(translate_response(401, {}, ""), AuthError)


@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("python-quickbooks/fault_validation_2030.json", RecordError),
        # a ValidationFault fails the same way again, whatever python-quickbooks calls "severe"
        ("python-quickbooks/fault_validation_10001_severe.json", RecordError),
    ],
)
def test_inner_fault_fixtures(fixture_text: Read, fixture: str, expected: type[Exception]) -> None:
    error = translate_fault(json.loads(fixture_text(fixture)))
    assert type(error) is expected
    assert "(element Id)" in str(error)


def test_system_fault_10000_is_retryable(fixture_text: Read) -> None:
    error = translate_response(500, {}, fixture_text("quickbooks-ruby/generic_error.xml"))
    assert type(error) is RetryableError
    assert error.code == "10000"


def test_query_validation_4001_is_record_error(fixture_text: Read) -> None:
    error = translate_response(400, {}, fixture_text("quickbooks-ruby/query_validation_error.xml"))
    assert type(error) is RecordError
    assert "value 0 is too small" in str(error)


def test_multiple_errors_are_all_reported(fixture_text: Read) -> None:
    error = translate_response(400, {}, fixture_text("quickbooks-ruby/fault.xml"))
    assert type(error) is RecordError
    assert "firstname" in str(error) and "postalcode" in str(error)


def test_object_not_found_610_is_record_error() -> None:
    fault = {
        "Error": [{"Message": "Object Not Found", "Detail": "x", "code": "610"}],
        "type": "ValidationFault",
    }
    assert type(translate_fault(fault)) is RecordError


def test_authorization_failed_3100_is_fatal() -> None:
    body = GATEWAY_401.replace("3200", "3100").replace("AuthenticationFailed", "AuthorizationFailed")
    assert isinstance(translate_response(403, {}, body), FatalError)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_html_5xx_is_retryable(status: int) -> None:
    assert type(translate_response(status, {}, "<html><body>bad gateway</body></html>")) is RetryableError


def test_timeouts() -> None:
    read_timeout = requests.ReadTimeout("read timed out")
    assert isinstance(translate_transport(read_timeout, write=True), OutcomeUnknownError)
    assert type(translate_transport(read_timeout, write=False)) is RetryableError
    assert type(translate_transport(requests.ConnectTimeout("connect"), write=True)) is RetryableError
    assert isinstance(translate_transport(requests.exceptions.SSLError("cert"), write=True), FatalError)
