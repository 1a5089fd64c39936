"""What a bank statement says, independent of the file format it came in.

camt.053 and MT940 carry the same facts in very different shapes; the payments import and the
reconciliation only ever see these two value types. They are frozen so a parsed statement can be
passed around, compared and hashed without anyone changing what the bank said.

Amounts are exact ``Decimal`` values as written in the file (never rounded to the currency's minor
units: a bank that sends three decimals gets three decimals back), signed from the account
holder's point of view: positive = money in (credit), negative = money out (debit).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

#: Bumped whenever the fingerprint's input changes, so old and new fingerprints never collide.
FINGERPRINT_VERSION = "bank-entry-v1"


def _decimal_text(value: Decimal) -> str:
    """``Decimal`` as plain text with no trailing zeros, so 10.5 and 10.50 read the same."""
    if value == 0:
        return "0"
    return f"{value.normalize():f}"


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One booked line of a statement (a camt ``Ntry``, an MT940 ``:61:`` with its ``:86:``).

    ``entry_reference`` is the bank's own reference (camt ``AcctSvcrRef``, MT940 bank reference
    after ``//``); when the bank gave none it is a key derived from the entry's source text,
    prefixed ``derived:``. ``position`` is the 1-based index of the entry within its statement and
    ``line`` the 1-based line of the file where the entry starts.
    """

    account: str
    statement_id: str
    entry_reference: str
    booking_date: date | None
    value_date: date | None
    amount: Decimal
    currency: str
    counterparty_name: str | None
    counterparty_iban: str | None
    remittance_info: str
    end_to_end_id: str | None
    bank_transaction_code: str | None
    line: int
    position: int
    #: camt ``Sts`` (``BOOK``, ``PDNG``, ``INFO``); MT940 lines are always booked.
    status: str = "BOOK"
    #: The entry reverses an earlier one (camt ``RvslInd``, MT940 ``RC``/``RD`` marks).
    reversal: bool = False

    @property
    def fingerprint(self) -> str:
        """A stable sha256 (hex) identifying this entry of this statement.

        Built from the account, statement id, entry reference, date, amount, currency, remittance
        information and position, so re-importing the same statement yields the same fingerprints
        line by line while two identical-looking payments on one statement stay distinct.
        """
        when = self.booking_date or self.value_date
        parts = (
            FINGERPRINT_VERSION,
            self.account,
            self.statement_id,
            self.entry_reference,
            when.isoformat() if when else "",
            _decimal_text(self.amount),
            self.currency,
            self.remittance_info,
            str(self.position),
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Statement:
    """One account statement: its balances and its entries, in file order.

    ``format`` is ``"camt.053"``, ``"mt940"`` or ``"mt942"`` (an MT942 interim report has no
    opening balance; its entries reappear in the next MT940). ``opening_balance`` and
    ``closing_balance`` are None when the file has none in the statement currency.
    ``source_sha256`` is the sha256 of the whole file's bytes (shared by all statements of a file).
    """

    format: str
    account: str
    statement_id: str
    currency: str
    opening_balance: Decimal | None
    closing_balance: Decimal | None
    created: datetime | None
    statement_date: date | None
    entries: tuple[StatementEntry, ...]
    source_sha256: str
    #: 1-based line where the statement starts in its file.
    line: int = 1
    #: camt ``GrpHdr/MsgId``; None for MT940.
    message_id: str | None = None
    #: camt ``ElctrncSeqNb``/``LglSeqNb``, MT940 ``:28C:`` statement/sequence number.
    sequence: str | None = None

    @property
    def booked_total(self) -> Decimal:
        """Sum of the booked entry amounts (credits positive, debits negative)."""
        return sum((entry.amount for entry in self.entries if entry.status == "BOOK"), Decimal(0))

    @property
    def balances_consistent(self) -> bool | None:
        """Whether opening balance + booked entries = closing balance; None if a balance is missing.

        Parsing never rejects an inconsistent statement (banks do send them); this is for the
        reconciliation to warn about.
        """
        if self.opening_balance is None or self.closing_balance is None:
            return None
        return self.opening_balance + self.booked_total == self.closing_balance
