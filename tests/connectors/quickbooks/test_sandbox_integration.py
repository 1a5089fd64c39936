"""The connector against the QBO sandbox over real loopback HTTPS."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.errors import AuthError, FatalError, OutcomeUnknownError, RecordError
from connectors.quickbooks.auth import SessionAuthClient
from connectors.quickbooks.client import BatchItem, QuickBooksConnector
from connectors.quickbooks.errors import DuplicateNameError, StaleObjectError
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore

pytestmark = pytest.mark.integration

BATCH_ROUTE = "POST /v3/company/{realm}/batch"


def connect(
    qbo: QuickBooksSandbox, store: MemoryTokenStore | None = None, **kwargs: Any
) -> QuickBooksConnector:
    settings_overrides = kwargs.pop("settings", {})
    kwargs.setdefault("sleep", lambda seconds: None)
    return QuickBooksConnector(qbo.settings(**settings_overrides), store or MemoryTokenStore(), **kwargs)


def invoice(customer_id: str, item_id: str, doc: str, qty: str = "3", price: str = "19.99") -> dict[str, Any]:
    amount = Decimal(qty) * Decimal(price)
    return {
        "DocNumber": doc,
        "CustomerRef": {"value": customer_id},
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": amount,
                "SalesItemLineDetail": {
                    "ItemRef": {"value": item_id},
                    "Qty": Decimal(qty),
                    "UnitPrice": Decimal(price),
                },
            }
        ],
    }


@pytest.fixture
def company(qbo: QuickBooksSandbox) -> tuple[str, str]:
    customer = qbo.seed("Customer", [{"DisplayName": "Acme GmbH"}])[0]
    item = qbo.seed("Item", [{"Name": "Seat licence", "UnitPrice": Decimal("19.99")}])[0]
    return customer["Id"], item["Id"]


def test_push_95_invoices_in_4_batches_and_a_repeat_duplicates_nothing(
    qbo: QuickBooksSandbox, company: tuple[str, str]
) -> None:
    customer_id, item_id = company
    items = [
        BatchItem(f"outbox-{n}", "Invoice", "create", invoice(customer_id, item_id, f"INV-{n}"))
        for n in range(95)
    ]
    qb = connect(qbo)

    results = qb.batch(items)
    assert qbo.calls_by_route[BATCH_ROUTE] == 4
    assert all(r.ok for r in results)
    assert [r.entity["DocNumber"] for r in results if r.entity] == [f"INV-{n}" for n in range(95)]
    assert results[0].entity is not None and results[0].entity["TotalAmt"] == Decimal("59.97")
    assert qbo.count("Invoice") == 95

    again = qb.batch(items)  # e.g. the dispatcher crashed before marking the rows done
    assert qbo.count("Invoice") == 95
    assert [r.entity["Id"] for r in again if r.entity] == [r.entity["Id"] for r in results if r.entity]


def test_batch_items_fail_one_by_one(qbo: QuickBooksSandbox, company: tuple[str, str]) -> None:
    customer_id, item_id = company
    results = connect(qbo).batch(
        [
            BatchItem("a", "Customer", "create", {"DisplayName": "Acme GmbH"}),
            BatchItem("b", "Invoice", "create", invoice(customer_id, item_id, "OK-1")),
            BatchItem("c", "Invoice", "create", invoice("999", item_id, "BAD-1")),
        ]
    )
    assert [r.ok for r in results] == [False, True, False]
    assert isinstance(results[0].error, DuplicateNameError)
    assert isinstance(results[2].error, RecordError) and results[2].error.code == "2500"


def test_refresh_token_rotation_across_two_instances_sharing_a_store(qbo: QuickBooksSandbox) -> None:
    store = MemoryTokenStore()
    first = connect(qbo, store)
    assert store.saves == 1 and qbo.refreshes == 1
    second = connect(qbo, store)  # adopts the stored access token: no refresh
    assert qbo.refreshes == 1

    qbo.expire_access_tokens()
    assert first.count("Customer") == 0  # 401, refresh with the stored token, saved, retried
    assert qbo.refreshes == 2 and store.saves == 2
    assert store.tokens is not None and store.tokens.refresh_token == qbo.current_refresh_token
    assert second.count("Customer") == 0  # 401, finds the newer token in the store: no refresh
    assert qbo.refreshes == 2

    with pytest.raises(AuthError):  # the initial refresh token was rotated away
        connect(qbo, MemoryTokenStore())


def test_throttled_once_then_success(qbo: QuickBooksSandbox) -> None:
    waits: list[float] = []
    qb = connect(qbo, sleep=waits.append)
    qbo.throttle_next(1, retry_after=0)
    created = qb.create("Customer", {"DisplayName": "Retry Ltd"}, request_id="c-1")
    assert created["DisplayName"] == "Retry Ltd"
    assert waits == [0.0]
    assert qbo.count("Customer") == 1


def test_server_error_then_success(qbo: QuickBooksSandbox) -> None:
    qb = connect(qbo)
    qbo.fail_next(503, 1)
    qbo.fail_next(500, 1)
    assert qb.count("Customer") == 0
    assert qb.api_calls == 4  # token, 503, 500, success


def test_count_and_paging_over_2500_rows(qbo: QuickBooksSandbox) -> None:
    qbo.seed("Customer", ({"DisplayName": f"Customer {n:04d}", "Active": n % 2 == 0} for n in range(2500)))
    qb = connect(qbo)
    qbo.reset_counters()
    assert qb.count("Customer") == 2500
    assert qb.count("Customer", "Active = true") == 1250
    rows = list(qb.query("SELECT * FROM Customer ORDERBY DisplayName"))
    assert len(rows) == 2500 and len({row["Id"] for row in rows}) == 2500
    assert rows[0]["DisplayName"] == "Customer 0000" and rows[-1]["DisplayName"] == "Customer 2499"
    assert qbo.calls == 2 + 3


def test_stale_sync_token_and_sparse_update(qbo: QuickBooksSandbox) -> None:
    qb = connect(qbo)
    created = qb.create("Customer", {"DisplayName": "Old Name"}, request_id="c-2")
    updated = qb.update(
        "Customer",
        {"Id": created["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "New"},
        request_id="u-1",
    )
    assert updated["SyncToken"] == "1" and updated["DisplayName"] == "New"
    with pytest.raises(StaleObjectError):
        qb.update(
            "Customer", {"Id": created["Id"], "SyncToken": "0", "DisplayName": "Newer"}, request_id="u-2"
        )
    assert qb.get("Customer", created["Id"])["DisplayName"] == "New"


def test_invoice_validation_like_qbo(qbo: QuickBooksSandbox, company: tuple[str, str]) -> None:
    customer_id, item_id = company
    qb = connect(qbo)
    with pytest.raises(RecordError, match="Line"):
        qb.create("Invoice", {"CustomerRef": {"value": customer_id}, "Line": []}, request_id="i-1")
    with pytest.raises(RecordError, match="Invalid Reference Id"):
        qb.create("Invoice", invoice(customer_id, "404", "X"), request_id="i-2")
    with pytest.raises(RecordError, match="UnitPrice \\* Qty"):
        bad = invoice(customer_id, item_id, "X")
        bad["Line"][0]["Amount"] = Decimal("1.00")
        qb.create("Invoice", bad, request_id="i-3")
    euro = qb.create(
        "Customer", {"DisplayName": "Euro SA", "CurrencyRef": {"value": "EUR"}}, request_id="c-3"
    )
    with pytest.raises(RecordError, match="currency"):
        qb.create(
            "Invoice",
            {**invoice(euro["Id"], item_id, "X"), "CurrencyRef": {"value": "USD"}},
            request_id="i-4",
        )
    ok = qb.create("Invoice", invoice(euro["Id"], item_id, "EU-1", "0.5", "0.03"), request_id="i-5")
    assert ok["TotalAmt"] == Decimal("0.02") and ok["CurrencyRef"]["value"] == "EUR"
    assert qbo.count("Invoice") == 1


def test_timed_out_write_is_resent_with_its_request_id_and_applied_once(qbo: QuickBooksSandbox) -> None:
    qb = connect(qbo, settings={"timeout_seconds": 0.3})
    qbo.stall_next(0.6)
    created = qb.create("Customer", {"DisplayName": "Slow Inc"}, request_id="c-slow")
    assert created["DisplayName"] == "Slow Inc"
    assert qbo.count("Customer") == 1


def test_unknown_outcome_is_looked_up_before_retrying(qbo: QuickBooksSandbox) -> None:
    qb = connect(qbo, retry_attempts=1, settings={"timeout_seconds": 0.3})
    qbo.stall_next(0.6)
    with pytest.raises(OutcomeUnknownError):
        qb.create("Customer", {"DisplayName": "Maybe Corp"}, request_id="c-maybe")
    found = qb.find_by("Customer", "DisplayName", ["Maybe Corp", "Never Corp"])
    assert set(found) == {"Maybe Corp"}


def test_find_invoices_by_doc_number(qbo: QuickBooksSandbox, company: tuple[str, str]) -> None:
    customer_id, item_id = company
    qbo.seed("Invoice", [invoice(customer_id, item_id, f"D-{n}") for n in range(120)])
    found = connect(qbo).find_by("Invoice", "DocNumber", [f"D-{n}" for n in range(0, 120, 2)] + ["D-none"])
    assert len(found) == 60 and found["D-4"]["DocNumber"] == "D-4"


def test_sandbox_enforces_bearer_token_and_batch_limit(qbo: QuickBooksSandbox) -> None:
    url = f"{qbo.base_url}/v3/company/{qbo.realm_id}"
    session = requests.Session()
    session.trust_env = False
    session.verify = str(qbo.cert_file)
    refused = session.post(
        f"{url}/query", data="SELECT * FROM Customer", headers={"Authorization": "Bearer nope"}
    )
    assert refused.status_code == 401 and refused.json()["fault"]["error"][0]["code"] == "3200"

    qb = connect(qbo)
    headers = {"Authorization": f"Bearer {qb.tokens.access_token()}", "Content-Type": "application/json"}
    too_many = {
        "BatchItemRequest": [
            {"bId": str(n), "operation": "create", "Customer": {"DisplayName": f"{n}"}} for n in range(31)
        ]
    }
    answer = session.post(f"{url}/batch", json=too_many, headers=headers)
    assert answer.status_code == 400 and "Fault" in answer.json()
    assert qbo.count("Customer") == 0

    page = session.post(
        f"{url}/query",
        data="select * from Customer STARTPOSITION 0",
        headers={**headers, "Content-Type": "application/text"},
    )
    assert page.json()["Fault"]["Error"][0]["code"] == "4001"


def test_wrong_client_secret_is_fatal(qbo: QuickBooksSandbox) -> None:
    with pytest.raises(FatalError):
        connect(qbo, settings={"client_secret": "wrong"})


def test_intuit_auth_client_works_with_the_sandbox_discovery_document(qbo: QuickBooksSandbox) -> None:
    calls: list[int] = []
    client = SessionAuthClient(
        timeout=5,
        verify=str(qbo.cert_file),
        on_request=lambda: calls.append(1),
        static_discovery=None,
        client_id=qbo.client_id,
        client_secret=qbo.client_secret,
        redirect_uri="https://localhost/cb",
        environment=qbo.discovery_url,
    )
    assert client.token_endpoint == qbo.token_url
    client.refresh(refresh_token=qbo.initial_refresh_token)
    assert client.refresh_token == qbo.current_refresh_token != qbo.initial_refresh_token
    assert client.expires_in == 3600 and len(calls) == 2


def test_sandbox_bodies_have_the_shapes_of_the_real_ones(
    qbo: QuickBooksSandbox, company: tuple[str, str], fixture_text: Callable[[str], str]
) -> None:
    real_batch = json.loads(fixture_text("python-quickbooks/batch_response_success_and_fault.json"))
    real_fault = real_batch["BatchItemResponse"][1]["Fault"]
    qb = connect(qbo)
    url = f"{qbo.base_url}/v3/company/{qbo.realm_id}/batch"
    body = {
        "BatchItemRequest": [
            {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Acme GmbH"}},
            {"bId": "2", "operation": "create", "Customer": {"DisplayName": "Fresh"}},
        ]
    }
    answer = qb.qb.session.post(
        url, data=json.dumps(body), headers={"Content-Type": "application/json"}
    ).json()
    assert set(answer) == set(real_batch)
    fault_item, ok_item = answer["BatchItemResponse"]
    assert set(fault_item) == {"bId", "Fault"} and set(ok_item) == {"bId", "Customer"}
    assert set(fault_item["Fault"]) == set(real_fault)
    assert set(fault_item["Fault"]["Error"][0]) == set(real_fault["Error"][0])
    assert fault_item["Fault"]["Error"][0]["code"] == real_fault["Error"][0]["code"] == "6240"
    customer = ok_item["Customer"]
    assert {"Id", "SyncToken", "MetaData", "domain", "sparse"} <= set(customer)
    assert set(customer["MetaData"]) == {"CreateTime", "LastUpdatedTime"}
    assert customer["domain"] == "QBO" and customer["sparse"] is False


def test_sandbox_state_survives_a_restart(
    tmp_path: Path, company: tuple[str, str], qbo: QuickBooksSandbox
) -> None:
    customer_id, item_id = company
    store = MemoryTokenStore()
    items = [BatchItem("row-1", "Invoice", "create", invoice(customer_id, item_id, "R-1"))]
    first = connect(qbo, store).batch(items)
    qbo.save_state(tmp_path / "qbo.json")

    with QuickBooksSandbox() as again:
        again.load_state(tmp_path / "qbo.json")
        qb = connect(again, store)  # the stored access token is still valid there
        assert again.refreshes == 0
        assert qb.batch(items)[0].entity == first[0].entity  # same request id: not applied again
        assert again.count("Invoice") == 1
        assert again.entities("Invoice")[0]["TotalAmt"] == Decimal("59.97")
        again.expire_access_tokens()
        assert qb.count("Invoice") == 1  # the rotated refresh token was kept too
