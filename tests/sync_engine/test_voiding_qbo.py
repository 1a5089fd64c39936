"""A void end to end: Salesforce sandbox -> billsync -> QuickBooks, ERP and CRM sandboxes.

What an accountant and a salesperson see after an admin voids an invoice: QuickBooks holds it voided
(same number, amounts zeroed) exactly once however often the push runs or is replayed after a lost
answer; the ERP recorded the status Void and the CRM shows it. An invoice voided before it ever reached
QuickBooks is created there and then voided, so the number sequence has no hole. Runs on SQLite and
(with BILLSYNC_TEST_DATABASE_URL) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from sync_engine.bindings import bindings_by_canonical
from sync_engine.cycle import CycleResult, run_cycle
from sync_engine.store.models import Binding, Invoice, OutboxItem
from sync_engine.voiding import void_invoice
from tests.sync_engine.company import TODAY, Company

pytestmark = pytest.mark.integration

QBO = "quickbooks"
VOIDED_AT = dt.datetime.combine(TODAY, dt.time(15, 30), dt.UTC)


def push(company: Company) -> CycleResult:
    return run_cycle(company.fresh_runtime(), as_of=TODAY, steps=("push",))


def qbo_sent(result: CycleResult) -> dict[str, int]:
    return next(p.sent for p in result.pushes if p.destination == QBO)


def an_open_invoice(company: Company) -> tuple[str, str]:
    with company.runtime.sessions() as session:
        invoice = session.scalars(
            select(Invoice).where(Invoice.status == "open").order_by(Invoice.number)
        ).first()
        assert invoice is not None and invoice.number is not None
        return invoice.id, invoice.number


def qbo_invoice(company: Company, invoice_id: str) -> dict[str, object]:
    with company.runtime.sessions() as session:
        external_id = bindings_by_canonical(session, QBO, "invoice", [invoice_id])[invoice_id].external_id
    return next(i for i in company.qbo.entities("Invoice") if i["Id"] == external_id)


def test_a_void_reaches_quickbooks_once_and_the_erp_and_crm_show_it(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill", "push"))
    invoice_id, number = an_open_invoice(company)
    before = qbo_invoice(company, invoice_id)
    assert Decimal(str(before["TotalAmt"])) > 0

    void_invoice(company.runtime, number, reason="duplicate order", requested_by="admin", now=VOIDED_AT)
    pushed = push(company)

    assert qbo_sent(pushed).get("invoice_void") == 1
    voided = qbo_invoice(company, invoice_id)
    assert voided["DocNumber"] == number and voided["TotalAmt"] == voided["Balance"] == 0
    assert str(voided["PrivateNote"]).startswith("Voided")
    assert company.qbo.voids_applied == {before["Id"]: 1}
    assert company.qbo_invoice_numbers()[number] == 1
    assert (number, "Void") in {(e["invoiceNo"], e["status"]) for e in company.erp.payment_statuses()}
    crm = {r["Invoice_Number__c"]: r for r in company.sf.records("Billsync_Invoice__c")}
    assert crm[number]["Status__c"] == "Void" and Decimal(str(crm[number]["Amount_Due__c"])) == 0

    assert qbo_sent(push(company)) == {}  # nothing more to say
    # A crash after QuickBooks voided it and before billsync recorded it: the row is in flight again
    with company.runtime.transaction() as session:
        session.execute(delete(Binding).where(Binding.entity == "invoice_void"))
        row = session.scalars(select(OutboxItem).where(OutboxItem.entity == "invoice_void")).one()
        row.status = "unknown"
    assert qbo_sent(push(company)) == {"invoice_void": 1}  # resent with its key: answered from the cache
    assert company.qbo.voids_applied == {before["Id"]: 1}
    with company.runtime.sessions() as session:
        assert (
            session.scalars(select(OutboxItem.status).where(OutboxItem.entity == "invoice_void")).one()
            == "sent"
        )


def test_an_invoice_voided_before_it_reached_quickbooks_is_created_there_then_voided(
    company: Company,
) -> None:
    run_cycle(company.runtime, as_of=TODAY, steps=("pull", "bill"))
    invoice_id, number = an_open_invoice(company)

    void_invoice(company.runtime, number, reason="wrong customer", requested_by="admin", now=VOIDED_AT)
    pushed = push(company)

    assert qbo_sent(pushed).get("invoice_void") == 1
    voided = qbo_invoice(company, invoice_id)
    assert voided["DocNumber"] == number and voided["TotalAmt"] == 0
    assert company.qbo.voids_applied == {voided["Id"]: 1}
    assert company.qbo_invoice_numbers()[number] == 1
