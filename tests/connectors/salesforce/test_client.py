"""The connector against recorded Salesforce bodies (``responses``): login, paging, re-login, errors."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.errors import (
    AuthError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector, build_pull_query
from tests.connectors.salesforce.conftest import fixture_json, fixture_text, make_settings

LOGIN = "https://acme.my.salesforce.com/services/Soap/u/59.0"
INSTANCE = "https://na15.salesforce.com"  # the fixture's <serverUrl>
QUERY = f"{INSTANCE}/services/data/v59.0/query/"
SOBJECTS = f"{INSTANCE}/services/data/v59.0/sobjects"


def add_login(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        LOGIN,
        body=fixture_text("simple-salesforce/login_soap_response_success.xml"),
        content_type="text/xml",
    )


def soql_of(call: responses.Call) -> str:
    return parse_qs(urlsplit(call.request.url).query)["q"][0]


@pytest.fixture
def rsps() -> responses.RequestsMock:
    with responses.RequestsMock() as mock:
        yield mock


NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)


@pytest.fixture
def connector() -> SalesforceConnector:
    return SalesforceConnector(make_settings(), retry=NO_SLEEP)


# -- login ------------------------------------------------------------------------------------------


def test_login_goes_to_the_configured_login_url_and_queries_the_instance_from_server_url(rsps, connector):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_empty_response.json"))

    assert list(connector.pull("Account", ["Name"], None)) == []

    login, query = rsps.calls
    assert login.request.url == LOGIN  # not login.salesforce.com
    assert b"<n1:password>S3cret-passTOKENabc123</n1:password>" in login.request.body.encode()
    assert query.request.url.startswith(QUERY)
    assert query.request.headers["Authorization"] == "Bearer 12345"  # the fixture's sessionId
    assert connector.api_calls == 2


def test_invalid_login_is_an_auth_error_that_names_the_user_but_not_the_secrets(rsps, connector):
    rsps.add(
        responses.POST,
        LOGIN,
        status=500,
        body=fixture_text("simple-salesforce/login_soap_fault_500_invalid_login.xml"),
        content_type="text/xml",
    )

    with pytest.raises(AuthError) as caught:
        connector.connect()

    message = str(caught.value)
    assert caught.value.code == "INVALID_LOGIN"
    assert "ops@acme.example" in message
    assert "Invalid username, password, security token" in message
    assert "S3cret-pass" not in message and "TOKENabc123" not in message


def test_login_endpoint_down_is_retryable(rsps, connector):
    rsps.add(responses.POST, LOGIN, status=503, body="<html>Maintenance</html>", content_type="text/html")

    with pytest.raises(RetryableError):
        connector.connect()


def test_no_request_is_made_before_the_first_call():
    connector = SalesforceConnector(make_settings())
    assert connector.api_calls == 0


# -- reads ------------------------------------------------------------------------------------------


def test_pull_follows_next_records_url_page_by_page_without_attributes(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.GET, QUERY, json=fixture_json("restforce/sobject/query_paginated_first_page_response.json")
    )
    rsps.add(
        responses.GET,
        f"{INSTANCE}/services/data/v26.0/query/01gD",  # the fixture's relative nextRecordsUrl on the instance
        json=fixture_json("restforce/sobject/query_paginated_last_page_response.json"),
    )

    pages = list(connector.pull_pages("Whizbang", ["Text_Label"], None))

    assert pages == [[{"Text_Label": "First Page"}], [{"Text_Label": "Last Page"}]]
    assert connector.api_calls == 3


def test_pull_asks_for_changes_since_the_cursor_minus_the_lookback_in_order(rsps, connector):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_empty_response.json"))
    since = dt.datetime(2026, 11, 25, 8, 0, 0, 750_000, tzinfo=dt.UTC)

    list(connector.pull("Order", ["AccountId", "Status", "Id"], since))

    assert soql_of(rsps.calls[1]) == (
        "SELECT Id, SystemModstamp, AccountId, Status FROM Order "
        "WHERE SystemModstamp >= 2026-11-25T07:55:00Z ORDER BY SystemModstamp, Id"
    )


def test_pull_reads_numbers_as_decimal_and_strips_nested_attributes(rsps, connector):
    add_login(rsps)
    body = {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {"type": "OrderItem", "url": "/services/data/v59.0/sobjects/OrderItem/802x"},
                "Id": "802x",
                "UnitPrice": 0.1,
                "Quantity": 3,
                "Product2": {"attributes": {"type": "Product2", "url": "/x"}, "ProductCode": "GOLD"},
            }
        ],
    }
    rsps.add(responses.GET, QUERY, body=json.dumps(body), content_type="application/json")

    (record,) = connector.pull("OrderItem", ["UnitPrice", "Quantity", "Product2.ProductCode"], None)

    assert record == {
        "Id": "802x",
        "UnitPrice": Decimal("0.1"),
        "Quantity": 3,
        "Product2": {"ProductCode": "GOLD"},
    }


def test_child_relationship_records_lose_their_attributes_too(rsps, connector):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_success_response.json"))

    (record,) = connector.pull("Whizbang", ["Text_Label"], None)

    assert record["Whizbangs__r"]["records"] == [{"Name": "Child Whizbang"}]
    assert record["ParentWhizbang__r"] == {"Name": "Parent Whizbang", "Text_Label": "Hello"}


def test_a_caller_session_is_used_with_the_login_rewrite_and_counting(rsps):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_empty_response.json"))
    own = requests.Session()
    own.headers["X-Trace"] = "billsync-test"
    connector = SalesforceConnector(make_settings(), session=own)

    list(connector.pull("Account", ["Name"], None))

    assert [c.request.headers["X-Trace"] for c in rsps.calls] == ["billsync-test"] * 2
    assert rsps.calls[0].request.url == LOGIN and connector.api_calls == 2


@pytest.mark.parametrize(
    ("sobject", "fields"),
    [
        ("Account; DELETE", ["Name"]),
        ("Account", ["Name FROM User --"]),
        ("Account", ["Name,Id"]),
        ("", ["Id"]),
    ],
)
def test_names_that_are_not_identifiers_are_refused_before_any_call(sobject, fields, connector):
    with pytest.raises(ValueError):
        list(connector.pull(sobject, fields, None))
    assert connector.api_calls == 0


def test_naive_since_is_taken_as_utc():
    query = build_pull_query("Account", [], dt.datetime(2026, 1, 1, 0, 0, 10), lookback_seconds=10)
    assert "SystemModstamp >= 2026-01-01T00:00:00Z" in query


def test_expired_session_logs_in_again_and_repeats_the_call(rsps, connector):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, status=401, json=fixture_json("restforce/expired_session_response.json"))
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_success_response.json"))

    records = list(connector.pull("Whizbang", ["Text_Label"], None))

    assert [r["Text_Label"] for r in records] == ["Hi there!"]
    assert [call.request.url for call in rsps.calls].count(LOGIN) == 2


def test_a_session_that_stays_invalid_after_re_login_is_an_auth_error(rsps, connector):
    rsps.add(
        responses.POST,
        LOGIN,
        body=fixture_text("simple-salesforce/login_soap_response_success.xml"),
        content_type="text/xml",
    )
    rsps.add(responses.GET, QUERY, status=401, json=fixture_json("restforce/expired_session_response.json"))

    with pytest.raises(AuthError) as caught:
        list(connector.pull("Account", ["Name"], None))
    assert caught.value.code == "INVALID_SESSION_ID"
    logins = [call.request.url for call in rsps.calls].count(LOGIN)
    assert logins == 2 and connector.logins == 2  # one re-login (simple-salesforce alone tries 3 more)


def test_throttling_with_retry_after_is_waited_out_and_a_page_is_retried_alone(rsps):
    waits: list[float] = []
    connector = SalesforceConnector(make_settings(), retry=RetryPolicy(sleep=waits.append, jitter=0))
    add_login(rsps)
    rsps.add(
        responses.GET, QUERY, json=fixture_json("restforce/sobject/query_paginated_first_page_response.json")
    )
    next_page = f"{INSTANCE}/services/data/v26.0/query/01gD"
    limit = [{"message": "ConcurrentPerOrgLongTxn Limit exceeded", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    rsps.add(responses.GET, next_page, status=403, json=limit, headers={"Retry-After": "4"})
    rsps.add(responses.GET, next_page, status=503, json=[{"message": "x", "errorCode": "SERVER_UNAVAILABLE"}])
    rsps.add(
        responses.GET,
        next_page,
        json=fixture_json("restforce/sobject/query_paginated_last_page_response.json"),
    )

    pages = list(connector.pull_pages("Whizbang", ["Text_Label"], None))

    assert pages == [[{"Text_Label": "First Page"}], [{"Text_Label": "Last Page"}]]
    assert waits == [4.0, 2.0]  # Retry-After, then the second backoff step
    assert [c.request.url.split("?")[0] for c in rsps.calls].count(QUERY) == 1  # page 1 not re-read


def test_a_daily_limit_without_retry_after_backs_off_then_surfaces(rsps, connector):
    add_login(rsps)
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    rsps.add(responses.GET, QUERY, status=403, json=limit)

    with pytest.raises(RateLimitedError) as caught:
        list(connector.pull("Account", ["Name"], None))
    assert caught.value.retry_after is None  # Salesforce gives no hint: the job layer decides
    assert len(rsps.calls) == 1 + 3


# -- error translation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (400, "restforce/sobject/query_error_response.json", FatalError, "INVALID_FIELD"),
        (
            400,
            [{"message": "unexpected token: 'FROMM'", "errorCode": "MALFORMED_QUERY"}],
            FatalError,
            "MALFORMED_QUERY",
        ),
        (
            403,
            [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            RateLimitedError,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (
            403,
            [{"message": "API is disabled", "errorCode": "API_DISABLED_FOR_ORG"}],
            FatalError,
            "API_DISABLED_FOR_ORG",
        ),
        (503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}], RetryableError, "SERVER_UNAVAILABLE"),
        (502, "<html>Bad gateway</html>", RetryableError, None),
    ],
)
def test_query_errors_are_translated(rsps, connector, status, body, expected, code):
    add_login(rsps)
    if isinstance(body, str) and body.endswith(".json"):
        rsps.add(responses.GET, QUERY, status=status, json=fixture_json(body))
    elif isinstance(body, str):
        rsps.add(responses.GET, QUERY, status=status, body=body, content_type="text/html")
    else:
        rsps.add(responses.GET, QUERY, status=status, json=body)

    with pytest.raises(expected) as caught:
        list(connector.pull("Account", ["Name"], None))

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.system == "salesforce"


def test_invalid_field_error_names_the_field(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.GET, QUERY, status=400, json=fixture_json("restforce/sobject/write_error_response.json")
    )

    with pytest.raises(FatalError, match="unknown field 'foo'"):
        list(connector.pull("Bar", ["foo"], None))


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (requests.ConnectTimeout("connect timed out"), RetryableError),
        (requests.ReadTimeout("read timed out"), RetryableError),
        (requests.ConnectionError("reset"), RetryableError),
        (requests.exceptions.SSLError("certificate verify failed"), FatalError),
    ],
)
def test_transport_failures_on_reads(rsps, connector, exception, expected):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, body=exception)

    with pytest.raises(expected) as caught:
        list(connector.pull("Account", ["Name"], None))
    assert type(caught.value) is expected


def test_every_call_carries_a_timeout(rsps):
    add_login(rsps)
    rsps.add(responses.GET, QUERY, json=fixture_json("restforce/sobject/query_empty_response.json"))
    seen: list[object] = []
    connector = SalesforceConnector(make_settings(timeout_seconds=7))
    original = requests.adapters.HTTPAdapter.send

    def spy(self, request, **kwargs):
        seen.append(kwargs.get("timeout"))
        return original(self, request, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.adapters.HTTPAdapter, "send", spy)
        list(connector.pull("Account", ["Name"], None))

    assert seen == [7, 7]


def test_secrets_echoed_by_the_server_never_reach_the_message(rsps, connector):
    add_login(rsps)
    echo = [{"message": "bad value S3cret-pass / TOKENabc123 in session 12345", "errorCode": "INVALID_FIELD"}]
    rsps.add(responses.GET, QUERY, status=400, json=echo)

    with pytest.raises(FatalError) as caught:
        list(connector.pull("Account", ["Name"], None))

    message = str(caught.value)
    assert "S3cret-pass" not in message and "TOKENabc123" not in message and "12345" not in message
    assert "***" in message


def test_get_of_a_missing_record_is_a_record_error(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.GET,
        f"{SOBJECTS}/Account/001D000000IqhSLIAZ",
        status=404,
        json=fixture_json("restforce/sobject/sobject_describe_error_response.json"),
    )

    with pytest.raises(RecordError, match="The requested resource does not exist"):
        connector.get("Account", "001D000000IqhSLIAZ")


def test_get_returns_the_record_with_decimals(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.GET,
        f"{SOBJECTS}/Whizbang/23foo0000000000",
        json=fixture_json("restforce/sobject/sobject_find_success_response.json"),
    )

    record = connector.get("Whizbang", "23foo0000000000")

    assert record["Currency_Label"] == Decimal("23.0") and "attributes" not in record


# -- upsert -----------------------------------------------------------------------------------------


def test_upsert_patches_the_external_id_url_with_exact_decimals(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.PATCH,
        f"{SOBJECTS}/Invoice__c/Billsync_Id__c/INV%2F2026%2F7",
        status=201,
        json=fixture_json("restforce/sobject/upsert_created_success_response.json"),
    )

    result = connector.upsert(
        "Invoice__c",
        "Billsync_Id__c",
        "INV/2026/7",
        {"Amount__c": Decimal("1234.50"), "Due__c": dt.date(2026, 12, 1)},
    )

    assert result == {"id": "foo", "errors": [], "success": True}
    assert rsps.calls[1].request.body == '{"Amount__c":1234.50,"Due__c":"2026-12-01"}'


def test_upsert_of_an_existing_record_before_api_46_reports_an_update(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.PATCH,
        f"{SOBJECTS}/Account/AccountNumber/A-1",
        status=204,
        body=fixture_text("restforce/sobject/upsert_updated_success_response.json"),
    )

    assert connector.upsert("Account", "AccountNumber", "A-1", {"Name": "Acme"})["created"] is False


def test_upsert_with_an_unknown_external_id_field_stops_the_stream(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.PATCH,
        f"{SOBJECTS}/Account/Namez/x",
        status=404,
        json=fixture_json("restforce/sobject/upsert_error_response.json"),
    )

    with pytest.raises(FatalError, match="Namez"):
        connector.upsert("Account", "Namez", "x", {"Name": "Acme"})


def test_upsert_matching_several_records_is_a_record_error(rsps, connector):
    add_login(rsps)
    rsps.add(
        responses.PATCH,
        f"{SOBJECTS}/Whizbang/External__c/dup",
        status=300,
        json=fixture_json("restforce/sobject/upsert_multiple_error_response.json"),
    )

    with pytest.raises(RecordError, match="sobjects/Whizbang/foo"):
        connector.upsert("Whizbang", "External__c", "dup", {"Name": "x"})


def test_upsert_that_times_out_has_an_unknown_outcome(rsps, connector):
    add_login(rsps)
    rsps.add(responses.PATCH, f"{SOBJECTS}/Account/AccountNumber/A-1", body=requests.ReadTimeout("slow"))

    with pytest.raises(OutcomeUnknownError):
        connector.upsert("Account", "AccountNumber", "A-1", {"Name": "Acme"})
    assert len(rsps.calls) == 1 + 3  # idempotent by external id: resent, the same PATCH each time


def test_upsert_timed_out_then_answered_is_a_success(rsps, connector):
    add_login(rsps)
    url = f"{SOBJECTS}/Account/AccountNumber/A-1"
    rsps.add(responses.PATCH, url, body=requests.ReadTimeout("slow"))
    rsps.add(
        responses.PATCH, url, status=200, json={"id": "001x", "success": True, "errors": [], "created": False}
    )

    assert connector.upsert("Account", "AccountNumber", "A-1", {"Name": "Acme"})["id"] == "001x"
    assert rsps.calls[1].request.body == rsps.calls[2].request.body


def test_upsert_unanswered_then_refused_is_still_an_unknown_outcome(rsps, connector):
    add_login(rsps)
    url = f"{SOBJECTS}/Account/AccountNumber/A-1"
    rsps.add(responses.PATCH, url, body=requests.ConnectionError("reset"))
    rsps.add(responses.PATCH, url, status=403, json=[{"message": "no", "errorCode": "INSUFFICIENT_ACCESS"}])

    with pytest.raises(OutcomeUnknownError) as caught:
        connector.upsert("Account", "AccountNumber", "A-1", {"Name": "Acme"})
    assert isinstance(caught.value.__cause__, FatalError)


def test_upsert_refuses_floats_for_money(connector):
    with pytest.raises(TypeError):
        connector.upsert("Account", "AccountNumber", "A-1", {"AnnualRevenue": 0.1})
