from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal as D

import pytest

from billing.engine import Change, Subscription, generate
from billing.lifecycle import (
    CreditNote,
    InvalidTransitionError,
    credit_note,
    finalize,
    issue_credit_note,
    mark_uncollectible,
    record_payment,
    void,
)
from billing.model import Customer, Invoice
from billing.money import Currency, Money
from billing.pricing import PriceSpec
from billing.tax import TaxRate

USD = Currency.of("USD")


def draft(amount: str = "100", changes: tuple[Change, ...] = ()) -> list[Invoice]:
    result = generate(
        as_of=date(2024, 1, 31),
        customers=[Customer("c", "USD")],
        prices=[PriceSpec("p", USD, "recurring", D(amount), interval="month", tax="vat")],
        subscriptions=[Subscription("s", "c", "p", date(2024, 1, 1), changes=changes)],
        taxes=[TaxRate("vat", D(10))],
    )
    return result.invoices


def usd(amount: str) -> Money:
    return Money(amount, USD)


def test_an_invoice_gets_its_number_only_at_finalisation_and_is_paid_in_parts() -> None:
    (inv,) = draft()
    assert (inv.status, inv.number) == ("draft", None)
    opened = finalize(inv, "INV-000001")
    assert (opened.status, opened.number, opened.total) == ("open", "INV-000001", usd("110.00"))
    part = record_payment(opened, usd("10.00"))
    assert (part.status, part.amount_due) == ("partially_paid", usd("100.00"))
    paid = record_payment(part, usd("100.00"))
    assert (paid.status, paid.amount_due) == ("paid", usd("0.00"))
    assert inv.status == "draft"  # values are frozen: finalising returned a new invoice


def test_a_zero_invoice_is_paid_when_finalised() -> None:
    (inv,) = draft("0")
    assert finalize(inv, "INV-2").status == "paid"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda inv: finalize(finalize(inv, "A-1"), "A-2"), "cannot finalize invoice A-1: it is open"),
        (lambda inv: record_payment(inv, usd("1")), "cannot pay invoice inv-"),
        (lambda inv: void(inv), "only open or uncollectible invoices"),
        (lambda inv: void(record_payment(finalize(inv, "A-1"), usd("1"))), "it is partially_paid"),
        (lambda inv: void(mark_uncollectible(record_payment(finalize(inv, "A-1"), usd("1")))), "USD 1.00 was paid; issue a credit note"),
        (lambda inv: mark_uncollectible(void(finalize(inv, "A-1"))), "cannot mark uncollectible invoice A-1: it is void"),
    ],
)  # fmt: skip
def test_transitions_that_are_not_allowed(action: object, message: str) -> None:
    (inv,) = draft()
    with pytest.raises(InvalidTransitionError, match=message):
        action(inv)  # type: ignore[operator]


def test_uncollectible_can_still_be_paid_or_voided() -> None:
    opened = finalize(draft()[0], "A-1")
    written_off = mark_uncollectible(opened)
    assert record_payment(written_off, usd("110.00")).status == "paid"
    assert void(written_off).status == "void" and void(opened).status == "void"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (Money("1", "EUR"), "payment in EUR for an invoice in USD"),
        (usd("0"), "must be positive"),
        (usd("110.01"), "exceeds the amount due"),
    ],
)
def test_bad_payments_are_refused(amount: Money, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record_payment(finalize(draft()[0], "A-1"), amount)
    with pytest.raises(ValueError, match="needs a number"):
        finalize(draft()[0], " ")


def test_credit_notes_give_back_at_most_what_was_billed_with_proportional_tax() -> None:
    inv = finalize(draft()[0], "A-1")
    key = inv.lines[0].source_key
    first = credit_note(
        inv, key="cn1", issue_date=date(2024, 2, 1), reason="goodwill", amounts={key: usd("40.00")}
    )
    assert (first.subtotal, first.tax_total, first.total, first.status) == (
        usd("40.00"),
        usd("4.00"),
        usd("44.00"),
        "draft",
    )
    issued = issue_credit_note(first, "CN-000001")
    assert (issued.number, issued.status, issued.invoice_number) == ("CN-000001", "issued", "A-1")
    with pytest.raises(ValueError, match="can credit from 0 to 60.00, not 60.01"):
        credit_note(
            inv,
            key="cn2",
            issue_date=date(2024, 2, 1),
            reason="r",
            amounts={key: usd("60.01")},
            previous=[issued],
        )
    rest = credit_note(
        inv,
        key="cn2",
        issue_date=date(2024, 2, 1),
        reason="r",
        amounts={key: usd("60.00")},
        previous=[issued],
    )
    assert rest.total == usd("66.00")
    with pytest.raises(InvalidTransitionError, match="already issued"):
        issue_credit_note(issued, "CN-2")


def test_a_full_credit_note_nets_negative_proration_lines_too() -> None:
    (first, change) = draft(changes=(Change(date(2024, 1, 16), quantity=D(2)),))
    inv = finalize(change, "A-2")
    note = credit_note(inv, key="cn", issue_date=date(2024, 2, 1), reason="billing error")
    assert note.total == inv.total and len(note.lines) == 2
    assert [line.description.startswith("Credit: ") for line in note.lines] == [True, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": " "}, "needs a reason"),
        ({"amounts": {"nope": Money("1", "USD")}}, "has no line 'nope'"),
        ({"amounts": {"sub:s:2024-01-01": Money("1", "EUR")}}, "credit in EUR"),
        ({"amounts": {"sub:s:2024-01-01": Money("-1", "USD")}}, "can credit from 0 to 100.00"),
        ({"amounts": {"sub:s:2024-01-01": Money("0", "USD")}}, "at least one line"),
    ],
)
def test_invalid_credit_notes(kwargs: dict[str, object], message: str) -> None:
    inv = finalize(draft()[0], "A-1")
    args: dict[str, object] = {"key": "cn", "issue_date": date(2024, 2, 1), "reason": "r", **kwargs}
    with pytest.raises(ValueError, match=message):
        credit_note(inv, **args)  # type: ignore[arg-type]


def test_credit_notes_need_a_finalised_invoice_and_their_own_previous_notes() -> None:
    (inv,) = draft()
    with pytest.raises(InvalidTransitionError, match="cannot credit"):
        credit_note(inv, key="cn", issue_date=date(2024, 2, 1), reason="r")
    a, b = finalize(inv, "A-1"), finalize(replace(inv, key="inv-other"), "A-2")
    other = credit_note(b, key="x", issue_date=date(2024, 2, 1), reason="r")
    with pytest.raises(ValueError, match="belongs to another invoice"):
        credit_note(a, key="cn", issue_date=date(2024, 2, 1), reason="r", previous=[other])
    with pytest.raises(ValueError, match="needs a number"):
        issue_credit_note(other, "")


def test_partial_credits_give_back_exactly_the_line_s_tax_however_they_split_it() -> None:
    """Thirds of 100 at 10 %: tax is rounded on what has been credited so far (3.33, 3.34, 3.33), so
    the whole line's 10.00 comes back and no cent is left that no credit note could clear."""
    inv = finalize(draft()[0], "A-1")
    key = inv.lines[0].source_key
    notes: list[CreditNote] = []
    for n, amount in enumerate(("33.33", "33.33", "33.34"), start=1):
        note = credit_note(
            inv,
            key=f"cn{n}",
            issue_date=date(2024, 2, 1),
            reason="r",
            amounts={key: usd(amount)},
            previous=notes,
        )
        notes.append(issue_credit_note(note, f"CN-{n}"))
    assert [n.tax_total for n in notes] == [usd("3.33"), usd("3.34"), usd("3.33")]
    assert sum((n.total.amount for n in notes), D(0)) == inv.total.amount


def test_a_line_without_tax_is_credited_without_tax() -> None:
    result = generate(
        as_of=date(2024, 1, 31),
        customers=[Customer("c", "USD")],
        prices=[PriceSpec("p", USD, "recurring", D("100"), interval="month")],
        subscriptions=[Subscription("s", "c", "p", date(2024, 1, 1))],
    )
    inv = finalize(result.invoices[0], "A-2")
    note = credit_note(inv, key="cn", issue_date=date(2024, 2, 1), reason="r")
    assert (note.subtotal, note.tax_total, note.total) == (usd("100.00"), usd("0.00"), usd("100.00"))
