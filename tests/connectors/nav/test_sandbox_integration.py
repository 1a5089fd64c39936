"""The connector on real zeep against the NAV sandbox over loopback HTTPS."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import AuthError, OutcomeUnknownError, RateLimitedError, RecordError, RetryableError
from connectors.nav.client import NavConnector, remote_identity
from connectors.nav.errors import DuplicateRecordError, RecordNotFoundError, StaleRecordError
from connectors.nav.sandbox import NavSandbox
from connectors.nav.wsdl import codeunit_wsdl, page_wsdl

pytestmark = pytest.mark.integration

Connect = Callable[..., NavConnector]


def customers(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [
        {"No": f"C{i:05d}", "Name": f"Customer {i}", "City": "Lyon", "Currency_Code": "EUR"}
        for i in range(start, start + n)
    ]


def invoice(customer: str, number: str, qty: str = "3", price: str = "19.99") -> dict[str, Any]:
    return {
        "Sell_to_Customer_No": customer,
        "External_Document_No": number,
        "Posting_Date": dt.date(2026, 11, 1),
        "Due_Date": dt.date(2026, 12, 1),
        "Currency_Code": "EUR",
        "SalesLines": {
            "Sales_Invoice_Line": [
                {
                    "Type": "Item",
                    "No": "SEAT",
                    "Description": "Seat licence",
                    "Quantity": Decimal(qty),
                    "Unit_Price": Decimal(price),
                }
            ]
        },
    }


# -- WSDLs ---------------------------------------------------------------------------------------
def test_wsdl_is_fetched_once_per_service_and_a_restart_reads_it_from_the_cache(
    nav: NavSandbox, connect: Connect, tmp_path: Path
) -> None:
    nav.seed("Customer", customers(1))
    first = connect(wsdl_cache_dir=str(tmp_path / "wsdl"))
    for _ in range(3):
        assert first.read("Customer", "C00001") is not None
    assert nav.wsdl_fetches == 1 and first.wsdl_fetches == 1  # one zeep client per service

    restarted = connect(wsdl_cache_dir=str(tmp_path / "wsdl"))
    assert restarted.read("Customer", "C00001") is not None
    assert restarted.wsdl_fetches == 0 and nav.wsdl_fetches == 1
    assert restarted.api_calls == 1  # only the Read itself


def test_wsdls_saved_from_the_server_load_from_wsdl_dir_and_calls_go_to_the_configured_url(
    nav: NavSandbox, connect: Connect, tmp_path: Path
) -> None:
    # saved WSDLs name the server they came from; the connector must not send there
    elsewhere = "http://navtest:7080/DynamicsNAV/WS/CRONUS-Company-Ltd"
    (tmp_path / "page-Customer.xml").write_text(page_wsdl("Customer", f"{elsewhere}/Page/Customer"))
    (tmp_path / "codeunit-PaymentStatus.xml").write_text(
        codeunit_wsdl("PaymentStatus", f"{elsewhere}/Codeunit/PaymentStatus")
    )
    connector = connect(wsdl_dir=str(tmp_path))
    connector.create("Customer", customers(1)[0])
    assert connector.record_payment_status("INV-1", "Open", Decimal("0"), Decimal("10.00"), "EUR")
    assert nav.wsdl_fetches == 0 and nav.count("Customer") == 1


# -- writes and reads ----------------------------------------------------------------------------
def test_create_multiple_250_customers_in_one_call(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    created = connector.create_multiple("Customer", [{**c, "No": c["No"].lower()} for c in customers(250)])
    assert len(created) == 250 and nav.count("Customer") == 250
    assert nav.calls_by_operation["Customer.CreateMultiple"] == 1
    assert created[0]["No"] == "C00001"  # NAV Code fields are upper case
    assert len({c["Key"] for c in created}) == 250


def test_read_multiple_pages_with_bookmark_key_until_an_empty_page(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(250))
    connector = connect()
    rows = list(connector.read_multiple("Customer", set_size=100))
    assert [r["No"] for r in rows] == [f"C{i:05d}" for i in range(1, 251)]
    assert nav.calls_by_operation["Customer.ReadMultiple"] == 4  # 100 + 100 + 50 + the empty page


def test_read_multiple_filters(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(30))
    nav.modify("Customer", "C00007", City="Paris")
    connector = connect()
    assert [r["No"] for r in connector.read_multiple("Customer", {"City": "Paris"})] == ["C00007"]
    assert len(list(connector.read_multiple("Customer", {"No": "C00010..C00019", "City": "<>Paris"}))) == 10


def test_find_by_looks_up_many_values_with_or_filters(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(5))
    nav.seed("Customer", [{"No": "C90001", "Name": "Smith & Sons"}, {"No": "C90002", "Name": "A|B Ltd"}])
    connector = connect()
    found = connector.find_by("Customer", "Name", ["Customer 2", "Smith & Sons", "A|B Ltd", "Nobody"])
    assert {k: v["No"] for k, v in found.items()} == {
        "Customer 2": "C00002",
        "Smith & Sons": "C90001",
        "A|B Ltd": "C90002",
    }
    by_no = connector.find_by("Customer", "No", ["c00001", "C00003"])  # asked in lower case, found anyway
    assert sorted(by_no) == ["C00003", "c00001"]


def test_sales_invoice_gets_a_number_from_the_series_and_exact_money(
    nav: NavSandbox, connect: Connect
) -> None:
    nav.seed("Customer", customers(1))
    connector = connect()
    created = connector.create("SalesInvoice", invoice("C00001", "INV-000001", qty="3", price="19.99"))
    assert created["No"] == "S-INV102201"
    assert created["Sell_to_Customer_Name"] == "Customer 1"
    line = created["SalesLines"]["Sales_Invoice_Line"][0]
    assert line["Line_Amount"] == Decimal("59.97") and isinstance(line["Unit_Price"], Decimal)
    again = connector.read("SalesInvoice", created["No"])
    assert again == created
    assert connector.read("SalesInvoice", "S-INV999999") is None


def test_money_as_float_is_refused_before_anything_is_sent(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(1))
    connector = connect()
    bad = invoice("C00001", "INV-1")
    bad["SalesLines"]["Sales_Invoice_Line"][0]["Unit_Price"] = 19.99
    with pytest.raises(TypeError, match="Decimal"):
        connector.create("SalesInvoice", bad)
    assert nav.count("SalesInvoice") == 0


def test_invoice_for_an_unknown_customer_is_a_record_error(nav: NavSandbox, connect: Connect) -> None:
    with pytest.raises(RecordNotFoundError, match="The Customer does not exist"):
        connect().create("SalesInvoice", invoice("C404", "INV-1"))


def test_update_with_a_stale_key_fails_and_succeeds_after_a_re_read(
    nav: NavSandbox, connect: Connect
) -> None:
    connector = connect()
    created = connector.create("Customer", customers(1)[0])
    no, key = remote_identity(created)
    nav.modify("Customer", no, Phone_No="+33 1 23")  # another NAV user edits it
    with pytest.raises(StaleRecordError, match="Another user has modified the record"):
        connector.update("Customer", {"Key": key, "City": "Nice"})
    fresh = connector.read("Customer", no)
    assert fresh is not None
    updated = connector.update("Customer", {"Key": fresh["Key"], "City": "Nice"})
    assert updated["City"] == "Nice" and updated["Phone_No"] == "+33 1 23"
    assert updated["Key"] != fresh["Key"]  # every modification gives a new Key


def test_update_adds_invoice_lines_and_keeps_the_others(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(1))
    connector = connect()
    created = connector.create("SalesInvoice", invoice("C00001", "INV-1"))
    extra = {"Type": "Item", "No": "SUPPORT", "Quantity": Decimal("1"), "Unit_Price": Decimal("100.00")}
    updated = connector.update(
        "SalesInvoice", {"Key": created["Key"], "SalesLines": {"Sales_Invoice_Line": [extra]}}
    )
    assert [line["No"] for line in updated["SalesLines"]["Sales_Invoice_Line"]] == ["SEAT", "SUPPORT"]


def test_duplicate_no_is_a_duplicate_record_error_and_create_multiple_is_all_or_nothing(
    nav: NavSandbox, connect: Connect
) -> None:
    nav.seed("Customer", customers(1, start=3))
    connector = connect()
    with pytest.raises(DuplicateRecordError, match="already exists"):
        connector.create("Customer", customers(1, start=3)[0])
    with pytest.raises(DuplicateRecordError):
        connector.create_multiple("Customer", customers(5))
    assert nav.count("Customer") == 1  # the other four were rolled back with it


def test_create_batch_isolates_the_bad_records(nav: NavSandbox, connect: Connect) -> None:
    nav.seed("Customer", customers(1, start=3))
    connector = NavConnector(nav.settings(), batch_size=4, sleep=lambda s: None)
    results = connector.create_batch("Customer", customers(10))
    assert [r.ok for r in results] == [True, True, False] + [True] * 7
    assert isinstance(results[2].error, DuplicateRecordError)
    assert nav.count("Customer") == 10
    connector.close()


def test_a_write_that_times_out_is_outcome_unknown_and_found_by_looking_it_up(
    nav: NavSandbox, connect: Connect
) -> None:
    nav.seed("Customer", customers(1))
    connector = connect(operation_timeout_seconds=0.3)
    connector.read("Customer", "C00001")  # WSDL loaded
    nav.delay_next(1.0)
    with pytest.raises(OutcomeUnknownError):
        connector.create("SalesInvoice", invoice("C00001", "INV-000042"))
    assert nav.calls_by_operation["SalesInvoice.Create"] == 1  # not resent blindly
    found = connector.find_by("SalesInvoice", "External_Document_No", ["INV-000042"])
    assert found["INV-000042"]["No"] == "S-INV102201"  # it was applied: bind, do not create again


def test_server_faults_are_retried_and_applied_once(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    connector.read("Customer", "X")
    nav.fail_next(500, 2)  # NAV faults roll back, so resending a write is safe
    connector.create("Customer", customers(1)[0])
    assert nav.count("Customer") == 1 and nav.calls_by_operation["Customer.Create"] == 3
    nav.fail_next(503, 5)
    with pytest.raises(RetryableError):
        connector.read("Customer", "C00001")


def test_wrong_password_is_an_auth_error_without_the_password(nav: NavSandbox, connect: Connect) -> None:
    with pytest.raises(AuthError) as raised:
        connect(password="Wr0ng-Secret-123").read("Customer", "C00001")
    assert "Wr0ng-Secret-123" not in str(raised.value)


def test_payment_status_is_recorded_once_per_invoice_and_status(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    args = ("INV-000001", "Partially Paid", Decimal("40.00"), Decimal("19.97"), "EUR", dt.date(2026, 11, 20))
    assert connector.record_payment_status(*args) is True
    assert connector.record_payment_status(*args) is False  # resent after a timeout: nothing new
    assert (
        connector.record_payment_status("INV-000001", "Paid", Decimal("59.97"), Decimal("0"), "EUR") is True
    )
    entries = nav.payment_statuses()
    assert [(e["invoiceNo"], e["status"]) for e in entries] == [
        ("INV-000001", "Partially Paid"),
        ("INV-000001", "Paid"),
    ]
    assert entries[0]["amountPaid"] == Decimal("40.00") and entries[1]["paidOn"] is None
    with pytest.raises(RecordError, match="is not valid"):
        connector.record_payment_status("INV-000001", "Settled", Decimal("0"), Decimal("0"), "EUR")


def test_state_survives_save_and_load(nav: NavSandbox, connect: Connect, tmp_path: Path) -> None:
    connector = connect()
    nav.seed("Customer", customers(1))
    created = connector.create("SalesInvoice", invoice("C00001", "INV-1", price="0.10"))
    connector.record_payment_status("INV-1", "Open", Decimal("0"), Decimal("0.30"), "EUR")
    nav.save_state(tmp_path / "nav.json")
    with NavSandbox() as restarted:
        restarted.load_state(tmp_path / "nav.json")
        assert restarted.records("SalesInvoice") == nav.records("SalesInvoice")
        again = NavConnector(restarted.settings(), sleep=lambda s: None)
        updated = again.update("SalesInvoice", {"Key": created["Key"], "Due_Date": dt.date(2027, 1, 1)})
        assert updated["SalesLines"]["Sales_Invoice_Line"][0]["Line_Amount"] == Decimal("0.30")
        assert again.create("SalesInvoice", invoice("C00001", "INV-2"))["No"] == "S-INV102202"
        assert len(restarted.payment_statuses()) == 1
        again.close()


# -- random faults (the base class's --faults) and once-per-run events ---------------------------
@pytest.mark.parametrize(
    ("kind", "expected"),
    [("server_error", RetryableError), ("unavailable", RetryableError), ("throttle", RateLimitedError)],
)
def test_random_faults_come_with_nav_bodies_and_the_wsdl_is_never_faulted(
    kind: str, expected: type[Exception], nav: NavSandbox, connect: Connect
) -> None:
    nav.set_faults(1.0, seed=1, kinds=[kind])
    connector = NavConnector(nav.settings(), retry_attempts=1)
    with pytest.raises(expected):
        connector.read("Customer", "C00001")  # the WSDL loaded; the Read was faulted
    assert nav.wsdl_fetches == 1 and nav.faults_injected[kind] == 1
    connector.close()


def test_a_dropped_connection_after_a_write_is_outcome_unknown(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    connector.read("Customer", "X")
    nav.set_faults(1.0, seed=1, kinds=["drop"], applied=1.0)
    with pytest.raises(OutcomeUnknownError):
        connector.create("Customer", customers(1)[0])
    nav.set_faults(0.0)
    assert nav.count("Customer") == 1
    assert list(connector.find_by("Customer", "No", ["C00001"])) == ["C00001"]


def test_the_run_event_makes_the_next_update_stale_and_retry_stale_recovers(
    nav: NavSandbox, connect: Connect
) -> None:
    connector = connect()
    created = connector.create("Customer", customers(1)[0])
    assert nav.arm_run_events() == ["stale_key"]
    updated = connector.update(
        "Customer", {"Key": created["Key"], "No": created["No"], "City": "Nice"}, retry_stale=True
    )
    assert updated["City"] == "Nice" and nav.faults_injected["stale_key"] == 1
    assert nav.calls_by_operation["Customer.Update"] == 2


def test_create_batch_stops_after_a_timeout_and_says_which_records_were_never_sent(nav: NavSandbox) -> None:
    connector = NavConnector(nav.settings(operation_timeout_seconds=0.3), batch_size=4, sleep=lambda s: None)
    connector.read("Customer", "X")
    nav.delay_next(1.0)
    results = connector.create_batch("Customer", customers(10))
    assert all(isinstance(r.error, OutcomeUnknownError) for r in results[:4])  # look these up
    assert all(type(r.error) is RetryableError for r in results[4:])  # these never left: just resend
    assert nav.calls_by_operation["Customer.CreateMultiple"] == 1
    assert sorted(connector.find_by("Customer", "No", [f"C{i:05d}" for i in range(1, 11)])) == [
        f"C{i:05d}" for i in range(1, 5)
    ]
    connector.close()
