"""sync_engine.reports and ``billsync report``: facts loaded from the store (SQLite and PostgreSQL),
figures worked out by hand, the CLI printing exactly what the API gets, and MRR reconciled with the
recurring revenue of the demo's invoice lines."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sync_engine.reports import REPORT_NAMES, Report, UnknownReport, run_report
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentAllocation,
    Refund,
)
from sync_engine.users import add_user, create_token
from sync_engine.web import create_app
from tests.sync_engine.books import add_rows, customer_row, invoice_row, make_runtime

BILLSYNC = Path(sys.executable).parent / "billsync"
AS_OF = dt.date(2024, 6, 30)
D = Decimal
RECURRING = ("recurring", "proration_credit", "proration_charge")


def line(position: int, key: str, amount: str, *, kind: str | None, product: str = "PLAN", start: dt.date | None = None, end: dt.date | None = None, **extra: Any) -> InvoiceLine:  # fmt: skip
    explanation = (
        None if kind is None else {"kind": kind, "model": "recurring" if kind in RECURRING else kind}
    )
    return InvoiceLine(
        position=position,
        source_key=key,
        product_code=product,
        description=product,
        quantity=D(1),
        unit_price=D(amount),
        amount=D(amount),
        period_start=start,
        period_end=end,
        explanation=explanation,
        **extra,
    )


def payment(pid: str, customer: str, amount: str, on: dt.date, *, source: str, method: str, currency: str = "USD") -> Payment:  # fmt: skip
    return Payment(
        id=pid, number=pid.upper(), customer_id=customer, source=source, source_ref=pid, method=method,
        amount=D(amount), currency=currency, received_on=on, unapplied=D(0),
    )  # fmt: skip


def seed(runtime: Runtime) -> None:
    """Customer A (USD): January paid (a recurring line and a legacy one without explanation), a
    February invoice partly paid and partly credited, long overdue. Customer B (EUR): June, open,
    with an inclusive tax. Plus a void and a draft that must count nowhere."""
    jan, feb, mar = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
    a1 = invoice_row("INV-1", "118.80", customer_id="cus_a", issue=jan, due=dt.date(2024, 1, 31), status="paid", paid_on=dt.date(2024, 1, 20))  # fmt: skip
    a1.lines = [
        line(1, "sub:s1:2024-01-01", "100", kind="recurring", start=jan, end=feb),
        line(2, "sub:legacy:2024-01-01", "10", kind=None, start=jan, end=feb, discount_amount=D(2)),
    ]
    a2 = invoice_row(
        "INV-2", "220", customer_id="cus_a", issue=feb, due=dt.date(2024, 3, 2), status="overdue"
    )
    a2.amount_paid = D(75)
    a2.lines = [
        line(1, "sub:s1:2024-02-01", "100", kind="recurring", start=feb, end=mar),
        line(2, "order-line:o1", "100", kind="one_time", product="SETUP"),
    ]
    b1 = invoice_row("INV-3", "50", customer_id="cus_b", currency="EUR", issue=dt.date(2024, 6, 1), due=dt.date(2024, 7, 1))  # fmt: skip
    b1.lines = [
        line(
            1,
            "sub:s2:2024-06-01",
            "50",
            kind="recurring",
            start=dt.date(2024, 6, 1),
            end=dt.date(2024, 7, 1),
            tax_amount=D("8.33"),
            tax_inclusive=True,
        ),  # fmt: skip
    ]
    void = invoice_row("INV-4", "999", customer_id="cus_b", issue=jan, due=feb, status="void")
    void.lines = [line(1, "sub:s3:2024-01-01", "999", kind="recurring", start=jan, end=feb)]
    draft = invoice_row(
        "INV-5", "999", customer_id="cus_b", issue=jan, due=feb, status="draft", invoice_id="inv_draft"
    )
    draft.number = None
    draft.lines = [line(1, "sub:s4:2024-01-01", "999", kind="recurring", start=jan, end=feb)]
    note = CreditNote(
        id="cn_1", number="CN-1", invoice_id="inv_INV-2", customer_id="cus_a", currency="USD",
        issue_date=dt.date(2024, 3, 15), reason="goodwill", subtotal=D(50), tax_total=D(5), total=D(55),
    )  # fmt: skip
    note.lines = [
        CreditNoteLine(
            position=1,
            invoice_line_position=2,
            source_key="order-line:o1",
            description="SETUP",
            product_code="SETUP",
            amount=D(50),
            tax_amount=D(5),
        ),  # fmt: skip
    ]
    p1 = payment("pay_1", "cus_a", "118.80", dt.date(2024, 1, 20), source="stripe", method="card")
    p1.refunded = D("18.80")
    p2 = payment("pay_2", "cus_a", "20", dt.date(2024, 3, 10), source="bank", method="bank_transfer")
    p3 = payment("pay_3", "cus_a", "55", dt.date(2024, 3, 15), source="credit_note", method="credit_note")
    p1.allocations = [
        PaymentAllocation(invoice_id="inv_INV-1", amount=D("118.80"), applied_on=dt.date(2024, 1, 20))
    ]
    p2.allocations = [
        PaymentAllocation(invoice_id="inv_INV-2", amount=D(20), applied_on=dt.date(2024, 3, 10))
    ]
    p3.allocations = [
        PaymentAllocation(invoice_id="inv_INV-2", amount=D(55), applied_on=dt.date(2024, 3, 15))
    ]
    add_rows(
        runtime,
        customer_row("cus_a", name="Acme"),
        customer_row("cus_b", name="Globex"),
        a1, a2, b1, void, draft,
    )  # fmt: skip
    add_rows(runtime, note, p1, p2, p3)
    add_rows(runtime, Refund(payment_id="pay_1", source="stripe", source_ref="re_1", amount=D("18.80"), refunded_on=dt.date(2024, 2, 5)))  # fmt: skip


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(db_url, tmp_path)
    seed(runtime)
    yield runtime
    runtime.close()


def report(runtime: Runtime, name: str, **kwargs: Any) -> dict[str, Any]:
    found = run_report(runtime, name, as_of=kwargs.pop("as_of", AS_OF), **kwargs)
    data = found.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-able as it is, no default= needed
    assert all(list(row) == data["columns"] for row in data["rows"])
    return data


def by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in keys): row for row in rows}


def test_mrr_from_the_store_with_its_movements(runtime: Runtime) -> None:
    data = report(runtime, "mrr", months=6)
    assert data["params"] == {"from": "2024-01-01", "to": "2024-06-30", "months": "6", "as_of": "2024-06-30"}
    rows = by(data["rows"], "month", "currency")
    # the legacy line (no explanation) counts from its source key: 100 + (10 - 2) in January
    assert rows["2024-01", "USD"]["mrr"] == "108.00" and rows["2024-01", "USD"]["new"] == "108.00"
    assert rows["2024-02", "USD"]["contraction"] == "8.00" and rows["2024-02", "USD"]["mrr"] == "100.00"
    assert rows["2024-03", "USD"]["churn"] == "100.00" and rows["2024-03", "USD"]["customers"] == 0
    # the inclusive tax is not revenue: 50.00 - 8.33
    assert rows["2024-06", "EUR"]["mrr"] == "41.67" and rows["2024-06", "EUR"]["arr"] == "500.04"
    assert data["totals"]["recurring_revenue"] == {"EUR": "41.67", "USD": "208.00"}
    assert data["totals"]["mrr"] == {"EUR": "41.67", "USD": "0.00"}
    assert data["chart"] == {"type": "line", "x": "month", "series": ["mrr"], "group": "currency", "stacked": False, "data": "rows"}  # fmt: skip


def test_revenue_invoiced_vs_collected_and_payment_methods(runtime: Runtime) -> None:
    revenue = report(runtime, "revenue", date_from=dt.date(2024, 1, 1))
    assert [
        (r["currency"], r["product"], r["billing_model"], r["invoiced"], r["credited"], r["revenue"])
        for r in revenue["rows"]
    ] == [  # fmt: skip
        ("EUR", "PLAN", "recurring", "41.67", "0.00", "41.67"),
        ("USD", "PLAN", "recurring", "208.00", "0.00", "208.00"),
        ("USD", "SETUP", "one_time", "100.00", "50.00", "50.00"),
    ]
    assert revenue["totals"]["by_billing_model"][1:] == [
        {"currency": "USD", "billing_model": "one_time", "revenue": "50.00"},
        {"currency": "USD", "billing_model": "recurring", "revenue": "208.00"},
    ]
    flows = by(report(runtime, "invoiced-vs-collected", months=6)["rows"], "month", "currency")
    assert (flows["2024-01", "USD"]["invoiced"], flows["2024-01", "USD"]["collected"]) == ("118.80", "118.80")
    assert (
        flows["2024-02", "USD"]["refunded"] == "18.80"
        and flows["2024-02", "USD"]["net_collected"] == "-18.80"
    )
    # the credit note is credited, not collected; the bank transfer is
    assert (flows["2024-03", "USD"]["credited"], flows["2024-03", "USD"]["collected"]) == ("55.00", "20.00")
    assert flows["2024-06", "EUR"]["net_invoiced"] == "50.00"
    methods = report(runtime, "payment-methods", months=6)
    assert [(r["method"], r["payments"], r["amount"], r["share_percent"]) for r in methods["rows"]] == [
        ("card", 1, "118.80", "85.6"),
        ("bank_transfer", 1, "20.00", "14.4"),
    ]


def test_ageing_dso_and_top_overdue_on_a_day(runtime: Runtime) -> None:
    ageing = report(runtime, "ageing")
    assert ageing["params"] == {"as_of": "2024-06-30"}
    assert ageing["columns"] == ["currency", "current", "1-30", "31-60", "61-90", "90+", "total", "invoices"]
    assert ageing["rows"] == [
        {
            "currency": "EUR",
            "current": "50.00",
            "1-30": "0.00",
            "31-60": "0.00",
            "61-90": "0.00",
            "90+": "0.00",
            "total": "50.00",
            "invoices": 1,
        },  # fmt: skip
        {
            "currency": "USD",
            "current": "0.00",
            "1-30": "0.00",
            "31-60": "0.00",
            "61-90": "0.00",
            "90+": "145.00",
            "total": "145.00",
            "invoices": 1,
        },  # fmt: skip
    ]
    # before the bank transfer and the credit note, all 220 was due, 14 days late
    march = report(runtime, "ageing", as_of=dt.date(2024, 3, 9))
    assert by(march["rows"], "currency")["USD",]["1-30"] == "220.00"
    top = report(runtime, "top-overdue")
    assert top["rows"] == [
        {
            "currency": "USD",
            "rank": 1,
            "customer_id": "cus_a",
            "customer": "Acme",
            "overdue": "145.00",
            "invoices": 1,
            "oldest_days_past_due": 120,
        },  # fmt: skip
    ]
    dso = by(report(runtime, "dso", months=6)["rows"], "month", "currency")
    assert dso["2024-06", "EUR"]["dso"] == "90.0" and dso["2024-06", "USD"]["dso"] is None
    assert dso["2024-02", "USD"]["receivables"] == "220.00" and dso["2024-02", "USD"]["sales"] == "338.80"
    assert dso["2024-02", "USD"]["dso"] == "58.4"  # 220 / 338.80 x 90


def test_days_to_pay_and_retention(runtime: Runtime) -> None:
    days = report(runtime, "days-to-pay", months=6)
    assert days["rows"] == [
        {
            "customer_id": "cus_a",
            "customer": "Acme",
            "invoices_paid": 1,
            "average_days_to_pay": "19.0",
            "average_days_late": "-11.0",
            "recent_average": None,
            "previous_average": "19.0",
            "trend": None,
        },  # fmt: skip
    ]
    assert days["totals"]["by_month"][0] == {
        "month": "2024-01",
        "invoices_paid": 1,
        "average_days_to_pay": "19.0",
    }
    assert days["chart"]["data"] == "totals.by_month"
    cohorts = report(runtime, "retention", months=6)
    assert cohorts["columns"] == ["cohort", "customers", *(f"month_{k}" for k in range(6))]
    assert cohorts["rows"] == [
        {
            "cohort": "2024-01",
            "customers": 1,
            "month_0": "100.0",
            "month_1": "100.0",
            "month_2": "0.0",
            "month_3": "0.0",
            "month_4": "0.0",
            "month_5": "0.0",
        },  # fmt: skip
        {
            "cohort": "2024-06",
            "customers": 1,
            "month_0": "100.0",
            "month_1": None,
            "month_2": None,
            "month_3": None,
            "month_4": None,
            "month_5": None,
        },  # fmt: skip
    ]


def test_defaults_unknown_names_and_empty_windows(runtime: Runtime) -> None:
    today = dt.datetime.now(dt.UTC).date()
    assert run_report(runtime, "ageing").params == {"as_of": today.isoformat()}  # the books end in 2024
    # books dated ahead of the clock (as the demo's are) are reported as of their own last day
    ahead = today + dt.timedelta(days=40)
    add_rows(runtime, invoice_row("INV-9", "1", customer_id="cus_b", issue=ahead, due=ahead))
    assert run_report(runtime, "ageing").params == {"as_of": ahead.isoformat()}
    with pytest.raises(UnknownReport, match="choose one of: mrr, revenue"):
        run_report(runtime, "nope")
    with pytest.raises(ValueError, match="months must be at least 1"):
        run_report(runtime, "mrr", months=0)
    with pytest.raises(ValueError, match="the window is empty"):
        run_report(runtime, "mrr", date_from=dt.date(2024, 5, 1), date_to=dt.date(2024, 4, 1))
    empty = Report("x", "X", {}, ["a"], [{"a": 1}])
    assert empty.to_dict()["totals"] == {} and empty.to_dict()["chart"] == {}


def billsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BILLSYNC), *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_prints_what_run_report_returns(runtime: Runtime, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "billsync.yaml"
    settings = {"version": 1, "database_url": db_url, "catalog": "catalog.yaml", "connections": {}, "streams": [], "destinations": []}  # fmt: skip
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    done = billsync("report", "ageing", "--json", "--as-of", "2024-06-30", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == run_report(runtime, "ageing", as_of=AS_OF).to_dict()
    csv = billsync("report", "payment-methods", "--csv", "--from", "2024-01-01", "--as-of", "2024-06-30", "-c", str(config))  # fmt: skip
    assert csv.stdout.splitlines() == [
        "currency,method,payments,amount,share_percent",
        "USD,card,1,118.80,85.6",
        "USD,bank_transfer,1,20.00,14.4",
    ]
    table = billsync("report", "mrr", "--months", "6", "--as-of", "2024-06-30", "-c", str(config))
    assert table.returncode == 0 and "MRR and ARR with movements" in table.stdout and "108.00" in table.stdout
    unknown = billsync("report", "profit", "-c", str(config))
    assert unknown.returncode == 2 and "choose one of: " + ", ".join(REPORT_NAMES) in unknown.stderr
    bad = billsync("report", "mrr", "--from", "2024-05-01", "--to", "2024-04-01", "-c", str(config))
    assert bad.returncode == 2 and "the window is empty" in bad.stderr
    both = billsync("report", "mrr", "--json", "--csv", "-c", str(config))
    assert both.returncode == 2


# --------------------------------------------------------------------------------------------
# the demo


@pytest.mark.integration
def test_mrr_reconciles_with_recurring_revenue_on_the_demo_and_the_cli_matches_the_api(
    demo_workdir: Path,
) -> None:
    config = demo_workdir / "billsync.yaml"
    settings = load_settings(config)
    upgrade_database(settings.database_url)  # a reused workdir may predate the newest migration
    runtime = Runtime(settings)
    try:
        # recurring net revenue straight from the tables: lines of finalised, non-void invoices
        # whose explanation says recurring (or proration), after discounts, without any tax ...
        kind = func.json_extract(InvoiceLine.explanation, "$.kind")
        lines = select(
            Invoice.currency, InvoiceLine.amount, InvoiceLine.discount_amount, InvoiceLine.tax_amount,
            InvoiceLine.tax_inclusive, InvoiceLine.period_start, InvoiceLine.period_end,
        ).join(Invoice, Invoice.id == InvoiceLine.invoice_id).where(
            Invoice.number.is_not(None), Invoice.status.not_in(("draft", "void")), kind.in_(RECURRING)
        )  # fmt: skip
        # ... less what credit notes gave back of such lines
        credited = (
            select(CreditNote.currency, CreditNoteLine.amount)
            .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
            .join(InvoiceLine, InvoiceLine.source_key == CreditNoteLine.source_key)
            .where(kind.in_(RECURRING))
        )
        expected: dict[str, Decimal] = defaultdict(Decimal)
        starts, ends = [], []
        with runtime.sessions() as session:
            for currency, amount, discount, tax, inclusive, start, end in session.execute(lines):
                expected[currency] += amount - discount - (tax if inclusive else 0)
                starts.append(start)
                ends.append(end)
            for currency, amount in session.execute(credited):
                expected[currency] -= amount
        assert set(expected) == {"USD", "EUR"} and all(v > 0 for v in expected.values())

        done = billsync("report", "mrr", "--json", "--from", min(starts).isoformat(), "--to", max(ends).isoformat(), "-c", str(config))  # fmt: skip
        assert done.returncode == 0, done.stderr
        monthly = json.loads(done.stdout)["rows"]
        summed: dict[str, Decimal] = defaultdict(Decimal)
        for row in monthly:
            summed[row["currency"]] += Decimal(row["mrr"])
            moved = sum(Decimal(row[k]) for k in ("opening", "new", "expansion", "reactivation")) - Decimal(
                row["contraction"]
            ) - Decimal(row["churn"])  # fmt: skip
            assert moved == Decimal(row["mrr"]), row
        assert dict(summed) == dict(expected)

        # the CLI prints exactly what the API answers over HTTP (default as_of included)
        with runtime.transaction() as session:
            viewer = f"finance-{uuid.uuid4().hex[:8]}"  # the workdir is shared (and may be reused)
            add_user(session, viewer, "a long enough password", "viewer")
            token = create_token(session, viewer, "report test")
        api = TestClient(create_app(runtime))
        for args, query in ((("mrr", "--months", "12"), "mrr?months=12"), (("ageing",), "ageing")):
            done = billsync("report", *args, "--json", "-c", str(config))
            assert done.returncode == 0, done.stderr
            answer = api.get(f"/api/reports/{query}", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            assert json.loads(done.stdout) == answer.json()
            name, *rest = args
            assert answer.json() == run_report(runtime, name, months=int(rest[1]) if rest else None).to_dict()

        # the ageing covers exactly what the invoices still have due
        ageing = run_report(runtime, "ageing").to_dict()
        with runtime.sessions() as session:
            due: dict[str, Decimal] = defaultdict(Decimal)
            for invoice in session.scalars(select(Invoice).where(Invoice.status.in_(("open", "partially_paid", "overdue")))):  # fmt: skip
                due[invoice.currency] += invoice.total - invoice.amount_paid
        assert {r["currency"]: Decimal(r["total"]) for r in ageing["rows"]} == dict(due)
        # the demo's invoices marked overdue are past due in the ageing too
        assert ageing["totals"]["invoices_by_bucket"]["current"] < sum(ageing["totals"]["invoices_by_bucket"].values())  # fmt: skip
    finally:
        runtime.close()
