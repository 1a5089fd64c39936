"""Bank statements in, payments out: import a camt.053 / MT940 file and match its lines to invoices.

Matching, most certain first:

1. **invoice number** in the remittance information or end-to-end id (``INV-000042``, also as
   banks mangle it: ``INV000042``, ``inv 000042``), for open invoices of one customer in the line's
   currency;
2. **amount and customer**: the payer is known by their IBAN (or exact name) and exactly one of
   their open invoices is due for that amount (within ``payments.match_tolerance``);
3. otherwise the line waits in the **review queue** (``status='unmatched'``) with its candidates:
   invoices due for that amount, and the invoices of the payer if known.

A file is parsed completely before anything is written, and written in one transaction: a malformed
file imports nothing. The file's SHA-256 makes a second import of it a no-op; each line's fingerprint
makes a line that reappears in another file a no-op too. Debits, reversals and lines not booked yet
are kept as ``ignored`` so the statement stays complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.money import Currency
from connectors.bank import parse_statement
from connectors.bank.model import StatementEntry
from sync_engine.payments import PAYABLE, Receipt, amount_due, record_payment
from sync_engine.runtime import Runtime
from sync_engine.settings import Settings
from sync_engine.store.models import BankStatement, CanonicalRecord, Invoice, Payment, StatementLine

MAX_CANDIDATES = 5


@dataclass
class ImportResult:
    filename: str
    already_imported: bool = False
    statements: int = 0
    lines: int = 0
    duplicates: int = 0
    matched: int = 0
    unmatched: int = 0
    ignored: int = 0
    matched_by: dict[str, int] = field(default_factory=dict)
    payments: list[str] = field(default_factory=list)


class MatchError(ValueError):
    """A manual match that cannot be made (line already matched, invoice of another currency...)."""


def import_statement(runtime: Runtime, data: bytes, filename: str, *, as_of: dt.date) -> ImportResult:
    """Parse (raises :class:`connectors.bank.errors.StatementError` naming the place), then record."""
    statements = parse_statement(data, filename)
    result = ImportResult(filename=filename, statements=len(statements))
    sha = hashlib.sha256(data).hexdigest()
    with runtime.transaction() as session:
        if session.scalar(select(BankStatement.id).where(BankStatement.sha256 == sha)) is not None:
            result.already_imported = True
            return result
        row = BankStatement(
            sha256=sha,
            filename=filename[-255:],
            format=statements[0].format if statements else "unknown",
            account=statements[0].account[:64] if statements else None,
            statement_ref=", ".join(s.statement_id for s in statements)[:255] or None,
        )
        session.add(row)
        session.flush()
        matcher = _Matcher(session, runtime.settings)
        for statement in statements:
            for entry in statement.entries:
                result.lines += 1
                if session.scalar(
                    select(StatementLine.id).where(StatementLine.fingerprint == entry.fingerprint)
                ):
                    result.duplicates += 1
                    continue
                line = _line(row.id, entry, statement.currency)
                session.add(line)
                session.flush()
                matcher.settle(line, entry, as_of, result)
        row.counts = {
            "lines": result.lines,
            "duplicates": result.duplicates,
            "matched": result.matched,
            "unmatched": result.unmatched,
            "ignored": result.ignored,
        }
    return result


def match_line(
    runtime: Runtime, line_id: int, invoice_numbers: list[str], *, as_of: dt.date, who: str = "cli"
) -> str:
    """Match a line of the review queue to invoices by hand; returns the payment's number."""
    with runtime.transaction() as session:
        line = session.get(StatementLine, line_id)
        if line is None:
            raise MatchError(f"no statement line {line_id}")
        if line.status == "matched":
            raise MatchError(f"statement line {line_id} is already matched (payment {line.payment_id})")
        if line.amount <= 0:
            raise MatchError(f"statement line {line_id} is not money received ({line.amount})")
        invoices = list(session.scalars(select(Invoice).where(Invoice.number.in_(invoice_numbers))))
        missing = sorted(set(invoice_numbers) - {i.number for i in invoices if i.number})
        if missing:
            raise MatchError(f"no invoice numbered {', '.join(missing)}")
        customers = {i.customer_id for i in invoices}
        if len(customers) != 1:
            raise MatchError("the invoices belong to different customers; match one customer's invoices")
        wrong = [i.number for i in invoices if i.currency != line.currency]
        if wrong:
            raise MatchError(f"invoice {', '.join(map(str, wrong))} is not in {line.currency}")
        recorded = _record(session, runtime.settings, line, customers.pop(), [i.id for i in invoices], as_of)
        line.status, line.matched_by, line.payment_id = "matched", "manual", recorded
        line.note = f"matched by {who}"
        payment = session.get(Payment, recorded)
        assert payment is not None
        return payment.number


def ignore_line(runtime: Runtime, line_id: int, note: str) -> None:
    """Take a line out of the review queue (not a customer payment: interest, a transfer...)."""
    with runtime.transaction() as session:
        line = session.get(StatementLine, line_id)
        if line is None:
            raise MatchError(f"no statement line {line_id}")
        if line.status == "matched":
            raise MatchError(f"statement line {line_id} is matched; it cannot be ignored")
        line.status, line.note = "ignored", note


def review_queue(session: Session) -> list[dict[str, Any]]:
    """The unmatched lines, oldest first, with their candidates (what the console and CLI show)."""
    lines = session.scalars(
        select(StatementLine).where(StatementLine.status == "unmatched").order_by(StatementLine.id)
    )
    return [
        {
            "id": line.id,
            "booking_date": line.booking_date.isoformat(),
            "amount": _display(line.amount, line.currency),
            "currency": line.currency,
            "counterparty": line.counterparty_name,
            "iban": line.counterparty_iban,
            "remittance": line.remittance_info,
            "candidates": line.candidates,
        }
        for line in lines
    ]


# --------------------------------------------------------------------------------------------


def _line(statement_id: int, entry: StatementEntry, currency: str) -> StatementLine:
    return StatementLine(
        statement_id=statement_id,
        fingerprint=entry.fingerprint,
        booking_date=entry.booking_date or entry.value_date or dt.date.today(),
        amount=entry.amount,
        currency=entry.currency or currency,
        counterparty_name=(entry.counterparty_name or None) and entry.counterparty_name[:255],
        counterparty_iban=(entry.counterparty_iban or None) and _iban(entry.counterparty_iban)[:64],
        remittance_info=entry.remittance_info or None,
        end_to_end_id=(entry.end_to_end_id or None) and entry.end_to_end_id[:255],
        entry_ref=entry.entry_reference[:255],
        status="unmatched",
        candidates=[],
    )


def _display(amount: Decimal, currency: str) -> str:
    """The amount with the currency's decimals (more only when the bank sent more)."""
    try:
        quantum = Currency.of(currency).quantum
    except ValueError:
        return str(amount.normalize())
    exact = amount.quantize(quantum)
    return str(exact if exact == amount else amount.normalize())


def _iban(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "", text).upper()


def _record(
    session: Session,
    settings: Settings,
    line: StatementLine,
    customer_id: str,
    invoice_ids: list[str],
    as_of: dt.date,
) -> str:
    recorded = record_payment(
        session,
        settings,
        Receipt(
            source="bank",
            source_ref=line.fingerprint,
            customer_id=customer_id,
            amount=line.amount,
            currency=line.currency,
            received_on=line.booking_date,
            method="bank_transfer",
            reference=(line.remittance_info or line.end_to_end_id or "")[:255] or None,
            invoice_ids=invoice_ids,
            details={"statement_line": line.id, "counterparty": line.counterparty_name},
        ),
        as_of=as_of,
    )
    return recorded.payment_id


class _Matcher:
    """What matching needs, loaded once per import: open invoices and who pays from which IBAN."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.tolerance = settings.payments.match_tolerance
        prefix = _alnum(settings.billing.number_prefix)
        self.number_pattern = re.compile(rf"{re.escape(prefix)}(\d{{1,12}})") if prefix else None
        self.width = settings.billing.number_width
        self.by_iban: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        for cid, data in session.execute(
            select(CanonicalRecord.id, CanonicalRecord.data).where(CanonicalRecord.entity == "customer")
        ):
            if not isinstance(data, dict):
                continue
            if data.get("iban"):
                self.by_iban[_iban(str(data["iban"]))] = str(cid)
            if data.get("name"):
                self.by_name[_alnum(str(data["name"]))] = str(cid)

    def open_invoices(self) -> list[Invoice]:
        return list(self.session.scalars(select(Invoice).where(Invoice.status.in_(PAYABLE))))

    def settle(
        self, line: StatementLine, entry: StatementEntry, as_of: dt.date, result: ImportResult
    ) -> None:
        if line.amount <= 0 or entry.reversal or entry.status != "BOOK":
            line.status = "ignored"
            line.note = (
                "reversal" if entry.reversal else ("not booked" if entry.status != "BOOK" else "debit")
            )
            result.ignored += 1
            return
        found = self._by_number(line)
        how = "invoice_number"
        if not found:
            found, how = self._by_amount_and_customer(line), "amount_customer"
        if found:
            customer = found[0].customer_id
            line.payment_id = _record(
                self.session, self.settings, line, customer, [i.id for i in found], as_of
            )
            line.status, line.matched_by = "matched", how
            result.matched += 1
            result.matched_by[how] = result.matched_by.get(how, 0) + 1
            result.payments.append(line.payment_id)
            return
        line.candidates = self._candidates(line)
        result.unmatched += 1

    def _by_number(self, line: StatementLine) -> list[Invoice]:
        if self.number_pattern is None:
            return []
        text = _alnum(" ".join(filter(None, [line.remittance_info, line.end_to_end_id])))
        numbers = {
            f"{self.settings.billing.number_prefix}{int(digits):0{self.width}d}"
            for digits in self.number_pattern.findall(text)
        }
        if not numbers:
            return []
        invoices = [
            inv
            for inv in self.session.scalars(select(Invoice).where(Invoice.number.in_(sorted(numbers))))
            if inv.status in PAYABLE and inv.currency == line.currency
        ]
        if len({inv.customer_id for inv in invoices}) != 1:
            return []  # none open, or several customers' invoices named: a person decides
        return sorted(invoices, key=lambda inv: (inv.due_date, inv.number or ""))

    def _payer(self, line: StatementLine) -> str | None:
        if line.counterparty_iban and line.counterparty_iban in self.by_iban:
            return self.by_iban[line.counterparty_iban]
        if line.counterparty_name:
            return self.by_name.get(_alnum(line.counterparty_name))
        return None

    def _by_amount_and_customer(self, line: StatementLine) -> list[Invoice]:
        payer = self._payer(line)
        if payer is None:
            return []
        due = [
            inv
            for inv in self.session.scalars(
                select(Invoice).where(
                    Invoice.customer_id == payer,
                    Invoice.status.in_(PAYABLE),
                    Invoice.currency == line.currency,
                )
            )
            if abs(amount_due(inv) - line.amount) <= self.tolerance
        ]
        return due if len(due) == 1 else []

    def _candidates(self, line: StatementLine) -> list[dict[str, Any]]:
        payer = self._payer(line)
        picked: list[Invoice] = []
        for inv in self.open_invoices():
            if inv.currency != line.currency:
                continue
            if inv.customer_id == payer or abs(amount_due(inv) - line.amount) <= self.tolerance:
                picked.append(inv)
        picked.sort(
            key=lambda inv: (inv.customer_id != payer, abs(amount_due(inv) - line.amount), inv.due_date)
        )
        return [
            {
                "invoice": inv.number,
                "customer_id": inv.customer_id,
                "amount_due": str(amount_due(inv)),
                "due_date": inv.due_date.isoformat(),
                "why": "payer" if inv.customer_id == payer else "amount",
            }
            for inv in picked[:MAX_CANDIDATES]
        ]
