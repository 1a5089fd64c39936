"""The receivables step of a cycle, after billing and before the push: money in, lateness, reminders.

1. payments entered in QuickBooks are pulled and recorded (``payments.quickbooks``);
2. invoices past their due date become ``overdue`` (and the ERP and the CRM are told in the push
   that follows);
3. saved cards of customers who pay by card are charged (``payments.collect_cards``), once per invoice;
4. reminders that are due go out (when ``mail:`` is configured and dunning is enabled).

Bank statements and Stripe webhooks arrive on their own schedule (``billsync payments import``,
``billsync serve``) and go through the same payments core.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sync_engine.card_collection import CardCollectionResult, collect_cards
from sync_engine.payments import refresh_overdue
from sync_engine.qbo_payments import QboPaymentsResult, pull_quickbooks_payments
from sync_engine.runtime import Runtime


@dataclass
class ReceivablesResult:
    quickbooks: QboPaymentsResult | None = None
    became_overdue: int = 0
    cards: CardCollectionResult | None = None
    dunning: Any = None  # sync_engine.dunning.DunningResult when reminders ran


def run_receivables(runtime: Runtime, *, as_of: dt.date) -> ReceivablesResult:
    result = ReceivablesResult()
    if runtime.settings.payments.quickbooks:
        with runtime.lock(f"payments:{runtime.settings.payments.quickbooks}"):
            result.quickbooks = pull_quickbooks_payments(runtime, as_of=as_of)
    with runtime.transaction() as session:
        result.became_overdue = refresh_overdue(session, runtime.settings, as_of=as_of)
    if runtime.settings.payments.collect_cards and runtime.settings.payments.stripe:
        result.cards = collect_cards(runtime, as_of=as_of)  # takes its own lock
    if runtime.settings.mail is not None and runtime.settings.dunning.enabled:
        from sync_engine.dunning import run_dunning

        result.dunning = run_dunning(runtime, as_of=as_of)  # takes the "dunning" lock itself
    return result
