"""Writers for camt.053 and MT940 statements, for the demo, the sandbox and round-trip tests.

A realistic statement is the only way to exercise ``billsync payments import`` end to end without a
bank, so these produce what a bank would send: a schema-valid camt.053.001.02 (checked against the
vendored XSD before it is returned) and an MT940 with the German structured ``:86:`` (``?20``
``EREF+``/``SVWZ+``, ``?31`` IBAN, ``?32``/``?33`` name) that most banks use. Balances are
consistent: closing = opening + the sum of the entries. Anything the formats cannot carry
(too-long texts, characters with a meaning in MT940) is refused with ``ValueError`` rather than
silently cut, so a round trip through the parsers gives back exactly what went in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from lxml import etree

from connectors.bank.camt import NS_PREFIX, hardened_parser, schema

CAMT_VERSION = "camt.053.001.02"
_MT940_LINE = 65
#: What the German :86: purpose, name and IBAN may contain: the SWIFT X character set without the
#: ``?`` sub-field separator (``:`` is fine inside a line; lines never start with it).
_SWIFT_TEXT_RE = re.compile(r"^[A-Za-z0-9/\-:().,'+ ]*$")
_GVC_KEYWORD_RE = re.compile(r"(EREF|KREF|MREF|CRED|SVWZ|DEBT|ABWA|ABWE|IBAN|BIC |PURP|COAM|OAMT)\+")


@dataclass(frozen=True)
class BuildEntry:
    """One entry to write. ``amount`` is signed (positive = money in); ``reference`` is the bank's."""

    amount: Decimal
    booking_date: date
    counterparty_name: str
    counterparty_iban: str
    remittance: str
    end_to_end_id: str
    reference: str
    value_date: date | None = None


def _balance_dates(entries: Sequence[BuildEntry], created: datetime) -> tuple[date, date]:
    days = [entry.booking_date for entry in entries] or [created.date()]
    return min(days), max(days)


def _check_amount(amount: Decimal) -> None:
    if not amount.is_finite():
        raise ValueError(f"amount {amount} is not a finite decimal")


# -- camt.053 -------------------------------------------------------------------------------------


def camt053_document(
    account_iban: str,
    statement_id: str,
    currency: str,
    entries: Sequence[BuildEntry],
    created: datetime,
    opening_balance: Decimal,
) -> bytes:
    """A camt.053.001.02 document with one statement holding ``entries``, as UTF-8 bytes."""
    ns = NS_PREFIX + CAMT_VERSION

    def el(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib)
        if text is not None:
            child.text = text
        return child

    def amount(parent: etree._Element, value: Decimal) -> None:
        _check_amount(value)
        el(parent, "Amt", f"{abs(value):f}", Ccy=currency)
        el(parent, "CdtDbtInd", "DBIT" if value < 0 else "CRDT")

    def balance(parent: etree._Element, code: str, value: Decimal, day: date) -> None:
        bal = el(parent, "Bal")
        el(el(el(bal, "Tp"), "CdOrPrtry"), "Cd", code)
        amount(bal, value)
        el(el(bal, "Dt"), "Dt", day.isoformat())

    closing_balance = opening_balance + sum((entry.amount for entry in entries), Decimal(0))
    first_day, last_day = _balance_dates(entries, created)
    stamp = created.isoformat(timespec="seconds")

    document = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    message = el(document, "BkToCstmrStmt")
    header = el(message, "GrpHdr")
    el(header, "MsgId", statement_id)
    el(header, "CreDtTm", stamp)
    stmt = el(message, "Stmt")
    el(stmt, "Id", statement_id)
    el(stmt, "CreDtTm", stamp)
    account = el(stmt, "Acct")
    el(el(account, "Id"), "IBAN", account_iban)
    el(account, "Ccy", currency)
    balance(stmt, "OPBD", opening_balance, first_day)
    balance(stmt, "CLBD", closing_balance, last_day)
    for entry in entries:
        incoming = entry.amount >= 0
        ntry = el(stmt, "Ntry")
        amount(ntry, entry.amount)
        el(ntry, "Sts", "BOOK")
        el(el(ntry, "BookgDt"), "Dt", entry.booking_date.isoformat())
        el(el(ntry, "ValDt"), "Dt", (entry.value_date or entry.booking_date).isoformat())
        el(ntry, "AcctSvcrRef", entry.reference)
        domain = el(el(ntry, "BkTxCd"), "Domn")
        el(domain, "Cd", "PMNT")
        family = el(domain, "Fmly")
        el(family, "Cd", "RCDT" if incoming else "ICDT")  # received / issued credit transfer
        el(family, "SubFmlyCd", "ESCT")  # SEPA credit transfer
        tx = el(el(ntry, "NtryDtls"), "TxDtls")
        el(el(tx, "Refs"), "EndToEndId", entry.end_to_end_id or "NOTPROVIDED")
        parties = el(tx, "RltdPties")
        party, party_account = ("Dbtr", "DbtrAcct") if incoming else ("Cdtr", "CdtrAcct")
        el(el(parties, party), "Nm", entry.counterparty_name)
        el(el(el(parties, party_account), "Id"), "IBAN", entry.counterparty_iban)
        if entry.remittance:
            el(el(tx, "RmtInf"), "Ustrd", entry.remittance)
    xsd = schema(CAMT_VERSION)
    if not xsd.validate(document):
        first = list(xsd.error_log)[0]
        raise ValueError(f"camt.053 not schema-valid: {first.message}")
    data: bytes = etree.tostring(document, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    etree.fromstring(data, hardened_parser())  # what we hand out must read back
    return data


# -- MT940 ----------------------------------------------------------------------------------------


def _mt940_amount(value: Decimal) -> str:
    _check_amount(value)
    text = f"{abs(value):f}"
    text = text.replace(".", ",") if "." in text else text + ","
    if len(text) > 15:
        raise ValueError(f"amount {value} does not fit MT940's 15 characters")
    return text


def _mt940_day(day: date, fmt: str = "%y%m%d") -> str:
    if not 2000 <= day.year <= 2099:
        raise ValueError(f"MT940 cannot write {day}: two-digit years are read as 20xx")
    return day.strftime(fmt)


def _swift_text(what: str, text: str, limit: int) -> str:
    if len(text) > limit:
        raise ValueError(f"{what} longer than {limit} characters: {text!r}")
    if not _SWIFT_TEXT_RE.match(text) or text != " ".join(text.split()):
        raise ValueError(f"{what} has characters MT940 cannot carry (or stray spaces): {text!r}")
    if _GVC_KEYWORD_RE.search(text):
        raise ValueError(f"{what} contains an MT940 purpose keyword (like EREF+): {text!r}")
    return text


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _wrap(text: str) -> list[str]:
    """Cut a :86: value into 65-character lines that survive MT940 line cleaning.

    Readers strip trailing blanks and see a tag in any line starting with ``:``, so a line never
    ends with a space and the next one never starts with a colon.
    """
    lines: list[str] = []
    rest = text
    while len(rest) > _MT940_LINE:
        cut = _MT940_LINE
        while cut > 1 and (rest[cut - 1] == " " or rest[cut] == ":" or rest[cut:] == "-"):
            cut -= 1
        lines.append(rest[:cut])
        rest = rest[cut:]
    lines.append(rest)
    return lines


def mt940_document(
    account_iban: str,
    statement_id: str,
    currency: str,
    entries: Sequence[BuildEntry],
    created: datetime,
    opening_balance: Decimal,
    *,
    statement_number: int = 1,
) -> str:
    """An MT940 statement (``:20:`` ... ``:62F:``) holding ``entries``, with CRLF line ends.

    Parsed back, the statement id reads ``f"{statement_id}/{statement_number}"`` (``:20:`` plus
    ``:28C:``). MT940 has no creation time-stamp; ``created`` dates the balances of an empty
    statement.
    """
    if not 1 <= len(statement_id) <= 16 or "\n" in statement_id:
        raise ValueError(f"MT940 :20: takes 1-16 characters, not {statement_id!r}")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    first_day, last_day = _balance_dates(entries, created)
    closing_balance = opening_balance + sum((entry.amount for entry in entries), Decimal(0))
    mark = "D" if opening_balance < 0 else "C"
    lines = [
        f":20:{statement_id}",
        f":25:{account_iban}",
        f":28C:{statement_number}",
        f":60F:{mark}{_mt940_day(first_day)}{currency}{_mt940_amount(opening_balance)}",
    ]
    for entry in entries:
        reference = _swift_text("reference", entry.reference, 16)
        if not reference or "//" in reference:
            raise ValueError(f"MT940 bank reference must be 1-16 characters without '//': {reference!r}")
        value_day = entry.value_date or entry.booking_date
        lines.append(
            f":61:{_mt940_day(value_day)}{_mt940_day(entry.booking_date, '%m%d')}"
            f"{'C' if entry.amount >= 0 else 'D'}{_mt940_amount(entry.amount)}NTRFNONREF//{reference}"
        )
        e2e = _swift_text("end-to-end id", entry.end_to_end_id, 35)
        remittance = _swift_text("remittance", entry.remittance, 140)
        purpose = f"EREF+{e2e}SVWZ+{remittance}" if e2e else f"SVWZ+{remittance}"
        name = _swift_text("counterparty name", entry.counterparty_name, 54)
        iban = _swift_text("counterparty IBAN", entry.counterparty_iban, 34)
        gvc, posting = ("166", "SEPA-GUTSCHRIFT") if entry.amount >= 0 else ("116", "SEPA-UEBERWEISUNG")
        fields = [f"?00{posting}"]
        fields += [f"?{20 + i}{chunk}" for i, chunk in enumerate(_chunks(purpose, 27))]
        fields.append(f"?31{iban}")
        fields += [f"?{32 + i}{chunk}" for i, chunk in enumerate(_chunks(name, 27))]
        details = _wrap(gvc + "".join(fields))
        lines.append(":86:" + details[0])
        lines += details[1:]
    closing_mark = "D" if closing_balance < 0 else "C"
    lines.append(f":62F:{closing_mark}{_mt940_day(last_day)}{currency}{_mt940_amount(closing_balance)}")
    lines.append("-")
    return "\r\n".join(lines) + "\r\n"
