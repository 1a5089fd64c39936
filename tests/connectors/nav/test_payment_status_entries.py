"""Payment statuses billsync records in NAV, read back through the read-only page ``PaymentStatusEntries``.

What an auditor checks: the statuses are in the ERP, readable through its SOAP API (not only through
the sandbox's internals), each invoice's current status is its last entry, paging loses nothing,
and the page cannot be written to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from lxml import etree

from connectors.errors import FatalError
from connectors.nav.client import NavConnector
from connectors.nav.sandbox import NavSandbox
from connectors.nav.wsdl import page_namespace

pytestmark = pytest.mark.integration

Connect = Callable[..., NavConnector]
PAGE = "PaymentStatusEntries"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
XSD = "{http://www.w3.org/2001/XMLSchema}"


def record_open_then_paid(connector: NavConnector) -> None:
    """INV-000001 open then paid, INV-000002 open (entries 1, 2, 3)."""
    connector.record_payment_status("INV-000001", "Open", Decimal("0"), Decimal("59.97"), "EUR")
    connector.record_payment_status("INV-000002", "Open", Decimal("0"), Decimal("120.00"), "USD")
    connector.record_payment_status(
        "INV-000001", "Paid", Decimal("59.97"), Decimal("0"), "EUR", dt.date(2026, 11, 20)
    )


def reads(nav: NavSandbox) -> int:
    return nav.calls_by_operation[f"{PAGE}.ReadMultiple"]


def test_recorded_statuses_are_read_back_through_the_soap_api(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    record_open_then_paid(connector)

    entries = connector.payment_statuses()

    assert reads(nav) >= 1  # answered by the page service, not by the sandbox's internals
    assert [(e["Entry_No"], e["Invoice_No"], e["Status"]) for e in entries] == [
        (1, "INV-000001", "Open"),
        (2, "INV-000002", "Open"),
        (3, "INV-000001", "Paid"),
    ]
    paid = entries[2]
    assert paid["Amount_Paid"] == Decimal("59.97") and isinstance(paid["Amount_Paid"], Decimal)
    assert paid["Amount_Due"] == Decimal("0") and paid["Currency_Code"] == "EUR"
    assert paid["Paid_On"] == dt.date(2026, 11, 20)
    assert "Paid_On" not in entries[0]  # recorded without a date
    assert entries[1]["Amount_Due"] == Decimal("120.00") and entries[1]["Currency_Code"] == "USD"
    assert len({e["Key"] for e in entries}) == 3


def test_a_status_filter_returns_only_that_status(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    record_open_then_paid(connector)
    connector.record_payment_status(
        "INV-000003", "Partially Paid", Decimal("10.00"), Decimal("5.00"), "EUR", dt.date(2026, 11, 21)
    )

    assert [(e["Invoice_No"], e["Status"]) for e in connector.payment_statuses("Paid")] == [
        ("INV-000001", "Paid")  # not the partially paid one
    ]
    assert [e["Invoice_No"] for e in connector.payment_statuses("Open")] == ["INV-000001", "INV-000002"]
    # NAV publishes the option as Partially_Paid; the connector speaks billsync's statuses both ways
    partial = connector.payment_statuses("Partially Paid")
    assert [(e["Invoice_No"], e["Status"]) for e in partial] == [("INV-000003", "Partially Paid")]
    assert connector.payment_statuses("Void") == []
    # other fields filter like on any page; Invoice_No is a Code field, so case does not matter
    by_invoice = connector.read_multiple(PAGE, {"Invoice_No": "inv-000001"})
    assert [row["Entry_No"] for row in by_invoice] == [1, 3]

    before = reads(nav)
    with pytest.raises(ValueError, match="unknown payment status"):
        connector.payment_statuses("Settled")
    assert reads(nav) == before  # refused before asking NAV


def test_latest_status_per_invoice_is_its_last_entry(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    record_open_then_paid(connector)

    latest = connector.latest_payment_status()

    assert latest == {"INV-000001": "Paid", "INV-000002": "Open"}
    assert sum(status == "Paid" for status in latest.values()) == 1  # the demo's "paid in the ERP"
    # an "Open" resent after a timeout records nothing, so it cannot demote the paid invoice
    assert not connector.record_payment_status("INV-000001", "Open", Decimal("0"), Decimal("59.97"), "EUR")
    assert connector.latest_payment_status()["INV-000001"] == "Paid"


def test_paging_with_small_set_sizes_loses_and_repeats_nothing(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    for i in range(1, 13):  # more than 9 entries: Entry_No 10 must page after 9, not after 1
        connector.record_payment_status(f"INV-{i:06d}", "Open", Decimal("0"), Decimal("10.00"), "EUR")
    for i in (1, 5, 12):
        connector.record_payment_status(f"INV-{i:06d}", "Paid", Decimal("10.00"), Decimal("0"), "EUR")
    everything = connector.payment_statuses(set_size=200)
    assert [e["Entry_No"] for e in everything] == list(range(1, 16))

    before = reads(nav)
    paged = connector.payment_statuses(set_size=4)
    assert paged == everything
    assert reads(nav) - before == 5  # 4 + 4 + 4 + 3, then the empty page that ends it

    before = reads(nav)
    paid = connector.payment_statuses("Paid", set_size=2)
    assert [e["Invoice_No"] for e in paid] == ["INV-000001", "INV-000005", "INV-000012"]
    assert reads(nav) - before == 3

    latest = connector.latest_payment_status(set_size=1)
    assert len(latest) == 12
    assert sorted(no for no, status in latest.items() if status == "Paid") == [
        "INV-000001",
        "INV-000005",
        "INV-000012",
    ]


def test_an_entry_is_read_by_its_entry_no(connect: Connect) -> None:
    connector = connect()
    record_open_then_paid(connector)
    entry = connector.read(PAGE, 3)
    assert entry is not None
    assert (entry["Invoice_No"], entry["Status"], entry["Amount_Paid"]) == (
        "INV-000001",
        "Paid",
        Decimal("59.97"),
    )
    assert connector.read(PAGE, 99) is None


def test_the_page_is_read_only(nav: NavSandbox, connect: Connect) -> None:
    connector = connect()
    record_open_then_paid(connector)
    entry = connector.payment_statuses("Paid")[0]

    # its WSDL offers Read and ReadMultiple only
    wsdl = requests.get(
        f"{nav.company_url}Page/{PAGE}",
        auth=(nav.username, nav.password),
        verify=str(nav.cert_file),
        timeout=10,
    )
    root = etree.fromstring(wsdl.content)
    port = root.find(f"{WSDL}portType")
    assert port is not None
    assert [op.get("name") for op in port.findall(f"{WSDL}operation")] == ["Read", "ReadMultiple"]
    assert root.find(f".//{XSD}element[@name='Create']") is None

    # the connector refuses writes before sending anything
    with pytest.raises(FatalError, match="does not offer Create"):
        connector.create(PAGE, {"Invoice_No": "INV-000002", "Status": "Paid"})
    with pytest.raises(FatalError, match="does not offer Update"):
        connector.update(PAGE, {"Key": entry["Key"], "Status": "Void"})
    with pytest.raises(FatalError, match="does not offer Delete"):
        connector.delete(PAGE, entry["Key"])
    assert not any(op.startswith(f"{PAGE}.") and "Read" not in op for op in nav.calls_by_operation)

    # and a hand-written Create sent anyway gets NAV's fault, changing nothing
    ns = page_namespace(PAGE)
    envelope = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        f'<Create xmlns="{ns}"><{PAGE}><Invoice_No>INV-000002</Invoice_No><Status>Paid</Status></{PAGE}>'
        "</Create></s:Body></s:Envelope>"
    )
    answer = requests.post(
        f"{nav.company_url}Page/{PAGE}",
        data=envelope.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{ns}:Create"'},
        auth=(nav.username, nav.password),
        verify=str(nav.cert_file),
        timeout=10,
    )
    assert answer.status_code == 500
    assert f"Method Create was not found in service {PAGE}" in answer.text
    assert connector.latest_payment_status() == {"INV-000001": "Paid", "INV-000002": "Open"}
    with pytest.raises(ValueError, match="read-only"):
        nav.seed(PAGE, [{"Invoice_No": "INV-000002"}])


def test_entries_survive_save_and_load_and_numbering_continues(
    nav: NavSandbox, connect: Connect, tmp_path: Path
) -> None:
    record_open_then_paid(connect())
    nav.save_state(tmp_path / "nav.json")
    with NavSandbox() as restarted:
        restarted.load_state(tmp_path / "nav.json")
        with NavConnector(restarted.settings(), sleep=lambda s: None) as again:
            assert again.payment_statuses() == connect().payment_statuses()
            again.record_payment_status("INV-000002", "Paid", Decimal("120.00"), Decimal("0"), "USD")
            assert again.payment_statuses()[-1]["Entry_No"] == 4
            assert again.latest_payment_status() == {"INV-000001": "Paid", "INV-000002": "Paid"}
