"""Voiding an invoice in QuickBooks Online: the sandbox answers ``POST invoice?operation=void`` as QBO does
(the invoice stays, its amounts zeroed, "Voided" in its private note; refused while payments are applied),
and the connector voids once however often it is asked with the same request id.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from quickbooks.objects.invoice import Invoice as QbInvoice

from connectors.errors import RecordError
from connectors.quickbooks.client import QuickBooksConnector
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.quickbooks.tokens import MemoryTokenStore

pytestmark = pytest.mark.integration


def connect(qbo: QuickBooksSandbox) -> QuickBooksConnector:
    return QuickBooksConnector(qbo.settings(), MemoryTokenStore(), sleep=lambda seconds: None)


@pytest.fixture
def invoice(qbo: QuickBooksSandbox) -> dict[str, object]:
    """INV-000007 of 150.00 for Acme (2 x 75.00), with a private note, nothing paid."""
    customer = qbo.seed("Customer", [{"DisplayName": "Acme GmbH"}])[0]["Id"]
    item = qbo.seed("Item", [{"Name": "Consulting", "UnitPrice": Decimal("75")}])[0]["Id"]
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": Decimal("150.00"),
        "Description": "Consulting, October",
        "SalesItemLineDetail": {"ItemRef": {"value": item}, "Qty": Decimal("2"), "UnitPrice": Decimal("75")},
    }
    return qbo.seed(
        "Invoice",
        [
            {
                "DocNumber": "INV-000007",
                "CustomerRef": {"value": customer},
                "PrivateNote": "billsync invoice inv_7",
                "Line": [line],
            }
        ],
    )[0]


def test_a_void_keeps_the_invoice_and_its_number_with_every_amount_zeroed(
    qbo: QuickBooksSandbox, invoice: dict[str, object]
) -> None:
    qb = connect(qbo)
    voided = qb.void("Invoice", str(invoice["Id"]), str(invoice["SyncToken"]), request_id="void-inv-7")

    assert voided["Id"] == invoice["Id"] and voided["DocNumber"] == "INV-000007"
    assert voided["SyncToken"] == "1"
    assert voided["TotalAmt"] == voided["Balance"] == Decimal("0")
    assert voided["TxnTaxDetail"] == {"TotalTax": Decimal("0")}
    assert voided["PrivateNote"].startswith("Voided")
    lines = voided["Line"]
    assert [line["Amount"] for line in lines] == [Decimal("0"), Decimal("0")]  # the item line and subtotal
    assert lines[0]["Description"] == "Consulting, October"
    assert "Qty" not in lines[0]["SalesItemLineDetail"] and "UnitPrice" not in lines[0]["SalesItemLineDetail"]
    assert qb.get("Invoice", str(invoice["Id"])) == voided
    assert qbo.count("Invoice") == 1 and qbo.invoice_balance(str(invoice["Id"])) == 0
    assert qbo.voided(str(invoice["Id"]))


def test_python_quickbooks_own_void_is_understood(qbo: QuickBooksSandbox, invoice: dict[str, object]) -> None:
    qb = connect(qbo)
    parsed = QbInvoice.get(str(invoice["Id"]), qb=qb.qb)
    parsed.void(qb=qb.qb)  # the library's call: POST invoice?operation=void with {"Id", "SyncToken"}

    assert qbo.voids_applied == {str(invoice["Id"]): 1}
    again = QbInvoice.get(str(invoice["Id"]), qb=qb.qb)
    assert again.TotalAmt == 0 and again.Balance == 0 and again.PrivateNote.startswith("Voided")


def test_the_same_request_id_voids_once_and_a_stale_sync_token_is_read_again(
    qbo: QuickBooksSandbox, invoice: dict[str, object]
) -> None:
    qb = connect(qbo)
    invoice_id = str(invoice["Id"])
    qbo.stale_next_update()  # someone edited the invoice in QBO just before: 5010
    first = qb.void("Invoice", invoice_id, "0", request_id="void-inv-7")
    assert qbo.faults_injected["stale_sync_token"] == 1
    replayed = qb.void("Invoice", invoice_id, "0", request_id="void-inv-7")  # a resend after a lost answer

    assert replayed == first
    assert qbo.voids_applied == {invoice_id: 1}
    assert qb.get("Invoice", invoice_id)["SyncToken"] == "1"


def test_an_invoice_with_a_payment_applied_is_not_voided(
    qbo: QuickBooksSandbox, invoice: dict[str, object]
) -> None:
    qb = connect(qbo)
    invoice_id = str(invoice["Id"])
    customer = invoice["CustomerRef"]["value"]  # type: ignore[index]
    qbo.record_payment(customer, Decimal("50.00"), {invoice_id: Decimal("50.00")}, "2026-11-20")
    current = qb.get("Invoice", invoice_id)

    with pytest.raises(RecordError) as refused:
        qb.void("Invoice", invoice_id, current["SyncToken"], request_id="void-inv-7")

    assert refused.value.code == "6000" and "payments applied" in refused.value.message
    assert qb.get("Invoice", invoice_id) == current  # nothing changed
    assert qbo.voids_applied == {} and qbo.invoice_balance(invoice_id) == Decimal("100.00")


def test_an_unknown_invoice_is_a_record_error(qbo: QuickBooksSandbox) -> None:
    with pytest.raises(RecordError):
        connect(qbo).void("Invoice", "999", "0", request_id="void-unknown")
