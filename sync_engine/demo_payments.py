"""The demo's payments: money arrives through every channel billsync supports, then time passes.

After the demo company's invoices are in QuickBooks, the ERP and the CRM:

- an accountant enters payments in QuickBooks (some partial), pulled by the next cycle;
- card customers pay through Stripe: the Stripe sandbox signs ``payment_intent.succeeded`` events
  and POSTs them to billsync's webhook endpoint (one is refunded in part; a forged event and an
  exact replay are refused with 400);
- transfers arrive on a camt.053 statement (EUR) and an MT940 statement (USD), written to the
  working directory and imported: referenced by invoice number (also mangled, as banks do), some
  only by the payer's IBAN and amount, one overpayment, and a few lines nobody can place;
- then the demo moves 35 days on: unpaid invoices fall overdue, reminders go to the local SMTP sink,
  and the statuses, payments and balances are pushed to every system.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from connectors.bank.build import BuildEntry, camt053_document, mt940_document
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.stripe.amounts import to_minor_units
from connectors.stripe.sandbox import StripeSandbox
from connectors.stripe.webhook import SIGNATURE_HEADER, sign
from sync_engine.reconcile import import_statement
from sync_engine.runtime import Runtime
from sync_engine.store.models import Binding, CanonicalRecord, Invoice

DEMO_BANK_IBAN = "DE89370400440532013000"
DEMO_USD_ACCOUNT = "US0000001234567890"
SEPA_CREDITOR_ID = "DE98ZZZ09999999999"
#: The domain of the demo's undeliverable billing addresses (RFC 2606: never a real domain).
UNDELIVERABLE = ".invalid"
LATER_DAYS = 35  # how far the demo moves on after the payments arrive


@dataclass
class PaymentsPhase:
    quickbooks_entered: int = 0
    stripe_events_sent: int = 0
    stripe_refunds: int = 0
    webhooks_refused: int = 0
    statement_files: list[str] = field(default_factory=list)
    statement_lines: int = 0


def gln(first12: str) -> str:
    """A GS1 Global Location Number: 12 digits and their check digit (Peppol checks it)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


def payment_profile(n: int, currency: str, name: str, rng: random.Random) -> dict[str, Any]:
    """Salesforce Account fields saying how account ``n`` pays (a third by card, some by direct debit)."""
    from schwifty import IBAN

    slug = "".join(ch for ch in name.lower() if ch.isalnum())[:20] or f"account{n}"
    profile: dict[str, Any] = {"Billing_Email__c": f"ap@{slug}.example.com", "Dunning_Group__c": "standard"}
    if n % 40 == 17:  # an address whose domain does not exist: the mail server refuses it (5xx)
        profile["Billing_Email__c"] = f"ap@{slug}{UNDELIVERABLE}"
    elif n % 40 == 29:  # no billing e-mail: the invoice is printed and posted
        del profile["Billing_Email__c"]
    if currency == "EUR" and n % 3 != 2:
        profile["Invoice_Language__c"] = "de" if n % 3 == 0 else "fr"
    # every customer is reachable for e-invoices: a GLN (Peppol scheme 0088) of its own
    profile["E_Invoice_Address__c"] = gln(f"40{n + 1:010d}")
    profile["E_Invoice_Scheme__c"] = "0088"
    if currency == "EUR":  # European customers: a VAT number, and some want structured e-invoices
        profile["VAT_Number__c"] = f"DE{300000000 + n:09d}"
        wanted = ("XRechnung", "Factur-X", "Peppol", None, None)[n % 5]
        if wanted is not None:
            profile["Invoice_Format__c"] = wanted
        if wanted == "XRechnung":
            profile["Buyer_Reference__c"] = f"991-{n + 1:05d}-44"  # a Leitweg-ID
    roll = rng.random()
    if roll < 0.35:
        profile.update(Payment_Method__c="Card", Stripe_Customer_Id__c=f"cus_demo{n + 1:05d}")
    elif roll < 0.55 and currency == "EUR":
        profile.update(
            Payment_Method__c="Direct Debit",
            IBAN__c=str(IBAN.generate("DE", bank_code="37040044", account_code=f"{n + 1:010d}")),
            SEPA_Mandate_Id__c=f"MANDATE-{n + 1:05d}",
            SEPA_Mandate_Date__c="2025-01-15",
        )
    else:
        profile["Payment_Method__c"] = "Bank Transfer"
        if rng.random() < 0.5:
            country, bank = ("DE", "37040044") if currency == "EUR" else ("GB", "NWBK")
            if country == "DE":
                profile["IBAN__c"] = str(IBAN.generate(country, bank_code=bank, account_code=f"{n + 1:010d}"))
            else:
                profile["IBAN__c"] = str(
                    IBAN.generate("GB", bank_code="NWBK601613", account_code=f"{n + 31926819:08d}")
                )
    return profile


class WebhookServer:
    """billsync's HTTP endpoints (``billsync serve``) on a free loopback port, in a thread."""

    def __init__(self, runtime: Runtime) -> None:
        import uvicorn

        from sync_engine.web import create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(runtime), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="billsync-webhooks", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/stripe"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook endpoint did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_payments_phase(
    runtime: Runtime,
    qbo: QuickBooksSandbox,
    stripe: StripeSandbox,
    webhook_secret: str,
    workdir: Path,
    today: dt.date,
    seed: int = 11,
) -> PaymentsPhase:
    rng = random.Random(seed)
    phase = PaymentsPhase()
    with runtime.sessions() as session:
        invoices = list(
            session.scalars(select(Invoice).where(Invoice.status == "open").order_by(Invoice.number))
        )
        for inv in invoices:
            session.expunge(inv)
        customers = {
            cid: dict(data)
            for cid, data in session.execute(
                select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "customer")
            )
        }
        qbo_ids = {
            (b.entity, b.canonical_id): b.external_id
            for b in session.scalars(select(Binding).where(Binding.system == "quickbooks"))
        }
    camt: list[BuildEntry] = []
    mt940: list[BuildEntry] = []
    paid_by_card: list[Invoice] = []
    for index, inv in enumerate(invoices):
        customer = customers.get(inv.customer_id, {})
        roll = rng.random()
        if customer.get("payment_method") == "card":
            if roll < 0.75:
                _card_payment(stripe, inv, customer)
                phase.stripe_events_sent += 1
                paid_by_card.append(inv)
            continue
        if roll < 0.18:
            amount = inv.total if index % 4 else (inv.total / 2).quantize(Decimal("0.01"))
            qbo.record_payment(
                qbo_ids[("customer", inv.customer_id)],
                amount,
                [(qbo_ids[("invoice", inv.id)], amount)],
                today,
                reference=f"CHK{1000 + index}",
                method="Check",
            )
            phase.quickbooks_entered += 1
        elif roll < 0.48:
            target = camt if inv.currency == "EUR" else mt940
            target.append(_transfer(inv, customer, index, today))
    for n in range(3):  # money nobody can place: waits in the review queue
        camt.append(
            BuildEntry(
                amount=Decimal(f"{17 + n * 13}.{n + 3}0"),
                booking_date=today,
                counterparty_name=f"Unknown Payer {n + 1} GmbH",
                counterparty_iban="DE02120300000000202051",
                remittance=f"Rechnung {rng.randint(100, 999)}",
                end_to_end_id="NOTPROVIDED",
                reference=f"UNK{n + 1}",
            )
        )
    if paid_by_card:  # a customer gets part of a card payment back
        _card_refund(stripe, paid_by_card[0], customers.get(paid_by_card[0].customer_id, {}))
        phase.stripe_refunds += 1
    phase.webhooks_refused = _untrusted_deliveries(stripe, webhook_secret)
    folder = workdir / "statements"
    folder.mkdir(exist_ok=True)
    created = dt.datetime.combine(today, dt.time(18, 0), tzinfo=dt.UTC)
    files = [
        (
            folder / "camt053-demo.xml",
            camt053_document(DEMO_BANK_IBAN, "STMT-DEMO-EUR", "EUR", camt, created, Decimal("1000.00")),
        ),
        (
            folder / "mt940-demo.sta",
            mt940_document(
                DEMO_USD_ACCOUNT[:16], "STMTDEMOUSD", "USD", mt940, created, Decimal("2500.00")
            ).encode(),
        ),
    ]
    for path, data in files:
        path.write_bytes(data)
        result = import_statement(runtime, data, path.name, as_of=today)
        phase.statement_files.append(str(path))
        phase.statement_lines += result.lines
    return phase


def _transfer(inv: Invoice, customer: dict[str, Any], index: int, today: dt.date) -> BuildEntry:
    """A customer's transfer: usually with the invoice number, sometimes mangled, sometimes without it."""
    amount = inv.total
    remittance = f"Invoice {inv.number}"
    if index % 11 == 0:
        remittance = f"payment {str(inv.number).replace('-', '')} thanks"  # as some banks pass it on
    if index % 9 == 0 and customer.get("iban"):
        remittance = "monthly payment"  # no reference: matched by the payer's IBAN and the amount
    if remittance == "monthly payment":
        pass  # found by IBAN and amount: the exact amount due
    elif index % 13 == 0:
        amount = amount + Decimal("25.00")  # an overpayment: the rest is the customer's credit
    elif index % 7 == 0:
        amount = (amount * Decimal("0.6")).quantize(Decimal("0.01"))  # a partial payment
    return BuildEntry(
        amount=amount,
        booking_date=today,
        counterparty_name=_swift_safe(str(customer.get("name", "Customer"))),
        counterparty_iban=str(customer.get("iban") or "GB33BUKB20201555555555"),
        remittance=remittance,
        end_to_end_id=f"E2E{index:06d}",
        reference=f"BANK{index:06d}",
    )


def _swift_safe(text: str) -> str:
    """Names as banks pass them on: SWIFT's character set (no '#', '&'...), single spaces."""
    import re

    return re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9/?:().,'+ -]", " ", text)).strip()


def _intent(inv: Invoice, customer: dict[str, Any]) -> dict[str, Any]:
    amount = to_minor_units(inv.total, inv.currency)
    return {
        "id": f"pi_demo_{inv.number}",
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": inv.currency.lower(),
        "customer": customer.get("stripe_customer_id"),
        "created": int(time.time()),
        "latest_charge": f"ch_demo_{inv.number}",
        "metadata": {"billsync_invoice_number": inv.number},
        "payment_method": "pm_card_visa",
        "payment_method_types": ["card"],
        "status": "succeeded",
    }


def _card_payment(stripe: StripeSandbox, inv: Invoice, customer: dict[str, Any]) -> None:
    delivery = stripe.send_event("payment_intent.succeeded", _intent(inv, customer))
    if not delivery.ok:
        raise RuntimeError(f"the webhook endpoint refused a genuine event: {delivery}")


def _card_refund(stripe: StripeSandbox, inv: Invoice, customer: dict[str, Any]) -> None:
    total = to_minor_units(inv.total, inv.currency)
    refunded = total // 2
    charge = {
        "id": f"ch_demo_{inv.number}",
        "object": "charge",
        "amount": total,
        "amount_captured": total,
        "amount_refunded": refunded,
        "captured": True,
        "currency": inv.currency.lower(),
        "customer": customer.get("stripe_customer_id"),
        "created": int(time.time()),
        "metadata": {"billsync_invoice_number": inv.number},
        "payment_intent": f"pi_demo_{inv.number}",
        "refunded": False,
        "refunds": {"object": "list", "data": [{"id": f"re_demo_{inv.number}", "amount": refunded}]},
    }
    stripe.send_event("charge.refunded", charge)


def _untrusted_deliveries(stripe: StripeSandbox, secret: str) -> int:
    """A forged event and an exact replay of a genuine one: both must be refused."""
    assert stripe.webhook_url is not None
    refused = 0
    forged = json.dumps({"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded"}).encode()
    answer = requests.post(
        stripe.webhook_url,
        data=forged,
        headers={SIGNATURE_HEADER: sign(forged, "whsec_not_the_secret", int(time.time()))},
        timeout=10,
    )
    refused += answer.status_code == 400
    # an event accepted once, then captured and sent again byte for byte (same signature header)
    event = {
        "id": "evt_demo_replay",
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_demo00001", "object": "customer"}},
        "livemode": False,
    }
    body = json.dumps(event).encode()
    header = sign(body, secret, int(time.time()))
    for _ in range(2):
        answer = requests.post(stripe.webhook_url, data=body, headers={SIGNATURE_HEADER: header}, timeout=10)
    refused += answer.status_code == 400
    return refused


def summarise_payments(
    runtime: Runtime, *, qbo_connection: str, erp_connection: str, workdir: Path | None = None
) -> dict[str, Any]:
    """Where the money stands, from the state store and counted back through each system's API."""
    from collections import Counter

    from sync_engine.store.models import Payment, Reminder, StatementLine

    with runtime.sessions() as session:
        statuses = Counter(session.scalars(select(Invoice.status)))
        # partly paid, whether or not also overdue by now
        partly = sum(
            1
            for paid, total, status in session.execute(
                select(Invoice.amount_paid, Invoice.total, Invoice.status)
            )
            if 0 < paid < total and status != "void"
        )
        reminders = Counter(session.scalars(select(Reminder.status)))
        lines = Counter(session.scalars(select(StatementLine.status)))
        sources = Counter(session.scalars(select(Payment.source)))
    in_qbo = runtime.quickbooks(qbo_connection).query("SELECT * FROM Invoice")
    paid_qbo = sum(1 for inv in in_qbo if Decimal(str(inv.get("Balance", "1"))) == 0)
    erp = runtime.nav(erp_connection)
    paid_erp = sum(1 for status in erp.latest_payment_status().values() if status == "Paid")
    crm = runtime.salesforce("salesforce")
    paid_crm = 0
    for page in crm.pull_pages("Billsync_Invoice__c", ["Status__c"], None):
        paid_crm += sum(1 for r in page if r.get("Status__c") == "Paid")
    orders: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    for sobject, counter in (("Order", orders), ("Account", accounts)):
        for page in crm.pull_pages(sobject, ["Payment_Status__c"], None):
            counter.update(str(r.get("Payment_Status__c")) for r in page if r.get("Payment_Status__c"))
    summary: dict[str, Any] = {
        "invoices_paid": statuses.get("paid", 0),
        "invoices_partially_paid": partly,
        "invoices_overdue": statuses.get("overdue", 0),
        "invoices_open": statuses.get("open", 0),
        "payments_recorded": dict(sorted(sources.items())),
        "reminders_sent": reminders.get("sent", 0),
        "reminders_failed": reminders.get("failed", 0),
        "statement_lines_matched": lines.get("matched", 0),
        "statement_lines_unmatched": lines.get("unmatched", 0),
        "paid_status_in_quickbooks": paid_qbo,
        "paid_status_in_erp": paid_erp,
        "paid_status_in_salesforce": paid_crm,
        "payment_status_of_crm_accounts": dict(sorted(accounts.items())),
        "payment_status_of_crm_orders": dict(sorted(orders.items())),
    }
    if workdir is not None:
        summary.update(_ledger_check(runtime, workdir))
    return summary


def _ledger_check(runtime: Runtime, workdir: Path) -> dict[str, Any]:
    """Export the books and load them with Beancount (what ``bean-check`` does), zero tolerance."""
    from beancount import loader

    from sync_engine.ledger import write_ledger

    path = workdir / "ledger.beancount"
    with runtime.sessions() as session:
        write_ledger(session, runtime.settings, path)
    _, errors, _ = loader.load_file(str(path))
    return {
        "ledger": str(path),
        "ledger_check": "ok" if not errors else [str(getattr(e, "message", e)) for e in errors[:5]],
    }
