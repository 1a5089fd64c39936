"""Invoice generation: from what was sold and used, the invoice lines that are due and not yet billed.

``generate`` is a pure function of its inputs (``as_of`` stands in for the clock). Every charge has
a ``source_key`` naming exactly what it bills; a charge whose key is already on an existing invoice
is skipped, so re-running adds nothing, and a charge's amount never depends on when the run happens.

Source keys:

- ``order-line:<line>``: a one-time order line, due on the order's date;
- ``installment:<line>:<n>``: installment n (1-based), due n-1 intervals after the order's date;
- ``sub:<subscription>:<period start>``: a recurring period, due at its start (in advance) or end
  (in arrears); ``...:<segment start>`` for later segments of an in-arrears period with changes;
- ``sub:<subscription>:<period start>:credit:<date>`` / ``...:charge:<date>``: proration of a
  change inside a period billed in advance;
- ``usage:<subscription or customer>:<price>:<period start>`` and ``...:minimum``: usage and the
  minimum-commitment true-up of a period, due at the period's end.

By default there is one invoice per customer, currency and billing date (``grouping="billing_date"``),
so an invoice is the same whichever day the run catches up; ``grouping="customer"`` puts everything a
run finds for a customer and currency on one invoice dated ``as_of``.

Changes to a subscription take effect on their date. In advance, the period that contains the change
was billed in full at its start, so the change adds a credit for the unused part of the old price and
a charge for the rest of the period at the new one (Stripe's and Kill Bill's proration); a fixed term
(``end``) is part of the contract, so its last period is billed prorated directly. With the ``none``
day count, changes take effect at the next period and partial periods are billed in full.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Final, Literal

from billing.discounts import Discount, discount_line
from billing.explain import Explanation
from billing.model import Customer, Invoice, InvoiceLine, Order, OrderLine
from billing.money import EXACT, Currency, Money, UnknownCurrencyError
from billing.periods import WHOLE, Anchor, Cycle, Fraction, cycle_for, prorate
from billing.pricing import PriceBook, PriceSpec, UsageRecord, aggregate, rate_quantity, rate_transactions
from billing.tax import TaxRate, TaxRounding, TaxTable, apply_taxes, line_tax

__all__ = [
    "BillingSettings",
    "Change",
    "GenerationResult",
    "Problem",
    "Subscription",
    "generate",
]

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_ROUNDINGS: Final = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}


@dataclass(frozen=True, slots=True)
class Change:
    """A change on ``date``: a new price and/or quantity, or a cancellation.

    ``at_period_end`` defers it to the end of the period containing ``date`` (no proration).
    """

    date: date
    price: str | None = None
    quantity: Decimal | None = None
    cancel: bool = False
    at_period_end: bool = False


@dataclass(frozen=True, slots=True)
class Subscription:
    """A customer's subscription to a recurring (or usage) price from ``start``.

    ``end`` (exclusive) makes it fixed-term; None is evergreen. During a trial (``start`` until
    ``trial_end``) nothing is billed and the periods start at ``trial_end``. ``anchor`` None means
    the customer's bill-cycle day if it has one, else the anniversary of the (post-trial) start.
    ``unit_amount`` is a negotiated price that holds until a change names a new price.
    """

    id: str
    customer_id: str
    price: str
    start: date
    quantity: Decimal = _ONE
    end: date | None = None
    changes: tuple[Change, ...] = ()
    trial_end: date | None = None
    anchor: Anchor | None = None
    discounts: tuple[str, ...] = ()
    unit_amount: Decimal | None = None
    currency: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """Conventions that differ between billing systems, made explicit (see docs/billing.md)."""

    tax_rounding: TaxRounding = "per_line"
    line_rounding: Literal["half_up", "half_even"] = "half_up"
    grouping: Literal["billing_date", "customer"] = "billing_date"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why ``subject`` (e.g. ``subscription s1``) was not (completely) billed."""

    subject: str
    message: str


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The missing invoices (sorted by customer, currency, issue date) and the problems found."""

    invoices: list[Invoice]
    problems: list[Problem]

    @property
    def source_keys(self) -> frozenset[str]:
        return frozenset(line.source_key for invoice in self.invoices for line in invoice.lines)


@dataclass(frozen=True, slots=True)
class _State:
    price: PriceSpec
    quantity: Decimal
    unit_amount: Decimal
    description: str


@dataclass(slots=True)
class _Charge:
    customer: Customer
    bill_date: date
    line: InvoiceLine
    tax: TaxRate | None


class _Invalid(Exception):
    """Internal: the subject cannot be billed; the message becomes a Problem."""


@dataclass(slots=True)
class _Run:
    as_of: date
    customers: Mapping[str, Customer]
    prices: PriceBook
    billed: frozenset[str]
    taxes: TaxTable
    discounts: Mapping[str, Discount]
    settings: BillingSettings
    charges: list[_Charge] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def rounding(self) -> str:
        return _ROUNDINGS[self.settings.line_rounding]

    # --- shared helpers -------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer:
        found = self.customers.get(customer_id)
        if found is None:
            raise _Invalid(f"customer {customer_id!r} not found")
        return found

    def price(self, price_id: str, currency: Currency, negotiated: bool = False) -> PriceSpec:
        found = self.prices.get(price_id, currency)
        if found is not None:
            return found
        priced = sorted((p for p in self.prices if p.id == price_id), key=lambda p: p.currency.code)
        if not priced:
            raise _Invalid(f"unknown price {price_id!r}")
        if negotiated:  # a negotiated amount can bill a currency the price book does not list
            return _in_currency(priced[0], currency)
        codes = ", ".join(p.currency.code for p in priced)
        raise _Invalid(f"price {price_id!r} has no {currency.code} amount (priced in: {codes})")

    def discount_list(self, ids: Iterable[str]) -> tuple[Discount, ...]:
        found: list[Discount] = []
        for discount_id in ids:
            discount = self.discounts.get(discount_id)
            if discount is None:
                raise _Invalid(f"unknown discount {discount_id!r}")
            found.append(discount)
        return tuple(found)

    def due(self, key: str, bill_date: date) -> bool:
        return bill_date <= self.as_of and key not in self.billed

    def emit(
        self,
        customer: Customer,
        bill_date: date,
        key: str,
        state: _State,
        exact: Decimal,
        explanation: dict[str, Any],
        *,
        period: tuple[date | None, date | None] = (None, None),
        quantity: Decimal | None = None,
        description: str | None = None,
        period_index: int = 0,
        share: Decimal = _ONE,
        discounts: tuple[Discount, ...] = (),
    ) -> None:
        """Round ``exact``, apply the discounts, pick the tax rate and queue the finished line."""
        price = state.price
        if price.tax is not None and price.tax not in self.taxes:
            raise _Invalid(f"price {price.id!r} names unknown tax rate {price.tax!r}")
        currency = price.currency
        amount = Money._exact(exact, currency).rounded(self.rounding)
        qty = state.quantity if quantity is None else quantity
        if price.linear:
            unit = state.unit_amount
        else:
            unit = (exact / qty).quantize(Decimal("1E-10")) if qty else _ZERO
        off, applied = (
            (None, ())
            if not discounts
            else discount_line(amount, discounts, price.id, period_index, share, self.rounding)
        )
        tax = self.taxes.resolve(customer, price.tax, price.tax_code)
        base = amount if off is None else amount - off
        line = InvoiceLine(
            source_key=key,
            product_code=price.id,
            description=description or state.description,
            quantity=qty,
            unit_price=Money._exact(unit, currency),
            amount=amount,
            period_start=period[0],
            period_end=period[1],
            discount=off,
            tax_id=None if tax is None else tax.id,
            tax_rate=None if tax is None else tax.rate,
            tax_inclusive=tax is not None and tax.inclusive,
            tax_amount=None if tax is None else line_tax(base, tax, self.settings.tax_rounding),
            explanation=Explanation(
                price_id=price.id,
                model=price.model,
                currency=currency.code,
                unrounded=exact,
                rounded=amount.amount,
                rounding=f"{self.settings.line_rounding.upper()} to {currency.quantum!s}",
                discounts=applied,
                **explanation,
            ),
        )
        self.charges.append(_Charge(customer, bill_date, line, tax))

    # --- subscriptions --------------------------------------------------------------------------

    def subscription(self, sub: Subscription, records: Mapping[str, Sequence[UsageRecord]]) -> None:
        customer = self.customer(sub.customer_id)
        currency = _currency(sub.currency or customer.currency)
        if not sub.quantity.is_finite() or sub.quantity <= 0:
            raise _Invalid(f"quantity must be a positive number, got {sub.quantity}")
        if sub.end is not None and sub.end <= sub.start:
            raise _Invalid(f"end {sub.end} must be after start {sub.start}")
        first = self.price(sub.price, currency, negotiated=sub.unit_amount is not None)
        if first.model not in ("recurring", "usage"):
            raise _Invalid(
                f"price {first.id!r} is {first.model}; a subscription needs a recurring or usage price"
            )
        discounts = self.discount_list(sub.discounts)
        begin = max(sub.start, sub.trial_end or sub.start)
        state = _State(
            first,
            sub.quantity,
            first.amount if sub.unit_amount is None else sub.unit_amount,
            sub.description or first.label,
        )
        anchor: Anchor = sub.anchor or (customer.bill_cycle_day or "anniversary")
        changes = sorted(sub.changes, key=lambda c: c.date)
        for change in changes:
            if change.date < sub.start:
                raise _Invalid(f"change on {change.date} is before the start {sub.start}")
            if change.quantity is not None and (not change.quantity.is_finite() or change.quantity <= 0):
                raise _Invalid(f"change on {change.date}: quantity must be a positive number")
            if not change.cancel and change.price is None and change.quantity is None:
                raise _Invalid(f"change on {change.date} changes nothing (give price, quantity or cancel)")
        if first.model == "usage":
            if any(not c.cancel for c in changes):
                raise _Invalid("a usage subscription can only be cancelled; start a new one to change it")
            self._usage_subscription(sub, customer, first, begin, anchor, changes, records, discounts)
            return
        self._recurring(sub, customer, state, begin, anchor, changes, discounts)

    def _cycle(self, price: PriceSpec, begin: date, anchor: Anchor) -> Cycle:
        assert price.interval is not None
        return cycle_for(price.interval, price.interval_count, begin, anchor)

    def _timeline(
        self,
        sub: Subscription,
        state: _State,
        begin: date,
        anchor: Anchor,
        changes: Sequence[Change],
    ) -> tuple[list[tuple[date, _State | None]], date | None, bool]:
        """Phases ``(from, state)`` (state None = cancelled), the end date, and whether that end is
        the fixed term (True) or a cancellation (False).

        Deferred changes (``at_period_end``, or any change under the ``none`` day count) move to the
        end of their period on the subscription's initial grid, then all apply in date order.
        """
        cycle = self._cycle(state.price, begin, anchor)
        no_proration = state.price.proration == "none"
        effective: list[tuple[date, Change]] = []
        for change in changes:
            when = max(change.date, begin)
            if change.at_period_end or (no_proration and when != begin and cycle.containing(when)[0] != when):
                when = cycle.next_boundary(when)
            effective.append((when, change))
        effective.sort(key=lambda item: item[0])
        phases: list[tuple[date, _State | None]] = [(begin, state)]
        current = state
        end, term = sub.end, sub.end is not None
        for when, change in effective:
            if end is not None and when >= end:
                break
            if change.cancel:
                end, term = when, False
                new: _State | None = None
            else:
                price, unit, description = current.price, current.unit_amount, current.description
                if change.price is not None and change.price != price.id:
                    price = self.price(change.price, state.price.currency)
                    if price.model != "recurring":
                        raise _Invalid(f"change on {change.date}: price {price.id!r} is not recurring")
                    unit, description = price.amount, price.label
                current = _State(price, change.quantity or current.quantity, unit, description)
                new = current
            if phases[-1][0] == when:
                phases[-1] = (when, new)
            else:
                phases.append((when, new))
            if new is None:
                break
        return phases, end, term

    def _recurring(
        self,
        sub: Subscription,
        customer: Customer,
        state: _State,
        begin: date,
        anchor: Anchor,
        changes: Sequence[Change],
        discounts: tuple[Discount, ...],
    ) -> None:
        phases, end, term = self._timeline(sub, state, begin, anchor, changes)
        # Runs of phases on one grid; a change of interval starts a new grid on its date (as Stripe
        # resets the billing anchor) and ends the previous run like a cancellation.
        runs: list[tuple[date, Cycle, list[tuple[date, _State | None]]]] = []
        for when, phase in phases:
            if phase is None:
                if runs:
                    runs[-1][2].append((when, None))
                break
            grid = (phase.price.interval, phase.price.interval_count)
            if runs and grid == (runs[-1][1].unit, runs[-1][1].count):
                runs[-1][2].append((when, phase))
                continue
            if runs:
                runs[-1][2].append((when, None))
            runs.append((when, self._cycle(phase.price, when, anchor), [(when, phase)]))
        index = 0
        for number, (run_start, cycle, run_phases) in enumerate(runs):
            last = number + 1 == len(runs)
            run_end = end if last else runs[number + 1][0]
            index = self._periods(
                sub, customer, cycle, run_start, run_end, term and last, run_phases, discounts, index
            )

    def _periods(
        self,
        sub: Subscription,
        customer: Customer,
        cycle: Cycle,
        start: date,
        end: date | None,
        term: bool,
        phases: Sequence[tuple[date, _State | None]],
        discounts: tuple[Discount, ...],
        index: int,
    ) -> int:
        """Bill the periods of one grid from ``start``; returns the next period index."""
        dates = [when for when, _ in phases]
        period_start = start
        while end is None or period_start < end:
            cycle_start, cycle_end = cycle.containing(period_start)
            state = phases[bisect.bisect_right(dates, period_start) - 1][1]
            assert state is not None
            price = state.price
            covered_end = cycle_end if end is None or not term else min(cycle_end, end)
            if price.billing == "in_advance":
                if period_start > self.as_of:
                    break
                self._in_advance(
                    sub, customer, cycle, state, (period_start, covered_end), (cycle_start, cycle_end),
                    phases, index, discounts,
                )  # fmt: skip
            else:
                actual_end = cycle_end if end is None else min(cycle_end, end)
                if actual_end > self.as_of:
                    break
                self._in_arrears(
                    sub,
                    customer,
                    cycle,
                    (period_start, actual_end),
                    (cycle_start, cycle_end),
                    phases,
                    index,
                    discounts,
                )
            index += 1
            period_start = cycle_end
        return index

    def _emit_recurring(
        self,
        customer: Customer,
        bill_date: date,
        key: str,
        state: _State,
        quantity: Decimal,
        period: tuple[date, date],
        cycle: tuple[date, date],
        kind: str,
        month_based: bool,
        index: int,
        discounts: tuple[Discount, ...],
        description: str | None = None,
    ) -> None:
        price = state.price
        fraction = prorate(price.proration, period[0], period[1], cycle[0], cycle[1], month_based=month_based)
        if period == cycle:
            fraction = WHOLE
        share = Decimal(fraction.numerator) / Decimal(fraction.denominator)
        explanation = {
            "kind": kind,
            "quantity": quantity,
            "unit_amount": state.unit_amount,
            "period_start": period[0],
            "period_end": period[1],
            "cycle_start": cycle[0],
            "cycle_end": cycle[1],
            "proration": None if fraction.is_whole else fraction,
            "details": (("billed", price.billing.replace("_", " ")),),
        }
        exact = state.unit_amount * quantity * share
        self.emit(
            customer, bill_date, key, state, exact, explanation, period=period, quantity=quantity,
            description=description, period_index=index, share=share, discounts=discounts,
        )  # fmt: skip

    def _in_advance(
        self,
        sub: Subscription,
        customer: Customer,
        cycle: Cycle,
        state: _State,
        period: tuple[date, date],
        full: tuple[date, date],
        phases: Sequence[tuple[date, _State | None]],
        index: int,
        discounts: tuple[Discount, ...],
    ) -> None:
        start, covered_end = period
        key = f"sub:{sub.id}:{start.isoformat()}"
        if self.due(key, start):
            self._emit_recurring(
                customer, start, key, state, state.quantity, period, full, "recurring", cycle.month_based,
                index, discounts,
            )  # fmt: skip
        previous = state
        for when, phase in phases:
            if not start < when < covered_end:
                continue
            rest = (when, covered_end)
            credit_key = f"{key}:credit:{when.isoformat()}"
            if self.due(credit_key, when):
                self._emit_recurring(
                    customer, when, credit_key, previous, -previous.quantity, rest, full, "proration_credit",
                    cycle.month_based, index, discounts, f"Unused time on {previous.description} from {when}",
                )  # fmt: skip
            if phase is None:
                return
            charge_key = f"{key}:charge:{when.isoformat()}"
            if self.due(charge_key, when):
                self._emit_recurring(
                    customer, when, charge_key, phase, phase.quantity, rest, full, "proration_charge",
                    cycle.month_based, index, discounts, f"Remaining time on {phase.description} from {when}",
                )  # fmt: skip
            previous = phase

    def _in_arrears(
        self,
        sub: Subscription,
        customer: Customer,
        cycle: Cycle,
        period: tuple[date, date],
        full: tuple[date, date],
        phases: Sequence[tuple[date, _State | None]],
        index: int,
        discounts: tuple[Discount, ...],
    ) -> None:
        start, end = period
        dates = [when for when, _ in phases]
        first = bisect.bisect_right(dates, start) - 1
        pieces: list[tuple[date, date, _State]] = []
        for position in range(first, len(phases)):
            piece_start = max(phases[position][0], start)
            if piece_start >= end:
                break
            # A cancellation (None) starts at or after ``end``, so the loop stopped before it.
            state = phases[position][1]
            assert state is not None
            piece_end = phases[position + 1][0] if position + 1 < len(phases) else end
            pieces.append((piece_start, min(piece_end, end), state))
            if state.price.proration == "none":  # no proration: the period's first state bills it all
                pieces[-1] = (start, end, state)
                break
        for piece_start, piece_end, state in pieces:
            key = f"sub:{sub.id}:{start.isoformat()}"
            if piece_start != start:
                key += f":{piece_start.isoformat()}"
            if self.due(key, end):
                self._emit_recurring(
                    customer, end, key, state, state.quantity, (piece_start, piece_end), full, "recurring",
                    cycle.month_based, index, discounts,
                )  # fmt: skip

    # --- usage ----------------------------------------------------------------------------------

    def usage_span_end(self, sub: Subscription) -> date | None:
        """Where a subscription stops covering usage; its term end when it is not a usage one."""
        customer = self.customers.get(sub.customer_id)
        price = None if customer is None else self.prices.get(sub.price, Currency.of(customer.currency))
        if customer is None or price is None or price.model != "usage":
            return sub.end
        begin = max(sub.start, sub.trial_end or sub.start)
        cycle = self._cycle(price, begin, sub.anchor or (customer.bill_cycle_day or "anniversary"))
        return _usage_end(sub, cycle, begin, sorted(sub.changes, key=lambda c: c.date))

    def _usage_subscription(
        self,
        sub: Subscription,
        customer: Customer,
        price: PriceSpec,
        begin: date,
        anchor: Anchor,
        changes: Sequence[Change],
        records: Mapping[str, Sequence[UsageRecord]],
        discounts: tuple[Discount, ...],
    ) -> None:
        cycle = self._cycle(price, begin, anchor)
        end = _usage_end(sub, cycle, begin, changes)
        mine = records.get(sub.id, ())
        stamps = [r.day for r in mine]
        period_start, index = begin, 0
        while end is None or period_start < end:
            cycle_start, cycle_end = cycle.containing(period_start)
            period_end = cycle_end if end is None else min(cycle_end, end)
            if period_end > self.as_of:
                break
            chosen = mine[bisect.bisect_left(stamps, period_start) : bisect.bisect_left(stamps, period_end)]
            fraction = prorate(
                price.proration,
                period_start,
                period_end,
                cycle_start,
                cycle_end,
                month_based=cycle.month_based,
            )
            self._usage_period(
                f"usage:{sub.id}:{period_start.isoformat()}",
                customer,
                price,
                (period_start, period_end),
                (cycle_start, cycle_end),
                chosen,
                None if (period_start, period_end) == (cycle_start, cycle_end) else fraction,
                index,
                discounts,
            )
            period_start, index = cycle_end, index + 1

    def _usage_period(
        self,
        key: str,
        customer: Customer,
        price: PriceSpec,
        period: tuple[date, date],
        cycle: tuple[date, date],
        records: Sequence[UsageRecord],
        fraction: Fraction | None,
        index: int,
        discounts: tuple[Discount, ...],
        committed: bool = True,
    ) -> None:
        """Bill one usage period; ``committed`` (a usage subscription) adds the minimum's true-up."""
        bill_date = period[1]
        quantity = aggregate(price.aggregation, records)
        rating = (
            rate_transactions(price, records)
            if price.charge == "percentage"
            else rate_quantity(price, quantity)
        )
        if records and self.due(key, bill_date):
            explanation = {
                "kind": "usage",
                "quantity": quantity,
                "unit_amount": price.amount if price.linear else None,
                "period_start": period[0],
                "period_end": period[1],
                "cycle_start": cycle[0],
                "cycle_end": cycle[1],
                "charge": price.charge,
                "tiers": rating.tiers,
                "details": (
                    ("aggregation", f"{price.aggregation} of {len(records)} record(s)"),
                    *rating.details,
                ),
            }
            state = _State(price, quantity, price.amount, price.label)
            self.emit(
                customer, bill_date, key, state, rating.amount, explanation, period=period,
                period_index=index, discounts=discounts,
            )  # fmt: skip
        minimum_key = f"{key}:minimum"
        if not committed or price.minimum is None or not self.due(minimum_key, bill_date):
            return
        share = _ONE if fraction is None else Decimal(fraction.numerator) / Decimal(fraction.denominator)
        minimum = price.minimum * share
        used = Money(rating.amount, price.currency).rounded(self.rounding).amount if records else _ZERO
        if used >= minimum:
            return
        true_up = minimum - used
        explanation = {
            "kind": "minimum_true_up",
            "quantity": _ONE,
            "unit_amount": true_up,
            "period_start": period[0],
            "period_end": period[1],
            "cycle_start": cycle[0],
            "cycle_end": cycle[1],
            "proration": fraction,
            "details": (("minimum commitment", str(price.minimum)), ("usage charged", str(used))),
        }
        self.emit(
            customer, bill_date, minimum_key, _State(price, _ONE, true_up, price.label), true_up, explanation,
            period=period, description=f"{price.label}: minimum commitment true-up", period_index=index,
            discounts=discounts,
        )  # fmt: skip

    def loose_usage(self, customer_id: str, price_id: str, records: Sequence[UsageRecord]) -> None:
        """Usage not covered by a usage subscription: periods of the customer's cycle, in arrears."""
        customer = self.customer(customer_id)
        price = self.price(price_id, _currency(customer.currency))
        if price.model != "usage":
            raise _Invalid(f"price {price_id!r} is {price.model}, not usage")
        assert price.interval is not None
        buckets: dict[date, list[UsageRecord]] = {}
        cycles: dict[date, tuple[date, date]] = {}
        for record in records:
            day = record.day
            grid = cycle_for(price.interval, price.interval_count, day, customer.bill_cycle_day or "calendar")
            cycle_start, cycle_end = grid.containing(day)
            buckets.setdefault(cycle_start, []).append(record)
            cycles[cycle_start] = (cycle_start, cycle_end)
        for cycle_start, chosen in sorted(buckets.items()):
            key = f"usage:{customer_id}:{price_id}:{cycle_start.isoformat()}"
            self._usage_period(
                key, customer, price, cycles[cycle_start], cycles[cycle_start], chosen, None, 0, (), False
            )

    # --- orders ---------------------------------------------------------------------------------

    def order(self, order: Order, seen: dict[str, str]) -> list[Subscription]:
        """Bill one-time and installment lines; recurring lines come back as subscriptions."""
        customer = self.customer(order.customer_id)
        currency = _currency(order.currency)
        if order.end_date is not None and order.end_date < order.effective_date:
            raise _Invalid(f"end_date {order.end_date} is before effective_date {order.effective_date}")
        discounts = self.discount_list(order.discounts)
        subscriptions: list[Subscription] = []
        for line in order.lines:
            subject = f"order {order.id} line {line.id}"
            if line.id in seen:
                self.problems.append(
                    Problem(
                        subject,
                        f"duplicate order line id (already on order {seen[line.id]!r}); line ids name the charges",
                    )
                )
                continue
            seen[line.id] = order.id
            try:
                sub = self._order_line(order, line, customer, currency, discounts)
            except _Invalid as exc:
                self.problems.append(Problem(subject, str(exc)))
                continue
            if sub is not None:
                subscriptions.append(sub)
        return subscriptions

    def _order_line(
        self,
        order: Order,
        line: OrderLine,
        customer: Customer,
        currency: Currency,
        discounts: tuple[Discount, ...],
    ) -> Subscription | None:
        if not line.quantity.is_finite() or line.quantity <= 0:
            raise _Invalid(f"quantity must be a positive number, got {line.quantity}")
        if line.unit_price is not None and (not line.unit_price.is_finite() or line.unit_price < 0):
            raise _Invalid(f"negotiated unit_price must be a finite amount >= 0, got {line.unit_price}")
        price = self.price(line.product_code, currency, negotiated=line.unit_price is not None)
        if price.model in ("recurring", "usage"):
            return Subscription(
                id=line.id,
                customer_id=order.customer_id,
                price=price.id,
                start=order.effective_date,
                quantity=line.quantity,
                end=order.end_date,
                discounts=order.discounts,
                unit_amount=line.unit_price,
                currency=currency.code,
                description=line.description,
            )
        unit = price.amount if line.unit_price is None else line.unit_price
        state = _State(price, line.quantity, unit, line.description or price.label)
        if price.model == "one_time":
            key = f"order-line:{line.id}"
            if self.due(key, order.effective_date):
                explanation = {"kind": "one_time", "quantity": line.quantity, "unit_amount": unit}
                self.emit(
                    customer,
                    order.effective_date,
                    key,
                    state,
                    unit * line.quantity,
                    explanation,
                    discounts=discounts,
                )
            return None
        self._installments(order, line, customer, state, discounts)
        return None

    def _installments(
        self,
        order: Order,
        line: OrderLine,
        customer: Customer,
        state: _State,
        discounts: tuple[Discount, ...],
    ) -> None:
        price = state.price
        cycle = self._cycle(price, order.effective_date, "anniversary")
        total = Money(state.unit_amount * line.quantity, price.currency).rounded(self.rounding).amount
        quantum = price.currency.quantum
        count = price.installments
        if price.schedule:
            parts = [(total * p / 100).quantize(quantum, rounding=ROUND_DOWN) for p in price.schedule[:-1]]
            rule = (
                "schedule "
                + ", ".join(f"{p}%" for p in price.schedule)
                + ", rounded down, remainder in the last"
            )
        else:
            equal = (total / count).quantize(quantum, rounding=ROUND_DOWN)
            parts = [equal] * (count - 1)
            rule = "equal parts, remainder in the last"
        parts.append(total - sum(parts, _ZERO))
        for number, part in enumerate(parts, start=1):
            key = f"installment:{line.id}:{number}"
            when = cycle.boundary(number - 1)
            if not self.due(key, when):
                continue
            explanation = {
                "kind": "installment",
                "quantity": _ONE,
                "unit_amount": part,
                "details": (
                    ("installment", f"{number} of {count}"),
                    ("total", f"{total} ({line.quantity} x {state.unit_amount})"),
                    ("split", rule),
                    ("due", when.isoformat()),
                ),
            }
            self.emit(
                customer, when, key, _State(price, _ONE, part, state.description), part, explanation,
                description=f"{state.description} (installment {number} of {count})",
                period_index=number - 1, discounts=discounts,
            )  # fmt: skip

    # --- invoices -------------------------------------------------------------------------------

    def invoices(self) -> list[Invoice]:
        groups: defaultdict[tuple[str, str, date], list[_Charge]] = defaultdict(list)
        by_customer = self.settings.grouping == "customer"
        for charge in self.charges:
            issue = self.as_of if by_customer else charge.bill_date
            groups[(charge.customer.id, charge.line.amount.currency.code, issue)].append(charge)
        invoices: list[Invoice] = []
        for (customer_id, code, issue), charges in sorted(groups.items()):
            invoices.append(self._invoice(customer_id, Currency.of(code), issue, charges))
        return invoices

    def _invoice(self, customer_id: str, currency: Currency, issue: date, charges: list[_Charge]) -> Invoice:
        charges.sort(key=lambda c: c.line.source_key)
        priced = [(charge.line, charge.tax) for charge in charges]
        lines, tax_lines = apply_taxes(priced, currency, self.settings.tax_rounding)
        customer = charges[0].customer
        starts = [line.period_start or issue for line in lines]
        ends = [line.period_end or issue for line in lines]
        return Invoice(
            key=_invoice_key(customer_id, currency, issue, [line.source_key for line in lines]),
            customer_id=customer_id,
            currency=currency,
            issue_date=issue,
            due_date=issue + timedelta(days=customer.payment_terms_days),
            period_start=min(starts),
            period_end=max(ends),
            lines=tuple(lines),
            tax_lines=tax_lines,
        )


def _in_currency(price: PriceSpec, currency: Currency) -> PriceSpec:
    return replace(price, currency=currency)


def _currency(code: str) -> Currency:
    try:
        return Currency.of(code)
    except UnknownCurrencyError as exc:
        raise _Invalid(str(exc)) from None


def _invoice_key(customer_id: str, currency: Currency, issue: date, source_keys: list[str]) -> str:
    """Deterministic, so the same charges give the same key (the outbox uses it for idempotency).

    Fields are joined with NUL, which no id contains, so different inputs never share a payload.
    """
    payload = "\0".join([customer_id, currency.code, issue.isoformat(), *sorted(source_keys)])
    return "inv-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def _usage_end(sub: Subscription, cycle: Cycle, begin: date, changes: Sequence[Change]) -> date | None:
    """When a usage subscription stops: its term end or its first cancellation, whichever is first."""
    end = sub.end
    if changes:
        first = changes[0]
        cancel = cycle.next_boundary(max(first.date, begin)) if first.at_period_end else first.date
        end = cancel if end is None else min(end, cancel)
    return end


def _usage_buckets(
    run: _Run, subscriptions: Sequence[Subscription], usage: Iterable[UsageRecord]
) -> tuple[dict[str, list[UsageRecord]], dict[tuple[str, str], list[UsageRecord]]]:
    """Usage records by the usage subscription that covers them, and the rest by (customer, price).

    A subscription covers usage from its start (trial included: usage in a trial is free) until it
    ends or is cancelled; usage outside every subscription is billed on the customer's cycle.
    """
    records = sorted(usage, key=lambda record: record.timestamp)
    if not records:  # nothing metered: no need to work out where each subscription's usage ends
        return {}, {}
    spans: defaultdict[tuple[str, str], list[tuple[date, date | None, str]]] = defaultdict(list)
    for sub in subscriptions:
        spans[(sub.customer_id, sub.price)].append((sub.start, run.usage_span_end(sub), sub.id))
    by_sub: defaultdict[str, list[UsageRecord]] = defaultdict(list)
    loose: defaultdict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        if record.id is not None:
            if record.id in seen:
                continue
            seen.add(record.id)
        day = record.day
        owner = next(
            (
                sub_id
                for start, end, sub_id in spans.get((record.customer_id, record.price), ())
                if start <= day and (end is None or day < end)
            ),
            None,
        )
        if owner is None:
            loose[(record.customer_id, record.price)].append(record)
        else:
            by_sub[owner].append(record)
    return dict(by_sub), dict(loose)


def _keys(existing_invoices: Iterable[Invoice], already_billed: Collection[str]) -> frozenset[str]:
    keys = set(already_billed)
    for invoice in existing_invoices:
        keys.update(line.source_key for line in invoice.lines)
    return frozenset(keys)


def generate(
    *,
    as_of: date,
    customers: Mapping[str, Customer] | Iterable[Customer],
    prices: PriceBook | Iterable[PriceSpec],
    subscriptions: Iterable[Subscription] = (),
    orders: Iterable[Order] = (),
    usage: Iterable[UsageRecord] = (),
    existing_invoices: Iterable[Invoice] = (),
    already_billed: Collection[str] = (),
    taxes: TaxTable | Iterable[TaxRate] = (),
    discounts: Mapping[str, Discount] | Iterable[Discount] = (),
    settings: BillingSettings = BillingSettings(),
) -> GenerationResult:
    """The invoices due on or before ``as_of`` that are missing, and the problems found.

    Charges already on ``existing_invoices`` (or named in ``already_billed``, the stored source keys)
    are skipped, so running again with the result added returns no invoices. Bad input becomes a
    ``Problem`` for its subscription, order line or usage group; everything else is still billed.
    """
    with localcontext(EXACT):
        run = _Run(
            as_of=as_of,
            customers=customers if isinstance(customers, Mapping) else {c.id: c for c in customers},
            prices=prices if isinstance(prices, PriceBook) else PriceBook(prices),
            billed=_keys(existing_invoices, already_billed),
            taxes=taxes if isinstance(taxes, TaxTable) else TaxTable(taxes),
            discounts=discounts if isinstance(discounts, Mapping) else {d.id: d for d in discounts},
            settings=settings,
        )
        subs = list(subscriptions)
        seen: dict[str, str] = {}
        for order in orders:
            try:
                subs.extend(run.order(order, seen))
            except _Invalid as exc:
                run.problems.append(Problem(f"order {order.id}", str(exc)))
        by_sub, loose = _usage_buckets(run, subs, usage)
        for sub in subs:
            try:
                run.subscription(sub, by_sub)
            except _Invalid as exc:
                run.problems.append(Problem(f"subscription {sub.id}", str(exc)))
        for (customer_id, price_id), records in sorted(loose.items()):
            try:
                run.loose_usage(customer_id, price_id, records)
            except _Invalid as exc:
                run.problems.append(Problem(f"usage of {customer_id} on {price_id}", str(exc)))
        return GenerationResult(run.invoices(), run.problems)
