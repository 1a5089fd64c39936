"""Credit notes: give back part or all of a finalised invoice, never by editing it.

Why this way: a finalised invoice is a legal document; a mistake (a wrong quantity, a goodwill
discount, a cancelled service) is corrected by a second document with its own number (series
``CN``), which refers to the invoice. The amounts come from the billing module
(:func:`billing.credit_note`): every line in full, or chosen net amounts per line, tax credited in
proportion, and never more per line than the line billed, counting earlier credit notes.

What issuing one does, in one transaction (all or nothing):

- stores the credit note with its number (gapless, like invoice numbers);
- records a receipt of source ``credit_note`` allocated to the invoice (:func:`record_payment`):
  the invoice's amount due drops, its status follows (a fully credited open invoice is settled),
  and the outbox tells every system the new status and balance. What exceeds the amount still due
  (the invoice was already paid) becomes the customer's credit, applied to their next invoices;
- owes the customer its delivery (the same e-mail path as invoices) and, when configured, the
  e-invoice file (type 381, referring to the invoice).

Accounting systems book it as what it is: with the mappings ``credit_note``
(``builtin:quickbooks/credit_memo.out``, a CreditMemo) and ``credit_application``
(``builtin:quickbooks/credit_application.out``, a zero-total Payment linking the CreditMemo and the
invoice, QBO's way of applying a credit), never as money received. The ledger books it against
revenue and tax, not a bank account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing import Currency, Money
from billing import credit_note as draft_credit_note
from billing import issue_credit_note as issue
from billing.lifecycle import CreditNote as BillingCreditNote
from billing.lifecycle import CreditNoteLine as BillingCreditNoteLine
from sync_engine.delivery import delivery_wanted, queue_document_delivery
from sync_engine.einvoices import folder_wanted, queue_folder_export
from sync_engine.invoicing import billing_invoice
from sync_engine.outbox import enqueue
from sync_engine.payments import Receipt, record_payment
from sync_engine.runtime import Runtime
from sync_engine.store.models import CreditNote, CreditNoteLine, Invoice, Payment, PaymentAllocation
from sync_engine.store.sequences import next_number

__all__ = ["CREDIT_NOTE_SERIES", "CreditNoteError", "credit_note_summary", "issue_credit_note"]

CREDIT_NOTE_SERIES: Final = "CN"
SOURCE: Final = "credit_note"


class CreditNoteError(ValueError):
    """The credit note cannot be issued (unknown invoice, amount too high, void invoice ...)."""


def _stored_as_billing(note: CreditNote) -> BillingCreditNote:
    currency = Currency.of(note.currency)
    return BillingCreditNote(
        key=note.id,
        invoice_key=note.invoice_id,
        invoice_number="",
        customer_id=note.customer_id,
        currency=currency,
        issue_date=note.issue_date,
        reason=note.reason,
        lines=tuple(
            BillingCreditNoteLine(
                line.source_key,
                line.description,
                Money(line.amount, currency),
                Money(line.tax_amount, currency),
            )
            for line in note.lines
        ),
        status="issued",
        number=note.number,
    )


def _key(invoice_id: str, ordinal: int) -> str:
    return "cn_" + hashlib.sha256(f"{invoice_id}:{ordinal}".encode()).hexdigest()[:24]


def issue_credit_note(
    runtime: Runtime,
    number: str,
    *,
    reason: str,
    amounts: Mapping[int, Decimal] | None = None,
    requested_by: str,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """Credit invoice ``number``: every line in full, or ``amounts`` (net, by line position).

    Returns :func:`credit_note_summary` of the new credit note. Raises :class:`CreditNoteError`.
    """
    day = as_of or dt.datetime.now(dt.UTC).date()
    try:
        return _issue(runtime, number, reason=reason, amounts=amounts, requested_by=requested_by, day=day)
    except IntegrityError as exc:  # another credit note of this invoice was issued at the same moment
        raise CreditNoteError(
            f"another credit note for {number} was issued at the same moment; look at it and try again"
        ) from exc


def _issue(
    runtime: Runtime,
    number: str,
    *,
    reason: str,
    amounts: Mapping[int, Decimal] | None,
    requested_by: str,
    day: dt.date,
) -> dict[str, Any]:
    settings = runtime.settings
    with runtime.transaction() as session:
        # locked: a void of the same invoice waits for this credit note, or this one sees the void
        invoice = session.scalars(select(Invoice).where(Invoice.number == number).with_for_update()).first()
        if invoice is None:
            raise CreditNoteError(f"no invoice {number}")
        if invoice.status in ("draft", "void"):
            raise CreditNoteError(f"invoice {number} is {invoice.status}: there is nothing to credit")
        value = billing_invoice(invoice)
        previous = list(session.scalars(select(CreditNote).where(CreditNote.invoice_id == invoice.id)))
        by_position = {line.position: line for line in invoice.lines}
        currency = Currency.of(invoice.currency)
        wanted: dict[str, Money] | None = None
        if amounts is None and previous:  # "the rest": what earlier credit notes left of each line
            credited: dict[str, Decimal] = {}
            for note in previous:
                for done in note.lines:
                    credited[done.source_key] = credited.get(done.source_key, Decimal(0)) + done.amount
            wanted = {
                line.source_key: Money(left, currency)
                for line in value.lines
                if (left := line.net_amount.amount - credited.get(line.source_key, Decimal(0))) != 0
            }
            if not wanted:
                raise CreditNoteError(f"invoice {number} is credited in full already")
        elif amounts is not None:
            wanted = {}
            credited_so_far: dict[str, Decimal] = {}
            for note in previous:
                for done in note.lines:
                    credited_so_far[done.source_key] = (
                        credited_so_far.get(done.source_key, Decimal(0)) + done.amount
                    )
            nets = {line.source_key: line.net_amount.amount for line in value.lines}
            for position, amount in amounts.items():
                line = by_position.get(position)
                if line is None:
                    raise CreditNoteError(
                        f"invoice {number} has no line {position} (lines: {', '.join(map(str, by_position))})"
                    )
                if amount != amount.quantize(currency.quantum):
                    raise CreditNoteError(
                        f"line {position}: {amount} has more decimals than {currency.code} has cents"
                    )
                left = nets[line.source_key] - credited_so_far.get(line.source_key, Decimal(0))
                if not min(left, Decimal(0)) <= amount <= max(left, Decimal(0)):
                    raise CreditNoteError(
                        f"invoice {number} line {position} ({line.description}): "
                        f"{left.quantize(currency.quantum)} left to credit, not {amount}"
                    )
                wanted[line.source_key] = Money(amount, currency)
        try:
            draft = draft_credit_note(
                value,
                key=_key(invoice.id, len(previous) + 1),
                issue_date=day,
                reason=reason,
                amounts=wanted,
                previous=[_stored_as_billing(note) for note in previous],
            )
        except ValueError as exc:
            raise CreditNoteError(f"invoice {number}: {exc}") from exc
        issued = issue(draft, f"{CREDIT_NOTE_SERIES}-{next_number(session, CREDIT_NOTE_SERIES):06d}")
        stored = _store(session, issued, invoice, requested_by)
        recorded = record_payment(
            session,
            settings,
            Receipt(
                source=SOURCE,
                source_ref=stored.number,
                customer_id=invoice.customer_id,
                amount=stored.total,
                currency=invoice.currency,
                received_on=day,
                method="credit_note",
                reference=f"credit note {stored.number} for {number}",
                allocations=[(invoice.id, stored.total)],
                details={
                    "credit_note": stored.number,
                    "net": str(stored.subtotal),
                    "tax": str(stored.tax_total),
                },
            ),
            as_of=day,
        )
        for destination in settings.destinations:  # the accounting systems book it too
            if "credit_note" in destination.mappings:
                enqueue(
                    session,
                    destination=destination.name,
                    entity="credit_note",
                    canonical_id=stored.id,
                    action="create",
                    version="1",
                )
        if delivery_wanted(settings):
            queue_document_delivery(session, stored.id)
            stored.delivery_status = "pending"
        if folder_wanted(settings):
            queue_folder_export(session, stored.id)
        session.flush()
        session.flush()
        summary = credit_note_summary(session, stored)
        summary["applied_to_invoice"] = str(
            recorded.allocated.get(invoice.id, Decimal(0)).quantize(currency.quantum)
        )
        summary["customer_credit"] = str(recorded.unapplied.quantize(currency.quantum))
        return summary


def _store(session: Session, note: BillingCreditNote, invoice: Invoice, requested_by: str) -> CreditNote:
    assert note.number is not None
    by_key = {line.source_key: line for line in invoice.lines}
    stored = CreditNote(
        id=note.key,
        number=note.number,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        issue_date=note.issue_date,
        reason=note.reason,
        subtotal=note.subtotal.amount,
        tax_total=note.tax_total.amount,
        total=note.subtotal.amount + note.tax_total.amount,
        status="issued",
        requested_by=requested_by,
    )
    for position, line in enumerate(note.lines, start=1):
        billed = by_key[line.source_key]
        stored.lines.append(
            CreditNoteLine(
                position=position,
                invoice_line_position=billed.position,
                source_key=line.source_key,
                description=line.description,
                product_code=billed.product_code,
                amount=line.amount.amount,
                tax_amount=line.tax_amount.amount,
                tax_id=billed.tax_id,
                tax_rate=billed.tax_rate,
                period_start=billed.period_start,
                period_end=billed.period_end,
            )
        )
    session.add(stored)
    return stored


def credit_note_summary(session: Session, note: CreditNote) -> dict[str, Any]:
    """A credit note as JSON-ready data (amounts exact strings), for the CLI and the console."""
    invoice = session.get(Invoice, note.invoice_id)
    quantum = Currency.of(note.currency).quantum
    return {
        "number": note.number,
        "invoice": invoice.number if invoice else note.invoice_id,
        "customer_id": note.customer_id,
        "currency": note.currency,
        "issue_date": note.issue_date.isoformat(),
        "reason": note.reason,
        "subtotal": str(note.subtotal.quantize(quantum)),
        "tax": str(note.tax_total.quantize(quantum)),
        "total": str(note.total.quantize(quantum)),
        "requested_by": note.requested_by,
        "delivery_status": note.delivery_status,
        "lines": [
            {
                "invoice_line": line.invoice_line_position,
                "description": line.description,
                "amount": str(line.amount.quantize(quantum)),
                "tax": str(line.tax_amount.quantize(quantum)),
            }
            for line in note.lines
        ],
    }


# --------------------------------------------------------------------------------------------
# what accounting systems get


def credit_note_document(note: CreditNote, products: Mapping[str, str]) -> dict[str, Any]:
    """The canonical credit note (``mappings.canonical.CreditNote``); ``products``: code -> id."""
    quantum = Currency.of(note.currency).quantum
    return {
        "id": note.id,
        "number": note.number,
        "customer_id": note.customer_id,
        "invoice_id": note.invoice_id,
        "currency": note.currency,
        "issue_date": note.issue_date.isoformat(),
        "reason": note.reason,
        "total": note.total.quantize(quantum),
        "lines": [
            {
                "description": line.description,
                "amount": line.amount.quantize(quantum),
                "product_id": products.get(line.product_code or ""),
            }
            for line in note.lines
        ],
    }


def credit_application_documents(session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Canonical credit applications by allocation id: what part of which credit note went to
    which invoice (``mappings.canonical.CreditApplication``)."""
    wanted = [int(i) for i in ids if i.isdigit()]
    rows = session.execute(
        select(PaymentAllocation, Payment)
        .join(Payment, PaymentAllocation.payment_id == Payment.id)
        .where(PaymentAllocation.id.in_(wanted), Payment.source == SOURCE)
    ).all()
    numbers = {p.source_ref for _, p in rows}
    notes = {n.number: n for n in session.scalars(select(CreditNote).where(CreditNote.number.in_(numbers)))}
    documents = {}
    for allocation, payment in rows:
        note = notes.get(payment.source_ref)
        if note is None or allocation.amount <= 0:
            continue
        documents[str(allocation.id)] = {
            "customer_id": payment.customer_id,
            "credit_note_id": note.id,
            "invoice_id": allocation.invoice_id,
            "amount": allocation.amount.quantize(Currency.of(payment.currency).quantum),
            "currency": payment.currency,
            "applied_on": allocation.applied_on.isoformat(),
            "reference": f"{note.number}/{allocation.id}"[:21],
        }
    return documents
