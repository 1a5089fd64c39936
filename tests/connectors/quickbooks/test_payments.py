"""Customer payments in QuickBooks Online: the sandbox applies them to invoices as QBO does, and the
connector (python-quickbooks over loopback HTTPS) writes them and reads them back incrementally, by
Change Data Capture and by ``LastUpdatedTime`` queries.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from quickbooks.cdc import change_data_capture
from quickbooks.objects.base import LinkedTxn, Ref
from quickbooks.objects.invoice import Invoice as QbInvoice
from quickbooks.objects.payment import Payment as QbPayment
from quickbooks.objects.payment import PaymentLine

from connectors.errors import RecordError
from connectors.quickbooks.client import BatchItem, QuickBooksConnector
from connectors.quickbooks.errors import ChangeWindowError, StaleObjectError
from connectors.quickbooks.sandbox import QboFault, QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore
from mappings.engine import Mapper
from mappings.spec import load_spec
from sync_engine.schemas import schema_for

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SPECS = HERE.parents[2] / "mappings" / "specs" / "quickbooks"
_NS = "{http://schema.intuit.com/finance/v3}"


def connect(qbo: QuickBooksSandbox, **kwargs: Any) -> QuickBooksConnector:
    kwargs.setdefault("sleep", lambda seconds: None)
    return QuickBooksConnector(qbo.settings(), MemoryTokenStore(), **kwargs)


def payment(customer_id: str, total: str, *lines: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": Decimal(total),
        "TxnDate": "2024-05-02",
        "Line": [
            {"Amount": Decimal(amount), "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}
            for invoice_id, amount in lines
        ],
        **extra,
    }


@dataclass(frozen=True)
class Books:
    """A company with two customers and open invoices: Acme owes 100, 250 and 40; Other owes 70."""

    acme: str
    other: str
    item: str
    inv100: str
    inv250: str
    inv40: str
    other70: str


@pytest.fixture
def books(qbo: QuickBooksSandbox) -> Books:
    acme, other = (
        c["Id"] for c in qbo.seed("Customer", [{"DisplayName": "Acme GmbH"}, {"DisplayName": "Other"}])
    )
    item = qbo.seed("Item", [{"Name": "Consulting", "UnitPrice": Decimal("1")}])[0]["Id"]

    def invoice(customer: str, doc: str, amount: str) -> dict[str, Any]:
        return {
            "DocNumber": doc,
            "CustomerRef": {"value": customer},
            "Line": [
                {
                    "DetailType": "SalesItemLineDetail",
                    "Amount": Decimal(amount),
                    "SalesItemLineDetail": {"ItemRef": {"value": item}},
                }
            ],
        }

    ids = [
        row["Id"]
        for row in qbo.seed(
            "Invoice",
            [
                invoice(acme, "INV-100", "100.00"),
                invoice(acme, "INV-250", "250.00"),
                invoice(acme, "INV-40", "40.00"),
                invoice(other, "INV-70", "70.00"),
            ],
        )
    ]
    return Books(acme, other, item, *ids)


# -- applying payments ------------------------------------------------------------------------------------


def test_a_payment_applied_to_two_invoices_lowers_their_balances(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    before = qb.get("Invoice", books.inv100)

    created = qb.create(
        "Payment",
        payment(
            books.acme,
            "150.00",
            (books.inv100, "100.00"),
            (books.inv250, "30.00"),
            PaymentRefNum="CHK-1001",
            PaymentMethodRef={"value": "2"},
            DepositToAccountRef={"value": "35"},
        ),
        request_id="pay-1",
    )

    assert created["TotalAmt"] == Decimal("150.00") and created["UnappliedAmt"] == Decimal("20.00")
    assert created["CustomerRef"] == {"value": books.acme, "name": "Acme GmbH"}
    assert created["CurrencyRef"]["value"] == "USD" and created["ProcessPayment"] is False
    assert created["PaymentMethodRef"] == {"value": "2", "name": "Check"}
    assert created["PaymentRefNum"] == "CHK-1001" and created["DepositToAccountRef"] == {"value": "35"}
    assert [(line["Amount"], line["LinkedTxn"]) for line in created["Line"]] == [
        (Decimal("100.00"), [{"TxnId": books.inv100, "TxnType": "Invoice"}]),
        (Decimal("30.00"), [{"TxnId": books.inv250, "TxnType": "Invoice"}]),
    ]
    assert created["SyncToken"] == "0" and set(created["MetaData"]) == {"CreateTime", "LastUpdatedTime"}
    assert qb.get("Payment", created["Id"]) == created

    paid = qb.get("Invoice", books.inv100)
    assert paid["Balance"] == Decimal("0") and paid["TotalAmt"] == Decimal("100.00")
    assert paid["LinkedTxn"] == [{"TxnId": created["Id"], "TxnType": "Payment"}]
    assert paid["SyncToken"] == str(int(before["SyncToken"]) + 1)
    assert qbo.invoice_balance(books.inv250) == Decimal("220.00")
    untouched = qb.get("Invoice", books.inv40)
    assert untouched["Balance"] == Decimal("40.00") and untouched["SyncToken"] == "0"
    assert untouched["LinkedTxn"] == []


def test_more_than_the_open_balance_is_refused_with_qbos_fault(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    with pytest.raises(RecordError) as refused:
        qb.create("Payment", payment(books.acme, "60.00", (books.inv40, "60.00")), request_id="p-1")
    assert refused.value.code == "6000" and "open balance (40.00)" in refused.value.message

    qb.create("Payment", payment(books.acme, "30.00", (books.inv40, "30.00")), request_id="p-2")
    with pytest.raises(RecordError, match=r"open balance \(10.00\)"):
        qb.create("Payment", payment(books.acme, "20.00", (books.inv40, "20.00")), request_id="p-3")
    with pytest.raises(RecordError, match="Amount applied is greater than payment"):
        qb.create("Payment", payment(books.acme, "5.00", (books.inv250, "6.00")), request_id="p-4")

    assert qbo.invoice_balance(books.inv40) == Decimal("10.00")
    assert qbo.invoice_balance(books.inv250) == Decimal("250.00")
    assert qbo.count("Payment") == 1


def test_unknown_or_foreign_invoices_and_customers_are_refused(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    with pytest.raises(RecordError, match="Invalid Reference Id : Invoice") as unknown:
        qb.create("Payment", payment(books.acme, "10.00", ("999", "10.00")), request_id="p-1")
    assert unknown.value.code == "2500"
    with pytest.raises(RecordError, match="another customer") as foreign:
        qb.create("Payment", payment(books.acme, "10.00", (books.other70, "10.00")), request_id="p-2")
    assert foreign.value.code == "6000"
    with pytest.raises(RecordError, match="Invalid Reference Id : Customer"):
        qb.create("Payment", payment("404", "10.00", (books.inv100, "10.00")), request_id="p-3")
    with pytest.raises(RecordError, match="PaymentRefNum") as too_long:
        qb.create(
            "Payment",
            payment(books.acme, "10.00", (books.inv100, "10.00"), PaymentRefNum="ch_3PqXyZ2eZvKYlo2C1abcdEF"),
            request_id="p-4",
        )
    assert too_long.value.code == "2050"  # QBO keeps 21 characters of a reference, no more
    assert qbo.count("Payment") == 0 and qbo.invoice_balance(books.inv100) == Decimal("100.00")


def test_payments_in_a_batch_succeed_or_fail_one_by_one_and_a_resent_batch_applies_nothing_twice(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    items = [
        BatchItem("out-1", "Payment", "create", payment(books.acme, "100.00", (books.inv100, "100.00"))),
        BatchItem("out-2", "Payment", "create", payment(books.acme, "999.00", (books.inv40, "999.00"))),
        BatchItem("out-3", "Payment", "create", payment(books.other, "70.00", (books.other70, "70.00"))),
    ]

    results = qb.batch(items)
    again = qb.batch(items)  # the outbox crashed before marking the rows done

    assert [(r.key, r.ok) for r in results] == [("out-1", True), ("out-2", False), ("out-3", True)]
    assert isinstance(results[1].error, RecordError) and results[1].error.code == "6000"
    assert results[0].entity is not None and results[0].entity["CustomerRef"]["value"] == books.acme
    assert [r.entity for r in again] == [r.entity for r in results]
    assert qbo.count("Payment") == 2
    assert qbo.invoice_balance(books.inv100) == Decimal("0")
    assert qbo.invoice_balance(books.inv40) == Decimal("40.00")
    assert qbo.invoice_balance(books.other70) == Decimal("0")


def test_changing_and_deleting_a_payment_moves_the_balances_back(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    created = qb.create("Payment", payment(books.acme, "100.00", (books.inv250, "100.00")), request_id="p-1")

    changed = qb.update(
        "Payment",
        {
            "Id": created["Id"],
            "SyncToken": created["SyncToken"],
            "sparse": True,
            "Line": [
                {"Amount": Decimal("60.00"), "LinkedTxn": [{"TxnId": books.inv250, "TxnType": "Invoice"}]}
            ],
        },
        request_id="p-1-u",
    )
    assert changed["SyncToken"] == "1" and changed["UnappliedAmt"] == Decimal("40.00")
    assert qbo.invoice_balance(books.inv250) == Decimal("190.00")
    with pytest.raises(StaleObjectError):
        qb.update("Payment", {**created, "TotalAmt": Decimal("1.00")}, request_id="p-1-stale")

    library_payment = QbPayment.get(created["Id"], qb=qb.qb)
    library_payment.delete(qb=qb.qb)  # python-quickbooks' DeleteMixin: POST payment?operation=delete

    assert qbo.count("Payment") == 0
    invoice = qb.get("Invoice", books.inv250)
    assert invoice["Balance"] == Decimal("250.00") and invoice["LinkedTxn"] == []


def test_python_quickbooks_objects_create_and_read_payments(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    line = PaymentLine()
    line.Amount = Decimal("25.50")
    link = LinkedTxn()
    link.TxnId, link.TxnType = books.inv40, "Invoice"
    line.LinkedTxn.append(link)
    new = QbPayment()
    new.TotalAmt = Decimal("25.50")  # the library sends Decimals as JSON strings
    new.CustomerRef = Ref()
    new.CustomerRef.value = books.acme
    new.Line.append(line)
    new.PaymentRefNum = "REF-7"

    saved = new.save(qb=qb.qb, request_id="lib-1")

    assert saved.TotalAmt == Decimal("25.50") and saved.UnappliedAmt == Decimal("0.00")
    assert saved.CustomerRef.name == "Acme GmbH" and saved.Line[0].LinkedTxn[0].TxnId == books.inv40
    found = QbPayment.filter(PaymentRefNum="REF-7", qb=qb.qb)
    assert [p.Id for p in found] == [saved.Id]
    assert QbInvoice.get(books.inv40, qb=qb.qb).Balance == Decimal("14.50")


def test_invoice_updates_keep_the_payments_applied_to_them(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    paid = qb.create("Payment", payment(books.acme, "200.00", (books.inv250, "200.00")), request_id="p-1")
    current = qb.get("Invoice", books.inv250)

    renamed = qb.update(
        "Invoice",
        {"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True, "PrivateNote": "late"},
        request_id="i-1",
    )
    assert renamed["Balance"] == Decimal("50.00")
    assert {"TxnId": paid["Id"], "TxnType": "Payment"} in renamed["LinkedTxn"]

    smaller = {**renamed, "Line": [{**renamed["Line"][0], "Amount": Decimal("150.00")}]}
    with pytest.raises(RecordError, match="less than the payments applied"):
        qb.update("Invoice", smaller, request_id="i-2")
    assert qbo.invoice_balance(books.inv250) == Decimal("50.00")


# -- reading payments back: queries -----------------------------------------------------------------------


def test_last_updated_time_queries_with_order_and_pages(qbo: QuickBooksSandbox, books: Books) -> None:
    qbo.record_payment(books.acme, Decimal("10.00"), {books.inv100: Decimal("10.00")}, "2024-05-01")
    qbo.advance_clock(dt.timedelta(minutes=1))
    since = qbo.now()
    for amount in ("1.00", "3.00", "2.00"):
        qbo.record_payment(books.acme, Decimal(amount), {books.inv250: Decimal(amount)}, "2024-05-02")
    qb = connect(qbo)

    statement = (
        "select * from Payment where Metadata.LastUpdatedTime >= '{}' ORDERBY TotalAmt DESC "
        "STARTPOSITION 2 MAXRESULTS 2"
    ).format(since.isoformat(timespec="seconds"))
    assert [row["TotalAmt"] for row in qb.query(statement)] == [Decimal("2.00"), Decimal("1.00")]
    whole_second = since.isoformat(timespec="seconds")
    assert qb.count("Payment", f"Metadata.LastUpdatedTime < '{whole_second}'") == 1


def test_query_changed_pages_by_time_without_skipping_or_repeating(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    def pay() -> str:
        return str(qbo.record_payment(books.acme, Decimal(1), {books.inv250: Decimal(1)}, "2024-05-02")["Id"])

    old = [pay() for _ in range(3)]
    qbo.advance_clock(dt.timedelta(seconds=10))
    since = qbo.now()
    same_second = [pay() for _ in range(5)]  # more rows in one second than a page holds
    qbo.advance_clock(dt.timedelta(seconds=10))
    later = [pay() for _ in range(3)]
    qb = connect(qbo)
    qbo.reset_counters()

    pages = qb.query_changed("Payment", since, page_size=2)
    first = next(pages)
    # someone edits a row already read: it moves to the end, and must not pull an unread one out of
    # sight by shifting the positions (a STARTPOSITION walk would now skip the third row)
    qbo.advance_clock(dt.timedelta(seconds=10))
    target = next(row for row in first if row["Id"] == same_second[0])
    qb.update(
        "Payment",
        {"Id": target["Id"], "SyncToken": target["SyncToken"], "sparse": True, "PrivateNote": "edited"},
        request_id="edit-1",
    )
    rest = list(pages)

    ids = [row["Id"] for page in [first, *rest] for row in page]
    assert all(1 <= len(page) <= 2 for page in [first, *rest])
    assert set(ids) == set(same_second + later) and not set(ids) & set(old)
    assert len(ids) - len(set(ids)) <= 1  # only the edited row may come twice (its newer version last)
    assert [row for page in rest for row in page if row["Id"] == target["Id"]][-1]["PrivateNote"] == "edited"


# -- reading payments back: Change Data Capture -----------------------------------------------------------


def test_cdc_returns_what_changed_since_a_time_and_not_older_changes(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    older = qbo.record_payment(books.acme, Decimal("40.00"), {books.inv40: Decimal("40.00")}, "2024-05-01")
    qbo.advance_clock(dt.timedelta(minutes=5))
    since = qbo.now()
    qb = connect(qbo)
    newer = qb.create("Payment", payment(books.acme, "50.00", (books.inv250, "50.00")), request_id="p-new")
    qbo.delete_payment(older["Id"])  # the accountant deletes the older one: inv40 is open again

    changes = qb.changes(["Payment", "Invoice"], since)

    assert sorted((row["Id"], row.get("status")) for row in changes.entities["Payment"]) == sorted(
        [(newer["Id"], None), (older["Id"], "Deleted")]
    )
    deleted = next(row for row in changes.entities["Payment"] if row.get("status") == "Deleted")
    assert set(deleted) == {"domain", "status", "Id", "MetaData"}
    invoices = {row["Id"]: row for row in changes.entities["Invoice"]}
    assert set(invoices) == {books.inv250, books.inv40}
    assert invoices[books.inv40]["Balance"] == Decimal("40.00") and invoices[books.inv40]["LinkedTxn"] == []
    assert invoices[books.inv250]["Balance"] == Decimal("200.00")
    assert changes.time is not None and changes.time >= since and not changes.truncated

    qbo.advance_clock(dt.timedelta(seconds=2))
    assert qb.changed_since(["Payment", "Invoice"], qbo.now()) == {"Payment": [], "Invoice": []}


def test_cdc_answer_has_the_real_shape_and_python_quickbooks_reads_it(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qbo.advance_clock(dt.timedelta(minutes=1))  # the books were set up a minute ago
    since = qbo.now()
    qb = connect(qbo)
    created = qb.create(
        "Payment",
        payment(books.acme, "100.00", (books.inv100, "100.00"), DepositToAccountRef={"value": "35"}),
        request_id="p-1",
    )
    url = f"{qbo.base_url}/v3/company/{qbo.realm_id}/cdc"
    answer = qb.qb.session.get(
        url,
        params={"entities": "Customer,Payment,Invoice", "changedSince": since.isoformat()},
        headers={"Accept": "application/json"},
    ).json()

    real = json.loads((FIXTURES / "cdc_response_customer_invoice.json").read_text(encoding="utf-8"))
    assert set(answer) == set(real)
    responses = answer["CDCResponse"][0]["QueryResponse"]
    assert responses[0] == {}  # no Customer changed: an empty QueryResponse keeps its place
    assert {"Payment", "startPosition", "maxResults"} <= set(responses[1])
    assert {"startPosition", "maxResults"} <= set(real["CDCResponse"][0]["QueryResponse"][1])

    real_cdc = ET.parse(FIXTURES / "change_data_capture_response.xml").getroot()
    real_payment = real_cdc.find(f".//{_NS}Payment")
    real_deleted = real_cdc.find(f".//{_NS}Invoice[@status='Deleted']")
    assert real_payment is not None and real_deleted is not None
    ours = responses[1]["Payment"][0]
    assert {child.tag.removeprefix(_NS) for child in real_payment} <= set(ours)
    real_line = real_payment.find(f"{_NS}Line")
    assert real_line is not None
    assert {child.tag.removeprefix(_NS) for child in real_line} == set(ours["Line"][0])
    assert {child.tag.removeprefix(_NS) for child in real_deleted} == {"Id", "MetaData"}

    parsed = change_data_capture([QbPayment, QbInvoice], since.isoformat(), qb=qb.qb)
    assert [p.Id for p in parsed.Payment] == [created["Id"]]
    assert parsed.Payment[0].TotalAmt == Decimal("100.00")
    assert [i.Id for i in parsed.Invoice] == [books.inv100]


def test_cdc_refuses_a_window_older_than_30_days(qbo: QuickBooksSandbox) -> None:
    qb = connect(qbo)
    qbo.reset_counters()
    month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    with pytest.raises(ChangeWindowError):
        qb.changes(["Payment"], month_ago)  # the local clock already knows: no call made
    assert qbo.calls == 0

    qbo.advance_clock(dt.timedelta(days=2))  # QBO's clock is ahead of ours
    with pytest.raises(ChangeWindowError, match="older than fixed days"):
        qb.changes(["Payment"], dt.datetime.now(dt.UTC) - dt.timedelta(days=29))
    assert qbo.calls == 1


def test_a_full_cdc_answer_falls_back_to_queries(qbo: QuickBooksSandbox, books: Books) -> None:
    since = qbo.now()
    ids = [
        qbo.record_payment(books.acme, Decimal("1.00"), {books.inv250: Decimal("1.00")}, "2024-05-02")["Id"]
        for _ in range(5)
    ]
    qb = connect(qbo)
    qbo.cdc_limit = qb.cdc_limit = 3  # QBO answers 1,000 objects at most; smaller here

    changes = qb.changes(["Payment"], since)

    assert changes.truncated
    assert sorted(row["Id"] for row in changes.entities["Payment"]) == sorted(ids)


# -- the accountant's helper and the mapping specs ------------------------------------------------------


def test_record_payment_is_seen_through_the_api_without_counting_a_call(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qbo.reset_counters()
    recorded = qbo.record_payment(
        books.acme,
        Decimal("120.00"),
        {books.inv100: Decimal("100.00"), books.inv40: Decimal("20.00")},
        dt.date(2024, 5, 2),
        reference="CHK-1042",
        method="Check",
    )
    wire = qbo.record_payment(books.acme, Decimal("5.00"), [], "2024-05-03", method="Wire")
    assert qbo.calls == 0
    assert qbo.invoice_balance(books.inv100) == Decimal("0") and qbo.invoice_balance(books.inv40) == Decimal(
        "20.00"
    )

    qb = connect(qbo)
    read = qb.get("Payment", recorded["Id"])
    assert read["TxnDate"] == "2024-05-02" and read["PaymentRefNum"] == "CHK-1042"
    assert read["PaymentMethodRef"] == {"value": "2", "name": "Check"} and read["UnappliedAmt"] == Decimal(
        "0.00"
    )
    assert [row["Id"] for row in qb.query("SELECT * FROM Payment WHERE PaymentRefNum = 'CHK-1042'")] == [
        recorded["Id"]
    ]
    assert wire["UnappliedAmt"] == Decimal("5.00") and wire["PaymentMethodRef"]["name"] == "Wire"
    assert "Wire" in qb.find_by("PaymentMethod", "Name", ["Wire"])
    with pytest.raises(TypeError):
        qbo.record_payment(books.acme, 1.5, {}, "2024-05-03")  # type: ignore[arg-type]
    with pytest.raises(QboFault, match="open balance"):
        qbo.record_payment(books.acme, Decimal("50.00"), {books.inv40: Decimal("50.00")}, "2024-05-03")


class _Bindings:
    """Lookups that bind every QBO id to ``<entity>-<id>`` and back."""

    def resolve(self, *, system: str, entity: str, value: str, inbound: bool) -> str | None:
        return f"{entity}-{value}" if inbound else value.removeprefix(f"{entity}-")


def test_the_payment_specs_read_and_write_sandbox_payments(qbo: QuickBooksSandbox, books: Books) -> None:
    outbound = Mapper(load_spec(SPECS / "payment.out.yaml", schema_for), _Bindings())
    inbound = Mapper(load_spec(SPECS / "payment.in.yaml", schema_for), _Bindings())
    canonical = {
        "customer_id": f"customer-{books.acme}",
        "amount": "130.00",
        "currency": "USD",
        "received_on": "2024-05-02",
        "reference": "pi_3PqXyZ",
        "allocations": [
            {"invoice_id": f"invoice-{books.inv100}", "amount": "100.00"},
            {"invoice_id": f"invoice-{books.inv40}", "amount": "30.00"},
        ],
    }
    qb = connect(qbo)

    written = qb.batch([BatchItem("out-1", "Payment", "create", outbound.map(canonical))])[0]
    assert written.ok and written.entity is not None
    assert qbo.invoice_balance(books.inv40) == Decimal("10.00")

    recorded = qbo.record_payment(
        books.acme,
        Decimal("10.00"),
        {books.inv40: Decimal("10.00")},
        "2024-05-03",
        reference="BANK-77",
        method="Bank Transfer",
    )
    pulled = qb.changed_since(["Payment"], qbo.now() - dt.timedelta(minutes=1))["Payment"]
    mapped = {row["Id"]: inbound.map(row) for row in pulled}
    assert mapped[written.entity["Id"]]["amount"] == Decimal("130.00")
    assert mapped[written.entity["Id"]]["customer_id"] == f"customer-{books.acme}"
    assert mapped[written.entity["Id"]]["allocations"] == [
        {"invoice_id": f"invoice-{books.inv100}", "amount": Decimal("100.00")},
        {"invoice_id": f"invoice-{books.inv40}", "amount": Decimal("30.00")},
    ]
    assert mapped[recorded["Id"]]["method"] == "bank_transfer"
    assert mapped[recorded["Id"]]["reference"] == "BANK-77"
    assert str(mapped[recorded["Id"]]["received_on"]) == "2024-05-03"


def test_payments_survive_a_sandbox_restart(tmp_path: Path, qbo: QuickBooksSandbox, books: Books) -> None:
    since = qbo.now()
    kept = qbo.record_payment(books.acme, Decimal("30.00"), {books.inv250: Decimal("30.00")}, "2024-05-02")
    gone = qbo.record_payment(books.acme, Decimal("40.00"), {books.inv40: Decimal("40.00")}, "2024-05-02")
    qbo.delete_payment(gone["Id"])
    qbo.save_state(tmp_path / "qbo.json")

    with QuickBooksSandbox() as again:
        again.load_state(tmp_path / "qbo.json")
        assert again.invoice_balance(books.inv250) == Decimal("220.00")
        again.delete_payment(kept["Id"])  # the restored links still know which invoice it paid
        assert again.invoice_balance(books.inv250) == Decimal("250.00")
        changes = connect(again).changed_since(["Payment"], since)
        assert sorted((row["Id"], row["status"]) for row in changes["Payment"]) == sorted(
            [(kept["Id"], "Deleted"), (gone["Id"], "Deleted")]
        )
        assert again.record_payment(books.acme, Decimal("1.00"), [], "2024-05-02")["Id"] == "3"
