"""Invoice status transitions and credit notes, as pure functions on frozen values.

::

    draft --finalize(number)--> open --record_payment--> partially_paid --record_payment--> paid
                                  |  \\                        |
                                  |   `--mark_uncollectible--> uncollectible --record_payment--> ...
                                  `--void (no payment yet)--> void  <--void (no payment yet)--'

A finalised invoice never changes its lines or totals: mistakes are corrected with a credit note
(its own number series), never by editing. The gapless counter behind the numbers lives in the
database; these functions only check that a number is given exactly once, at finalisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Final, Literal

from billing.model import Invoice, InvoiceLine
from billing.money import Currency, Money

__all__ = [
    "CreditNote",
    "CreditNoteLine",
    "InvalidTransitionError",
    "credit_note",
    "finalize",
    "issue_credit_note",
    "mark_uncollectible",
    "record_payment",
    "void",
]

_PAYABLE: Final = frozenset({"open", "partially_paid", "uncollectible"})


class InvalidTransitionError(ValueError):
    """The requested change is not allowed from the invoice's (or credit note's) current status."""


def _require(invoice: Invoice, allowed: Iterable[str], action: str) -> None:
    allowed = tuple(allowed)
    if invoice.status not in allowed:
        raise InvalidTransitionError(
            f"cannot {action} invoice {invoice.number or invoice.key}: it is {invoice.status} "
            f"(only {' or '.join(allowed)} invoices can be)"
        )


def finalize(invoice: Invoice, number: str) -> Invoice:
    """The invoice with its number, open for payment (or paid at once when it totals zero)."""
    _require(invoice, ("draft",), "finalize")
    if not number.strip():
        raise ValueError("a finalised invoice needs a number")
    status: Literal["open", "paid"] = "paid" if invoice.total.amount == 0 else "open"
    return replace(invoice, number=number, status=status)


def record_payment(invoice: Invoice, amount: Money) -> Invoice:
    """The invoice after a payment of ``amount``: partially paid, or paid when nothing is due.

    Over-payments are refused: what to do with the excess (refund, credit balance) is the payment
    matcher's decision, not the invoice's.
    """
    _require(invoice, sorted(_PAYABLE), "pay")
    if amount.currency != invoice.currency:
        raise ValueError(f"payment in {amount.currency.code} for an invoice in {invoice.currency.code}")
    if amount.amount <= 0:
        raise ValueError(f"a payment must be positive, got {amount}")
    if amount > invoice.amount_due:
        raise ValueError(f"payment {amount} exceeds the amount due {invoice.amount_due}")
    paid = amount if invoice.amount_paid is None else invoice.amount_paid + amount
    status: Literal["paid", "partially_paid"] = "paid" if paid == invoice.total else "partially_paid"
    return replace(invoice, amount_paid=paid, status=status)


def void(invoice: Invoice) -> Invoice:
    """Cancel an invoice that nobody has paid anything on (its number stays used: no gap)."""
    _require(invoice, ("open", "uncollectible"), "void")
    if invoice.amount_paid is not None and invoice.amount_paid.amount:
        raise InvalidTransitionError(
            f"cannot void invoice {invoice.number}: {invoice.amount_paid} was paid; issue a credit note"
        )
    return replace(invoice, status="void")


def mark_uncollectible(invoice: Invoice) -> Invoice:
    """Write the invoice off as bad debt; a later payment still settles it."""
    _require(invoice, ("open", "partially_paid"), "mark uncollectible")
    return replace(invoice, status="uncollectible")


@dataclass(frozen=True, slots=True)
class CreditNoteLine:
    """Part of one invoice line given back: ``amount`` excludes tax, ``tax_amount`` is its tax."""

    source_key: str
    description: str
    amount: Money
    tax_amount: Money


@dataclass(frozen=True, slots=True)
class CreditNote:
    """A credit against a finalised invoice; numbered from its own series when issued."""

    key: str
    invoice_key: str
    invoice_number: str
    customer_id: str
    currency: Currency
    issue_date: date
    reason: str
    lines: tuple[CreditNoteLine, ...]
    status: Literal["draft", "issued"] = "draft"
    number: str | None = None

    @property
    def subtotal(self) -> Money:
        return _total(self.currency, [line.amount for line in self.lines])

    @property
    def tax_total(self) -> Money:
        return _total(self.currency, [line.tax_amount for line in self.lines])

    @property
    def total(self) -> Money:
        return self.subtotal + self.tax_total


def _total(currency: Currency, amounts: list[Money]) -> Money:
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total


def _creditable(line: InvoiceLine) -> Money:
    """The net (tax-free, after discount) amount of a line that a credit note can give back."""
    return line.net_amount


def credit_note(
    invoice: Invoice,
    *,
    key: str,
    issue_date: date,
    reason: str,
    amounts: Mapping[str, Money] | None = None,
    previous: Iterable[CreditNote] = (),
) -> CreditNote:
    """A draft credit note for ``invoice``: every line in full (``amounts`` None), or the given net
    amounts per line source key. Tax is credited in proportion. Together with the ``previous``
    credit notes of the invoice, no line is ever credited more than it billed."""
    _require(invoice, ("open", "partially_paid", "paid", "uncollectible"), "credit")
    assert invoice.number is not None
    if not reason.strip():
        raise ValueError("a credit note needs a reason")
    credited: dict[str, Decimal] = {}
    credited_tax: dict[str, Decimal] = {}
    for note in previous:
        if note.invoice_key != invoice.key:
            raise ValueError(f"credit note {note.key} belongs to another invoice")
        for done in note.lines:
            credited[done.source_key] = credited.get(done.source_key, Decimal(0)) + done.amount.amount
            credited_tax[done.source_key] = (
                credited_tax.get(done.source_key, Decimal(0)) + done.tax_amount.amount
            )
    by_key = {line.source_key: line for line in invoice.lines}
    wanted = {k: _creditable(v) for k, v in by_key.items()} if amounts is None else dict(amounts)
    lines: list[CreditNoteLine] = []
    for source_key, amount in wanted.items():
        line = by_key.get(source_key)
        if line is None:
            raise ValueError(f"invoice {invoice.number} has no line {source_key!r}")
        if amount.currency != invoice.currency:
            raise ValueError(f"credit in {amount.currency.code} for an invoice in {invoice.currency.code}")
        base = _creditable(line).amount
        left = base - credited.get(source_key, Decimal(0))
        # A credit has the sign of its line (a negative proration line is "credited" negatively),
        # and all credits of a line together never exceed what the line billed.
        if not min(left, Decimal(0)) <= amount.amount <= max(left, Decimal(0)):
            raise ValueError(f"line {source_key!r}: can credit from 0 to {left}, not {amount.amount}")
        if amount.amount == 0:
            continue
        # Tax follows the net amount, rounded on what has been credited so far: successive partial
        # credits give back exactly the line's tax once the whole line is credited, never a cent off.
        if line.tax_amount is None:
            tax = Money(Decimal(0), invoice.currency)
        else:
            so_far = credited.get(source_key, Decimal(0)) + amount.amount
            due = Money(line.tax_amount.amount * so_far / base, invoice.currency).rounded()
            tax = Money(due.amount - credited_tax.get(source_key, Decimal(0)), invoice.currency)
        lines.append(CreditNoteLine(source_key, f"Credit: {line.description}", amount, tax))
    if not lines:
        raise ValueError("a credit note needs at least one line with an amount")
    return CreditNote(
        key=key,
        invoice_key=invoice.key,
        invoice_number=invoice.number,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        issue_date=issue_date,
        reason=reason,
        lines=tuple(lines),
    )


def issue_credit_note(note: CreditNote, number: str) -> CreditNote:
    """The credit note with its number from the credit-note series; issued notes never change."""
    if note.status != "draft":
        raise InvalidTransitionError(f"credit note {note.number} is already issued")
    if not number.strip():
        raise ValueError("an issued credit note needs a number")
    return replace(note, number=number, status="issued")
