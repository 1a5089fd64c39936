"""Unit tests of QuickBooksConnector against recorded QBO bodies (``responses``, no network)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.errors import AuthError, OutcomeUnknownError, RateLimitedError, RetryableError
from connectors.quickbooks.client import BatchItem, QuickBooksConnector, batch_request_id, dumps_exact
from connectors.quickbooks.errors import DuplicateNameError, StaleObjectError
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.quickbooks.tokens import MemoryTokenStore, OAuthTokens

Read = Callable[[str], str]
NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
API = "https://qbo.test/v3/company/123"
TOKEN_URL = "https://oauth.test/oauth2/v1/tokens/bearer"


def settings(**overrides: Any) -> QuickBooksSettings:
    values: dict[str, Any] = {
        "type": "quickbooks",
        "company_id": "123",
        "client_id": "cid",
        "client_secret": "very-secret-client-secret",
        "refresh_token": "rt-from-settings",
        "api_url": "https://qbo.test",
        "token_url": TOKEN_URL,
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return QuickBooksSettings(**values)


def valid_store(access: str = "at-valid") -> MemoryTokenStore:
    return MemoryTokenStore(
        OAuthTokens(
            refresh_token="rt-stored", access_token=access, access_expires_at=NOW + dt.timedelta(hours=1)
        )
    )


def connector(store: MemoryTokenStore | None = None, **kwargs: Any) -> QuickBooksConnector:
    kwargs.setdefault("sleep", lambda seconds: None)
    return QuickBooksConnector(settings(), store or valid_store(), clock=lambda: NOW, **kwargs)


def token_body(access: str, refresh: str) -> dict[str, Any]:
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": 3600,
        "x_refresh_token_expires_in": 8726400,
    }


def query_params(request: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def body_text(request: Any) -> str:
    body = request.body
    return body.decode() if isinstance(body, bytes) else str(body or "")


@responses.activate
def test_batch_fixture_success_and_fault_in_input_order(fixture_text: Read) -> None:
    body = fixture_text("python-quickbooks/batch_response_success_and_fault.json")
    responses.post(f"{API}/batch", body=body, content_type="application/json")
    qbo = connector()
    items = [
        BatchItem("1", "Customer", "create", {"DisplayName": "Taken"}),
        BatchItem(
            "2", "Customer", "create", {"DisplayName": "New", "Balance": Decimal("12345678901234567.89")}
        ),
    ]
    results = qbo.batch(items)

    assert [r.key for r in results] == ["1", "2"]
    assert not results[0].ok and isinstance(results[0].error, DuplicateNameError)
    assert results[1].ok and results[1].entity == {"Id": 164}
    sent = responses.calls[0].request
    assert query_params(sent)["requestid"] == [batch_request_id(["1", "2"])]
    assert query_params(sent)["minorversion"] == ["75"]
    assert '"Balance": 12345678901234567.89' in body_text(sent)  # a number, every digit kept
    request_items = json.loads(body_text(sent))["BatchItemRequest"]
    assert [(i["bId"], i["operation"]) for i in request_items] == [("1", "create"), ("2", "create")]
    assert sent.headers["Authorization"] == "Bearer at-valid"
    assert qbo.api_calls == 1


@responses.activate
def test_the_same_batch_gets_the_same_request_id(fixture_text: Read) -> None:
    body = fixture_text("python-quickbooks/batch_response_success_and_fault.json")
    responses.post(f"{API}/batch", body=body, content_type="application/json")
    qbo = connector()
    items = [BatchItem("2", "Customer", "create", {"DisplayName": "A"})]
    qbo.batch(items)
    qbo.batch(items)
    qbo.batch([BatchItem("3", "Customer", "create", {"DisplayName": "A"})])
    ids = [query_params(call.request)["requestid"][0] for call in responses.calls]
    assert ids[0] == ids[1] != ids[2]


@responses.activate
def test_batch_chunks_of_thirty() -> None:
    def echo(request: Any) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body)["BatchItemRequest"]
        answers = [{"bId": i["bId"], "Customer": {"Id": i["bId"]}} for i in items]
        return 200, {}, json.dumps({"BatchItemResponse": answers, "time": "t"})

    responses.add_callback(responses.POST, f"{API}/batch", callback=echo)
    qbo = connector()
    results = qbo.batch(
        [BatchItem(f"k{i}", "Customer", "create", {"DisplayName": f"C{i}"}) for i in range(61)]
    )
    sizes = [len(json.loads(body_text(call.request))["BatchItemRequest"]) for call in responses.calls]
    assert sizes == [30, 30, 1]
    assert [r.entity["Id"] for r in results if r.entity] == [f"k{i}" for i in range(61)]


@responses.activate
def test_money_in_responses_is_decimal() -> None:
    responses.post(
        f"{API}/invoice",
        body='{"Invoice": {"Id": "1", "TotalAmt": 1234567.89, "Line": [{"Amount": 0.10}]}, "time": "t"}',
        content_type="application/json",
    )
    invoice = connector().create("Invoice", {"CustomerRef": {"value": "1"}}, request_id="r-1")
    assert invoice["TotalAmt"] == Decimal("1234567.89") and isinstance(invoice["TotalAmt"], Decimal)
    assert invoice["Line"][0]["Amount"] == Decimal("0.10")
    assert query_params(responses.calls[0].request)["requestid"] == ["r-1"]


def test_dumps_exact_refuses_float_and_nan() -> None:
    assert dumps_exact({"a": [Decimal("1E+2"), Decimal("-0.50")]}) == '{"a": [100, -0.50]}'
    with pytest.raises(TypeError):
        dumps_exact({"Amount": 0.1})
    with pytest.raises(ValueError):
        dumps_exact({"Amount": Decimal("NaN")})


@responses.activate
def test_throttle_xml_then_success_retries_after_retry_after(fixture_text: Read) -> None:
    responses.post(
        f"{API}/query",
        body=fixture_text("quickbooks-ruby/too_many_requests_error.xml"),
        status=429,
        headers={"Retry-After": "2"},
        content_type="application/xml",
    )
    responses.post(f"{API}/query", json={"QueryResponse": {"totalCount": 5}, "time": "t"})
    waits: list[float] = []
    assert connector(sleep=waits.append).count("Customer") == 5
    assert waits == [2.0]
    assert len(responses.calls) == 2


@responses.activate
def test_long_retry_after_is_left_to_the_job_layer(fixture_text: Read) -> None:
    responses.post(
        f"{API}/query",
        body=fixture_text("quickbooks-ruby/too_many_requests_error.xml"),
        status=429,
        content_type="application/xml",
    )
    waits: list[float] = []
    with pytest.raises(RateLimitedError) as info:
        connector(sleep=waits.append, retry_max_wait=5).count("Customer")
    assert info.value.retry_after == 60
    assert waits == [] and len(responses.calls) == 1


@responses.activate
def test_retries_are_bounded_and_reraise() -> None:
    responses.post(f"{API}/query", body="<html>503</html>", status=503)
    waits: list[float] = []
    with pytest.raises(RetryableError):
        connector(sleep=waits.append, retry_attempts=3, retry_backoff=0.5, retry_jitter=0).count("Customer")
    assert len(responses.calls) == 3
    assert waits == [0.5, 1.0]  # without jitter; with it each wait is in [base/2, base] (test_retry.py)


@responses.activate
def test_stale_sync_token_on_update() -> None:
    fault = {"Error": [{"Message": "Stale Object Error", "Detail": "d", "code": "5010", "element": ""}]}
    responses.post(
        f"{API}/customer", json={"Fault": {**fault, "type": "ValidationFault"}, "time": "t"}, status=400
    )
    with pytest.raises(StaleObjectError):
        connector().update("Customer", {"Id": "1", "SyncToken": "0", "DisplayName": "x"}, request_id="u1")
    assert len(responses.calls) == 1  # a record error is not retried


@responses.activate
def test_duplicate_name_fixture_on_create(fixture_text: Read) -> None:
    body = fixture_text("quickbooks-ruby/json/tax_service_error_dup.json")
    responses.post(f"{API}/customer", body=body, status=400, content_type="application/json")
    with pytest.raises(DuplicateNameError):
        connector().create("Customer", {"DisplayName": "Dup"}, request_id="c1")


@responses.activate
def test_refresh_on_401_saves_rotated_tokens_before_using_them() -> None:
    events: list[str] = []

    class RecordingStore(MemoryTokenStore):
        def save(self, tokens: OAuthTokens) -> None:
            events.append(f"save {tokens.access_token} {tokens.refresh_token}")
            super().save(tokens)

    def api(request: Any) -> tuple[int, dict[str, str], str]:
        auth = request.headers["Authorization"]
        events.append(f"api {auth}")
        if auth == "Bearer at-old":
            return 401, {}, '{"fault":{"error":[{"message":"AuthenticationFailed","code":"3200"}]}}'
        return 200, {}, '{"QueryResponse": {"totalCount": 3}, "time": "t"}'

    def token(request: Any) -> tuple[int, dict[str, str], str]:
        form = parse_qs(body_text(request))
        events.append(f"token {form['refresh_token'][0]}")
        return 200, {}, json.dumps(token_body("at-new", "rt-new"))

    responses.add_callback(responses.POST, f"{API}/query", callback=api)
    responses.add_callback(responses.POST, TOKEN_URL, callback=token)
    store = RecordingStore(
        OAuthTokens(
            refresh_token="rt-old", access_token="at-old", access_expires_at=NOW + dt.timedelta(hours=1)
        )
    )
    qbo = connector(store)
    assert qbo.count("Invoice") == 3
    assert events == [
        "api Bearer at-old",
        "token rt-old",
        "save at-new rt-new",
        "api Bearer at-new",
    ]
    assert store.tokens is not None and store.tokens.access_expires_at == NOW + dt.timedelta(hours=1)
    assert qbo.api_calls == 3


@responses.activate
def test_empty_store_refreshes_with_the_settings_token_at_construction() -> None:
    responses.post(TOKEN_URL, json=token_body("at-1", "rt-1"))
    store = MemoryTokenStore()
    qbo = connector(store)
    assert parse_qs(body_text(responses.calls[0].request))["refresh_token"] == ["rt-from-settings"]
    assert store.tokens is not None and store.tokens.refresh_token == "rt-1"
    assert qbo.api_calls == 1


@responses.activate
def test_access_token_near_expiry_is_refreshed_before_the_call() -> None:
    responses.post(TOKEN_URL, json=token_body("at-2", "rt-2"))
    responses.post(f"{API}/query", json={"QueryResponse": {"totalCount": 0}, "time": "t"})
    store = MemoryTokenStore(
        OAuthTokens(
            refresh_token="rt-1", access_token="at-1", access_expires_at=NOW + dt.timedelta(minutes=2)
        )
    )
    connector(store).count("Item")
    assert [str(call.request.url).split("?")[0] for call in responses.calls] == [TOKEN_URL, f"{API}/query"]
    assert responses.calls[1].request.headers["Authorization"] == "Bearer at-2"


@responses.activate
def test_second_401_after_refresh_is_auth_error() -> None:
    responses.post(f"{API}/query", body='{"fault":{"error":[{"code":"3200"}]}}', status=401)
    responses.post(TOKEN_URL, json=token_body("at-new", "rt-new"))
    with pytest.raises(AuthError):
        connector().count("Invoice")
    assert len(responses.calls) == 3  # api, token, api: one refresh, not a loop


@responses.activate
def test_rejected_refresh_token_message_has_no_secrets() -> None:
    responses.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
    with pytest.raises(AuthError) as info:
        connector(MemoryTokenStore())
    text = str(info.value) + repr(info.value)
    for secret in ("rt-from-settings", "very-secret-client-secret"):
        assert secret not in text
    assert "invalid_grant" in text


@responses.activate
def test_a_refresh_refused_because_another_worker_rotated_the_token_uses_that_workers_token() -> None:
    """Two workers start together: QuickBooks rotates the shared refresh token for the other one and
    refuses ours, and the other one stores its new tokens a moment later."""
    responses.post(TOKEN_URL, json={"error": "invalid_grant"}, status=400)
    responses.post(f"{API}/query", json={"QueryResponse": {"totalCount": 3}, "time": "t"})
    store = MemoryTokenStore()
    theirs = OAuthTokens(
        refresh_token="rt-theirs",
        access_token="at-theirs",
        access_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    threading.Timer(0.3, store.save, args=(theirs,)).start()
    assert connector(store).count("Item") == 3
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer at-theirs"


@responses.activate
def test_read_timeout_on_write_is_outcome_unknown_and_resent_with_the_same_request_id() -> None:
    responses.post(f"{API}/invoice", body=requests.ReadTimeout("read timed out"))
    responses.post(f"{API}/invoice", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknownError):
        connector(retry_attempts=2).create("Invoice", {"Line": []}, request_id="inv-7")
    assert [query_params(call.request)["requestid"] for call in responses.calls] == [["inv-7"], ["inv-7"]]


@responses.activate
def test_outcome_stays_unknown_when_a_later_attempt_fails_differently() -> None:
    responses.post(f"{API}/invoice", body=requests.ReadTimeout("read timed out"))
    responses.post(f"{API}/invoice", body="<html>502</html>", status=502)
    with pytest.raises(OutcomeUnknownError):
        connector(retry_attempts=2).create("Invoice", {"Line": []}, request_id="inv-8")


@responses.activate
def test_failed_batch_call_marks_its_items_and_does_not_send_the_rest(fixture_text: Read) -> None:
    responses.post(
        f"{API}/batch",
        body=fixture_text("quickbooks-ruby/too_many_requests_error.xml"),
        status=429,
        headers={"Retry-After": "120"},
    )
    items = [BatchItem(f"k{i}", "Invoice", "create", {}) for i in range(40)]
    results = connector().batch(items)
    assert len(responses.calls) == 1
    assert all(isinstance(r.error, RateLimitedError) and not r.ok for r in results)


@responses.activate
def test_query_pages_until_a_short_page() -> None:
    def page(request: Any) -> tuple[int, dict[str, str], str]:
        statement = body_text(request)
        start = int(statement.split("STARTPOSITION ")[1].split()[0])
        size = 1000 if start < 2001 else 7
        rows = [{"Id": str(start + i)} for i in range(size)]
        return (
            200,
            {},
            json.dumps({"QueryResponse": {"Customer": rows, "startPosition": start, "maxResults": size}}),
        )

    responses.add_callback(responses.POST, f"{API}/query", callback=page)
    rows = list(connector().query("SELECT * FROM Customer"))
    assert len(rows) == 2007 and rows[-1]["Id"] == "2007"
    statements = [body_text(call.request) for call in responses.calls]
    assert statements[1] == "SELECT * FROM Customer STARTPOSITION 1001 MAXRESULTS 1000"
    assert responses.calls[0].request.headers["Content-Type"] == "application/text"


@responses.activate
def test_find_by_escapes_quotes_and_keys_by_value() -> None:
    responses.post(
        f"{API}/query",
        json={"QueryResponse": {"Customer": [{"Id": "9", "DisplayName": "O'Brien"}], "startPosition": 1}},
    )
    found = connector().find_by("Customer", "DisplayName", ["O'Brien", "Nobody"])
    assert list(found) == ["O'Brien"]
    assert "DisplayName IN ('Nobody', 'O\\'Brien')" in body_text(responses.calls[0].request)


@responses.activate
def test_new_token_is_never_used_when_saving_it_fails() -> None:
    class BrokenStore(MemoryTokenStore):
        def save(self, tokens: OAuthTokens) -> None:
            raise OSError("disk full")

    responses.post(f"{API}/query", body='{"fault":{"error":[{"code":"3200"}]}}', status=401)
    responses.post(TOKEN_URL, json=token_body("at-new", "rt-new"))
    store = BrokenStore(
        OAuthTokens(
            refresh_token="rt-old", access_token="at-old", access_expires_at=NOW + dt.timedelta(hours=1)
        )
    )
    with pytest.raises(OSError):
        connector(store).count("Invoice")
    api_auth = [
        c.request.headers.get("Authorization") for c in responses.calls if "/v3/" in str(c.request.url)
    ]
    assert api_auth == ["Bearer at-old"]
