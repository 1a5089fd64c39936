"""Credit memos in QuickBooks Online: the sandbox keeps them as QBO does (a sales form with ``Balance`` and
``RemainingCredit``) and applies them to invoices the documented way, a Payment of zero whose lines link
the Invoice and the CreditMemo; the connector (python-quickbooks over loopback HTTPS) writes and reads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from quickbooks.objects.creditmemo import CreditMemo as QbCreditMemo
from quickbooks.objects.payment import Payment as QbPayment

from connectors.errors import RecordError
from connectors.quickbooks.client import BatchItem, QuickBooksConnector
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore

pytestmark = pytest.mark.integration

#: Top-level keys of Intuit's documented response to ``POST creditmemo`` (API reference, "Create a credit
#: memo") less those the sandbox company has no data for (addresses, custom fields, projects).
DOCUMENTED_CREATE_KEYS = {
    "DocNumber", "SyncToken", "domain", "Balance", "TxnDate", "TotalAmt", "CustomerRef", "RemainingCredit",
    "PrintStatus", "EmailStatus", "sparse", "Line", "ApplyTaxAfterDiscount", "Id", "TxnTaxDetail", "MetaData",
}  # fmt: skip


def connect(qbo: QuickBooksSandbox) -> QuickBooksConnector:
    return QuickBooksConnector(qbo.settings(), MemoryTokenStore(), sleep=lambda seconds: None)


@dataclass(frozen=True)
class Books:
    """Acme owes 100 on INV-100 and 250 on INV-250; Other owes 70 on INV-70."""

    acme: str
    other: str
    item: str
    inv100: str
    inv250: str
    other70: str


@pytest.fixture
def books(qbo: QuickBooksSandbox) -> Books:
    acme, other = (
        c["Id"] for c in qbo.seed("Customer", [{"DisplayName": "Acme GmbH"}, {"DisplayName": "Other"}])
    )
    item = qbo.seed("Item", [{"Name": "Consulting", "UnitPrice": Decimal("1")}])[0]["Id"]
    invoices = [
        {"DocNumber": doc, "CustomerRef": {"value": customer}, "Line": [sales_line(item, amount)]}
        for customer, doc, amount in (
            (acme, "INV-100", "100.00"),
            (acme, "INV-250", "250.00"),
            (other, "INV-70", "70.00"),
        )
    ]
    ids = [row["Id"] for row in qbo.seed("Invoice", invoices)]
    return Books(acme, other, item, *ids)


def sales_line(item: str, amount: str, **detail: Any) -> dict[str, Any]:
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": Decimal(amount),
        "SalesItemLineDetail": {"ItemRef": {"value": item}, **detail},
    }


def credit_memo(
    customer: str, item: str, amount: str, doc: str | None = "CN-000001", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "CustomerRef": {"value": customer},
        "TxnDate": "2024-05-10",
        "Line": [{**sales_line(item, amount), "Description": "Credit for unused seats"}],
        **extra,
    }
    if doc is not None:
        body["DocNumber"] = doc
    return body


def application(customer: str, total: str, *lines: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    """A payment of ``total`` whose lines are ``(TxnType, TxnId, amount)``."""
    return {
        "CustomerRef": {"value": customer},
        "TotalAmt": Decimal(total),
        "TxnDate": "2024-05-11",
        "Line": [
            {"Amount": Decimal(amount), "LinkedTxn": [{"TxnId": txn_id, "TxnType": txn_type}]}
            for txn_type, txn_id, amount in lines
        ],
        **extra,
    }


def apply_credit(customer: str, invoice: str, memo: str, amount: str) -> dict[str, Any]:
    return application(customer, "0", ("Invoice", invoice, amount), ("CreditMemo", memo, amount))


# -- the CreditMemo entity --------------------------------------------------------------------------------


def test_a_credit_memo_is_created_with_qbos_shape_and_its_whole_credit_remaining(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)

    created = qb.create(
        "CreditMemo",
        credit_memo(
            books.acme,
            books.item,
            "30.00",
            CurrencyRef={"value": "USD"},
            PrivateNote="billsync credit note cn_1 for invoice INV-100",
            CustomerMemo={"value": "Seats removed on 2024-05-10"},
        ),
        request_id="cm-1",
    )

    assert DOCUMENTED_CREATE_KEYS <= set(created)
    assert created["TotalAmt"] == created["Balance"] == created["RemainingCredit"] == Decimal("30.00")
    assert created["DocNumber"] == "CN-000001" and created["TxnDate"] == "2024-05-10"
    assert created["CustomerRef"] == {"value": books.acme, "name": "Acme GmbH"}
    assert created["CurrencyRef"] == {"value": "USD", "name": "United States Dollar"}
    assert created["PrivateNote"] == "billsync credit note cn_1 for invoice INV-100"
    assert created["CustomerMemo"] == {"value": "Seats removed on 2024-05-10"}
    assert created["Line"] == [
        {
            "DetailType": "SalesItemLineDetail",
            "Amount": Decimal("30.00"),
            "SalesItemLineDetail": {"ItemRef": {"value": books.item, "name": "Consulting"}},
            "Description": "Credit for unused seats",
            "Id": "1",
            "LineNum": 1,
        },
        {"Amount": Decimal("30.00"), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    ]
    assert created["LinkedTxn"] == [] and created["SyncToken"] == "0"
    assert created["domain"] == "QBO" and created["sparse"] is False
    assert set(created["MetaData"]) == {"CreateTime", "LastUpdatedTime"}
    assert qb.get("CreditMemo", created["Id"]) == created

    parsed = QbCreditMemo.get(created["Id"], qb=qb.qb)  # python-quickbooks reads it as its own object
    assert parsed.RemainingCredit == Decimal("30.00") and parsed.CustomerRef.name == "Acme GmbH"
    assert parsed.Line[0].SalesItemLineDetail.ItemRef.value == books.item


def test_credit_memo_lines_and_references_are_checked_like_an_invoices(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    with pytest.raises(RecordError, match="Invalid Reference Id : Customer") as customer:
        qb.create("CreditMemo", credit_memo("404", books.item, "10.00"), request_id="c-1")
    assert customer.value.code == "2500"
    with pytest.raises(RecordError, match="Invalid Reference Id : Item"):
        qb.create("CreditMemo", credit_memo(books.acme, "404", "10.00"), request_id="c-2")
    with pytest.raises(RecordError, match="customer's currency") as currency:
        qb.create(
            "CreditMemo",
            credit_memo(books.acme, books.item, "10.00", CurrencyRef={"value": "EUR"}),
            request_id="c-3",
        )
    assert currency.value.code == "6000"
    wrong_product = {
        **credit_memo(books.acme, books.item, "10.00"),
        "Line": [sales_line(books.item, "10.00", Qty=3, UnitPrice=Decimal("3"))],
    }
    with pytest.raises(RecordError, match="UnitPrice \\* Qty") as product:
        qb.create("CreditMemo", wrong_product, request_id="c-4")
    assert product.value.code == "6070"
    with pytest.raises(RecordError, match="Line"):
        qb.create("CreditMemo", {**credit_memo(books.acme, books.item, "1.00"), "Line": []}, request_id="c-5")
    assert qbo.count("CreditMemo") == 0


def test_credit_memos_without_a_number_take_the_next_of_the_invoices_sequence(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    first = qb.create(
        "Invoice",
        {"CustomerRef": {"value": books.acme}, "Line": [sales_line(books.item, "5.00")]},
        request_id="i-1",
    )
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "5.00", doc=None), request_id="c-1")
    assert int(memo["DocNumber"]) == int(first["DocNumber"]) + 1


def test_the_credit_memo_is_found_by_its_number(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")
    qb.create("CreditMemo", credit_memo(books.acme, books.item, "12.00", doc="CN-000002"), request_id="c-2")

    rows = list(qb.query("SELECT * FROM CreditMemo WHERE DocNumber = 'CN-000001'"))

    assert [row["Id"] for row in rows] == [memo["Id"]] and rows[0]["RemainingCredit"] == Decimal("30.00")
    assert set(qb.find_by("CreditMemo", "DocNumber", ["CN-000001", "CN-404"])) == {"CN-000001"}
    assert qb.count("CreditMemo", f"CustomerRef = '{books.acme}'") == 2


def test_credit_memos_are_written_in_batches_one_by_one_and_only_once(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    items = [
        BatchItem("cn-1", "CreditMemo", "create", credit_memo(books.acme, books.item, "30.00")),
        BatchItem("cn-2", "CreditMemo", "create", credit_memo("404", books.item, "5.00", doc="CN-000002")),
        BatchItem(
            "cn-3", "CreditMemo", "create", credit_memo(books.other, books.item, "7.00", doc="CN-000003")
        ),
    ]

    results = qb.batch(items)
    again = qb.batch(items)  # the outbox crashed before marking its rows done

    assert [(r.key, r.ok) for r in results] == [("cn-1", True), ("cn-2", False), ("cn-3", True)]
    assert isinstance(results[1].error, RecordError) and results[1].error.code == "2500"
    assert results[0].entity is not None and results[0].entity["RemainingCredit"] == Decimal("30.00")
    assert [r.entity for r in again] == [r.entity for r in results]
    assert qbo.count("CreditMemo") == 2

    memo = results[0].entity["Id"]
    applied = qb.batch(
        [BatchItem("app-1", "Payment", "create", apply_credit(books.acme, books.inv100, memo, "20.00"))]
    )
    assert applied[0].ok, applied[0].error
    assert qbo.invoice_balance(books.inv100) == Decimal("80.00")
    assert qbo.credit_memo_remaining(memo) == Decimal("10.00")


# -- applying a credit memo with a zero payment -----------------------------------------------------------


def test_a_zero_payment_applies_part_of_a_credit_memo_to_an_invoice(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")

    payment = qb.create(
        "Payment", apply_credit(books.acme, books.inv100, memo["Id"], "20.00"), request_id="a-1"
    )

    assert payment["TotalAmt"] == Decimal("0.00") and payment["UnappliedAmt"] == Decimal("0.00")
    assert [(line["Amount"], line["LinkedTxn"]) for line in payment["Line"]] == [
        (Decimal("20.00"), [{"TxnId": books.inv100, "TxnType": "Invoice"}]),
        (Decimal("20.00"), [{"TxnId": memo["Id"], "TxnType": "CreditMemo"}]),
    ]
    invoice = qb.get("Invoice", books.inv100)
    assert invoice["Balance"] == Decimal("80.00") and invoice["TotalAmt"] == Decimal("100.00")
    assert invoice["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    credit = qb.get("CreditMemo", memo["Id"])
    assert credit["Balance"] == credit["RemainingCredit"] == Decimal("10.00")
    assert credit["TotalAmt"] == Decimal("30.00")
    assert credit["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    assert credit["SyncToken"] == "1"  # a changed balance is a new version, as for invoices

    rest = qb.create("Payment", apply_credit(books.acme, books.inv250, memo["Id"], "10.00"), request_id="a-2")
    credit = qb.get("CreditMemo", memo["Id"])
    assert credit["RemainingCredit"] == Decimal("0.00") and qbo.invoice_balance(books.inv250) == Decimal(
        "240.00"
    )
    assert [link["TxnId"] for link in credit["LinkedTxn"]] == [payment["Id"], rest["Id"]]


def test_more_than_the_remaining_credit_is_refused_and_nothing_changes(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")
    qb.create("Payment", apply_credit(books.acme, books.inv250, memo["Id"], "20.00"), request_id="a-1")
    before = qb.get("CreditMemo", memo["Id"])

    with pytest.raises(RecordError, match=r"remaining credit \(10.00\)") as refused:
        qb.create("Payment", apply_credit(books.acme, books.inv100, memo["Id"], "15.00"), request_id="a-2")
    assert refused.value.code == "6000"
    split = application(
        books.acme,
        "0",
        ("Invoice", books.inv100, "12.00"),
        ("CreditMemo", memo["Id"], "6.00"),
        ("CreditMemo", memo["Id"], "6.00"),
    )
    with pytest.raises(RecordError, match=r"\(12.00\) is more than its remaining credit"):
        qb.create("Payment", split, request_id="a-3")  # two lines of the same memo count together

    assert qb.get("CreditMemo", memo["Id"]) == before
    assert qbo.invoice_balance(books.inv100) == Decimal("100.00")
    assert qbo.count("Payment") == 1


def test_credit_of_one_customer_is_not_applied_to_anothers_invoice(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")

    with pytest.raises(RecordError, match="Invoice .* belongs to another customer") as foreign_invoice:
        qb.create("Payment", apply_credit(books.acme, books.other70, memo["Id"], "20.00"), request_id="a-1")
    assert foreign_invoice.value.code == "6000"
    with pytest.raises(RecordError, match="Credit Memo .* belongs to another customer") as foreign_memo:
        qb.create("Payment", apply_credit(books.other, books.other70, memo["Id"], "20.00"), request_id="a-2")
    assert foreign_memo.value.code == "6000"
    with pytest.raises(RecordError, match="Invalid Reference Id : CreditMemo") as unknown:
        qb.create("Payment", apply_credit(books.acme, books.inv100, "404", "20.00"), request_id="a-3")
    assert unknown.value.code == "2500"

    assert qbo.credit_memo_remaining(memo["Id"]) == Decimal("30.00")
    assert qbo.invoice_balance(books.other70) == Decimal("70.00") and qbo.count("Payment") == 0


def test_a_total_that_does_not_match_the_lines_is_refused(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")

    short = application(
        books.acme, "0", ("Invoice", books.inv100, "20.00"), ("CreditMemo", memo["Id"], "10.00")
    )
    with pytest.raises(RecordError, match="Amount applied is greater than payment") as too_little:
        qb.create("Payment", short, request_id="a-1")  # 20 - 10 is 10 to pay, the payment brings 0
    assert too_little.value.code == "6000"
    overcredit = application(
        books.acme, "0", ("Invoice", books.inv100, "10.00"), ("CreditMemo", memo["Id"], "20.00")
    )
    with pytest.raises(RecordError, match="credits applied \\(20.00\\) are more than") as negative:
        qb.create("Payment", overcredit, request_id="a-2")
    assert negative.value.code == "6000"
    assert qbo.count("Payment") == 0 and qbo.credit_memo_remaining(memo["Id"]) == Decimal("30.00")

    # money received beyond what the lines pay is the customer's unapplied credit, as for any payment
    cash_and_credit = application(
        books.acme, "50.00", ("Invoice", books.inv100, "70.00"), ("CreditMemo", memo["Id"], "30.00")
    )
    mixed = qb.create("Payment", cash_and_credit, request_id="a-3")
    assert mixed["UnappliedAmt"] == Decimal("10.00")
    assert qbo.invoice_balance(books.inv100) == Decimal("30.00") and qbo.credit_memo_remaining(
        memo["Id"]
    ) == Decimal("0.00")


def test_changing_or_deleting_the_payment_gives_the_credit_back(qbo: QuickBooksSandbox, books: Books) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")
    payment = qb.create(
        "Payment", apply_credit(books.acme, books.inv100, memo["Id"], "20.00"), request_id="a-1"
    )

    changed = qb.update(
        "Payment",
        {
            **apply_credit(books.acme, books.inv100, memo["Id"], "25.00"),
            "Id": payment["Id"],
            "SyncToken": payment["SyncToken"],
            "sparse": True,
        },
        request_id="a-1-u",
    )
    assert changed["SyncToken"] == "1"
    assert qbo.invoice_balance(books.inv100) == Decimal("75.00") and qbo.credit_memo_remaining(
        memo["Id"]
    ) == Decimal("5.00")

    QbPayment.get(payment["Id"], qb=qb.qb).delete(
        qb=qb.qb
    )  # python-quickbooks: POST payment?operation=delete

    invoice, credit = qb.get("Invoice", books.inv100), qb.get("CreditMemo", memo["Id"])
    assert invoice["Balance"] == Decimal("100.00") and invoice["LinkedTxn"] == []
    assert credit["Balance"] == credit["RemainingCredit"] == Decimal("30.00") and credit["LinkedTxn"] == []


def test_a_credit_memo_cannot_shrink_below_the_credit_already_applied(
    qbo: QuickBooksSandbox, books: Books
) -> None:
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")
    qb.create("Payment", apply_credit(books.acme, books.inv100, memo["Id"], "20.00"), request_id="a-1")
    current = qb.get("CreditMemo", memo["Id"])

    noted = qb.update(
        "CreditMemo",
        {"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True, "PrivateNote": "checked"},
        request_id="c-1-u",
    )
    assert noted["RemainingCredit"] == Decimal("10.00") and len(noted["LinkedTxn"]) == 1

    smaller = {**noted, "Line": [{**noted["Line"][0], "Amount": Decimal("15.00")}]}
    with pytest.raises(RecordError, match="less than the credit already applied"):
        qb.update("CreditMemo", smaller, request_id="c-1-u2")
    assert qbo.credit_memo_remaining(memo["Id"]) == Decimal("10.00")


# -- reading back -----------------------------------------------------------------------------------------


def test_cdc_reports_credit_memos_and_their_changed_balances(qbo: QuickBooksSandbox, books: Books) -> None:
    qbo.advance_clock(dt.timedelta(minutes=1))
    since = qbo.now()
    qb = connect(qbo)
    memo = qb.create("CreditMemo", credit_memo(books.acme, books.item, "30.00"), request_id="c-1")
    qb.create("Payment", apply_credit(books.acme, books.inv100, memo["Id"], "20.00"), request_id="a-1")

    changes = qb.changes(["CreditMemo", "Invoice", "Payment"], since)

    assert [(row["Id"], row["RemainingCredit"]) for row in changes.entities["CreditMemo"]] == [
        (memo["Id"], Decimal("10.00"))
    ]
    assert [row["Id"] for row in changes.entities["Invoice"]] == [books.inv100]
    assert len(changes.entities["Payment"]) == 1


def test_applied_credit_survives_a_sandbox_restart(
    tmp_path: Path, qbo: QuickBooksSandbox, books: Books
) -> None:
    memo = qbo.seed("CreditMemo", [credit_memo(books.acme, books.item, "30.00")])[0]
    payment = qbo.seed("Payment", [apply_credit(books.acme, books.inv100, memo["Id"], "20.00")])[0]
    qbo.save_state(tmp_path / "qbo.json")

    with QuickBooksSandbox() as again:
        again.load_state(tmp_path / "qbo.json")
        assert again.credit_memo_remaining(memo["Id"]) == Decimal("10.00")
        current = again.entities("CreditMemo")[0]
        noted = again.seed(
            "CreditMemo", [{"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True}]
        )[0]
        assert noted["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
        again.delete_payment(payment["Id"])  # the restored links still know which credit it used
        assert again.credit_memo_remaining(memo["Id"]) == Decimal("30.00")
        assert again.invoice_balance(books.inv100) == Decimal("100.00")
