"""billing.analytics: every figure on small books worked out by hand, and the invariants (MRR adds
up to recurring revenue exactly; the movements explain every month) for any books (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import analytics
from billing.analytics import (
    AGEING_BUCKETS,
    AllocationFact,
    Books,
    CreditNoteFact,
    InvoiceFact,
    LineFact,
    PaymentFact,
    RefundFact,
    ageing,
    average_days_to_pay,
    billing_model,
    books_date,
    days_to_pay,
    days_to_pay_trend,
    dso,
    invoiced_vs_collected,
    month_of,
    months_between,
    mrr,
    mrr_by_customer,
    outstanding,
    payment_methods,
    retention,
    revenue,
    spread,
    top_overdue,
)


def inv(
    id: str,
    customer: str = "c1",
    *,
    total: str = "100",
    issue: date = date(2024, 1, 1),
    due: date | None = None,
    status: str = "open",
    currency: str = "USD",
    lines: tuple[LineFact, ...] = (),
    paid_on: date | None = None,
) -> InvoiceFact:
    return InvoiceFact(
        id, customer, currency, status, issue, due or issue + timedelta(days=30), D(total), lines, paid_on
    )


def rec(net: str, start: date, end: date, kind: str = "recurring", product: str = "PLAN") -> LineFact:
    return LineFact(kind, D(net), product, "", start, end)


def pay(id: str, amount: str, on: date, *, method: str = "card", source: str = "stripe", customer: str = "c1", currency: str = "USD") -> PaymentFact:  # fmt: skip
    return PaymentFact(id, customer, currency, D(amount), on, method, source)


JAN, FEB, MAR, APR = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2024, 4, 1)


# --------------------------------------------------------------------------------------------
# months and spreading


def test_months_between_includes_both_ends_and_is_empty_backwards() -> None:
    assert months_between(date(2023, 11, 20), date(2024, 1, 5)) == [date(2023, 11, 1), date(2023, 12, 1), JAN]
    assert months_between(FEB, JAN) == []
    assert month_of(date(2024, 2, 29)) == FEB


def test_spread_is_by_days_with_the_remainder_on_the_last_month() -> None:
    # 100.00 from Jan 15 to Feb 15 (31 days): Jan has 17 days -> 54.84, Feb the rest 45.16
    assert spread(D("100.00"), "USD", date(2024, 1, 15), date(2024, 2, 15)) == {
        JAN: D("54.84"),
        FEB: D("45.16"),
    }
    # an annual plan: 12 parts (13 months touched when it starts mid-month) adding up exactly
    parts = spread(D("1000.00"), "USD", date(2024, 3, 10), date(2025, 3, 10))
    assert len(parts) == 13 and sum(parts.values()) == D("1000.00")
    assert parts[APR] == D("82.19")  # 30 of 365 days
    # JPY has no minor unit
    assert spread(D("1000"), "JPY", JAN, date(2024, 1, 31) + timedelta(days=2)) == {
        JAN: D("969"),
        FEB: D("31"),
    }
    # no end, or an empty period: the month of the start
    assert spread(D("5"), "USD", date(2024, 1, 9), None) == {JAN: D("5")}
    assert spread(D("5"), "USD", date(2024, 1, 9), date(2024, 1, 9)) == {JAN: D("5")}


def test_billing_model_falls_back_on_the_kind() -> None:
    assert billing_model("proration_credit") == "recurring"
    assert billing_model("minimum_true_up") == "usage"
    assert billing_model("usage", "usage") == "usage"
    assert billing_model("mystery") == "other"


# --------------------------------------------------------------------------------------------
# MRR


def test_mrr_movements_new_expansion_contraction_churn_reactivation() -> None:
    books = Books(
        invoices=(
            # c1: 100 in Jan, 150 in Feb (expansion), nothing in Mar (churn), 80 in Apr (reactivation)
            inv("i1", lines=(rec("100", JAN, FEB), rec("150", FEB, MAR))),
            inv("i2", lines=(rec("80", APR, date(2024, 5, 1)),), issue=APR),
            # c2: new in Feb at 50, contraction to 20 in Mar (a proration credit)
            inv(
                "i3",
                "c2",
                lines=(rec("50", FEB, MAR), rec("50", MAR, APR), rec("-30", MAR, APR, "proration_credit")),
            ),
            # usage and one-time lines are not recurring; a void invoice never counts
            inv(
                "i4",
                "c2",
                lines=(LineFact("usage", D("999"), "API", "usage", JAN, FEB), LineFact("one_time", D("7"))),
            ),
            inv("i5", "c3", status="void", lines=(rec("500", JAN, FEB),)),
            inv("i6", "c4", currency="EUR", lines=(rec("40", FEB, MAR),)),
        )
    )
    rows = {(r.month, r.currency): r for r in mrr(books, [JAN, FEB, MAR, APR])}
    jan, feb, mar, apr = (rows[m, "USD"] for m in (JAN, FEB, MAR, APR))
    assert (jan.opening, jan.new, jan.closing, jan.customers) == (D(0), D(100), D(100), 1)
    assert (feb.new, feb.expansion, feb.closing, feb.customers) == (D(50), D(50), D(200), 2)
    assert (mar.churn, mar.contraction, mar.closing) == (D(150), D(30), D(20))
    assert (apr.reactivation, apr.churn, apr.new, apr.closing, apr.arr) == (D(80), D(20), D(0), D(80), D(960))
    eur = rows[FEB, "EUR"]
    assert (eur.new, eur.closing) == (D(40), D(40)) and rows[MAR, "EUR"].churn == D(40)


def test_credit_notes_on_recurring_lines_come_off_mrr_and_negative_months_still_balance() -> None:
    line = rec("100", JAN, FEB)
    books = Books(
        invoices=(inv("i1", lines=(line,)), inv("i2", lines=(rec("-50", FEB, MAR, "proration_credit"),))),
        credit_notes=(
            CreditNoteFact("cn1", "i1", "c1", "USD", JAN, D("40"), (rec("40", JAN, FEB),)),
            CreditNoteFact("cn2", "i1", "c1", "USD", JAN, D("1"), (LineFact("one_time", D("1")),)),
            CreditNoteFact("cn3", "i1", "c1", "USD", JAN, D("99"), (rec("99", JAN, FEB),), status="void"),
        ),
    )
    assert mrr_by_customer(books) == {("c1", "USD"): {JAN: D(60), FEB: D(-50)}}
    # a recurring line without a period falls in the month it was issued (or credited)
    undated = LineFact("recurring", D("9"))
    books_undated = Books(
        invoices=(inv("u", issue=date(2024, 3, 3), lines=(undated,)),),
        credit_notes=(
            CreditNoteFact("n", "u", "c1", "USD", date(2024, 4, 4), D(2), (LineFact("recurring", D(2)),)),
        ),
    )
    assert mrr_by_customer(books_undated) == {("c1", "USD"): {MAR: D(9), APR: D(-2)}}
    jan, feb, mar = mrr(books, [JAN, FEB, MAR])
    assert jan.closing == D(60) and (feb.churn, feb.closing) == (D(110), D(-50))
    assert (mar.expansion, mar.closing) == (D(50), D(0))
    # from below zero to further below is a contraction
    deeper = Books(invoices=(inv("i1", lines=(rec("-5", JAN, FEB), rec("-9", FEB, MAR))),))
    assert mrr(deeper, [FEB])[0].contraction == D(4)


day = st.integers(0, 500).map(lambda n: date(2024, 1, 1) + timedelta(days=n))
lines = st.builds(
    lambda net, start, length, kind: LineFact(kind, net, "P", "", start, start + timedelta(days=length)),
    st.decimals(min_value=D("-500"), max_value=D("5000"), places=2),
    day,
    st.integers(0, 400),
    st.sampled_from(["recurring", "recurring", "proration_credit", "proration_charge", "usage"]),
)
invoices = st.lists(
    st.builds(
        lambda i, customer, currency, ls, status: inv(f"i{i}", customer, currency=currency, lines=tuple(ls), status=status),
        st.integers(), st.sampled_from(["a", "b", "c"]), st.sampled_from(["USD", "JPY"]),
        st.lists(lines, max_size=4), st.sampled_from(["open", "paid", "void"]),
    ),
    max_size=8, unique_by=lambda i: i.id,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(invoices)
def test_mrr_adds_up_to_recurring_revenue_and_movements_explain_every_month(found: list[InvoiceFact]) -> None:
    books = Books(invoices=tuple(found))
    months = months_between(date(2023, 12, 1), date(2026, 8, 1))  # beyond every period
    rows = mrr(books, months)
    recurring: dict[str, D] = defaultdict(D)
    for invoice in found:
        if invoice.status != "void":
            for line in invoice.lines:
                if line.kind != "usage":
                    recurring[invoice.currency] += line.net
    summed: dict[str, D] = defaultdict(D)
    for row in rows:
        summed[row.currency] += row.closing
        moved = row.opening + row.new + row.reactivation + row.expansion - row.contraction - row.churn
        assert moved == row.closing
        assert min(row.new, row.reactivation, row.expansion, row.contraction, row.churn) >= 0
    assert {c: v for c, v in summed.items() if v} == {c: v for c, v in recurring.items() if v}


# --------------------------------------------------------------------------------------------
# revenue and collections


def test_revenue_by_product_and_model_less_credit_notes_in_the_window() -> None:
    books = Books(
        invoices=(
            inv(
                "i1",
                issue=date(2024, 1, 10),
                lines=(rec("100", JAN, FEB), LineFact("one_time", D("30"), "SETUP")),
            ),
            inv("i2", issue=date(2024, 3, 10), lines=(rec("100", MAR, APR),)),  # outside the window
            inv(
                "i3",
                "c2",
                currency="EUR",
                issue=date(2024, 1, 5),
                lines=(LineFact("usage", D("12.5"), "API", "usage"),),
            ),
        ),
        credit_notes=(
            CreditNoteFact(
                "cn1", "i1", "c1", "USD", date(2024, 2, 1), D("10"), (LineFact("one_time", D("10"), "SETUP"),)
            ),
            CreditNoteFact("cn2", "i2", "c1", "USD", date(2024, 3, 11), D("5"), (rec("5", MAR, APR),)),
            CreditNoteFact("cn3", "void", "c1", "USD", date(2024, 1, 11), D("5"), (rec("5", JAN, FEB),)),
        ),
    )
    rows = revenue(books, JAN, date(2024, 2, 29))
    assert [(r.currency, r.product, r.model, r.invoiced, r.credited, r.net) for r in rows] == [
        ("EUR", "API", "usage", D("12.5"), D(0), D("12.5")),
        ("USD", "PLAN", "recurring", D(100), D(0), D(100)),
        ("USD", "SETUP", "one_time", D(30), D(10), D(20)),
    ]


def test_invoiced_vs_collected_counts_cash_by_day_received_not_credit_notes() -> None:
    books = Books(
        invoices=(
            inv("i1", total="110", issue=date(2024, 1, 31)),
            inv("i2", total="50", issue=date(2024, 2, 2), status="draft"),
        ),
        credit_notes=(CreditNoteFact("cn1", "i1", "c1", "USD", date(2024, 2, 3), D("11")),),
        payments=(
            pay("p1", "60", date(2024, 2, 1)),
            pay("p2", "11", date(2024, 2, 3), method="credit_note", source="credit_note"),
            pay("p3", "5", date(2024, 5, 1)),  # outside the months
            pay("p4", "7", date(2024, 2, 9), currency="EUR"),
        ),
        refunds=(RefundFact("p1", "c1", "USD", D("20"), date(2024, 2, 20)),),
    )
    jan_eur, jan, feb_eur, feb = invoiced_vs_collected(books, [JAN, FEB])
    assert (jan.month, jan.currency, jan.invoiced, jan.net_invoiced, jan.collected) == (
        JAN,
        "USD",
        D(110),
        D(110),
        D(0),
    )
    assert (feb.invoiced, feb.credited, feb.net_invoiced) == (D(0), D(11), D(-11))
    assert (feb.collected, feb.refunded, feb.net_collected) == (D(60), D(20), D(40))
    assert jan_eur.collected == D(0) and feb_eur.collected == D(7)


# --------------------------------------------------------------------------------------------
# receivables


AS_OF = date(2024, 6, 30)


def receivables() -> Books:
    due = [AS_OF, AS_OF - timedelta(days=1), AS_OF - timedelta(days=30), AS_OF - timedelta(days=31),
           AS_OF - timedelta(days=61), AS_OF - timedelta(days=90), AS_OF - timedelta(days=91)]  # fmt: skip
    found = [
        inv(f"u{n}", f"c{n % 3}", total="100", issue=d - timedelta(days=30), due=d) for n, d in enumerate(due)
    ]
    found += [
        inv("e1", "c1", total="40", currency="EUR", issue=date(2024, 6, 1), due=date(2024, 6, 20)),
        inv("paid", total="100", issue=date(2024, 5, 1), due=date(2024, 5, 2)),
        inv("later", total="100", issue=date(2024, 7, 1)),  # issued after as_of
        inv("bad", total="100", status="uncollectible", issue=date(2024, 1, 1)),
        inv("void", total="100", status="void", issue=date(2024, 1, 1)),
    ]
    return Books(
        invoices=tuple(found),
        allocations=(
            AllocationFact("u6", D("25"), date(2024, 6, 1), "p1"),
            AllocationFact("u6", D("75"), date(2024, 7, 2), "p2"),  # after as_of: still due then
            AllocationFact("paid", D("100"), date(2024, 5, 2), "p3"),
        ),
        payments=(pay("p1", "25", date(2024, 6, 1)), pay("p3", "100", date(2024, 5, 2))),
    )


def test_outstanding_is_the_total_less_allocations_up_to_as_of() -> None:
    due = outstanding(receivables(), AS_OF)
    assert due["u6"] == D(75) and "paid" not in due and "later" not in due and "bad" not in due
    assert "void" not in due and len(due) == 8


def test_ageing_buckets_by_days_past_due_per_currency() -> None:
    (usd_row,) = [r for r in ageing(receivables(), AS_OF) if r.currency == "USD"]
    (eur_row,) = [r for r in ageing(receivables(), AS_OF) if r.currency == "EUR"]
    assert [usd_row.buckets[b] for b in AGEING_BUCKETS] == [D(100), D(200), D(100), D(200), D(75)]
    assert [usd_row.invoices[b] for b in AGEING_BUCKETS] == [1, 2, 1, 2, 1]
    assert usd_row.total == D(675)
    assert eur_row.buckets["1-30"] == D(40) and eur_row.total == D(40)


def test_top_overdue_ranks_customers_per_currency_by_amount() -> None:
    rows = top_overdue(receivables(), AS_OF)
    # u0 is due today (not overdue); c0: u3 (31 days) + what is left of u6 (91 days)
    assert [(r.currency, r.customer_id, r.overdue, r.invoices, r.oldest_days_past_due) for r in rows] == [
        ("EUR", "c1", D(40), 1, 10),
        ("USD", "c1", D(200), 2, 61),
        ("USD", "c2", D(200), 2, 90),
        ("USD", "c0", D(175), 2, 91),
    ]
    assert [r.customer_id for r in top_overdue(receivables(), AS_OF, limit=1)] == ["c1", "c1"]


def test_dso_is_receivables_over_window_sales_times_days() -> None:
    books = Books(
        invoices=(
            inv("a", total="900", issue=date(2024, 1, 15)),
            inv("b", total="300", issue=date(2024, 3, 20), currency="EUR"),
        ),
        credit_notes=(CreditNoteFact("cn", "a", "c1", "USD", date(2024, 1, 20), D("300")),),
        allocations=(
            AllocationFact("a", D("300"), date(2024, 2, 10)),
            AllocationFact("a", D("300"), date(2024, 1, 20)),
        ),
    )
    rows = dso(books, [date(2023, 12, 1), JAN, FEB, MAR], as_of=date(2024, 2, 15), window_days=30)
    by = {(r.month, r.currency): r for r in rows}
    assert (date(2024, 3, 1), "USD") not in by  # after as_of
    jan = by[JAN, "USD"]
    assert (jan.on, jan.receivables, jan.sales, jan.dso) == (date(2024, 1, 31), D(600), D(600), D("30.0"))
    feb = by[FEB, "USD"]  # measured on as_of; the window (Jan 17 - Feb 15) holds only the credit note
    assert (feb.on, feb.receivables, feb.sales, feb.dso) == (date(2024, 2, 15), D(300), D(-300), None)
    assert by[date(2023, 12, 1), "EUR"].dso is None


# --------------------------------------------------------------------------------------------
# payment behaviour


def paid_books() -> Books:
    def paid(
        id: str, customer: str, issue: date, paid_on: date, by: str = "p"
    ) -> tuple[InvoiceFact, AllocationFact]:
        invoice = inv(
            id, customer, issue=issue, due=issue + timedelta(days=10), status="paid", paid_on=paid_on
        )
        return invoice, AllocationFact(id, D(100), paid_on, by)

    pairs = [
        paid("a1", "c1", date(2024, 1, 1), date(2024, 1, 21)),  # 20 days, 10 late
        paid("a2", "c1", date(2024, 4, 1), date(2024, 4, 6)),  # 5 days, 5 early
        paid("a3", "c1", date(2024, 5, 1), date(2024, 5, 11)),  # 10 days
        paid("b1", "c2", date(2024, 5, 1), date(2024, 5, 31)),  # 30 days
        paid("cn", "c2", date(2024, 5, 1), date(2024, 5, 2), by="credit"),  # settled by a credit note
    ]
    return Books(
        invoices=(
            *(i for i, _ in pairs),
            inv("zero", total="0", status="paid", paid_on=JAN),
            inv("open", "c3"),
        ),
        allocations=tuple(a for _, a in pairs),
        payments=(pay("p", "400", JAN), pay("credit", "100", JAN, source="credit_note")),
    )


def test_days_to_pay_per_customer_with_its_trend() -> None:
    rows = days_to_pay(paid_books(), JAN, date(2024, 6, 30))
    c2, c1 = rows
    assert (c2.customer_id, c2.invoices_paid, c2.average_days_to_pay, c2.average_days_late) == (
        "c2",
        1,
        D("30.0"),
        D("20.0"),
    )
    assert (c2.recent_average, c2.previous_average, c2.trend) == (D("30.0"), None, None)
    assert (c1.invoices_paid, c1.average_days_to_pay, c1.average_days_late) == (3, D("11.7"), D("1.7"))
    # last three months (Apr-Jun): 5 and 10 -> 7.5; the three before (Jan-Mar): 20 -> faster by 12.5
    assert (c1.recent_average, c1.previous_average, c1.trend) == (D("7.5"), D("20.0"), D("-12.5"))


def test_days_to_pay_trend_per_month_of_payment() -> None:
    trend = days_to_pay_trend(paid_books(), [JAN, FEB, date(2024, 5, 1)])
    assert [(t.month, t.invoices_paid, t.average_days_to_pay) for t in trend] == [
        (JAN, 1, D("20.0")),
        (FEB, 0, None),
        (date(2024, 5, 1), 2, D("20.0")),
    ]
    overall = average_days_to_pay(paid_books(), JAN, date(2024, 6, 30))
    assert (overall.invoices_paid, overall.average_days_to_pay) == (4, D("16.3"))


def test_payment_method_mix_per_currency_in_the_window() -> None:
    books = Books(
        payments=(
            pay("1", "75", JAN),
            pay("2", "20", FEB, method="bank_transfer"),
            pay("3", "5", FEB, method="bank_transfer"),
            pay("4", "5", APR),  # outside
            pay("5", "9", FEB, method="credit_note", source="credit_note"),
            pay("6", "0", FEB, currency="EUR", method="cash"),
        )
    )
    rows = payment_methods(books, JAN, date(2024, 3, 31))
    assert [(r.currency, r.method, r.payments, r.amount, r.share) for r in rows] == [
        ("EUR", "cash", 1, D(0), D(0)),
        ("USD", "card", 1, D(75), D("75.0")),
        ("USD", "bank_transfer", 2, D(25), D("25.0")),
    ]


# --------------------------------------------------------------------------------------------
# retention and the books' date


def test_retention_by_cohort_of_first_invoice_active_by_invoice_or_mrr() -> None:
    books = Books(
        invoices=(
            inv("a", "c1", issue=JAN, lines=(rec("100", JAN, date(2024, 3, 1)),)),  # active Jan, Feb
            inv("b", "c2", issue=date(2024, 1, 20)),
            inv("c", "c2", issue=date(2024, 3, 5)),  # back in March
            inv("d", "c3", issue=FEB),
            inv("v", "c4", issue=JAN, status="void"),
        )
    )
    rows = retention(books, [date(2023, 12, 1), JAN, FEB, date(2024, 5, 1)], as_of=date(2024, 3, 31))
    assert [(r.cohort, r.customers, r.retained) for r in rows] == [(JAN, 2, (2, 1, 1)), (FEB, 1, (1, 0))]
    assert rows[0].shares == (D("100.0"), D("50.0"), D("50.0"))
    # a cohort that begins after as_of has nothing to show yet
    early = retention(books, [JAN, FEB], as_of=date(2024, 1, 31))
    assert [(r.cohort, r.customers, r.retained) for r in early] == [(JAN, 2, (2,))]


def test_retention_over_a_window_of_centuries_costs_what_its_cohorts_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API caller asked for --from 0001-01-01: the report walked every pair of months (hours)."""
    books = Books(invoices=(inv("a", "c1", issue=JAN), inv("b", "c1", issue=FEB)))
    window = months_between(date(1, 1, 1), date(2024, 12, 1))
    steps = {"n": 0}
    real = analytics.add_months

    def counted(day: date, months: int) -> date:
        steps["n"] += 1
        return real(day, months)

    monkeypatch.setattr(analytics, "add_months", counted)
    rows = retention(books, window, as_of=date(2024, 3, 31))
    assert [(r.cohort, r.customers, r.retained) for r in rows] == [(JAN, 1, (1, 1, 0))]
    assert steps["n"] < 100  # the months of its one cohort, not of 24,000 empty ones


def test_books_date_is_the_latest_day_the_books_reached() -> None:
    assert books_date(Books()) is None
    books = Books(
        invoices=(
            inv("a", issue=JAN, status="overdue", due=date(2024, 3, 9)),
            inv("b", issue=FEB, status="paid", paid_on=date(2024, 2, 20)),
            inv("d", issue=date(2024, 9, 1), status="draft"),
        ),
        credit_notes=(CreditNoteFact("cn", "a", "c1", "USD", date(2024, 2, 2), D(1)),),
        payments=(pay("p", "1", date(2024, 2, 3)),),
        allocations=(AllocationFact("a", D(1), date(2024, 2, 4)),),
        refunds=(RefundFact("p", "c1", "USD", D(1), date(2024, 2, 5)),),
    )
    assert books_date(books) == date(2024, 3, 10)
    assert books_date(Books(refunds=books.refunds)) == date(2024, 2, 5)
