"""Generation rules beyond the acceptance scenarios: anchors, trials, terms, changes, usage, problems."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from billing.discounts import Discount
from billing.engine import BillingSettings, Change, GenerationResult, Subscription, generate
from billing.model import Customer, Order, OrderLine
from billing.money import Currency, Money
from billing.pricing import PriceSpec, Tier, UsageRecord
from billing.tax import TaxRate

USD = Currency.of("USD")


def price(id: str = "p", model: Any = "recurring", amount: str = "10", **kwargs: Any) -> PriceSpec:
    if model in ("recurring", "installment") and "interval" not in kwargs:
        kwargs["interval"] = "month"
    return PriceSpec(id, kwargs.pop("currency", USD), model, D(amount), **kwargs)


def sub(start: date, price_id: str = "p", **kwargs: Any) -> Subscription:
    return Subscription(kwargs.pop("id", "s"), kwargs.pop("customer", "c"), price_id, start, **kwargs)


def gen(
    as_of: date,
    subs: Iterable[Subscription] = (),
    prices: Iterable[PriceSpec] = (),
    customers: Iterable[Customer] = (Customer("c", "USD"),),
    **kwargs: Any,
) -> GenerationResult:
    return generate(
        as_of=as_of, customers=customers, prices=list(prices) or [price()], subscriptions=subs, **kwargs
    )


def billed(result: GenerationResult) -> list[tuple[str, str, str]]:
    """(issue date, source key, amount) of every line, in invoice order."""
    assert result.problems == [], result.problems
    return [
        (inv.issue_date.isoformat(), line.source_key, str(line.amount.amount))
        for inv in result.invoices
        for line in inv.lines
    ]


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


# --- recurring: anchors, trials, terms -----------------------------------------------------------


def test_anniversary_billing_in_advance_catches_up_one_invoice_per_period() -> None:
    result = gen(date(2024, 3, 31), [sub(date(2024, 1, 31))])
    assert billed(result) == [
        ("2024-01-31", "sub:s:2024-01-31", "10.00"),
        ("2024-02-29", "sub:s:2024-02-29", "10.00"),
        ("2024-03-31", "sub:s:2024-03-31", "10.00"),
    ]
    assert result.invoices[1].period_end == date(2024, 3, 31)
    assert result.invoices[0].due_date == date(2024, 3, 1)


def test_calendar_anchor_prorates_the_first_partial_month() -> None:
    result = gen(date(2024, 5, 1), [sub(date(2024, 4, 21), anchor="calendar")])
    assert billed(result) == [
        ("2024-04-21", "sub:s:2024-04-21", "3.33"),
        ("2024-05-01", "sub:s:2024-05-01", "10.00"),
    ]


def test_trial_bills_nothing_until_it_ends_and_anchors_the_periods_there() -> None:
    result = gen(date(2024, 2, 20), [sub(date(2024, 1, 1), trial_end=date(2024, 1, 15))])
    assert billed(result) == [
        ("2024-01-15", "sub:s:2024-01-15", "10.00"),
        ("2024-02-15", "sub:s:2024-02-15", "10.00"),
    ]


def test_fixed_term_prorates_its_last_period_and_stops() -> None:
    result = gen(date(2024, 12, 31), [sub(date(2024, 1, 1), end=date(2024, 2, 16))])
    assert billed(result) == [
        ("2024-01-01", "sub:s:2024-01-01", "10.00"),
        ("2024-02-01", "sub:s:2024-02-01", "5.17"),
    ]


def test_in_arrears_bills_each_period_at_its_end() -> None:
    result = gen(date(2024, 3, 1), [sub(date(2024, 1, 1))], [price(billing="in_arrears")])
    assert billed(result) == [
        ("2024-02-01", "sub:s:2024-01-01", "10.00"),
        ("2024-03-01", "sub:s:2024-02-01", "10.00"),
    ]


def test_in_arrears_with_a_mid_period_change_bills_each_segment_and_a_cancel_bills_the_stub() -> None:
    changes = (Change(date(2024, 1, 11), quantity=D(2)), Change(date(2024, 2, 15), cancel=True))
    result = gen(
        date(2024, 6, 1), [sub(date(2024, 1, 1), changes=changes)], [price(amount="31", billing="in_arrears")]
    )
    assert billed(result) == [
        ("2024-02-01", "sub:s:2024-01-01", "10.00"),
        ("2024-02-01", "sub:s:2024-01-01:2024-01-11", "42.00"),
        ("2024-02-15", "sub:s:2024-02-01", "29.93"),  # 2 x 31 x 14/29
    ]


def test_weekly_prices_use_the_anniversary_even_with_a_bill_cycle_day() -> None:
    customers = [Customer("c", "USD", bill_cycle_day=1)]
    result = gen(date(2024, 1, 10), [sub(date(2024, 1, 3))], [price(interval="week")], customers)
    assert [key for _, key, _ in billed(result)] == ["sub:s:2024-01-03", "sub:s:2024-01-10"]


# --- changes and proration -----------------------------------------------------------------------


def test_quantity_change_credits_the_old_and_charges_the_new_quantity() -> None:
    result = gen(
        date(2024, 9, 16), [sub(date(2024, 9, 1), changes=(Change(date(2024, 9, 16), quantity=D(3)),))]
    )
    assert billed(result)[1:] == [
        ("2024-09-16", "sub:s:2024-09-01:charge:2024-09-16", "15.00"),
        ("2024-09-16", "sub:s:2024-09-01:credit:2024-09-16", "-5.00"),
    ]


def test_cancel_immediately_credits_the_unused_part() -> None:
    result = gen(
        date(2024, 12, 31), [sub(date(2024, 9, 1), changes=(Change(date(2024, 9, 21), cancel=True),))]
    )
    assert billed(result) == [
        ("2024-09-01", "sub:s:2024-09-01", "10.00"),
        ("2024-09-21", "sub:s:2024-09-01:credit:2024-09-21", "-3.33"),
    ]


def test_cancel_at_period_end_keeps_the_period_and_stops_after_it() -> None:
    change = Change(date(2024, 9, 21), cancel=True, at_period_end=True)
    assert billed(gen(date(2024, 12, 31), [sub(date(2024, 9, 1), changes=(change,))])) == [
        ("2024-09-01", "sub:s:2024-09-01", "10.00")
    ]


def test_upgrade_at_period_end_takes_effect_on_the_next_period_without_proration() -> None:
    change = Change(date(2024, 9, 21), price="big", at_period_end=True)
    result = gen(
        date(2024, 10, 1), [sub(date(2024, 9, 1), changes=(change,))], [price(), price("big", amount="20")]
    )
    assert billed(result) == [
        ("2024-09-01", "sub:s:2024-09-01", "10.00"),
        ("2024-10-01", "sub:s:2024-10-01", "20.00"),
    ]


def test_two_changes_in_one_period_credit_what_each_charged() -> None:
    changes = (Change(date(2024, 9, 11), price="big"), Change(date(2024, 9, 21), cancel=True))
    result = gen(
        date(2024, 12, 31),
        [sub(date(2024, 9, 1), changes=changes)],
        [price(amount="30"), price("big", amount="60")],
    )
    assert billed(result) == [
        ("2024-09-01", "sub:s:2024-09-01", "30.00"),
        ("2024-09-11", "sub:s:2024-09-01:charge:2024-09-11", "40.00"),
        ("2024-09-11", "sub:s:2024-09-01:credit:2024-09-11", "-20.00"),
        ("2024-09-21", "sub:s:2024-09-01:credit:2024-09-21", "-20.00"),
    ]


def test_changes_on_the_same_day_and_on_a_boundary_need_no_proration() -> None:
    changes = (Change(date(2024, 10, 1), quantity=D(2)), Change(date(2024, 10, 1), price="big"))
    result = gen(
        date(2024, 10, 1), [sub(date(2024, 9, 1), changes=changes)], [price(), price("big", amount="20")]
    )
    assert billed(result) == [
        ("2024-09-01", "sub:s:2024-09-01", "10.00"),
        ("2024-10-01", "sub:s:2024-10-01", "40.00"),
    ]


def test_none_day_count_bills_partial_periods_in_full_and_defers_changes() -> None:
    changes = (Change(date(2024, 9, 16), quantity=D(2)), Change(date(2024, 10, 1), quantity=D(3)))
    result = gen(
        date(2024, 10, 31),
        [sub(date(2024, 8, 20), changes=changes)],
        [price(proration="none")],
        [Customer("c", "USD", bill_cycle_day=1)],
    )
    assert billed(result) == [
        ("2024-08-20", "sub:s:2024-08-20", "10.00"),
        ("2024-09-01", "sub:s:2024-09-01", "10.00"),
        ("2024-10-01", "sub:s:2024-10-01", "30.00"),
    ]


def test_none_day_count_in_arrears_bills_the_period_at_its_first_state() -> None:
    changes = (Change(date(2024, 9, 16), quantity=D(2)),)
    result = gen(
        date(2024, 11, 1),
        [sub(date(2024, 9, 1), changes=changes)],
        [price(proration="none", billing="in_arrears")],
    )
    assert billed(result) == [
        ("2024-10-01", "sub:s:2024-09-01", "10.00"),
        ("2024-11-01", "sub:s:2024-10-01", "20.00"),
    ]


def test_thirty_day_months_prorate_on_30_360() -> None:
    result = gen(
        date(2021, 9, 16),
        [sub(date(2021, 9, 16))],
        [price(amount="24.95", proration="thirty_day_months")],
        [Customer("c", "USD", bill_cycle_day=25)],
    )
    (line,) = result.invoices[0].lines
    assert line.amount == Money("7.49", USD)  # 24.95 x 9/30, where actual days give 7.24
    assert line.explanation is not None and line.explanation.proration is not None
    assert (line.explanation.proration.numerator, line.explanation.proration.denominator) == (9, 30)


def test_switching_to_a_yearly_price_credits_the_month_and_starts_a_yearly_grid() -> None:
    changes = (Change(date(2024, 9, 16), price="yearly"),)
    result = gen(
        date(2025, 9, 16),
        [sub(date(2024, 9, 1), changes=changes)],
        [price(), price("yearly", amount="100", interval="year")],
    )
    assert billed(result) == [
        ("2024-09-01", "sub:s:2024-09-01", "10.00"),
        ("2024-09-16", "sub:s:2024-09-01:credit:2024-09-16", "-5.00"),
        ("2024-09-16", "sub:s:2024-09-16", "100.00"),
        ("2025-09-16", "sub:s:2025-09-16", "100.00"),
    ]


def test_a_change_during_the_trial_applies_from_the_first_billed_period() -> None:
    s = sub(date(2024, 1, 1), trial_end=date(2024, 1, 15), changes=(Change(date(2024, 1, 5), quantity=D(2)),))
    assert billed(gen(date(2024, 1, 15), [s])) == [("2024-01-15", "sub:s:2024-01-15", "20.00")]


def test_negotiated_amount_holds_until_the_price_changes() -> None:
    changes = (Change(date(2024, 10, 1), quantity=D(2)), Change(date(2024, 11, 1), price="big"))
    s = sub(date(2024, 9, 1), unit_amount=D("7.5"), changes=changes, description="Our deal")
    result = gen(date(2024, 11, 1), [s], [price(), price("big", amount="20", name="Big plan")])
    assert [(ln.description, str(ln.amount.amount)) for inv in result.invoices for ln in inv.lines] == [
        ("Our deal", "7.50"), ("Our deal", "15.00"), ("Big plan", "40.00"),
    ]  # fmt: skip


# --- usage ---------------------------------------------------------------------------------------


def test_usage_subscription_bills_each_period_with_a_minimum_true_up() -> None:
    calls = price("calls", "usage", "2", minimum=D(10))
    usage = [UsageRecord("c", "calls", at(2024, 1, 5), D(3)), UsageRecord("c", "calls", at(2024, 2, 5), D(7))]
    result = gen(date(2024, 4, 1), [sub(date(2024, 1, 1), "calls")], [calls], usage=usage)
    assert billed(result) == [
        ("2024-02-01", "usage:s:2024-01-01", "6.00"),
        ("2024-02-01", "usage:s:2024-01-01:minimum", "4.00"),
        ("2024-03-01", "usage:s:2024-02-01", "14.00"),
        ("2024-04-01", "usage:s:2024-03-01:minimum", "10.00"),  # no usage at all: the minimum
    ]
    true_up = result.invoices[0].lines[1]
    assert true_up.description == "calls: minimum commitment true-up"


def test_usage_subscription_prorates_the_minimum_of_a_partial_period_and_stops_when_cancelled() -> None:
    calls = price("calls", "usage", "1", minimum=D(31))
    s = sub(date(2024, 1, 1), "calls", changes=(Change(date(2024, 1, 11), cancel=True),))
    usage = [UsageRecord("c", "calls", at(2024, 1, 2)), UsageRecord("c", "calls", at(2024, 1, 20))]
    result = gen(date(2024, 3, 1), [s], [calls], usage=usage)
    assert billed(result) == [
        ("2024-01-11", "usage:s:2024-01-01", "1.00"),
        ("2024-01-11", "usage:s:2024-01-01:minimum", "9.00"),
        ("2024-02-01", "usage:c:calls:2024-01-01", "1.00"),  # after the cancellation: the customer's cycle
    ]


def test_usage_subscription_cancelled_at_period_end() -> None:
    calls = price("calls", "usage", "1")
    s = sub(date(2024, 1, 1), "calls", changes=(Change(date(2024, 1, 11), cancel=True, at_period_end=True),))
    usage = [UsageRecord("c", "calls", at(2024, 1, 20)), UsageRecord("c", "calls", at(2024, 2, 20))]
    assert billed(gen(date(2024, 3, 1), [s], [calls], usage=usage)) == [
        ("2024-02-01", "usage:s:2024-01-01", "1.00"),
        ("2024-03-01", "usage:c:calls:2024-02-01", "1.00"),
    ]


def test_usage_without_subscription_follows_the_customer_cycle_and_ignores_resent_events() -> None:
    calls = price("calls", "usage", "1", aggregation="count")
    usage = [
        UsageRecord("c", "calls", at(2024, 1, 24), id="e1"),
        UsageRecord("c", "calls", at(2024, 1, 24), id="e1"),
        UsageRecord("c", "calls", at(2024, 1, 25), id="e2"),
    ]
    customers = [Customer("c", "USD", bill_cycle_day=25)]
    assert billed(gen(date(2024, 2, 25), [], [calls], customers, usage=usage)) == [
        ("2024-01-25", "usage:c:calls:2023-12-25", "1.00"),
        ("2024-02-25", "usage:c:calls:2024-01-25", "1.00"),
    ]


def test_usage_is_billed_only_when_its_period_has_ended() -> None:
    calls = price("calls", "usage", "1")
    assert (
        gen(date(2024, 1, 31), [], [calls], usage=[UsageRecord("c", "calls", at(2024, 1, 5))]).invoices == []
    )


def test_tiered_usage_line_shows_an_average_unit_price_and_the_tiers_in_its_explanation() -> None:
    calls = price("calls", "usage", charge="graduated", tiers=(Tier(D(5), D(7)), Tier(None, D("6.5"))))
    result = gen(date(2024, 2, 1), [], [calls], usage=[UsageRecord("c", "calls", at(2024, 1, 5), D(6))])
    (line,) = result.invoices[0].lines
    assert line.unit_price == Money("6.9166666667", USD) and line.amount == Money("41.50", USD)
    assert (
        line.explanation is not None
        and len(line.explanation.tiers) == 2
        and line.explanation.unit_amount is None
    )


def test_percentage_usage_and_zero_usage_quantity() -> None:
    fees = price("fees", "usage", "0", charge="percentage", rate=D("2.9"), fixed_fee=D("0.30"))
    peak = price("peak", "usage", "3", aggregation="max", charge="package", package_size=D(10))
    usage = [
        UsageRecord("c", "fees", at(2024, 1, 5), D("100")),
        UsageRecord("c", "peak", at(2024, 1, 5), D(0)),
    ]
    assert billed(gen(date(2024, 2, 1), [], [fees, peak], usage=usage)) == [
        ("2024-02-01", "usage:c:fees:2024-01-01", "3.20"),
        ("2024-02-01", "usage:c:peak:2024-01-01", "0.00"),
    ]


# --- orders and installments ---------------------------------------------------------------------


def order(*lines: OrderLine, date_: date = date(2024, 1, 31), **kwargs: Any) -> Order:
    return Order(
        kwargs.pop("id", "o"),
        "c",
        kwargs.pop("currency", "USD"),
        date_,
        kwargs.pop("end", None),
        lines,
        **kwargs,
    )


def test_installments_by_schedule_fall_due_on_the_anniversary() -> None:
    laptop = price("laptop", "installment", "999.99", installments=3, schedule=(D(50), D(25), D(25)))
    result = gen(date(2024, 12, 31), [], [laptop], orders=[order(OrderLine("l", "laptop", D(1), None))])
    assert billed(result) == [
        ("2024-01-31", "installment:l:1", "499.99"),  # 50 % of 999.99, rounded down
        ("2024-02-29", "installment:l:2", "249.99"),
        ("2024-03-31", "installment:l:3", "250.01"),  # the remainder
    ]


def test_recurring_order_lines_become_subscriptions_with_the_foundation_source_keys() -> None:
    lines = (OrderLine("l1", "p", D(2), None), OrderLine("l2", "setup", D(1), D("99.5"), "Setup, discounted"))
    result = gen(
        date(2024, 2, 29),
        [],
        [price(), price("setup", "one_time", "150")],
        orders=[order(*lines, end=date(2024, 3, 15))],
    )
    assert billed(result) == [
        ("2024-01-31", "order-line:l2", "99.50"),
        ("2024-01-31", "sub:l1:2024-01-31", "20.00"),
        ("2024-02-29", "sub:l1:2024-02-29", "9.68"),  # the term ends 2024-03-15: 2 x 10 x 15/31
    ]


def test_negotiated_price_bills_a_currency_the_price_book_lacks() -> None:
    customers = [Customer("c", "EUR")]
    result = gen(
        date(2024, 1, 31),
        [],
        [price("setup", "one_time", "150")],
        customers,
        orders=[order(OrderLine("l", "setup", D(1), D(80)), currency="EUR")],
    )
    assert [str(inv.total) for inv in result.invoices] == ["EUR 80.00"]


def test_jpy_and_kwd_round_to_their_minor_units() -> None:
    prices = [
        price("a", "one_time", "100.5", currency=Currency.of("JPY")),
        price("a", "one_time", "1.23456", currency=Currency.of("KWD")),
    ]
    customers = [Customer("j", "JPY"), Customer("k", "KWD")]
    orders = [Order("o1", "j", "JPY", date(2024, 1, 1), None, (OrderLine("l1", "a", D(1), None),)),
              Order("o2", "k", "KWD", date(2024, 1, 1), None, (OrderLine("l2", "a", D(1), None),))]  # fmt: skip
    result = gen(date(2024, 1, 1), [], prices, customers, orders=orders)
    assert [str(inv.total) for inv in result.invoices] == ["JPY 101", "KWD 1.235"]


# --- grouping, discounts, taxes, rounding, re-runs -----------------------------------------------


def test_grouping_by_customer_puts_a_catch_up_on_one_invoice_dated_as_of() -> None:
    result = gen(date(2024, 3, 15), [sub(date(2024, 1, 1))], settings=BillingSettings(grouping="customer"))
    (invoice,) = result.invoices
    assert invoice.issue_date == date(2024, 3, 15) and len(invoice.lines) == 3
    assert (invoice.period_start, invoice.period_end) == (date(2024, 1, 1), date(2024, 4, 1))


def test_discount_once_applies_to_the_first_period_before_tax() -> None:
    s = sub(date(2024, 1, 1), discounts=("welcome",))
    result = gen(
        date(2024, 2, 1), [s], [price(tax="vat")],
        taxes=[TaxRate("vat", D(20))], discounts=[Discount("welcome", "percent", D(50))],
    )  # fmt: skip
    first, second = result.invoices
    assert (str(first.discount_total), str(first.tax_total), str(first.total)) == (
        "USD 5.00",
        "USD 1.00",
        "USD 6.00",
    )
    assert first.lines[0].explanation is not None and first.lines[0].explanation.discounts == ("welcome",)
    assert (str(second.discount_total), str(second.total)) == ("USD 0.00", "USD 12.00")


def test_half_even_line_rounding_is_a_setting() -> None:
    s = [sub(date(2024, 1, 1), quantity=D(1))]
    up = gen(date(2024, 1, 1), s, [price(amount="0.125")])
    even = gen(
        date(2024, 1, 1), s, [price(amount="0.125")], settings=BillingSettings(line_rounding="half_even")
    )
    assert (str(up.invoices[0].total), str(even.invoices[0].total)) == ("USD 0.13", "USD 0.12")
    assert even.invoices[0].lines[0].explanation.rounding == "HALF_EVEN to 0.01"  # type: ignore[union-attr]


def test_rerunning_with_the_existing_invoices_adds_nothing_and_later_runs_add_only_new_periods() -> None:
    subs = [sub(date(2024, 1, 1), changes=(Change(date(2024, 1, 20), quantity=D(2)),))]
    first = gen(date(2024, 1, 31), subs)
    assert gen(date(2024, 1, 31), subs, existing_invoices=first.invoices).invoices == []
    later = gen(date(2024, 2, 1), subs, existing_invoices=first.invoices)
    assert [key for _, key, _ in billed(later)] == ["sub:s:2024-02-01"]
    assert gen(date(2024, 2, 1), subs, already_billed=first.source_keys | later.source_keys).invoices == []


# --- problems --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subscription", "message"),
    [
        (sub(date(2024, 1, 1), customer="nobody"), "customer 'nobody' not found"),
        (sub(date(2024, 1, 1), currency="XXX"), "unknown currency code 'XXX'"),
        (sub(date(2024, 1, 1), quantity=D(0)), "quantity must be a positive number"),
        (sub(date(2024, 1, 1), end=date(2024, 1, 1)), "must be after start"),
        (sub(date(2024, 1, 1), "nope"), "unknown price 'nope'"),
        (sub(date(2024, 1, 1), currency="EUR"), "price 'p' has no EUR amount (priced in: USD)"),
        (sub(date(2024, 1, 1), "once"), "a subscription needs a recurring or usage price"),
        (sub(date(2024, 1, 1), discounts=("nope",)), "unknown discount 'nope'"),
        (sub(date(2024, 1, 1), "taxed"), "names unknown tax rate 'gone'"),
        (sub(date(2024, 1, 1), changes=(Change(date(2023, 1, 1), quantity=D(2)),)), "is before the start"),
        (
            sub(date(2024, 1, 1), changes=(Change(date(2024, 1, 9), quantity=D(0)),)),
            "quantity must be a positive number",
        ),
        (sub(date(2024, 1, 1), changes=(Change(date(2024, 1, 9)),)), "changes nothing"),
        (
            sub(date(2024, 1, 1), changes=(Change(date(2024, 1, 9), price="once"),)),
            "price 'once' is not recurring",
        ),
        (
            sub(date(2024, 1, 1), "calls", changes=(Change(date(2024, 1, 9), quantity=D(2)),)),
            "can only be cancelled",
        ),
    ],
)
def test_a_bad_subscription_is_a_problem_and_the_others_are_still_billed(
    subscription: Subscription, message: str
) -> None:
    prices = [price(), price("once", "one_time"), price("calls", "usage"), price("taxed", tax="gone")]
    good = sub(date(2024, 1, 1), id="good")
    result = gen(date(2024, 1, 31), [subscription, good], prices)
    assert [(p.subject, p.message) for p in result.problems if message in p.message] == [
        ("subscription s", result.problems[0].message)
    ]
    assert [ln.source_key for inv in result.invoices for ln in inv.lines] == ["sub:good:2024-01-01"]


def test_order_problems_name_the_order_or_line() -> None:
    prices = [price("setup", "one_time", "5")]
    orders = [
        order(OrderLine("l1", "setup", D(1), None), id="ok"),
        order(OrderLine("l1", "setup", D(1), None), id="dup"),
        order(OrderLine("l2", "setup", D(0), None), OrderLine("l3", "setup", D(1), D(-1)), id="bad-lines"),
        order(OrderLine("l4", "setup", D(1), None), id="backwards", end=date(2020, 1, 1)),
        Order("stranger", "nobody", "USD", date(2024, 1, 1), None, ()),
        order(OrderLine("l5", "setup", D(1), None), id="coupon", discounts=("nope",)),
    ]
    result = gen(date(2024, 12, 31), [], prices, orders=orders)
    assert [(p.subject, p.message.split(" (")[0].split(",")[0]) for p in result.problems] == [
        ("order dup line l1", "duplicate order line id"),
        ("order bad-lines line l2", "quantity must be a positive number"),
        ("order bad-lines line l3", "negotiated unit_price must be a finite amount >= 0"),
        ("order backwards", "end_date 2020-01-01 is before effective_date 2024-01-31"),
        ("order stranger", "customer 'nobody' not found"),
        ("order coupon", "unknown discount 'nope'"),
    ]
    assert [ln.source_key for inv in result.invoices for ln in inv.lines] == ["order-line:l1"]


def test_usage_problems_name_the_customer_and_price() -> None:
    usage = [UsageRecord("c", "p", at(2024, 1, 1)), UsageRecord("nobody", "calls", at(2024, 1, 1))]
    result = gen(date(2024, 3, 1), [], [price(), price("calls", "usage")], usage=usage)
    assert [(p.subject, p.message) for p in result.problems] == [
        ("usage of c on p", "price 'p' is recurring, not usage"),
        ("usage of nobody on calls", "customer 'nobody' not found"),
    ]


def test_changes_after_a_fixed_term_are_ignored_and_a_cancel_on_the_start_day_bills_nothing() -> None:
    late = sub(date(2024, 1, 1), end=date(2024, 2, 1), changes=(Change(date(2024, 3, 1), quantity=D(5)),))
    assert billed(gen(date(2024, 6, 1), [late])) == [("2024-01-01", "sub:s:2024-01-01", "10.00")]
    gone = sub(date(2024, 1, 1), changes=(Change(date(2024, 1, 1), cancel=True),))
    assert gen(date(2024, 6, 1), [gone]).invoices == []


def test_in_arrears_and_installments_are_not_billed_twice_nor_early() -> None:
    laptop = price("laptop", "installment", "900", installments=3)
    orders = [order(OrderLine("l", "laptop", D(1), None))]
    subs = [sub(date(2024, 1, 1))]
    prices = [price(billing="in_arrears"), laptop]
    first = gen(date(2024, 2, 29), subs, prices, orders=orders)
    assert [key for _, key, _ in billed(first)] == ["installment:l:1", "sub:s:2024-01-01", "installment:l:2"]
    again = gen(date(2024, 3, 1), subs, prices, orders=orders, existing_invoices=first.invoices)
    assert [key for _, key, _ in billed(again)] == ["sub:s:2024-02-01"]


def test_a_negotiated_price_for_an_unknown_product_is_still_a_problem() -> None:
    result = gen(date(2024, 12, 31), [], orders=[order(OrderLine("l", "ghost", D(1), D(5)))])
    assert [p.message for p in result.problems] == ["unknown price 'ghost'"]
