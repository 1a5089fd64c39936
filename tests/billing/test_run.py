from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from billing import (
    BillingProblem,
    BillingResult,
    Catalog,
    Customer,
    Invoice,
    Money,
    Order,
    OrderLine,
    add_months,
    billing_run,
)

CATALOG = Catalog.from_dict(
    yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "catalog.yaml").read_text())
)
CUSTOMERS = {
    "acme": Customer("acme", "USD"),
    "globex": Customer("globex", "EUR", payment_terms_days=14),
}


def line(
    id: str, code: str, quantity: str = "1", unit_price: str | None = None, description: str | None = None
) -> OrderLine:
    return OrderLine(
        id, code, Decimal(quantity), None if unit_price is None else Decimal(unit_price), description
    )


def order(
    id: str,
    *lines: OrderLine,
    customer: str = "acme",
    currency: str = "USD",
    start: date = date(2024, 1, 15),
    end: date | None = None,
) -> Order:
    return Order(id, customer, currency, start, end, tuple(lines))


def run(orders: Iterable[Order], as_of: date, already_billed: Collection[str] = ()) -> BillingResult:
    return billing_run(
        orders=orders, customers=CUSTOMERS, catalog=CATALOG, already_billed=already_billed, as_of=as_of
    )


def only_invoice(result: BillingResult) -> Invoice:
    assert result.problems == []
    assert len(result.invoices) == 1
    return result.invoices[0]


def period_starts(invoice: Invoice) -> list[date | None]:
    return [ln.period_start for ln in invoice.lines]


# --- one-time charges -------------------------------------------------------------------------


def test_one_time_line_is_billed_on_the_effective_date() -> None:
    inv = only_invoice(run([order("O1", line("L1", "SETUP-FEE"))], as_of=date(2024, 1, 15)))
    (ln,) = inv.lines
    assert (ln.source_key, ln.product_code, ln.description) == (
        "order-line:L1",
        "SETUP-FEE",
        "Onboarding and setup",
    )
    assert ln.amount == Money("500.00", "USD") and ln.period_start is None and ln.period_end is None
    assert (inv.customer_id, inv.currency.code, inv.issue_date, inv.due_date) == (
        "acme",
        "USD",
        date(2024, 1, 15),
        date(2024, 2, 14),
    )
    assert (inv.period_start, inv.period_end) == (date(2024, 1, 15), date(2024, 1, 15))
    assert (inv.subtotal, inv.tax_total, inv.total) == (
        Money("500", "USD"),
        Money("0", "USD"),
        Money("500", "USD"),
    )


def test_order_effective_after_as_of_produces_nothing_yet() -> None:
    result = run([order("O1", line("L1", "SETUP-FEE"), line("L2", "NO-SUCH"))], as_of=date(2024, 1, 14))
    assert result.invoices == [] and result.problems == []


def test_one_time_line_is_billed_once_however_late_the_run() -> None:
    inv = only_invoice(run([order("O1", line("L1", "TRAINING-DAY", "2"))], as_of=date(2024, 6, 1)))
    assert [ln.amount for ln in inv.lines] == [Money("2400.00", "USD")]


# --- recurring charges: in advance, anniversary periods ------------------------------------


def test_monthly_subscription_is_billed_in_advance() -> None:
    orders = [order("O1", line("L1", "PLAT-BASIC-M"))]
    assert period_starts(only_invoice(run(orders, as_of=date(2024, 1, 15)))) == [date(2024, 1, 15)]
    inv = only_invoice(run(orders, as_of=date(2024, 3, 15)))
    assert [(ln.period_start, ln.period_end) for ln in inv.lines] == [
        (date(2024, 1, 15), date(2024, 2, 15)),
        (date(2024, 2, 15), date(2024, 3, 15)),
        (date(2024, 3, 15), date(2024, 4, 15)),  # the period starting today is billed today
    ]
    assert [ln.source_key for ln in inv.lines] == [
        "sub:L1:2024-01-15",
        "sub:L1:2024-02-15",
        "sub:L1:2024-03-15",
    ]
    assert (inv.period_start, inv.period_end) == (date(2024, 1, 15), date(2024, 4, 15))
    assert inv.total == Money("147.00", "USD")
    assert len(only_invoice(run(orders, as_of=date(2024, 3, 14))).lines) == 2


@pytest.mark.parametrize(
    ("start", "as_of", "expected"),
    [
        (
            date(2024, 1, 31),
            date(2024, 5, 31),
            [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31)],
        ),
        (date(2023, 1, 31), date(2023, 3, 31), [date(2023, 1, 31), date(2023, 2, 28), date(2023, 3, 31)]),
        (date(2023, 1, 29), date(2023, 3, 29), [date(2023, 1, 29), date(2023, 2, 28), date(2023, 3, 29)]),
        (
            date(2023, 11, 30),
            date(2024, 3, 1),
            [date(2023, 11, 30), date(2023, 12, 30), date(2024, 1, 30), date(2024, 2, 29)],
        ),
    ],
)
def test_end_of_month_starts_clamp_to_shorter_months_and_come_back(
    start: date, as_of: date, expected: list[date]
) -> None:
    inv = only_invoice(run([order("O1", line("L1", "PLAT-BASIC-M"), start=start)], as_of=as_of))
    assert period_starts(inv) == expected
    # Each period ends where the next one starts: no gap, no overlap.
    assert [ln.period_end for ln in inv.lines[:-1]] == expected[1:]


def test_annual_subscription_from_a_leap_day() -> None:
    inv = only_invoice(
        run([order("O1", line("L1", "SUPPORT-PREM-Y"), start=date(2024, 2, 29))], as_of=date(2028, 3, 1))
    )
    assert period_starts(inv) == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]
    assert inv.total == Money("12000.00", "USD")


def test_quarterly_interval_count() -> None:
    catalog = Catalog.from_dict(
        {
            "products": [
                {
                    "code": "Q",
                    "name": "Quarterly",
                    "billing_model": "recurring",
                    "interval": "month",
                    "interval_count": 3,
                    "prices": {"USD": "30"},
                }
            ]
        }
    )
    result = billing_run(
        orders=[order("O1", line("L1", "Q"), start=date(2024, 1, 31))],
        customers=CUSTOMERS,
        catalog=catalog,
        already_billed=(),
        as_of=date(2024, 12, 31),
    )
    assert period_starts(only_invoice(result)) == [
        date(2024, 1, 31),
        date(2024, 4, 30),
        date(2024, 7, 31),
        date(2024, 10, 31),
    ]


def test_end_date_stops_periods_starting_on_or_after_it() -> None:
    orders = [order("O1", line("L1", "PLAT-BASIC-M"), start=date(2024, 1, 15), end=date(2024, 3, 15))]
    inv = only_invoice(run(orders, as_of=date(2024, 6, 1)))
    assert period_starts(inv) == [date(2024, 1, 15), date(2024, 2, 15)]


def test_period_running_past_end_date_is_billed_in_full_no_proration_yet() -> None:
    orders = [order("O1", line("L1", "PLAT-BASIC-M"), start=date(2024, 1, 15), end=date(2024, 2, 1))]
    inv = only_invoice(run(orders, as_of=date(2024, 6, 1)))
    assert [(ln.period_end, ln.amount) for ln in inv.lines] == [(date(2024, 2, 15), Money("49.00", "USD"))]


def test_end_date_before_effective_date_is_a_problem() -> None:
    result = run([order("O1", line("L1", "PLAT-BASIC-M"), end=date(2024, 1, 1))], as_of=date(2024, 2, 1))
    assert result.invoices == []
    assert result.problems == [
        BillingProblem("O1", None, "end_date 2024-01-01 is before effective_date 2024-01-15")
    ]


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2024, 1, 31), 13, date(2025, 2, 28)),
        (date(2024, 12, 15), 1, date(2025, 1, 15)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
        (date(2024, 5, 31), 0, date(2024, 5, 31)),
    ],
)
def test_add_months(anchor: date, months: int, expected: date) -> None:
    assert add_months(anchor, months) == expected


# --- re-running -------------------------------------------------------------------------------


def demo_orders() -> list[Order]:
    return [
        order("O1", line("L1", "SETUP-FEE"), line("L2", "PLAT-PRO-M"), line("L3", "SEATS-M", "5")),
        order("O2", line("L4", "PLAT-BASIC-M"), customer="globex", currency="EUR", start=date(2024, 2, 1)),
        order("O3", line("L5", "SUPPORT-PREM-Y"), start=date(2024, 2, 10)),
    ]


def test_rerun_with_previous_source_keys_creates_nothing() -> None:
    first = run(demo_orders(), as_of=date(2024, 3, 1))
    assert len(first.invoices) == 2
    second = run(demo_orders(), as_of=date(2024, 3, 1), already_billed=first.source_keys)
    assert second.invoices == [] and second.problems == []


def test_same_inputs_give_identical_invoices() -> None:
    first = run(demo_orders(), as_of=date(2024, 3, 1))
    again = run(list(reversed(demo_orders())), as_of=date(2024, 3, 1))
    assert again == first
    assert all(inv.key.startswith("inv-") and len(inv.key) == 28 for inv in first.invoices)


def test_next_run_bills_only_the_new_periods() -> None:
    feb = run(demo_orders(), as_of=date(2024, 2, 29))
    mar = run(demo_orders(), as_of=date(2024, 3, 31), already_billed=feb.source_keys)
    keys = {inv.customer_id: [ln.source_key for ln in inv.lines] for inv in mar.invoices}
    assert keys == {
        "acme": ["sub:L2:2024-03-15", "sub:L3:2024-03-15"],
        "globex": ["sub:L4:2024-03-01"],
    }
    assert mar.invoices[0].key != feb.invoices[0].key


def test_a_partially_billed_invoice_only_gets_the_missing_lines() -> None:
    full = only_invoice(
        run([order("O1", line("L1", "SETUP-FEE"), line("L2", "PLAT-PRO-M"))], as_of=date(2024, 1, 15))
    )
    partial = only_invoice(
        run(
            [order("O1", line("L1", "SETUP-FEE"), line("L2", "PLAT-PRO-M"))],
            as_of=date(2024, 1, 15),
            already_billed={"order-line:L1"},
        )
    )
    assert [ln.source_key for ln in partial.lines] == ["sub:L2:2024-01-15"]
    assert partial.key != full.key


# --- grouping ---------------------------------------------------------------------------------


def test_one_invoice_per_customer_and_currency_with_sorted_lines() -> None:
    orders = [
        order("O1", line("L9", "PLAT-BASIC-M")),
        order("O2", line("L1", "TRAINING-DAY"), start=date(2024, 1, 20)),
        order("O3", line("L5", "PLAT-PRO-M"), currency="EUR"),
        order("O4", line("L7", "SETUP-FEE"), customer="globex", currency="EUR"),
    ]
    result = run(orders, as_of=date(2024, 1, 31))
    assert result.problems == []
    assert [(inv.customer_id, inv.currency.code) for inv in result.invoices] == [
        ("acme", "EUR"),
        ("acme", "USD"),
        ("globex", "EUR"),
    ]
    acme_usd = result.invoices[1]
    assert [ln.source_key for ln in acme_usd.lines] == ["order-line:L1", "sub:L9:2024-01-15"]
    assert acme_usd.total == Money("1249.00", "USD")
    assert (acme_usd.period_start, acme_usd.period_end) == (date(2024, 1, 15), date(2024, 2, 15))
    assert result.invoices[2].due_date == date(2024, 2, 14)  # globex pays in 14 days


# --- prices -----------------------------------------------------------------------------------


def test_eur_order_uses_the_catalog_eur_price() -> None:
    inv = only_invoice(
        run([order("O1", line("L1", "SEATS-M", "3"), currency="EUR")], as_of=date(2024, 1, 15))
    )
    (ln,) = inv.lines
    assert (ln.unit_price, ln.amount, ln.quantity) == (
        Money("11.50", "EUR"),
        Money("34.50", "EUR"),
        Decimal(3),
    )
    assert inv.currency.code == "EUR"


def test_negotiated_unit_price_overrides_the_catalog() -> None:
    inv = only_invoice(
        run(
            [order("O1", line("L1", "PLAT-PRO-M", "1", "150.00", "Pro, negotiated"), currency="EUR")],
            as_of=date(2024, 1, 15),
        )
    )
    (ln,) = inv.lines
    assert (ln.unit_price, ln.amount, ln.description) == (
        Money("150.00", "EUR"),
        Money("150.00", "EUR"),
        "Pro, negotiated",
    )


def test_line_amount_is_rounded_half_up_while_unit_price_keeps_precision() -> None:
    inv = only_invoice(run([order("O1", line("L1", "SEATS-M", "3", "3.375"))], as_of=date(2024, 1, 15)))
    (ln,) = inv.lines
    assert ln.unit_price.amount == Decimal("3.375")
    assert ln.amount.amount == Decimal("10.13")  # 10.125 -> HALF_UP (banker's rounding would give 10.12)


def test_negotiated_price_bills_a_currency_the_catalog_does_not_price() -> None:
    inv = only_invoice(
        run([order("O1", line("L1", "PLAT-PRO-M", "2", "15000"), currency="JPY")], as_of=date(2024, 1, 15))
    )
    assert str(inv.total) == "JPY 30000"


# --- problems: reported, and the rest of the run goes on --------------------------------------


def test_unknown_product_is_a_problem_not_a_crash() -> None:
    orders = [
        order("O1", line("L1", "SETUP-FEE"), line("L2", "PLAT-ULTRA-M")),
        order("O2", line("L3", "PLAT-BASIC-M"), customer="globex", currency="EUR"),
    ]
    result = run(orders, as_of=date(2024, 1, 15))
    assert result.problems == [BillingProblem("O1", "L2", "unknown product code 'PLAT-ULTRA-M'")]
    assert [[ln.source_key for ln in inv.lines] for inv in result.invoices] == [
        ["order-line:L1"],
        ["sub:L3:2024-01-15"],
    ]


def test_line_fixed_later_is_billed_on_the_next_run() -> None:
    broken = run([order("O1", line("L1", "SETUP-FEE"), line("L2", "NOPE"))], as_of=date(2024, 1, 15))
    fixed = run(
        [order("O1", line("L1", "SETUP-FEE"), line("L2", "TRAINING-DAY"))],
        as_of=date(2024, 1, 16),
        already_billed=broken.source_keys,
    )
    assert [ln.source_key for ln in only_invoice(fixed).lines] == ["order-line:L2"]


@pytest.mark.parametrize(
    ("bad_order", "problem"),
    [
        (
            order("O9", line("L1", "SETUP-FEE"), customer="initech"),
            BillingProblem("O9", None, "customer 'initech' not found"),
        ),
        (
            order("O9", line("L1", "SETUP-FEE"), currency="GBP"),
            BillingProblem(
                "O9",
                "L1",
                "product 'SETUP-FEE' has no GBP price in the catalog (priced in: EUR, USD) "
                "and the order line has no negotiated unit_price",
            ),
        ),
        (
            order("O9", line("L1", "SEATS-M", "0")),
            BillingProblem("O9", "L1", "quantity must be a positive number, got 0"),
        ),
        (
            order("O9", line("L1", "SEATS-M", "1", "-5")),
            BillingProblem("O9", "L1", "negotiated unit_price must be a finite amount >= 0, got -5"),
        ),
        (
            order("O9", line("L1", "SEATS-M", "1", "1E+60")),
            BillingProblem("O9", "L1", "amount 1E+60 x 1 is too large to invoice"),
        ),
    ],
)
def test_bad_input_becomes_a_problem_and_other_orders_are_billed(
    bad_order: Order, problem: BillingProblem
) -> None:
    result = run([bad_order, order("O1", line("L7", "SETUP-FEE"))], as_of=date(2024, 1, 15))
    assert result.problems == [problem]
    assert [ln.source_key for ln in only_invoice(BillingResult(result.invoices, [])).lines] == [
        "order-line:L7"
    ]


def test_unknown_order_currency_is_a_problem() -> None:
    result = run([order("O1", line("L1", "SETUP-FEE"), currency="XYZ")], as_of=date(2024, 1, 15))
    assert result.invoices == []
    assert [(p.order_id, p.line_id) for p in result.problems] == [("O1", None)]
    assert "'XYZ'" in result.problems[0].message


def test_duplicate_line_ids_are_a_problem_because_they_name_the_charges() -> None:
    result = run(
        [order("O1", line("L1", "SETUP-FEE")), order("O2", line("L1", "TRAINING-DAY"))],
        as_of=date(2024, 1, 15),
    )
    assert [(p.order_id, p.line_id) for p in result.problems] == [("O2", "L1")]
    assert "already on order 'O1'" in result.problems[0].message
    assert [ln.product_code for inv in result.invoices for ln in inv.lines] == ["SETUP-FEE"]


def test_order_lines_reject_floats() -> None:
    with pytest.raises(TypeError, match="quantity"):
        OrderLine("L1", "SEATS-M", 1.5, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unit_price"):
        OrderLine("L1", "SEATS-M", Decimal(1), 9.99)  # type: ignore[arg-type]
