"""Pricing scenarios: a finance person's YAML (already parsed) -> engine inputs -> preview JSON.

The format is documented in docs/billing.md. Parsing reports *every* problem at once with its key
path (``prices[2].tiers[0].up_to: ...``), and refuses floats: YAML reads ``24.95`` as a binary
float, which is not the amount that was written, so amounts are quoted (``"24.95"``) or whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

from billing.discounts import DISCOUNT_DURATIONS, DISCOUNT_KINDS, Discount
from billing.engine import BillingSettings, Change, GenerationResult, Subscription, generate
from billing.lifecycle import finalize
from billing.model import Customer, Invoice, Order, OrderLine
from billing.money import Currency, Money
from billing.numbering import NumberSeries
from billing.parsing import (
    Reader,
    build,
    check_tax,
    kind,
    parse_currency,
    parse_list,
    parse_price,
    parse_taxes,
    parse_text,
)
from billing.periods import Anchor
from billing.pricing import PriceSpec, UsageRecord
from billing.tax import TAX_ROUNDINGS, TaxRate

__all__ = ["Scenario", "ScenarioError", "invoices_json", "parse_scenario", "run_scenario"]

_TOP: Final = frozenset(
    {
        "as_of", "currency", "taxes", "prices", "customers", "subscriptions", "orders", "usage",
        "discounts", "settings", "series", "description", "expect",
    }
)  # fmt: skip


class ScenarioError(ValueError):
    """The scenario is invalid; ``problems`` lists each as ``"<key path>: <what is wrong>"``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(f"invalid scenario: {'; '.join(self.problems)}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything ``generate`` needs, plus the number series a preview finalises with."""

    as_of: date
    customers: tuple[Customer, ...]
    prices: tuple[PriceSpec, ...]
    subscriptions: tuple[Subscription, ...] = ()
    orders: tuple[Order, ...] = ()
    usage: tuple[UsageRecord, ...] = ()
    taxes: tuple[TaxRate, ...] = ()
    discounts: tuple[Discount, ...] = ()
    settings: BillingSettings = BillingSettings()
    series: NumberSeries = NumberSeries("preview", "INV-", 6)


def _timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"expected an ISO 8601 timestamp such as 2021-09-20T10:00:00Z, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {kind(value)}")
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _label(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a string or whole number, got {kind(value)}")
    return str(value)


def _anchor(value: object) -> Anchor:
    if value == "anniversary" or value == "calendar":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 31:
        return value
    raise ValueError(f"expected anniversary, calendar or a bill-cycle day 1-31, got {value!r}")


def _texts(value: object) -> list[str]:
    return [parse_text(item) for item in parse_list(value)]


def parse_scenario(data: object) -> Scenario:
    """Validate a parsed scenario; raises ``ScenarioError`` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise ScenarioError(
            [f"<root>: expected a mapping with as_of, prices, customers..., got {kind(data)}"]
        )
    root = Reader(problems, data)
    root.keys(_TOP)
    as_of = root.day("as_of", required=True)
    currency = root.get("currency", parse_currency, Currency.of("USD"), required=True)

    settings_r = root.mapping("settings")
    settings_r.keys({"tax_rounding", "line_rounding", "grouping"})
    settings = BillingSettings(
        tax_rounding=cast(Any, settings_r.choice("tax_rounding", TAX_ROUNDINGS, "per_line")),
        line_rounding=cast(Any, settings_r.choice("line_rounding", ("half_up", "half_even"), "half_up")),
        grouping=cast(Any, settings_r.choice("grouping", ("billing_date", "customer"), "billing_date")),
    )
    series_r = root.mapping("series")
    series_r.keys({"prefix", "width"})
    series = build(
        series_r, NumberSeries, "preview", series_r.text("prefix", "INV-"), series_r.integer("width", 6)
    ) or NumberSeries("preview", "INV-", 6)

    taxes = parse_taxes(root)
    tax_ids = {t.id for t in taxes}

    discounts: list[Discount] = []
    for r in root.items("discounts"):
        r.keys({"id", "kind", "value", "duration", "periods", "currency", "prices"})
        discount = build(
            r,
            Discount,
            id=r.text("id", required=True),
            kind=cast(Any, r.choice("kind", DISCOUNT_KINDS, "percent")),
            value=r.decimal("value", required=True),
            duration=cast(Any, r.choice("duration", DISCOUNT_DURATIONS, "once")),
            periods=r.optional_integer("periods"),
            currency=r.optional_text("currency")
            or (currency.code if r.data.get("kind") == "amount" else None),
            prices=frozenset(r.get("prices", _texts, list[str]())),
        )
        if discount is not None:
            discounts.append(discount)
    discount_ids = {d.id for d in discounts}

    prices: list[PriceSpec] = []
    for r in root.items("prices", required=True):
        price = parse_price(r, currency)
        if price is None:
            continue
        if any((p.id, p.currency) == (price.id, price.currency) for p in prices):
            r.problem("id", f"duplicate price {price.id!r} in {price.currency.code}")
            continue
        check_tax(r, price.tax, tax_ids)
        prices.append(price)
    price_ids = {p.id for p in prices}

    def known_price(r: Reader, key: str = "price") -> str:
        value = r.text(key, required=True)
        if value and value not in price_ids:
            r.problem(key, f"unknown price {value!r}; defined: {', '.join(sorted(price_ids))}")
        return value

    def known_discounts(r: Reader) -> tuple[str, ...]:
        ids = tuple(r.get("discounts", _texts, list[str]()))
        for missing in sorted(set(ids) - discount_ids):
            r.problem("discounts", f"unknown discount {missing!r}")
        return ids

    customers: list[Customer] = []
    for r in root.items("customers", required=True):
        r.keys({"id", "currency", "bill_cycle_day", "tax_exempt", "jurisdiction", "payment_terms_days"})
        cid = r.text("id", required=True)
        if any(c.id == cid for c in customers):
            r.problem("id", f"duplicate customer {cid!r}")
            continue
        customer = build(
            r,
            Customer,
            id=cid,
            currency=r.get("currency", parse_currency, currency).code,
            payment_terms_days=r.integer("payment_terms_days", 30),
            bill_cycle_day=r.optional_integer("bill_cycle_day"),
            tax_exempt=r.flag("tax_exempt"),
            jurisdiction=r.optional_text("jurisdiction"),
        )
        if customer is not None:
            customers.append(customer)
    customer_ids = {c.id for c in customers}

    def known_customer(r: Reader) -> str:
        value = r.text("customer", required=True)
        if value and value not in customer_ids:
            r.problem("customer", f"unknown customer {value!r}; defined: {', '.join(sorted(customer_ids))}")
        return value

    subscriptions: list[Subscription] = []
    for index, r in enumerate(root.items("subscriptions")):
        r.keys(
            {
                "id", "customer", "price", "quantity", "start", "end", "trial_end", "trial_days", "anchor",
                "discounts", "unit_amount", "currency", "description", "changes",
            }
        )  # fmt: skip
        start = r.day("start", required=True) or date.min
        trial_end = r.day("trial_end")
        if "trial_days" in r.data:
            trial_end = start + timedelta(days=r.integer("trial_days", 0))
        changes: list[Change] = []
        for c in r.items("changes"):
            c.keys({"date", "price", "quantity", "cancel", "at_period_end"})
            changes.append(
                Change(
                    date=c.day("date", required=True) or start,
                    price=known_price(c) if "price" in c.data else None,
                    quantity=c.optional_decimal("quantity"),
                    cancel=c.flag("cancel"),
                    at_period_end=c.flag("at_period_end"),
                )
            )
        sub_currency = r.get("currency", parse_currency, None)
        subscriptions.append(
            Subscription(
                id=r.text("id") or f"sub-{index + 1}",
                customer_id=known_customer(r),
                price=known_price(r),
                start=start,
                quantity=r.decimal("quantity", Decimal(1)),
                end=r.day("end"),
                changes=tuple(changes),
                trial_end=trial_end,
                anchor=r.get("anchor", _anchor, None),
                discounts=known_discounts(r),
                unit_amount=r.optional_decimal("unit_amount"),
                currency=None if sub_currency is None else sub_currency.code,
                description=r.optional_text("description"),
            )
        )

    orders: list[Order] = []
    for index, r in enumerate(root.items("orders")):
        r.keys({"id", "customer", "date", "end_date", "currency", "discounts", "lines"})
        order_id = r.text("id") or f"order-{index + 1}"
        customer_id = known_customer(r)
        default_currency = next((c.currency for c in customers if c.id == customer_id), currency.code)
        lines: list[OrderLine] = []
        for n, line in enumerate(r.items("lines", required=True), start=1):
            line.keys({"id", "price", "quantity", "unit_amount", "description"})
            lines.append(
                OrderLine(
                    id=line.text("id") or f"{order_id}-{n}",
                    product_code=known_price(line),
                    quantity=line.decimal("quantity", Decimal(1)),
                    unit_price=line.optional_decimal("unit_amount"),
                    description=line.optional_text("description"),
                )
            )
        order_currency = r.get("currency", parse_currency, None)
        orders.append(
            Order(
                id=order_id,
                customer_id=customer_id,
                currency=default_currency if order_currency is None else order_currency.code,
                effective_date=r.day("date", required=True) or date.min,
                end_date=r.day("end_date"),
                lines=tuple(lines),
                discounts=known_discounts(r),
            )
        )

    usage: list[UsageRecord] = []
    for r in root.items("usage"):
        r.keys({"customer", "price", "quantity", "timestamp", "value", "id"})
        record = build(
            r,
            UsageRecord,
            customer_id=known_customer(r),
            price=known_price(r),
            timestamp=r.get("timestamp", _timestamp, datetime.min.replace(tzinfo=UTC), required=True),
            quantity=r.decimal("quantity", Decimal(1)),
            value=r.get("value", _label, None),
            id=r.optional_text("id"),
        )
        if record is not None:
            usage.append(record)

    if problems:
        raise ScenarioError(problems)
    assert as_of is not None
    return Scenario(
        as_of=as_of,
        customers=tuple(customers),
        prices=tuple(prices),
        subscriptions=tuple(subscriptions),
        orders=tuple(orders),
        usage=tuple(usage),
        taxes=tuple(taxes),
        discounts=tuple(discounts),
        settings=settings,
        series=series,
    )


def run_scenario(scenario: Scenario) -> tuple[list[Invoice], GenerationResult]:
    """Generate the scenario's invoices and finalise them in order, as a first run would number them."""
    result = generate(
        as_of=scenario.as_of,
        customers=scenario.customers,
        prices=scenario.prices,
        subscriptions=scenario.subscriptions,
        orders=scenario.orders,
        usage=scenario.usage,
        taxes=scenario.taxes,
        discounts=scenario.discounts,
        settings=scenario.settings,
    )
    ordered = sorted(result.invoices, key=lambda inv: (inv.issue_date, inv.customer_id, inv.currency.code))
    return [finalize(inv, scenario.series.format(n)) for n, inv in enumerate(ordered, start=1)], result


def _amount(value: Decimal) -> str:
    return f"{value:f}"


def _money(value: Money) -> str:
    """Invoice amounts are on the currency's grid; ``rounded`` only pads them ("0" -> "0.00")."""
    return f"{value.rounded().amount:f}"


def invoices_json(invoices: Sequence[Invoice]) -> dict[str, object]:
    """The preview contract: ``{"invoices": [...]}`` with exact decimal strings and ISO dates."""
    out: list[dict[str, object]] = []
    for inv in invoices:
        lines: list[dict[str, object]] = []
        for line in inv.lines:
            ex = line.explanation
            linear = ex is None or ex.unit_amount is not None
            lines.append(
                {
                    "description": line.description,
                    "price": line.product_code,
                    "quantity": _amount(line.quantity),
                    "unit_amount": _amount(line.unit_price.amount) if linear else None,
                    "amount": _money(line.amount),
                    "period_start": None if line.period_start is None else line.period_start.isoformat(),
                    "period_end": None if line.period_end is None else line.period_end.isoformat(),
                    "discount": _money(line.discount or Money.zero(inv.currency)),
                    "tax": _money(line.tax_amount or Money.zero(inv.currency)),
                    "net": _money(line.net_amount),
                    "source_key": line.source_key,
                    "explanation": None if ex is None else ex.to_dict(),
                }
            )
        out.append(
            {
                "customer": inv.customer_id,
                "currency": inv.currency.code,
                "number": inv.number,
                "status": inv.status,
                "issue_date": inv.issue_date.isoformat(),
                "due_date": inv.due_date.isoformat(),
                "period_start": inv.period_start.isoformat(),
                "period_end": inv.period_end.isoformat(),
                "lines": lines,
                "taxes": [
                    {
                        "id": t.tax_id,
                        "name": t.name,
                        "rate": _amount(t.rate),
                        "inclusive": t.inclusive,
                        "taxable": _money(t.taxable),
                        "amount": _money(t.amount),
                    }
                    for t in inv.tax_lines
                ],
                "subtotal": _money(inv.subtotal),
                "discount": _money(inv.discount_total),
                "net": _money(inv.net_total),
                "tax": _money(inv.tax_total),
                "total": _money(inv.total),
            }
        )
    return {"invoices": out}
