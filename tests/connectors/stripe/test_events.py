"""Event translation and Stripe's minor units: the exact Decimal the ledger will book."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from connectors.stripe.amounts import (
    THREE_DECIMAL_CURRENCIES,
    ZERO_DECIMAL_CURRENCIES,
    exponent,
    from_minor_units,
    to_minor_units,
)
from connectors.stripe.events import (
    Ignored,
    PaymentFailed,
    PaymentSucceeded,
    Refunded,
    UntranslatableEvent,
    translate,
)
from connectors.stripe.webhook import sign, verify_event
from tests.connectors.stripe.conftest import SECRET, TS, event_bytes, event_of, resource

WHEN = dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)  # 1764000000


def fixture_event(name: str) -> Any:
    body = event_bytes(name)
    return translate(verify_event(body, sign(body, SECRET, TS), SECRET, now=TS))


# -- the signed fixture events ----------------------------------------------------------------------------


def test_payment_intent_succeeded_fixture() -> None:
    assert fixture_event("payment_intent.succeeded") == PaymentSucceeded(
        source_ref="pi_1PgafyB7WZ01zgkWSjxsAJo3",
        stripe_customer=None,
        amount=Decimal("10.99"),
        currency="USD",
        paid_at=WHEN,
        method="card",
        invoice_number=None,
        description=None,
        reference="ch_1PgafuB7WZ01zgkWXYmPNZs8",
        event_id="evt_sample_pi_succeeded",
        event_type="payment_intent.succeeded",
    )


def test_invoice_paid_fixture_uses_amount_paid_and_paid_at() -> None:
    event = fixture_event("invoice.paid")
    assert isinstance(event, PaymentSucceeded)
    assert (event.amount, str(event.amount), event.currency) == (Decimal("10.00"), "10.00", "USD")
    assert event.paid_at == WHEN and event.stripe_customer == "cus_QXg1o8vcGmoR32"
    # this API version's invoice names no PaymentIntent: the invoice itself is the source
    assert event.source_ref == event.reference == "in_1Pgc6tB7WZ01zgkWu9fdqL6I"
    assert event.invoice_number is None


def test_charge_refunded_fixture() -> None:
    assert fixture_event("charge.refunded") == Refunded(
        charge_id="ch_1PgafuB7WZ01zgkWXYmPNZs8",
        payment_intent_id="pi_1PgafyB7WZ01zgkWSjxsAJo3",
        amount_refunded=Decimal("1.00"),
        currency="USD",
        refunded_at=WHEN,
        invoice_number=None,
        stripe_customer=None,
        charge_amount=Decimal("1.00"),
        fully_refunded=True,
        event_id="evt_sample_charge_refunded",
    )


# -- variations on Stripe's fixture objects ----------------------------------------------------------------


def succeeded_intent(**changes: Any) -> dict[str, Any]:
    intent = resource("payment_intent")
    intent.update(
        status="succeeded", amount_received=intent["amount"], latest_charge="ch_1", customer="cus_1"
    )
    intent.update(changes)
    return intent


def test_payment_intent_carries_billsync_invoice_number_and_jpy_has_no_minor_unit() -> None:
    intent = succeeded_intent(
        amount=125000,
        amount_received=125000,
        currency="jpy",
        metadata={"billsync_invoice_number": "INV-0042"},
    )
    event = translate(event_of("payment_intent.succeeded", intent, created=TS + 5))
    assert isinstance(event, PaymentSucceeded)
    assert (event.amount, str(event.amount), event.currency) == (Decimal("125000"), "125000", "JPY")
    assert event.invoice_number == "INV-0042" and event.stripe_customer == "cus_1"
    assert event.paid_at == WHEN + dt.timedelta(seconds=5)


def test_three_decimal_currency_amount_is_thousandths() -> None:
    intent = succeeded_intent(amount=5120, amount_received=5120, currency="kwd")
    event = translate(event_of("payment_intent.succeeded", intent))
    assert isinstance(event, PaymentSucceeded)
    assert (str(event.amount), event.currency) == ("5.120", "KWD")


def test_amount_received_not_amount_is_what_was_paid() -> None:
    intent = succeeded_intent(amount=2000, amount_received=1500)
    event = translate(event_of("payment_intent.succeeded", intent))
    assert isinstance(event, PaymentSucceeded) and event.amount == Decimal("15.00")


def test_invoice_paid_prefers_billsync_metadata_then_stripe_number_and_names_the_payment() -> None:
    invoice = resource("invoice")
    invoice.update(amount_paid=4999, currency="eur", number="7FE1103-0001", payment_intent="pi_legacy")
    event = translate(event_of("invoice.paid", invoice))
    assert isinstance(event, PaymentSucceeded)
    assert (event.invoice_number, event.source_ref, event.amount, event.currency) == (
        "7FE1103-0001",
        "pi_legacy",
        Decimal("49.99"),
        "EUR",
    )
    invoice.update(metadata={"billsync_invoice_number": "INV-7"})
    invoice.pop("payment_intent")
    invoice["payments"] = {
        "object": "list",
        "data": [
            {
                "object": "invoice_payment",
                "status": "paid",
                "payment": {"type": "payment_intent", "payment_intent": "pi_new"},
            }
        ],
    }
    event = translate(event_of("invoice.paid", invoice))
    assert isinstance(event, PaymentSucceeded)
    assert (event.invoice_number, event.source_ref, event.reference) == ("INV-7", "pi_new", invoice["id"])


def test_payment_failed_carries_the_decline() -> None:
    intent = resource("payment_intent")
    intent.update(
        amount=4200,
        customer={"id": "cus_9", "object": "customer"},  # expanded
        metadata={"billsync_invoice_number": "INV-9"},
        last_payment_error={
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "type": "card_error",
        },
    )
    assert translate(event_of("payment_intent.payment_failed", intent, event_id="evt_f")) == PaymentFailed(
        source_ref="pi_1PgafyB7WZ01zgkWSjxsAJo3",
        stripe_customer="cus_9",
        amount=Decimal("42.00"),
        currency="USD",
        failure_code="card_declined",
        failure_message="Your card has insufficient funds.",
        invoice_number="INV-9",
        decline_code="insufficient_funds",
        failed_at=WHEN,
        event_id="evt_f",
    )


def test_partial_refund_reports_the_running_total_and_the_latest_refund_time() -> None:
    charge = resource("charge")
    charge.update(
        amount=500000,
        amount_captured=500000,
        amount_refunded=200000,
        currency="jpy",
        refunded=False,
        metadata={"billsync_invoice_number": "INV-3"},
        refunds={
            "object": "list",
            "data": [{"id": "re_2", "created": TS - 10}, {"id": "re_1", "created": TS - 99}],
        },
    )
    event = translate(event_of("charge.refunded", charge))
    assert isinstance(event, Refunded)
    assert (event.amount_refunded, event.charge_amount, event.fully_refunded) == (
        Decimal("200000"),
        Decimal("500000"),
        False,
    )
    assert event.refunded_at == WHEN - dt.timedelta(seconds=10) and event.invoice_number == "INV-3"


def test_other_event_types_are_ignored() -> None:
    assert translate(event_of("customer.updated", resource("customer"), event_id="evt_c")) == Ignored(
        type="customer.updated", event_id="evt_c"
    )


def test_a_handled_event_without_currency_or_amount_is_untranslatable() -> None:
    with pytest.raises(UntranslatableEvent, match="currency"):
        translate(event_of("payment_intent.succeeded", succeeded_intent(currency=None)))
    with pytest.raises(UntranslatableEvent, match="amount_paid"):
        translate(event_of("invoice.paid", {**resource("invoice"), "amount_paid": "10"}))


# -- Stripe's minor-unit table ----------------------------------------------------------------------------


def test_documented_currency_tables() -> None:
    assert ZERO_DECIMAL_CURRENCIES == set(
        "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
    )
    assert THREE_DECIMAL_CURRENCIES == {"BHD", "JOD", "KWD", "OMR", "TND"}
    assert [exponent(c) for c in ("jpy", "KRW", "XPF", "kwd", "BHD", "usd", "EUR", "ISK", "HUF")] == [
        0,
        0,
        0,
        3,
        3,
        2,
        2,
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.99", "USD", 1099),
        ("0.01", "usd", 1),
        ("1000", "JPY", 1000),
        ("5.12", "KWD", 5120),
        ("5.120", "KWD", 5120),
        ("100", "ISK", 10000),  # Stripe keeps ISK two-decimal
    ],
)
def test_to_and_from_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("10.999", "USD"), ("0.5", "JPY"), ("5.125", "KWD"), ("NaN", "USD"), ("Infinity", "EUR")],
)
def test_amounts_stripe_cannot_represent_are_refused_not_rounded(amount: str, currency: str) -> None:
    with pytest.raises(ValueError):
        to_minor_units(Decimal(amount), currency)


def test_floats_and_bad_codes_are_refused() -> None:
    with pytest.raises(ValueError):
        to_minor_units(10.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        from_minor_units(True, "USD")
    with pytest.raises(ValueError):
        exponent("US")
