"""Credit notes in QuickBooks Online, end to end: Salesforce sandbox -> billsync -> QBO sandbox.

What an accountant checks in QBO after billsync credits part of an invoice: one CreditMemo numbered
like billsync's credit note, the invoice's open balance equal to what billsync says is due, the
invoice settled once the rest is paid, nothing sent twice, and the zero-total payment that applies the
credit never pulled back as money received. Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL)
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from sync_engine.bindings import bindings_by_canonical
from sync_engine.credit_notes import issue_credit_note
from sync_engine.cycle import CycleResult, run_cycle
from sync_engine.payments import Receipt, amount_due, record_payment
from sync_engine.store.models import DeadLetter, Invoice, OutboxItem, Payment
from tests.sync_engine.company import TODAY, Company, count

pytestmark = pytest.mark.integration

DESTINATION = "quickbooks"
LATER = TODAY + dt.timedelta(days=2)


def push(company: Company, as_of: dt.date = TODAY) -> CycleResult:
    """One push of every destination, from a fresh process (nothing remembered in memory)."""
    return run_cycle(company.fresh_runtime(), as_of=as_of, steps=("push",))


def qbo_sent(result: CycleResult) -> dict[str, int]:
    return next(p.sent for p in result.pushes if p.destination == DESTINATION)


def billed_and_pushed(company: Company) -> tuple[str, str, str, Decimal, int]:
    """Bill and push; an open invoice that QBO holds: (id, number, QBO id, total, first line)."""
    destination = next(d for d in company.runtime.settings.destinations if d.name == DESTINATION)
    assert {"customer", "product", "invoice", "payment", "credit_note", "credit_application"} <= set(
        destination.mappings
    )
    assert company.runtime.settings.payments.quickbooks == destination.connection
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill", "push"))
    with company.runtime.sessions() as session:
        invoices = list(
            session.scalars(select(Invoice).where(Invoice.status == "open").order_by(Invoice.number))
        )
        bound = bindings_by_canonical(session, DESTINATION, "invoice", [i.id for i in invoices])
        chosen = next(i for i in invoices if i.id in bound and i.total >= Decimal("50") and i.lines)
        assert chosen.number is not None
        first_line = min(line.position for line in chosen.lines)
        return chosen.id, chosen.number, bound[chosen.id].external_id, chosen.total, first_line


def billsync_invoice(company: Company, invoice_id: str) -> Invoice:
    with company.runtime.sessions() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        session.expunge(found)
        return found


def pay_by_bank(company: Company, invoice_id: str, amount: Decimal, ref: str) -> None:
    invoice = billsync_invoice(company, invoice_id)
    with company.runtime.transaction() as session:
        record_payment(
            session,
            company.runtime.settings,
            Receipt(
                source="bank",
                source_ref=ref,
                customer_id=invoice.customer_id,
                amount=amount,
                currency=invoice.currency,
                received_on=LATER,
                method="bank_transfer",
                invoice_ids=[invoice_id],
            ),
            as_of=LATER,
        )


def open_dead_letters(company: Company) -> list[tuple[str, str, str]]:
    with company.runtime.sessions() as session:
        return [
            (d.stream, d.entity, d.error)
            for d in session.scalars(select(DeadLetter).where(DeadLetter.status == "open"))
        ]


def test_a_partial_credit_note_lowers_the_quickbooks_balance_and_the_rest_paid_settles_it_once(
    company: Company,
) -> None:
    invoice_id, number, qbo_invoice, total, first_line = billed_and_pushed(company)
    assert company.qbo.invoice_balance(qbo_invoice) == total
    letters_before = open_dead_letters(company)

    summary = issue_credit_note(
        company.runtime,
        number,
        reason="goodwill: late delivery",
        amounts={first_line: Decimal("10.00")},
        requested_by="support@example.com",
        as_of=TODAY,
    )
    credit = Decimal(summary["total"])
    assert summary["number"] == "CN-000001" and Decimal("0") < credit < total
    pushed = push(company)
    assert qbo_sent(pushed).get("credit_note") == 1 and qbo_sent(pushed).get("credit_application") == 1
    assert "payment" not in qbo_sent(pushed)  # a credit note is not money received

    memos = company.qbo.entities("CreditMemo")
    assert [(m["DocNumber"], Decimal(str(m["TotalAmt"]))) for m in memos] == [("CN-000001", credit)]
    assert company.qbo.credit_memo_remaining(memos[0]["Id"]) == 0  # all of it set against the invoice
    due = amount_due(billsync_invoice(company, invoice_id))
    assert due == total - credit
    assert company.qbo.invoice_balance(qbo_invoice) == due
    applications = [p for p in company.qbo.entities("Payment") if Decimal(str(p["TotalAmt"])) == 0]
    assert len(applications) == 1

    pay_by_bank(company, invoice_id, due, "bank-stmt-42")
    pushed = push(company, LATER)
    assert qbo_sent(pushed) == {"payment": 1}
    assert company.qbo.invoice_balance(qbo_invoice) == 0
    paid = billsync_invoice(company, invoice_id)
    assert (paid.status, amount_due(paid)) == ("paid", Decimal("0"))

    payments_in_qbo = company.qbo.count("Payment")
    routes_before = Counter(company.qbo.calls_by_route)
    again = push(company, LATER)
    assert qbo_sent(again) == {}
    assert Counter(company.qbo.calls_by_route) == routes_before  # not one call to QBO
    assert company.qbo.count("CreditMemo") == 1 and company.qbo.count("Payment") == payments_in_qbo
    assert count(company.runtime, OutboxItem, OutboxItem.status != "sent") == 0

    payments_in_billsync = count(company.runtime, Payment)
    collected = run_cycle(company.fresh_runtime(), as_of=LATER, steps=("collect",))
    assert collected.receivables is not None and collected.receivables.quickbooks is not None
    pulled = collected.receivables.quickbooks
    assert pulled.read >= 2 and pulled.recorded == 0 and pulled.dead_lettered == 0
    assert count(company.runtime, Payment) == payments_in_billsync
    assert open_dead_letters(company) == letters_before
    after = billsync_invoice(company, invoice_id)
    assert (after.status, after.amount_paid) == ("paid", total)  # not paid twice over


def test_crediting_a_paid_invoice_leaves_the_whole_credit_memo_as_remaining_credit(company: Company) -> None:
    invoice_id, number, qbo_invoice, total, _ = billed_and_pushed(company)
    pay_by_bank(company, invoice_id, total, "bank-stmt-7")
    push(company, LATER)
    assert company.qbo.invoice_balance(qbo_invoice) == 0
    zero_payments_before = sum(1 for p in company.qbo.entities("Payment") if Decimal(str(p["TotalAmt"])) == 0)
    letters_before = open_dead_letters(company)

    summary = issue_credit_note(
        company.runtime, number, reason="service cancelled", requested_by="support@example.com", as_of=LATER
    )
    assert Decimal(summary["total"]) == total
    assert (summary["applied_to_invoice"], Decimal(summary["customer_credit"])) == ("0.00", total)
    pushed = push(company, LATER)
    assert qbo_sent(pushed) == {"credit_note": 1}

    memos = company.qbo.entities("CreditMemo")
    assert [(m["DocNumber"], Decimal(str(m["TotalAmt"]))) for m in memos] == [("CN-000001", total)]
    assert company.qbo.credit_memo_remaining(memos[0]["Id"]) == total
    assert company.qbo.invoice_balance(qbo_invoice) == 0
    zero_payments = sum(1 for p in company.qbo.entities("Payment") if Decimal(str(p["TotalAmt"])) == 0)
    assert zero_payments == zero_payments_before
    assert count(company.runtime, OutboxItem, OutboxItem.entity == "credit_application") == 0

    assert qbo_sent(push(company, LATER)) == {} and company.qbo.count("CreditMemo") == 1
    collected = run_cycle(company.fresh_runtime(), as_of=LATER, steps=("collect",))
    assert collected.receivables is not None and collected.receivables.quickbooks is not None
    assert collected.receivables.quickbooks.recorded == 0
    assert open_dead_letters(company) == letters_before
