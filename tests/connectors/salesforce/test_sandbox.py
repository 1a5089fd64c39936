"""The connector against the Salesforce sandbox over real loopback HTTPS, and the sandbox's own contract."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from connectors.errors import AuthError, FatalError, RateLimitedError, RecordError, RetryableError
from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.salesforce.soql import parse_datetime
from tests.connectors.salesforce.conftest import fixture_json, fixture_text, make_settings

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=dt.UTC)
SF_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000\Z")  # as in the fixtures


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox() as sandbox:  # one server per module: starting and stopping costs ~0.5 s
        yield sandbox


@pytest.fixture
def sf(shared_sandbox: SalesforceSandbox, clock: Clock) -> SalesforceSandbox:
    shared_sandbox.reset()
    shared_sandbox.now = clock
    return shared_sandbox


NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)
ONE_ATTEMPT = RetryPolicy(attempts=1)


def connector_for(
    sf: SalesforceSandbox, *, retry: RetryPolicy = NO_SLEEP, **overrides: Any
) -> SalesforceConnector:
    values: dict[str, Any] = {
        "username": sf.username,
        "password": sf.password,
        "security_token": sf.security_token,
        "login_url": sf.base_url,
        "ca_file": str(sf.cert_file),
    }
    values.update(overrides)
    return SalesforceConnector(make_settings(**values), retry=retry)


def raw_session(sf: SalesforceSandbox) -> tuple[requests.Session, str]:
    """A plain HTTPS session logged in with SOAP, for looking at the sandbox's bytes directly."""
    connector = connector_for(sf)
    connector.connect()
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sf.cert_file)
    session.headers["Authorization"] = f"Bearer {connector.client.session_id}"
    return session, f"{sf.base_url}/services/data/v59.0"


# -- the connector over HTTPS ---------------------------------------------------------------------------


def test_pull_of_4500_records_takes_three_pages_and_four_calls(sf):
    sf.add_records("Account", [{"Name": f"Customer {i:04d}"} for i in range(4500)])
    connector = connector_for(sf)

    pages = list(connector.pull_pages("Account", ["Name"], None))

    assert [len(page) for page in pages] == [2000, 2000, 500]
    records = [r for page in pages for r in page]
    assert len({r["Id"] for r in records}) == 4500
    assert [(r["SystemModstamp"], r["Id"]) for r in records] == sorted(
        (r["SystemModstamp"], r["Id"]) for r in records
    )
    assert sf.calls_by_kind == {"login": 1, "query": 1, "query_more": 2}
    assert connector.api_calls == sf.calls == 4


def test_pull_since_returns_changes_within_the_lookback_window(sf, clock):
    old, edge, recent = sf.add_records("Account", [{"Name": n} for n in ("old", "edge", "recent")])
    clock.now = T0 + dt.timedelta(hours=1)
    sf.touch("Account", recent, Name="recent, renamed")
    clock.now = T0 + dt.timedelta(hours=1, minutes=5)
    sf.touch("Account", edge, Name="edge")  # exactly at cursor - lookback
    connector = connector_for(sf, lookback_seconds=300)
    cursor = T0 + dt.timedelta(hours=1, minutes=10)

    names = [r["Name"] for r in connector.pull("Account", ["Name"], cursor)]

    assert names == ["edge"]
    names = [r["Name"] for r in connector.pull("Account", ["Name"], cursor - dt.timedelta(minutes=6))]
    assert names == ["recent, renamed", "edge"]
    assert old not in {r["Id"] for r in connector.pull("Account", [], T0 + dt.timedelta(minutes=10))}


def test_cursor_can_be_advanced_from_the_records(sf, clock):
    sf.add_records("Product2", [{"Name": "Gold", "ProductCode": "GOLD"}])
    connector = connector_for(sf, lookback_seconds=0)
    (first,) = connector.pull("Product2", ["ProductCode"], None)
    cursor = parse_datetime(first["SystemModstamp"]) + dt.timedelta(seconds=1)
    clock.now = T0 + dt.timedelta(minutes=1)
    sf.add_records("Product2", [{"Name": "Silver", "ProductCode": "SILVER"}])

    assert [r["ProductCode"] for r in connector.pull("Product2", ["ProductCode"], cursor)] == ["SILVER"]


def test_expired_sessions_are_renewed_by_logging_in_again(sf):
    sf.add_records("Order", [{"Status": "Draft"}] * 3)
    connector = connector_for(sf)
    assert len(list(connector.pull("Order", ["Status"], None))) == 3

    sf.expire_sessions()

    assert len(list(connector.pull("Order", ["Status"], None))) == 3
    assert sf.calls_by_kind["login"] == 2


def test_expired_session_and_changed_password_is_an_auth_error(sf):
    connector = connector_for(sf)
    connector.connect()
    sf.expire_sessions()
    sf.password = "rotated-by-an-admin"

    with pytest.raises(AuthError, match="Invalid username, password, security token"):
        list(connector.pull("Account", ["Name"], None))


def test_wrong_password_is_an_auth_error_without_the_password(sf):
    connector = connector_for(sf, password="not-the-password")

    with pytest.raises(AuthError) as caught:
        connector.connect()
    assert "not-the-password" not in str(caught.value)
    assert caught.value.code == "INVALID_LOGIN"


def test_passwords_with_xml_characters_log_in(sf):
    sf.password = "a<b&c>'\"d"
    connector_for(sf).connect()
    assert sf.calls_by_kind["login"] == 1


def test_upsert_creates_then_updates_the_same_record(sf, clock):
    sf.define_fields("Order", {"Billsync_Invoice__c": "string", "Invoice_Total__c": "currency"})
    connector = connector_for(sf)

    created = connector.upsert(
        "Order",
        "Billsync_Invoice__c",
        "INV-2026-0007",
        {"Status": "Draft", "Invoice_Total__c": Decimal("1234.50")},
    )
    clock.now = T0 + dt.timedelta(minutes=3)
    updated = connector.upsert("Order", "Billsync_Invoice__c", "INV-2026-0007", {"Status": "Paid"})

    assert created["created"] is True and updated["created"] is False
    assert created["id"] == updated["id"] and created["id"].startswith("801")
    (stored,) = sf.records("Order")
    assert stored["Status"] == "Paid" and stored["Invoice_Total__c"] == Decimal("1234.50")
    assert stored["SystemModstamp"] == "2026-11-25T08:03:00.000+0000"
    assert stored["CreatedDate"] == "2026-11-25T08:00:00.000+0000"


def test_upsert_of_an_unknown_field_is_fatal_and_names_it(sf):
    connector = connector_for(sf)

    with pytest.raises(FatalError, match="Colour__c"):
        connector.upsert("Account", "AccountNumber", "A-1", {"Colour__c": "red"})


def test_unknown_field_in_a_pull_is_fatal_and_names_it(sf):
    with pytest.raises(FatalError, match="unknown field 'Colour__c'"):
        list(connector_for(sf).pull("Account", ["Name", "Colour__c"], None))


def test_get_of_a_missing_record_is_a_record_error(sf):
    (account,) = sf.add_records("Account", [{"Name": "Acme"}])
    connector = connector_for(sf)

    assert connector.get("Account", account)["Name"] == "Acme"
    with pytest.raises(RecordError):
        connector.get("Account", "001Dx0000000zzzAAA")


@pytest.mark.parametrize(
    ("status", "expected"), [(403, RateLimitedError), (503, RetryableError), (500, RetryableError)]
)
def test_injected_faults_are_translated(sf, status, expected):
    connector = connector_for(sf, retry=ONE_ATTEMPT)
    sf.fail_next(status, kinds=["query"])

    with pytest.raises(expected):
        list(connector.pull("Account", ["Name"], None))
    assert list(connector.pull("Account", ["Name"], None)) == []  # the next call is fine

    retrying = connector_for(sf)  # with the in-call retries the same fault is not even seen
    sf.fail_next(status, kinds=["query"])
    assert list(retrying.pull("Account", ["Name"], None)) == []


def test_daily_api_limit_is_enforced(sf):
    session, base = raw_session(sf)  # the connector would stop itself first (tests/connectors/test_limits.py)
    sf.api_limit = 2
    assert session.get(f"{base}/limits/").status_code == 200
    assert session.get(f"{base}/limits/").status_code == 200
    over = session.get(f"{base}/query/", params={"q": "SELECT Id FROM Account"})
    assert over.status_code == 403
    assert over.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert over.headers["Sforce-Limit-Info"] == "api-usage=3/2"


def test_a_slow_answer_times_out_as_retryable(sf):
    connector = connector_for(sf, retry=ONE_ATTEMPT, timeout_seconds=0.2)
    connector.connect()
    sf.delay_next(0.5, kinds=["query"])

    with pytest.raises(RetryableError, match="no answer in time"):
        list(connector.pull("Account", ["Name"], None))


def test_relationship_fields_come_back_nested(sf):
    (product,) = sf.add_records("Product2", [{"Name": "Gold", "ProductCode": "GOLD"}])
    (order,) = sf.add_records("Order", [{"Status": "Draft"}])
    sf.add_records(
        "OrderItem", [{"OrderId": order, "Product2Id": product, "Quantity": 2, "UnitPrice": Decimal("9.90")}]
    )

    (item,) = connector_for(sf).pull("OrderItem", ["Quantity", "UnitPrice", "Product2.ProductCode"], None)

    assert item["Product2"] == {"ProductCode": "GOLD"}
    assert item["UnitPrice"] == Decimal("9.90") and item["Quantity"] == 2


# -- the sandbox's SOQL subset ---------------------------------------------------------------------------


def test_soql_where_in_order_by_limit_and_count(sf):
    sf.add_records(
        "Account",
        [
            {"Name": n, "Type": t}
            for n, t in [("b", "Customer"), ("a", "Customer"), ("c", "Partner"), ("d", None)]
        ],
    )
    client = connector_for(sf).client

    result = client.query(
        "SELECT Name FROM Account WHERE Type IN ('customer', 'Partner') ORDER BY Type DESC, Name LIMIT 2"
    )
    assert [r["Name"] for r in result["records"]] == ["c", "a"]
    assert client.query("SELECT COUNT() FROM Account WHERE Type != 'Customer'")["totalSize"] == 2
    assert [r["Name"] for r in client.query("SELECT Name FROM Account WHERE Type = null")["records"]] == ["d"]


def test_page_size_can_be_lowered_but_not_below_200(sf):
    sf.add_records("Account", [{"Name": str(i)} for i in range(450)])
    session, base = raw_session(sf)

    page = session.get(
        f"{base}/query",
        params={"q": "SELECT Id FROM Account"},
        headers={"Sforce-Query-Options": "batchSize=100"},
    ).json()

    assert len(page["records"]) == 200 and page["totalSize"] == 450 and page["done"] is False


@pytest.mark.parametrize(
    ("soql", "code", "message"),
    [
        ("SELECT Id FROMM Account", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", "sObject type 'Nope__c' is not supported"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp >= '2026-11-25T08:00:00Z'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Account WHERE Name = 3", "INVALID_FIELD", "should be enclosed in quotes"),
        (
            "SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
    ],
)
def test_bad_queries_get_the_real_error_bodies(sf, soql, code, message):
    session, base = raw_session(sf)

    response = session.get(f"{base}/query", params={"q": soql})

    assert response.status_code == 400
    (error,) = response.json()
    assert error["errorCode"] == code and message in error["message"]


# -- contract: the sandbox answers with the fixtures' shapes -----------------------------------------------


def xml_names(text: str) -> set[str]:
    import xml.etree.ElementTree as ET

    return {element.tag.split("}")[-1] for element in ET.fromstring(text.encode()).iter()}


def test_contract_soap_login_and_fault(sf):
    good = requests.post(
        f"{sf.base_url}/services/Soap/u/59.0",
        data=f"<e:Envelope xmlns:e='http://schemas.xmlsoap.org/soap/envelope/'><e:Body><login>"
        f"<username>{sf.username}</username><password>{sf.password}{sf.security_token}</password>"
        "</login></e:Body></e:Envelope>",
        verify=str(sf.cert_file),
        timeout=5,
    )
    bad = requests.post(
        f"{sf.base_url}/services/Soap/u/59.0", data="<x/>", verify=str(sf.cert_file), timeout=5
    )

    assert good.status_code == 200
    assert xml_names(good.text) == xml_names(
        fixture_text("simple-salesforce/login_soap_response_success.xml")
    )
    assert re.search(
        rf"<serverUrl>{re.escape(sf.base_url)}/services/Soap/u/59\.0/00D\w+</serverUrl>", good.text
    )
    assert bad.status_code == 500
    assert bad.text == fixture_text("simple-salesforce/login_soap_fault_500_invalid_login.xml").strip()


def test_contract_query_pages_records_and_errors(sf):
    sf.add_records("Account", [{"Name": str(i)} for i in range(2001)])
    session, base = raw_session(sf)

    first = session.get(f"{base}/query/", params={"q": "SELECT Id, Name, SystemModstamp FROM Account"}).json()
    last = session.get(sf.base_url + first["nextRecordsUrl"]).json()
    empty = session.get(f"{base}/query", params={"q": "SELECT Id FROM Account WHERE Name = 'zz'"}).json()
    error = session.get(f"{base}/query", params={"q": "SELECT Foo FROM Account"}).json()

    assert list(first) == list(fixture_json("restforce/sobject/query_paginated_first_page_response.json"))
    assert list(last) == list(fixture_json("restforce/sobject/query_paginated_last_page_response.json"))
    assert list(empty) == list(fixture_json("restforce/sobject/query_empty_response.json"))
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{15}-2000", first["nextRecordsUrl"])
    record = first["records"][0]
    assert set(record["attributes"]) == set(
        fixture_json("restforce/sobject/query_success_response.json")["records"][0]["attributes"]
    )
    assert record["attributes"]["url"] == f"/services/data/v59.0/sobjects/Account/{record['Id']}"
    assert len(record["Id"]) == 18 and record["Id"].startswith("001")
    assert SF_DATETIME.match(record["SystemModstamp"])
    assert [set(e) for e in error] == [
        set(e) for e in fixture_json("restforce/sobject/query_error_response.json")
    ]


def test_contract_oauth_password_flow(sf):
    token_url = f"{sf.base_url}/services/oauth2/token"
    form = {"grant_type": "password", "client_id": "c", "client_secret": "s", "username": sf.username}

    good = requests.post(
        token_url,
        data={**form, "password": sf.password + sf.security_token},
        verify=str(sf.cert_file),
        timeout=5,
    )
    bad = requests.post(token_url, data={**form, "password": "nope"}, verify=str(sf.cert_file), timeout=5)

    assert set(fixture_json("restforce/auth_success_response.json")) <= set(good.json())
    assert good.json()["instance_url"] == sf.base_url
    assert bad.status_code == 400
    assert set(bad.json()) == set(fixture_json("restforce/auth_error_response.json"))
    assert bad.json()["error"] == "invalid_grant"


def test_contract_session_errors_and_versions(sf):
    session, base = raw_session(sf)
    sf.expire_sessions()

    expired = session.get(f"{base}/query", params={"q": "SELECT Id FROM Account"})
    versions = requests.get(f"{sf.base_url}/services/data/", verify=str(sf.cert_file), timeout=5).json()

    assert expired.status_code == 401
    assert expired.json() == fixture_json("restforce/expired_session_response.json")
    assert {tuple(sorted(v)) for v in versions} == {
        tuple(sorted(v)) for v in fixture_json("restforce/services_data_success_response.json")
    }
    assert any(v["version"] == "59.0" and v["url"] == "/services/data/v59.0" for v in versions)


def test_contract_sobject_rows_and_upserts(sf):
    sf.define_fields("Account", ["Ext__c"])
    session, base = raw_session(sf)

    created = session.patch(f"{base}/sobjects/Account/Ext__c/E1", json={"Name": "Acme"})
    updated = session.patch(f"{base}/sobjects/Account/Ext__c/E1", json={"Name": "Acme Ltd"})
    missing_field = session.patch(f"{base}/sobjects/Account/Namez/E1", json={"Name": "x"})
    inserted = session.post(f"{base}/sobjects/Account", json={"Name": "Other", "Ext__c": "E1"})
    multiple = session.patch(f"{base}/sobjects/Account/Ext__c/E1", json={"Name": "x"})
    fetched = session.get(f"{base}/sobjects/Account/{created.json()['id']}")
    missing = session.get(f"{base}/sobjects/Account/001Dx0000000zzzAAA")
    bad_write = session.patch(f"{base}/sobjects/Account/{created.json()['id']}", json={"foo": 1})

    assert created.status_code == 201 and updated.status_code == 200
    upsert_keys = set(fixture_json("restforce/sobject/upsert_created_success_response.json")) | {"created"}
    assert set(created.json()) == set(updated.json()) == upsert_keys
    assert missing_field.status_code == 404
    assert missing_field.json() == fixture_json("restforce/sobject/upsert_error_response.json")
    assert inserted.status_code == 201
    assert set(inserted.json()) == set(fixture_json("restforce/sobject/create_success_response.json"))
    assert multiple.status_code == 300 and len(multiple.json()) == 2
    assert all(re.fullmatch(r"/services/data/v59\.0/sobjects/Account/001\w{15}", u) for u in multiple.json())
    assert fetched.json()["Name"] == "Acme Ltd" and set(fetched.json()["attributes"]) == {"type", "url"}
    assert missing.status_code == 404
    assert missing.json() == fixture_json("restforce/sobject/sobject_describe_error_response.json")
    assert bad_write.status_code == 400
    assert bad_write.json() == [
        {"message": "No such column 'foo' on sobject of type Account", "errorCode": "INVALID_FIELD"}
    ]
    assert [set(e) for e in bad_write.json()] == [
        set(e) for e in fixture_json("restforce/sobject/write_error_response.json")
    ]


def test_ids_have_real_key_prefixes_and_checksums(sf):
    from connectors.salesforce.sandbox import with_checksum

    prefixes = {
        "Account": "001",
        "Product2": "01t",
        "PricebookEntry": "01u",
        "Order": "801",
        "OrderItem": "802",
        "Pricebook2": "01s",
    }
    for sobject, prefix in prefixes.items():
        (record_id,) = sf.add_records(sobject, [{}])
        assert record_id.startswith(prefix) and with_checksum(record_id[:15]) == record_id
    assert with_checksum("001D000000IqhSL") == "001D000000IqhSLIAZ"  # Salesforce's documented example
