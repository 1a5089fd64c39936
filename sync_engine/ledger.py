"""Beancount export of the receivables book: invoices, payments, credit and refunds as double entry.

Accountants reconcile billsync against their books; a plain-text ledger that ``bean-check`` accepts
is the one format every tool can read and every accountant can audit. Every transaction balances
exactly: amounts are the stored Decimals printed with the currency's minor units (an amount with
more decimals is an error, never rounded), and the file sets ``tolerance_multiplier`` to 0, so
beancount tolerates no imbalance at all, not even a fraction of a cent.

What is booked (accounts from ``billsync.yaml`` ``ledger:``, kept flat; the customer and the
document are metadata and links, ``^INV-000001``, ``^PAY-000001``):

- A finalised invoice, on its issue date: receivable debited with the total; revenue credited with
  the subtotal less inclusive taxes, the discounts debited to ``discounts``; each tax line credited
  to ``tax``.
- A void invoice: its transaction on the issue date and a reversing one (tagged ``#void``) on the
  day it was voided (``Invoice.voided_at``, UTC; the issue date for invoices voided before billsync
  recorded when): the number stays visible in the gapless series, the balance is nil from then on.
- An uncollectible invoice stays in receivable (there is no bad-debt account to write it off to).
- A payment, on the day received: its money account debited (``bank`` for bank transfers and
  direct debits, ``card_clearing`` for cards, gateways and anything from Stripe, ``undeposited``
  for cash, cheques and the rest); receivable credited for each allocation that paid an invoice
  that day; the remainder credited to ``customer_credit``.
- Credit applied later (an allocation to an invoice issued after the payment was received):
  ``customer_credit`` -> receivable on the invoice's issue date.
- A refund, on its day: ``customer_credit`` debited, the payment's money account credited. The store
  keeps only the allocations that survived a refund (a refund that reached allocated money shrank
  them), so the payment's transaction already booked such money as credit: the balances at the end
  are exact; between the payment and a refund that reopened an invoice, the ledger shows the money
  as credit rather than as paying the invoice.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.money import Currency
from sync_engine.settings import LedgerSettings, Settings
from sync_engine.store.models import CanonicalRecord, Invoice, Payment, Refund

__all__ = ["LedgerError", "export_beancount", "money_account", "write_ledger"]

ZERO = Decimal("0")
_ROOTS = ("Assets", "Liabilities", "Equity", "Income", "Expenses")
_ACCOUNT = re.compile(r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]*)+$")
_LINK_BAD = re.compile(r"[^A-Za-z0-9\-_/.]")


class LedgerError(ValueError):
    """The book cannot be exported exactly (a bad account name, totals that disagree...)."""


@dataclass
class _Txn:
    date: dt.date
    order: int  # invoices before payments before credit applications before refunds on one day
    key: str
    payee: str
    narration: str
    currency: str
    postings: list[tuple[str, Decimal]]
    meta: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def money_account(ledger: LedgerSettings, payment: Payment) -> str:
    """Where the money of ``payment`` went before it reached the bank."""
    if payment.source == "stripe" or payment.method in ("card", "gateway"):
        return ledger.card_clearing
    if payment.method in ("bank_transfer", "direct_debit"):
        return ledger.bank
    return ledger.undeposited


def export_beancount(session: Session, settings: Settings, *, until: dt.date | None = None) -> str:
    """The whole book (or what happened up to ``until``) as a Beancount file; see the module docs."""
    ledger = settings.ledger
    _check_accounts(ledger)
    try:
        opening = dt.date.fromisoformat(ledger.opening_date)
    except ValueError as exc:
        raise LedgerError(f"ledger.opening_date {ledger.opening_date!r} is not a date (YYYY-MM-DD)") from exc

    names = {
        record.id: str(record.data.get("name") or record.id)
        for record in session.scalars(select(CanonicalRecord).where(CanonicalRecord.entity == "customer"))
    }
    invoices = list(
        session.scalars(
            select(Invoice)
            .where(Invoice.status != "draft", Invoice.number.is_not(None))
            .options(selectinload(Invoice.tax_lines))
            .order_by(Invoice.issue_date, Invoice.number)
        )
    )
    by_id = {invoice.id: invoice for invoice in invoices}
    payments = list(
        session.scalars(
            select(Payment)
            .options(selectinload(Payment.allocations))
            .order_by(Payment.received_on, Payment.number)
        )
    )
    refunds = list(session.scalars(select(Refund).order_by(Refund.refunded_on, Refund.id)))
    payment_by_id = {payment.id: payment for payment in payments}

    txns: list[_Txn] = []
    for invoice in invoices:
        txns.extend(_invoice_txns(ledger, invoice, names))
    for payment in payments:
        txns.extend(_payment_txns(ledger, payment, by_id, names))
    for refund in refunds:
        paid = payment_by_id.get(refund.payment_id)
        if paid is not None:
            txns.append(_refund_txn(ledger, refund, paid, names))
    if until is not None:
        txns = [txn for txn in txns if txn.date <= until]
    txns.sort(key=lambda t: (t.date, t.order, t.key))

    early = next((txn for txn in txns if txn.date < opening), None)
    if early is not None:
        raise LedgerError(
            f"{early.narration} is dated {early.date.isoformat()}, before ledger.opening_date "
            f"{opening.isoformat()}: set an earlier opening date"
        )
    return _render(opening, txns)


def write_ledger(session: Session, settings: Settings, out: Path, *, until: dt.date | None = None) -> str:
    """Write :func:`export_beancount` to ``out`` (UTF-8) and return the text."""
    text = export_beancount(session, settings, until=until)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


# --------------------------------------------------------------------------------------------
# transactions


def _invoice_txns(ledger: LedgerSettings, invoice: Invoice, names: dict[str, str]) -> list[_Txn]:
    number = invoice.number or invoice.id
    taxes = [(tax.amount, tax.inclusive) for tax in invoice.tax_lines]
    if not taxes and invoice.tax_total:
        taxes = [(invoice.tax_total, False)]  # no breakdown stored: one posting for the whole tax
    tax_sum = sum((amount for amount, _ in taxes), ZERO)
    inclusive = sum((amount for amount, incl in taxes if incl), ZERO)
    exclusive = tax_sum - inclusive
    discount = invoice.discount_total or ZERO
    if invoice.total != invoice.subtotal - discount + exclusive:
        raise LedgerError(
            f"invoice {number}: total {invoice.total} is not subtotal {invoice.subtotal} - discounts "
            f"{discount} + exclusive tax {exclusive}; the stored totals disagree"
        )
    postings: list[tuple[str, Decimal]] = [
        (ledger.receivable, invoice.total),
        (ledger.revenue, -(invoice.subtotal - inclusive)),
    ]
    if discount:
        postings.append((ledger.discounts, discount))
    for tax in invoice.tax_lines:
        if tax.amount:
            postings.append((ledger.tax, -tax.amount))
    if not invoice.tax_lines and invoice.tax_total:
        postings.append((ledger.tax, -invoice.tax_total))
    meta = {"customer": invoice.customer_id, "invoice": number, "due": invoice.due_date.isoformat()}
    payee = names.get(invoice.customer_id, invoice.customer_id)
    issued = _Txn(
        date=invoice.issue_date,
        order=0,
        key=f"{number}:0",
        payee=payee,
        narration=f"Invoice {number}",
        currency=invoice.currency,
        postings=postings,
        meta=meta,
        links=[number],
    )
    if invoice.status != "void":
        return [issued]
    voided_on = invoice.voided_at.astimezone(dt.UTC).date() if invoice.voided_at else invoice.issue_date
    reversal = _Txn(
        date=max(voided_on, invoice.issue_date),
        order=0,
        key=f"{number}:1",
        payee=payee,
        narration=f"Invoice {number} voided",
        currency=invoice.currency,
        postings=[(account, -amount) for account, amount in postings],
        meta=dict(meta),
        links=[number],
        tags=["void"],
    )
    return [issued, reversal]


def _payment_txns(
    ledger: LedgerSettings, payment: Payment, invoices: dict[str, Invoice], names: dict[str, str]
) -> list[_Txn]:
    payee = names.get(payment.customer_id, payment.customer_id)
    now: list[tuple[str, Decimal]] = []
    later: dict[tuple[dt.date, str], Decimal] = {}
    for allocation in payment.allocations:
        if allocation.amount <= 0:
            continue
        invoice = invoices.get(allocation.invoice_id)
        number = invoice.number if invoice is not None and invoice.number else allocation.invoice_id
        applied = max(allocation.applied_on, payment.received_on)
        if invoice is not None:
            applied = max(applied, invoice.issue_date)
        if applied == payment.received_on:
            now.append((number, allocation.amount))
        else:
            later[(applied, number)] = later.get((applied, number), ZERO) + allocation.amount
    allocated_now = sum((amount for _, amount in now), ZERO)
    postings: list[tuple[str, Decimal]] = [(money_account(ledger, payment), payment.amount)]
    if payment.source == "credit_note":  # not money: revenue and tax given back
        tax = Decimal(str((payment.details or {}).get("tax") or "0"))
        postings = [(ledger.revenue, payment.amount - tax)] + ([(ledger.tax, tax)] if tax else [])
    postings += [(ledger.receivable, -amount) for _, amount in now]
    credit = payment.amount - allocated_now
    if credit:
        postings.append((ledger.customer_credit, -credit))
    meta = {"customer": payment.customer_id, "payment": payment.number, "method": payment.method}
    if payment.reference:
        meta["reference"] = payment.reference
    txns = [
        _Txn(
            date=payment.received_on,
            order=1,
            key=payment.number,
            payee=payee,
            narration=f"Payment {payment.number} ({payment.source})",
            currency=payment.currency,
            postings=postings,
            meta=meta,
            links=[payment.number, *dict.fromkeys(number for number, _ in now)],
        )
    ]
    for (applied, number), amount in sorted(later.items()):
        txns.append(
            _Txn(
                date=applied,
                order=2,
                key=f"{payment.number}:{number}",
                payee=payee,
                narration=f"Credit from {payment.number} applied to {number}",
                currency=payment.currency,
                postings=[(ledger.customer_credit, amount), (ledger.receivable, -amount)],
                meta={"customer": payment.customer_id, "payment": payment.number, "invoice": number},
                links=[payment.number, number],
            )
        )
    return txns


def _refund_txn(ledger: LedgerSettings, refund: Refund, payment: Payment, names: dict[str, str]) -> _Txn:
    meta = {
        "customer": payment.customer_id,
        "payment": payment.number,
        "refund": f"{refund.source}:{refund.source_ref}",
    }
    if refund.reason:
        meta["reason"] = refund.reason
    return _Txn(
        date=refund.refunded_on,
        order=3,
        key=f"{payment.number}:refund:{refund.id:012d}",
        payee=names.get(payment.customer_id, payment.customer_id),
        narration=f"Refund of {payment.number}",
        currency=payment.currency,
        postings=[(ledger.customer_credit, refund.amount), (money_account(ledger, payment), -refund.amount)],
        meta=meta,
        links=[payment.number],
    )


# --------------------------------------------------------------------------------------------
# rendering


def _check_accounts(ledger: LedgerSettings) -> None:
    for name in type(ledger).model_fields:
        if name == "opening_date":
            continue
        account = getattr(ledger, name)
        if not _ACCOUNT.fullmatch(account):
            raise LedgerError(
                f"ledger.{name} {account!r} is not a Beancount account name: it must start with one of "
                f"{', '.join(_ROOTS)} and each part must start with a capital letter or digit (Assets:Bank)"
            )


def _amount(value: Decimal, currency: str) -> str:
    quantum = Currency.of(currency).quantum
    exact = value.quantize(quantum)
    if exact != value:
        raise LedgerError(f"{value} {currency} has more decimals than {currency} has minor units")
    if exact == 0:
        exact = abs(exact)
    return f"{exact:f} {currency}"


def _string(text: str) -> str:
    flat = " ".join(text.split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _link(text: str) -> str:
    return "^" + _LINK_BAD.sub("-", text)


def _render(opening: dt.date, txns: Iterable[_Txn]) -> str:
    txns = list(txns)
    currencies = sorted({txn.currency for txn in txns})
    accounts = sorted({account for txn in txns for account, _ in txn.postings})
    lines = [
        "; Exported by billsync: receivables, payments, customer credit and refunds.",
        "; Every transaction balances exactly: tolerance_multiplier 0 lets no imbalance through.",
        'option "title" "billsync receivables"',
        *[f'option "operating_currency" "{code}"' for code in currencies],
        'option "tolerance_multiplier" "0"',
        "",
        *[f"{opening.isoformat()} open {account}" for account in accounts],
    ]
    for txn in txns:
        total = sum((amount for _, amount in txn.postings), ZERO)
        if total != 0:  # a bug here, never a rounding: refuse to write a book that does not balance
            raise LedgerError(f"{txn.narration} does not balance ({total} {txn.currency})")
        head = f"{txn.date.isoformat()} * {_string(txn.payee)} {_string(txn.narration)}"
        extras = [f"#{tag}" for tag in txn.tags] + [_link(link) for link in dict.fromkeys(txn.links)]
        lines += ["", " ".join([head, *extras])]
        lines += [f"  {key}: {_string(value)}" for key, value in txn.meta.items()]
        width = max(len(account) for account, _ in txn.postings)
        lines += [
            f"  {account:<{width}}  {_amount(amount, txn.currency)}" for account, amount in txn.postings
        ]
    return "\n".join(lines) + "\n"
