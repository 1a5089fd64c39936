"""Invoice status written back to Salesforce with sObject collections (upserts by external id).

Unit tests against recorded shapes (``responses``), then the connector, the destination and the
shipped mapping spec against the sandbox over loopback HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.errors import FatalError, OutcomeUnknownError, RecordError, RetryableError
from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.errors import DuplicateValueError
from connectors.salesforce.sandbox import SalesforceSandbox
from mappings.engine import Mapper
from mappings.spec import load_spec
from sync_engine.destinations import SalesforceDestination, Write
from sync_engine.schemas import schema_for
from tests.connectors.salesforce.conftest import fixture_text, make_settings

INVOICE = "Billsync_Invoice__c"
NUMBER = "Invoice_Number__c"
INSTANCE = "https://na15.salesforce.com"  # the login fixture's <serverUrl>
COLLECTION = f"{INSTANCE}/services/data/v59.0/composite/sobjects/{INVOICE}/{NUMBER}"
QUERY = f"{INSTANCE}/services/data/v59.0/query/"
SPEC = Path(__file__).resolve().parents[3] / "mappings" / "specs" / "salesforce" / "invoice_status.out.yaml"

NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)


def status(number: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        NUMBER: number,
        "Name": number,
        "Status__c": "Open",
        "Currency__c": "EUR",
        "Amount_Paid__c": Decimal("0.00"),
        "Amount_Due__c": Decimal("120.50"),
    }
    record.update(changes)
    return record


def ok(record_id: str, created: bool = True) -> dict[str, Any]:
    return {"id": record_id, "success": True, "errors": [], "created": created}


def refused(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields or []}]}


def body_of(call: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(call.request.body, parse_float=Decimal)
    return parsed


# -- unit: the wire format and the translation ---------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            "https://acme.my.salesforce.com/services/Soap/u/59.0",
            body=fixture_text("simple-salesforce/login_soap_response_success.xml"),
            content_type="text/xml",
        )
        yield mock


@pytest.fixture
def connector() -> SalesforceConnector:
    return SalesforceConnector(make_settings(), retry=NO_SLEEP)


def test_upsert_collection_patches_the_external_id_endpoint_with_typed_records_and_exact_money(
    rsps, connector
):
    rsps.add(responses.PATCH, COLLECTION, json=[ok("a00Dx0000000001AAA"), ok("a00Dx0000000002AAA", False)])

    results = connector.upsert_collection(INVOICE, NUMBER, [status("INV-1"), status("INV-2")])

    assert [(r.external_id, r.ok, r.id, r.created, r.error) for r in results] == [
        ("INV-1", True, "a00Dx0000000001AAA", True, None),
        ("INV-2", True, "a00Dx0000000002AAA", False, None),
    ]
    call = rsps.calls[1]
    assert call.request.method == "PATCH"
    assert b'"Amount_Due__c":120.50' in call.request.body.encode()  # an exact JSON number, no float
    body = body_of(call)
    assert body["allOrNone"] is False
    assert body["records"][0] == {"attributes": {"type": INVOICE}, **status("INV-1")}
    assert connector.api_calls == 2  # login + one collection


def test_each_refused_record_gets_its_own_translated_error_and_the_others_succeed(rsps, connector):
    rsps.add(
        responses.PATCH,
        COLLECTION,
        json=[
            ok("a00Dx0000000001AAA"),
            refused("DUPLICATE_VALUE", "duplicate value found: Name duplicates value on record with id: a00"),
            refused("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", ["Name"]),
            refused(
                "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Total__c.", ["Total__c"]
            ),
            refused("BRAND_NEW_CODE", "something Salesforce added later"),
        ],
    )

    results = connector.upsert_collection(INVOICE, NUMBER, [status(f"INV-{i}") for i in range(5)])

    assert [r.ok for r in results] == [True, False, False, False, False]
    errors = [r.error for r in results[1:]]
    assert isinstance(errors[0], DuplicateValueError)
    assert all(type(e) is RecordError for e in errors[1:])
    assert [e.code for e in errors if e is not None] == [
        "DUPLICATE_VALUE",
        "REQUIRED_FIELD_MISSING",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "BRAND_NEW_CODE",
    ]
    assert "INV-2" in str(errors[1]) and "fields: Name" in str(errors[1])  # which record, which field


def test_450_records_go_out_in_three_requests_of_at_most_200_in_order(rsps, connector):
    for size in (200, 200, 50):
        rsps.add(responses.PATCH, COLLECTION, json=[ok(f"a00Dx{n:013d}") for n in range(size)])

    records = [status(f"INV-{i:04d}") for i in range(450)]
    results = connector.upsert_collection(INVOICE, NUMBER, records)

    sent = [body_of(call)["records"] for call in rsps.calls[1:]]
    assert [len(chunk) for chunk in sent] == [200, 200, 50]
    assert [r[NUMBER] for chunk in sent for r in chunk] == [f"INV-{i:04d}" for i in range(450)]
    assert [r.external_id for r in results] == [f"INV-{i:04d}" for i in range(450)]
    assert all(r.ok for r in results)


def test_a_record_refused_with_lock_contention_is_sent_again_alone(rsps, connector):
    rsps.add(
        responses.PATCH,
        COLLECTION,
        json=[ok("a00Dx0000000001AAA"), refused("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")],
    )
    rsps.add(responses.PATCH, COLLECTION, json=[ok("a00Dx0000000002AAA")])

    results = connector.upsert_collection(INVOICE, NUMBER, [status("INV-1"), status("INV-2")])

    assert [r.ok for r in results] == [True, True]
    assert [rec[NUMBER] for rec in body_of(rsps.calls[2])["records"]] == ["INV-2"]


def test_a_timed_out_request_is_resent_because_an_upsert_by_external_id_is_idempotent(rsps, connector):
    rsps.add(responses.PATCH, COLLECTION, body=requests.exceptions.ReadTimeout())
    rsps.add(responses.PATCH, COLLECTION, json=[ok("a00Dx0000000001AAA")])

    (result,) = connector.upsert_collection(INVOICE, NUMBER, [status("INV-1")])

    assert result.ok and result.id == "a00Dx0000000001AAA"


def test_when_resending_never_gets_an_answer_the_records_are_outcome_unknown(rsps, connector):
    for _ in range(3):
        rsps.add(responses.PATCH, COLLECTION, body=requests.exceptions.ReadTimeout())

    (result,) = connector.upsert_collection(INVOICE, NUMBER, [status("INV-1")])

    assert not result.ok and isinstance(result.error, OutcomeUnknownError)


def test_a_request_that_keeps_failing_marks_its_records_and_the_rest_is_not_sent(rsps, connector):
    unavailable = [{"message": "try later", "errorCode": "SERVER_UNAVAILABLE"}]
    for _ in range(3):
        rsps.add(responses.PATCH, COLLECTION, status=503, json=unavailable)

    results = connector.upsert_collection(INVOICE, NUMBER, [status(f"INV-{i}") for i in range(250)])

    assert len(rsps.calls) == 1 + 3  # login, three attempts at the first 200; the last 50 not sent
    assert all(isinstance(r.error, RetryableError) and not r.ok for r in results)
    assert "not sent" in str(results[-1].error)


def test_a_record_without_its_external_id_is_refused_without_a_call(connector):
    (result,) = connector.upsert_collection(INVOICE, NUMBER, [status("INV-1", **{NUMBER: None})])

    assert isinstance(result.error, RecordError) and NUMBER in str(result.error)
    assert connector.api_calls == 0


def test_find_by_escapes_values_and_queries_200_at_a_time(rsps, connector):
    rsps.add(
        responses.GET,
        QUERY,
        json={
            "totalSize": 1,
            "done": True,
            "records": [
                {
                    "attributes": {"type": INVOICE, "url": "/x"},
                    "Id": "a00Dx0000000001AAA",
                    "SystemModstamp": "2026-11-25T08:00:00.000+0000",
                    NUMBER: "O'Brien-1",
                }
            ],
        },
    )
    rsps.add(responses.GET, QUERY, json={"totalSize": 0, "done": True, "records": []})

    found = connector.find_by(INVOICE, NUMBER, ["O'Brien-1", *(f"INV-{i}" for i in range(250))])

    assert found == {
        "O'Brien-1": {
            "Id": "a00Dx0000000001AAA",
            "SystemModstamp": "2026-11-25T08:00:00.000+0000",
            NUMBER: "O'Brien-1",
        }
    }
    first = parse_qs(urlsplit(rsps.calls[1].request.url).query)["q"][0]
    assert first.startswith(
        f"SELECT Id, SystemModstamp, {NUMBER} FROM {INVOICE} WHERE {NUMBER} IN ('O\\'Brien-1', "
    )
    assert len(rsps.calls) == 3  # login + 251 values in two queries


# -- integration: the sandbox --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sf(shared_sandbox: SalesforceSandbox) -> SalesforceSandbox:
    shared_sandbox.reset()
    return shared_sandbox


def connector_for(sf: SalesforceSandbox) -> SalesforceConnector:
    settings = make_settings(
        username=sf.username,
        password=sf.password,
        security_token=sf.security_token,
        login_url=sf.base_url,
        ca_file=str(sf.cert_file),
    )
    return SalesforceConnector(settings, retry=NO_SLEEP)


@pytest.mark.integration
def test_450_statuses_take_three_calls_and_sending_them_again_creates_nothing(sf):
    connector = connector_for(sf)
    records = [status(f"INV-{i:04d}") for i in range(450)]

    first = connector.upsert_collection(INVOICE, NUMBER, records)
    again = connector.upsert_collection(
        INVOICE, NUMBER, [status(f"INV-{i:04d}", Status__c="Paid") for i in range(450)]
    )

    assert sf.calls_by_kind["collection_upsert"] == 6
    assert all(r.ok and r.created for r in first)
    assert all(r.ok and not r.created for r in again)
    assert [r.id for r in again] == [r.id for r in first]
    stored = sf.records(INVOICE)
    assert len(stored) == 450
    assert {r["Status__c"] for r in stored} == {"Paid"}
    assert stored[0]["Amount_Due__c"] == Decimal("120.50")


@pytest.mark.integration
def test_a_record_with_an_unknown_field_fails_alone(sf):
    connector = connector_for(sf)
    records = [status("INV-1"), status("INV-2", Colour__c="red"), status("INV-3")]

    results = connector.upsert_collection(INVOICE, NUMBER, records)

    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, FatalError)  # a mapping names a field the org lacks
    assert "Colour__c" in str(results[1].error)
    assert sorted(r[NUMBER] for r in sf.records(INVOICE)) == ["INV-1", "INV-3"]


@pytest.mark.integration
def test_the_sandbox_refuses_values_outside_the_restricted_status_picklist(sf):
    (result,) = connector_for(sf).upsert_collection(INVOICE, NUMBER, [status("INV-1", Status__c="paid")])

    assert isinstance(result.error, RecordError)
    assert result.error.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sf.records(INVOICE) == []


@pytest.mark.integration
def test_a_locked_row_is_retried_alone_against_the_sandbox(sf):
    sf.lock_records(INVOICE, ["INV-2"])

    results = connector_for(sf).upsert_collection(INVOICE, NUMBER, [status("INV-1"), status("INV-2")])

    assert [r.ok for r in results] == [True, True]
    assert sf.calls_by_kind["collection_upsert"] == 2
    assert len(sf.records(INVOICE)) == 2


@pytest.mark.integration
def test_upserting_by_a_field_that_is_not_an_external_id_stops_with_a_fatal_error(sf):
    results = connector_for(sf).upsert_collection(INVOICE, "Name", [status("INV-1"), status("INV-2")])

    assert all(isinstance(r.error, FatalError) for r in results)
    assert "not an External ID" in str(results[0].error)
    assert sf.records(INVOICE) == []


def raw_patch(sf: SalesforceSandbox, body: dict[str, Any]) -> requests.Response:
    connector = connector_for(sf)
    connector.connect()
    session = requests.Session()
    session.trust_env = False
    return session.patch(
        f"{sf.base_url}/services/data/v59.0/composite/sobjects/{INVOICE}/{NUMBER}",
        data=json.dumps(body),
        headers={
            "Authorization": f"Bearer {connector.client.session_id}",
            "Content-Type": "application/json",
        },
        verify=str(sf.cert_file),
        timeout=10,
    )


@pytest.mark.integration
def test_more_than_200_records_are_refused_as_salesforce_does(sf):
    records = [{"attributes": {"type": INVOICE}, NUMBER: f"INV-{i}"} for i in range(201)]

    answer = raw_patch(sf, {"allOrNone": False, "records": records})

    assert answer.status_code == 400
    assert answer.json() == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    assert sf.records(INVOICE) == []


@pytest.mark.integration
def test_all_or_none_rolls_back_the_valid_records_too(sf):
    records = [
        {"attributes": {"type": INVOICE}, NUMBER: "INV-1", "Name": "INV-1"},
        {"attributes": {"type": INVOICE}, NUMBER: "INV-2", "Nope__c": 1},
    ]

    answer = raw_patch(sf, {"allOrNone": True, "records": records})

    assert answer.status_code == 200
    first, second = answer.json()
    assert first["success"] is False
    assert first["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert second["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert sf.records(INVOICE) == []


# -- the destination and the shipped spec ------------------------------------------------------------


def canonical_status(
    number: str, state: str, paid: str, due: str, paid_on: str | None = None
) -> dict[str, Any]:
    doc = {
        "invoice_id": f"inv_{number}",
        "number": number,
        "status": state,
        "currency": "EUR",
        "amount_paid": paid,
        "amount_due": due,
        "total": Decimal("100.00"),
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "paid_on": None,
        "customer_id": "cus_1",
    }
    if paid_on:
        doc["paid_on"] = paid_on
    return doc


@pytest.mark.integration
def test_invoice_statuses_reach_billsync_invoice_records_through_the_spec_and_the_destination(sf):
    spec = load_spec(SPEC, schema_for)
    mapper = Mapper(spec, None)
    destination = SalesforceDestination(connector_for(sf))
    docs = [
        canonical_status("INV-1", "open", "0", "100.00"),
        canonical_status("INV-2", "partially_paid", "40.10", "59.90"),
        # the same invoice twice in one batch: sent once, the later state wins, both rows get its Id
        canonical_status("INV-1", "paid", "100.00", "0", "2026-11-25"),
    ]
    writes = [
        Write(key=f"k{i}", object=spec.object, operation="create", payload=mapper.map(doc))
        for i, doc in enumerate(docs)
    ]

    outcomes = destination.write(writes)

    assert [o.ok for o in outcomes] == [True, True, True]
    assert outcomes[0].entity == outcomes[2].entity
    by_number = {r[NUMBER]: r for r in sf.records(INVOICE)}
    assert set(by_number) == {"INV-1", "INV-2"}
    assert by_number["INV-1"]["Status__c"] == "Paid" and by_number["INV-1"]["Paid_On__c"] == "2026-11-25"
    assert by_number["INV-2"]["Status__c"] == "Partially Paid"
    assert by_number["INV-2"]["Amount_Paid__c"] == Decimal("40.10")
    assert by_number["INV-2"]["Total__c"] == Decimal("100.00")
    assert by_number["INV-2"]["Due_Date__c"] == "2026-12-01"
    remote_id, version = destination.identity(outcomes[1].entity or {})
    assert remote_id == by_number["INV-2"]["Id"] and version == ""

    found = destination.find_by(spec.object, NUMBER, ["INV-2", "INV-404"])
    assert list(found) == ["INV-2"]
    assert destination.identity(found["INV-2"]) == (
        by_number["INV-2"]["Id"],
        by_number["INV-2"]["SystemModstamp"],
    )
    assert destination.get(spec.object, remote_id)["Status__c"] == "Partially Paid"


@pytest.mark.integration
def test_a_destination_without_an_external_id_for_an_object_refuses_to_guess(sf):
    destination = SalesforceDestination(connector_for(sf))

    (outcome,) = destination.write(
        [Write(key="k", object="Account", operation="create", payload={"Name": "A"})]
    )

    assert isinstance(outcome.error, FatalError) and "match_on" in str(outcome.error)
    assert destination.api_calls == 0
