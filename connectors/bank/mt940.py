"""SWIFT MT940 (and MT942) statement reader, on top of the ``mt-940`` package's tag grammar.

``mt940.models.Transactions().parse`` reads what it can and silently skips the rest: a file with
no statement in it parses to nothing, a mangled line is logged and lost, and it cannot say on
which line anything was. For an import that must be all or nothing, this module tokenises the file
itself (keeping line numbers) and feeds each tag to the package's own tag parsers and processors,
so the field grammar, the German ``?20``/``EREF+``/``SVWZ+`` details and the date fix-ups are the
package's, while every tag that does not match its grammar becomes a :class:`StatementError`
naming the line.

Sign convention: ``C``/``RD`` are money in, ``D``/``RC`` money out (a reversal of a credit takes
the money back); ``mt940.Options.all()`` switches the package to exactly that.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import mt940

from connectors.bank.errors import StatementError
from connectors.bank.model import Statement, StatementEntry

#: Every opt-in fix of mt-940 5.1 (RC is a debit, ?31 is the counterparty IBAN, details are not
#: truncated, a :86: without KREF does not erase the :61: reference, ...).
OPTIONS = mt940.Options.all()

_TAG_RE = re.compile(r"^:\n?(?P<full_tag>(?P<tag>[0-9]{2}|NS)(?P<sub_tag>[A-Z])?):", re.MULTILINE)
#: SWIFT envelope lines ({1:F01...}{2:...}{4:, -}{5:...}) and transmission control characters.
_ENVELOPE_RE = re.compile(r"^(\{\d:|-\})")
_CONTROL_CHARS = "\x00\x01\x02\x03\x1a"
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_NO_REFERENCE = {"", "NONREF", "NOTPROVIDED"}
_OPENING = ("final_opening_balance", "intermediate_opening_balance", "opening_balance")
_CLOSING = ("final_closing_balance", "intermediate_closing_balance", "closing_balance")
_UNIQUE_PER_STATEMENT = {
    "account_identification": ":25:",
    "statement_number": ":28C:",
    **dict.fromkeys(_OPENING, ":60F:"),
    **dict.fromkeys(_CLOSING, ":62F:"),
}
#: Codes of the Dutch/SWIFT structured :86: (``/EREF/.../NAME/.../REMI/...``).
_SLASH_CODES = (
    "TRTP|IBAN|BIC|NAME|REMI|EREF|MARF|CSID|ORDP|BENM|CNTP|ISDT|RTRN|PREF|BUSP|PURP|ULTC|ULTD|ULTB|"
    "ADDR|CREF|IREF|KREF|RREF|EXCH|CHGS|OCMT|ISSR|ID"
)
_SLASH_RE = re.compile(rf"/({_SLASH_CODES})/")
_REMI_PREFIX_RE = re.compile(r"^(USTD//|STRD/CUR/|STRD//)")

_STATEMENT_TAG = mt940.tags.Statement
#: Fallback grammar for statement lines whose customer reference is longer than SWIFT's 16x (ASN,
#: GLS and other banks put an IBAN there); only tried when the standard grammar does not match.
_LENIENT_STATEMENT_TAG = mt940.tags.StatementGLS()


def parse_mt940(
    data: bytes | str, filename: str = "<statement>", *, encoding: str | None = None
) -> list[Statement]:
    """Read every statement (``:20:`` block) of an MT940/MT942 file, in file order.

    Bytes are decoded with ``encoding`` if given, else UTF-8 and then code page 852 (what mt-940
    itself does). Raises :class:`StatementError` for a file without any statement, a statement
    without account or opening balance, and any tag whose content does not match its grammar.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    text = data if isinstance(data, str) else _decode(data, encoding)
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise StatementError(filename, "empty file")
    tags = _tokenise(text)
    blocks = _split_statements(tags, filename)
    sha256 = hashlib.sha256(raw).hexdigest()
    return [_Block(block, filename).statement(sha256) for block in blocks]


def _decode(data: bytes, encoding: str | None) -> str:
    for candidate in (encoding, "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except UnicodeDecodeError:
                continue
    return data.decode("cp852")  # maps every byte, so this always succeeds


@dataclass(frozen=True)
class _Tag:
    full: str  # "61", "60F", "NS"
    value: str
    line: int

    @property
    def label(self) -> str:
        return f":{self.full}:"


def _tokenise(text: str) -> list[_Tag]:
    """The file's tags with their values and 1-based line numbers.

    Lines are cleaned the way mt-940 cleans them (CR dropped, trailing blanks stripped, blank and
    ``-`` lines skipped); tag ids mt-940 does not know (``:12:``, ``:26:``...) stay part of the
    previous tag's value, as in mt-940.
    """
    kept: list[str] = []
    numbers: list[int] = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.replace("\r", "").strip(_CONTROL_CHARS).rstrip()
        if not line or line.strip() == "-" or _ENVELOPE_RE.match(line):
            continue
        kept.append(line)
        numbers.append(number)
    joined = "\n".join(kept)
    starts: list[int] = []
    offset = 0
    for line in kept:
        starts.append(offset)
        offset += len(line) + 1
    known = mt940.tags.TAG_BY_ID
    matches = [
        m
        for m in _TAG_RE.finditer(joined)
        if m.group("full_tag") in known or mt940.models.Transactions.normalize_tag_id(m.group("tag")) in known
    ]
    tags = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(joined)
        number = numbers[bisect.bisect_right(starts, match.start()) - 1]
        tags.append(_Tag(match.group("full_tag"), joined[match.end() : end].strip(), number))
    return tags


def _split_statements(tags: list[_Tag], filename: str) -> list[list[_Tag]]:
    if not tags:
        raise StatementError(filename, "no MT940 statement found (no :20: tag)")
    blocks: list[list[_Tag]] = []
    for tag in tags:
        if tag.full == "20":
            blocks.append([tag])
        elif not blocks:
            raise StatementError(
                filename,
                f"MT940 tag {tag.label} before the first :20: statement header",
                line=tag.line,
                location=tag.label,
            )
        else:
            blocks[-1].append(tag)
    return blocks


def _plain_date(value: Any) -> date | None:
    return date(value.year, value.month, value.day) if value else None


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = " ".join(text.split())
    return cleaned or None


@dataclass
class _Entry:
    data: dict[str, Any]
    line: int
    source: list[str] = field(default_factory=list)


class _Block:
    """One ``:20:`` block: runs each tag through mt-940 and assembles the statement."""

    def __init__(self, tags: list[_Tag], filename: str) -> None:
        self.tags = tags
        self.filename = filename
        self.transactions = mt940.models.Transactions(options=OPTIONS)
        self.lines: dict[str, int] = {}  # statement-level result key -> line it came from
        self.entries: list[_Entry] = []

    def fail(self, tag: _Tag, message: str) -> StatementError:
        return StatementError(self.filename, message, line=tag.line, location=tag.label)

    def run(self, tag: _Tag) -> tuple[mt940.tags.Tag, dict[str, Any]]:
        """Parse one tag's value with mt-940's grammar, pre- and post-processors."""
        tx = self.transactions
        parser = tx.tags.get(tag.full) or tx.tags[tx.normalize_tag_id(tag.full[:2])]
        if parser.re.match(tag.value) is None:
            if isinstance(parser, _STATEMENT_TAG) and _LENIENT_STATEMENT_TAG.re.match(tag.value):
                parser = _LENIENT_STATEMENT_TAG
            else:
                shown = tag.value.split("\n", 1)[0][:60]
                raise self.fail(tag, f"MT940 {tag.label} cannot be parsed: {shown!r}")
        try:
            values: dict[str, Any] = parser.parse(tx, tag.value)
            for pre in tx.processors.get(f"pre_{parser.slug}", []):
                values = pre(tx, parser, values)
            result: dict[str, Any] = parser(tx, values)
            for post in tx.processors.get(f"post_{parser.slug}", []):
                result = post(tx, parser, values, result)
        except (ValueError, ArithmeticError, KeyError, TypeError, RuntimeError) as exc:
            raise self.fail(tag, f"MT940 {tag.label} cannot be parsed: {exc}") from None
        return parser, result

    def statement(self, sha256: str) -> Statement:
        tx = self.transactions
        entry_open = False
        for tag in self.tags:
            parser, result = self.run(tag)
            if isinstance(parser, _STATEMENT_TAG):
                self.entries.append(_Entry(result, tag.line, [tag.value]))
                entry_open = True
                continue
            scope = parser.scope
            if issubclass(scope, mt940.models.Transaction) and entry_open:
                self._merge(self.entries[-1], result)
                self.entries[-1].source.append(tag.value)
            if issubclass(scope, mt940.models.Transactions):
                for key in result:
                    if key in _UNIQUE_PER_STATEMENT and self._already(key):
                        raise self.fail(tag, f"repeated {_UNIQUE_PER_STATEMENT[key]} in one statement")
                    self.lines.setdefault(key, tag.line)
                tx.data.update(result)
                if not issubclass(scope, mt940.models.Transaction):
                    # A balance or header tag ends the entry: a later :86: is statement information.
                    entry_open = False
        return self._assemble(sha256)

    def _already(self, key: str) -> bool:
        group = _OPENING if key in _OPENING else _CLOSING if key in _CLOSING else (key,)
        return any(k in self.lines for k in group)

    @staticmethod
    def _merge(entry: _Entry, result: dict[str, Any]) -> None:
        """mt-940's merge of a :86:/:NS: into its transaction (with ``merge_keeps_values``)."""
        for key, value in result.items():
            existing = entry.data.get(key)
            if isinstance(existing, str) and isinstance(value, str):
                entry.data[key] = f"{existing}\n{value.strip()}"
            elif value is None and key in entry.data:
                continue
            else:
                entry.data[key] = value

    def _balance(self, keys: tuple[str, ...]) -> tuple[Decimal, str, date | None, int] | None:
        for key in keys:
            balance = self.transactions.data.get(key)
            if balance is not None and isinstance(balance.amount, mt940.models.Amount):
                amount = balance.amount
                return amount.amount, str(amount.currency), _plain_date(balance.date), self.lines[key]
        return None

    def _assemble(self, sha256: str) -> Statement:
        header = self.tags[0]
        data = self.transactions.data
        account = _clean(data.get("account_identification"))
        if not account:
            raise self.fail(header, "MT940 statement has no :25: account identification")
        opening = self._balance(_OPENING)
        closing = self._balance(_CLOSING)
        interim = "date_time_indication" in data or any(k.endswith("floor_limit") for k in data)
        if opening is None and not interim:
            raise self.fail(header, "MT940 statement has no :60F: opening balance")
        currency = opening[1] if opening else self.transactions.currency
        for balance in (opening, closing):
            if balance is not None and not _CURRENCY_RE.match(balance[1]):
                raise StatementError(
                    self.filename,
                    f"MT940 balance has no valid currency code ({balance[1]!r})",
                    line=balance[3],
                )
        if not currency or not _CURRENCY_RE.match(currency):
            raise self.fail(header, "MT940 statement has no currency (no balance or :34F:)")
        if closing is not None and closing[1] != currency:
            raise StatementError(
                self.filename,
                f"MT940 closing balance currency {closing[1]} differs from the statement's {currency}",
                line=closing[3],
            )
        reference = str(data.get("transaction_reference") or "").strip()
        sequence = self._raw_value("28")
        statement_id = f"{reference}/{sequence}" if sequence else reference
        entries = tuple(
            self._entry(entry, position, account, statement_id, currency)
            for position, entry in enumerate(self.entries, start=1)
        )
        created = data.get("date")
        statement_date = closing[2] if closing else None
        if statement_date is None and entries:
            statement_date = max(e.booking_date or e.value_date or date.min for e in entries)
        return Statement(
            format="mt940" if opening else "mt942",
            account=account,
            statement_id=statement_id,
            currency=currency,
            opening_balance=opening[0] if opening else None,
            closing_balance=closing[0] if closing else None,
            created=datetime.fromisoformat(created.isoformat()) if created else None,
            statement_date=statement_date,
            entries=entries,
            source_sha256=sha256,
            line=header.line,
            message_id=None,
            sequence=sequence,
        )

    def _raw_value(self, tag_id: str) -> str | None:
        for tag in self.tags:
            if tag.full[:2] == tag_id:
                return tag.value.split("\n", 1)[0].strip() or None
        return None

    def _entry(
        self, entry: _Entry, position: int, account: str, statement_id: str, currency: str
    ) -> StatementEntry:
        data = entry.data
        amount: mt940.models.Amount = data["amount"]
        mark = str(data.get("status") or "").upper()
        value_date = _plain_date(data.get("date"))
        booking_date = _plain_date(data.get("entry_date")) or value_date
        bank_reference = _clean(data.get("bank_reference"))
        if bank_reference is None or bank_reference.upper() in _NO_REFERENCE:
            digest = hashlib.sha256("\n".join(entry.source).encode("utf-8")).hexdigest()
            reference = "derived:" + digest[:24]
        else:
            reference = bank_reference
        name, iban, remittance, e2e, code = _details(data, entry.source[1:])
        type_code = _clean(data.get("id"))
        codes = [c for c in (type_code, code) if c]
        return StatementEntry(
            account=account,
            statement_id=statement_id,
            entry_reference=reference,
            booking_date=booking_date,
            value_date=value_date,
            amount=amount.amount,
            currency=amount.currency if amount.currency and _CURRENCY_RE.match(amount.currency) else currency,
            counterparty_name=name,
            counterparty_iban=iban,
            remittance_info=remittance,
            end_to_end_id=e2e if e2e and e2e.upper() not in _NO_REFERENCE else None,
            bank_transaction_code="/".join(codes) or None,
            line=entry.line,
            position=position,
            status="BOOK",
            reversal=mark.startswith("R"),
        )


_Details = tuple[str | None, str | None, str, str | None, str | None]


def _details(data: dict[str, Any], details_texts: list[str]) -> _Details:
    """(counterparty name, IBAN, remittance, end-to-end id, bank code) from the :86: details."""
    if "purpose" in data and "transaction_details" not in data:
        # German structured :86: (GVC?00...?20...), already split by mt-940's processor. Without an
        # SVWZ+ the purpose is lost to the other keywords, so fall back to all of ?20-?29, ?60-?63.
        parts = (_clean(data.get("purpose")), _clean(data.get("additional_purpose")))
        remittance = " ".join(p for p in parts if p) or _german_purpose("".join(details_texts)) or ""
        return (
            _clean(data.get("applicant_name")),
            _clean(data.get("applicant_iban") or data.get("gvc_applicant_iban")),
            remittance,
            _clean(data.get("end_to_end_reference")),
            _clean(data.get("transaction_code")),
        )
    details = data.get("transaction_details")
    if isinstance(details, str) and details.strip():
        flat = "".join(details.split("\n"))
        if _SLASH_RE.match(flat):
            return _slash_details(flat)
        return None, None, _clean(details) or "", None, None
    fallback = " ".join(
        part for part in (_clean(data.get("extra_details")), _clean(data.get("non_swift_text"))) if part
    )
    return None, None, fallback, None, None


_GERMAN_FIELD_RE = re.compile(r"\?(\d\d)")
_GERMAN_PURPOSE_FIELDS = {f"2{n}" for n in range(10)} | {"60", "61", "62", "63"}


def _german_purpose(details: str) -> str | None:
    """The raw purpose sub-fields (?20-?29, ?60-?63) of a German structured :86:, joined."""
    parts = _GERMAN_FIELD_RE.split("".join(details.split("\n")))
    fields = zip(parts[1::2], parts[2::2], strict=True)
    return _clean("".join(value for key, value in fields if key in _GERMAN_PURPOSE_FIELDS))


def _slash_details(flat: str) -> _Details:
    """The ``/CODE/value`` structured :86: of Dutch and SWIFT-style banks."""
    fields: dict[str, str] = {}
    matches = list(_SLASH_RE.finditer(flat))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(flat)
        fields.setdefault(match.group(1), flat[match.end() : end].strip().rstrip("/"))
    counterparty = fields.get("CNTP", "").split("/")
    name = fields.get("NAME") or (counterparty[2] if len(counterparty) > 2 else None)
    iban = fields.get("IBAN") or (counterparty[0] if counterparty[0] else None)
    remittance = _REMI_PREFIX_RE.sub("", fields.get("REMI", ""))
    return _clean(name), _clean(iban), _clean(remittance) or "", _clean(fields.get("EREF")), None
