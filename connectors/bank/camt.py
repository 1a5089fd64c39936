"""ISO 20022 camt.053 (bank-to-customer statement) reader.

A camt.053 file is validated against the XSD of its exact message version *before* anything is
read from it, so every value extracted below has the shape the standard promises (an ``Amt`` is a
decimal, a ``CdtDbtInd`` is CRDT or DBIT, ...) and a broken file is refused with the line lxml
points at, instead of being half imported. The parser is hardened: no DTDs, no entity expansion,
no network, no huge trees.

Only end-of-day statements (camt.053) are accepted: intraday reports (camt.052) and debit/credit
notifications (camt.054) list entries that reappear in the next camt.053, so importing them too
would count the same money twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources

from lxml import etree

from connectors.bank.errors import StatementError
from connectors.bank.model import Statement, StatementEntry

NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
#: camt.053 message versions we have the XSD for (in ``connectors/bank/xsd/``).
SUPPORTED_VERSIONS = ("camt.053.001.02", "camt.053.001.03", "camt.053.001.04", "camt.053.001.08")
_OTHER_MESSAGES = {
    "camt.052": "an intraday account report (camt.052)",
    "camt.054": "a debit/credit notification (camt.054)",
}
_NS_IN_MESSAGE = re.compile(r"\{[^}]*\}")
_POSITION_IN_MESSAGE = re.compile(r", line \d+, column \d+$")
_NOT_PROVIDED = "NOTPROVIDED"


def hardened_parser() -> etree.XMLParser:
    """An lxml parser that loads no DTD, expands no entity and never touches the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
    )


@cache
def schema(version: str) -> etree.XMLSchema:
    """The compiled XSD of one supported camt.053 version (compiled once per process)."""
    xsd = resources.files("connectors.bank").joinpath("xsd", f"{version}.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(xsd, hardened_parser()))


def parse_camt053(data: bytes, filename: str = "<statement>") -> list[Statement]:
    """Read every ``Stmt`` of a camt.053 file, in file order.

    Raises :class:`StatementError` for anything that is not a schema-valid camt.053 document of a
    supported version.
    """
    if not data.strip():
        raise StatementError(filename, "empty file")
    root = _parse_xml(data, filename)
    version = _message_version(root, filename)
    _validate(root, version, filename)
    return _Reader(root, version, filename, hashlib.sha256(data).hexdigest()).statements()


def _parse_xml(data: bytes, filename: str) -> etree._Element:
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (exc.lineno, None)
        raise StatementError(
            filename,
            f"not well-formed XML: {_POSITION_IN_MESSAGE.sub('', exc.msg)}",
            line=line or None,
            location=f"column {column}" if column else None,
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise StatementError(
            filename,
            "refused: the document declares a DTD (<!DOCTYPE ...>), which bank statements never need",
            line=_line_of(data, b"<!DOCTYPE"),
        )
    return root


def _line_of(data: bytes, needle: bytes) -> int | None:
    at = data.find(needle)
    return data.count(b"\n", 0, at) + 1 if at >= 0 else None


def _message_version(root: etree._Element, filename: str) -> str:
    qname = etree.QName(root)
    namespace = qname.namespace or ""
    version = namespace.removeprefix(NS_PREFIX) if namespace.startswith(NS_PREFIX) else ""
    if qname.localname != "Document" or not version:
        found = f"{{{namespace}}}{qname.localname}" if namespace else qname.localname
        raise StatementError(
            filename,
            f"not a camt.053 statement: root element {found} is not an ISO 20022 Document",
            line=root.sourceline,
        )
    family = version[:8]
    if family in _OTHER_MESSAGES:
        raise StatementError(
            filename,
            f"not a camt.053 statement: this is {_OTHER_MESSAGES[family]} ({version}); "
            "import the end-of-day statement (camt.053) instead",
            line=root.sourceline,
        )
    if family != "camt.053":
        raise StatementError(
            filename, f"not a camt.053 statement: ISO 20022 message {version}", line=root.sourceline
        )
    if version not in SUPPORTED_VERSIONS:
        raise StatementError(
            filename,
            f"unsupported camt.053 version {version} (supported: {', '.join(SUPPORTED_VERSIONS)})",
            line=root.sourceline,
        )
    return version


def _validate(root: etree._Element, version: str, filename: str) -> None:
    xsd = schema(version)
    if xsd.validate(root):
        return
    errors = list(xsd.error_log)
    first = errors[0]
    more = f" (and {len(errors) - 1} more schema errors)" if len(errors) > 1 else ""
    raise StatementError(
        filename,
        f"camt.053 schema: {_NS_IN_MESSAGE.sub('', first.message)}{more}",
        line=first.line or None,
        location=first.path or None,
    )


def _clean(text: str | None) -> str | None:
    """Whitespace collapsed; None for nothing."""
    if text is None:
        return None
    cleaned = " ".join(text.split())
    return cleaned or None


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


class _Reader:
    """Extracts statements from a schema-valid document (so shapes are guaranteed)."""

    def __init__(self, root: etree._Element, version: str, filename: str, sha256: str) -> None:
        self.root = root
        self.ns = {"c": NS_PREFIX + version}
        self.filename = filename
        self.sha256 = sha256

    # -- small XPath helpers; paths are written without the namespace prefix -----------------

    def _path(self, path: str) -> str:
        return "/".join(f"c:{step}" for step in path.split("/"))

    def find(self, el: etree._Element, path: str) -> etree._Element | None:
        found: etree._Element | None = el.find(self._path(path), self.ns)
        return found

    def findall(self, el: etree._Element, path: str) -> list[etree._Element]:
        return list(el.iterfind(self._path(path), self.ns))

    def text(self, el: etree._Element, *paths: str) -> str | None:
        """Stripped text of the first of ``paths`` that has some."""
        for path in paths:
            found = self.find(el, path)
            if found is not None and found.text is not None and found.text.strip():
                return str(found.text).strip()
        return None

    def texts(self, el: etree._Element, path: str) -> list[str | None]:
        return [_clean(found.text) for found in self.findall(el, path)]

    def fail(self, el: etree._Element, message: str) -> StatementError:
        return StatementError(
            self.filename, message, line=el.sourceline, location=el.getroottree().getpath(el)
        )

    def date_of(self, el: etree._Element, path: str) -> date | None:
        """A ``DateAndDateTimeChoice`` (``Dt`` or ``DtTm``) as the calendar date written there."""
        holder = self.find(el, path)
        if holder is None:
            return None
        raw = self.text(holder, "Dt", "DtTm")
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw[:10])
        except ValueError:
            raise self.fail(holder, f"invalid date {raw!r}") from None

    def datetime_of(self, el: etree._Element, path: str) -> datetime | None:
        found = self.find(el, path)
        if found is None or not found.text:
            return None
        raw = found.text.strip()
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            raise self.fail(found, f"invalid date-time {raw!r}") from None

    def amount(self, el: etree._Element) -> tuple[Decimal, str]:
        """Signed amount and currency of an element holding ``Amt`` and ``CdtDbtInd``."""
        amt = self.find(el, "Amt")
        if amt is None or amt.text is None:
            raise self.fail(el, "missing Amt")
        try:
            value = Decimal(amt.text.strip())
        except InvalidOperation:
            raise self.fail(amt, f"invalid amount {amt.text!r}") from None
        if self.text(el, "CdtDbtInd") == "DBIT":
            value = -value
        return value, str(amt.get("Ccy"))

    # -- statements -----------------------------------------------------------------------------

    def statements(self) -> list[Statement]:
        message = self.find(self.root, "BkToCstmrStmt")
        assert message is not None  # guaranteed by the schema
        message_id = self.text(message, "GrpHdr/MsgId")
        message_created = self.datetime_of(message, "GrpHdr/CreDtTm")
        return [self.statement(stmt, message_id, message_created) for stmt in self.findall(message, "Stmt")]

    def statement(
        self, stmt: etree._Element, message_id: str | None, message_created: datetime | None
    ) -> Statement:
        statement_id = self.text(stmt, "Id") or ""
        account = self.text(stmt, "Acct/Id/IBAN", "Acct/Id/Othr/Id") or ""
        balances: dict[str, tuple[Decimal, str, date | None]] = {}
        for bal in self.findall(stmt, "Bal"):
            code = self.text(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry")
            if code and code not in balances:
                value, ccy = self.amount(bal)
                balances[code] = (value, ccy, self.date_of(bal, "Dt"))
        opening = balances.get("OPBD") or balances.get("PRCD")
        closing = balances.get("CLBD")
        ntries = self.findall(stmt, "Ntry")
        currency = self.text(stmt, "Acct/Ccy")
        some_balance = opening or closing
        if currency is None and some_balance is not None:
            currency = some_balance[1]
        if currency is None and ntries:
            currency = self.amount(ntries[0])[1]
        if not currency:
            raise self.fail(stmt, "statement has no currency (no Acct/Ccy, balance or entry)")
        created = self.datetime_of(stmt, "CreDtTm") or message_created
        statement_date = self._statement_date(stmt, closing, created)
        entries = tuple(
            self.entry(ntry, position, account, statement_id) for position, ntry in enumerate(ntries, start=1)
        )
        return Statement(
            format="camt.053",
            account=account,
            statement_id=statement_id,
            currency=currency,
            opening_balance=opening[0] if opening and opening[1] == currency else None,
            closing_balance=closing[0] if closing and closing[1] == currency else None,
            created=created,
            statement_date=statement_date,
            entries=entries,
            source_sha256=self.sha256,
            line=stmt.sourceline or 1,
            message_id=message_id,
            sequence=self.text(stmt, "ElctrncSeqNb", "LglSeqNb"),
        )

    def _statement_date(
        self,
        stmt: etree._Element,
        closing: tuple[Decimal, str, date | None] | None,
        created: datetime | None,
    ) -> date | None:
        to = self.text(stmt, "FrToDt/ToDtTm")
        if to:
            try:
                return date.fromisoformat(to[:10])
            except ValueError:
                raise self.fail(stmt, f"invalid date-time {to!r}") from None
        if closing and closing[2]:
            return closing[2]
        return created.date() if created else None

    # -- entries --------------------------------------------------------------------------------

    def entry(self, ntry: etree._Element, position: int, account: str, statement_id: str) -> StatementEntry:
        amount, currency = self.amount(ntry)
        reversal = (self.text(ntry, "RvslInd") or "").lower() in ("true", "1")
        reference = self.text(ntry, "AcctSvcrRef", "NtryRef")
        if reference is None:
            canonical = etree.tostring(ntry, method="c14n")
            reference = "derived:" + hashlib.sha256(canonical).hexdigest()[:24]
        details = self.findall(ntry, "NtryDtls/TxDtls")
        # Money in (or a reversed payment out) comes from the debtor, otherwise goes to the creditor.
        incoming = (amount >= 0) != reversal
        party, party_account, ultimate = (
            ("Dbtr", "DbtrAcct", "UltmtDbtr") if incoming else ("Cdtr", "CdtrAcct", "UltmtCdtr")
        )
        names = _unique(
            _clean(
                self.text(tx, f"RltdPties/{party}/Nm", f"RltdPties/{party}/Pty/Nm")
                or self.text(tx, f"RltdPties/{ultimate}/Nm", f"RltdPties/{ultimate}/Pty/Nm")
            )
            for tx in details
        )
        ibans = _unique(self.text(tx, f"RltdPties/{party_account}/Id/IBAN") for tx in details)
        e2e_ids = _unique(
            e2e for e2e in (self.text(tx, "Refs/EndToEndId") for tx in details) if e2e != _NOT_PROVIDED
        )
        remittance: list[str | None] = []
        for tx in details:
            remittance += self.texts(tx, "RmtInf/Ustrd")
            remittance += self.texts(tx, "RmtInf/Strd/CdtrRefInf/Ref")
            remittance += self.texts(tx, "RmtInf/Strd/AddtlRmtInf")
        if not any(remittance):
            remittance += [self.text(tx, "AddtlTxInf") for tx in details]
            remittance.append(_clean(self.text(ntry, "AddtlNtryInf")))
        return StatementEntry(
            account=account,
            statement_id=statement_id,
            entry_reference=reference,
            booking_date=self.date_of(ntry, "BookgDt"),
            value_date=self.date_of(ntry, "ValDt"),
            amount=amount,
            currency=currency,
            counterparty_name=names[0] if len(names) == 1 else None,
            counterparty_iban=ibans[0] if len(ibans) == 1 else None,
            remittance_info=" ".join(_unique(remittance)),
            end_to_end_id=e2e_ids[0] if len(e2e_ids) == 1 else None,
            bank_transaction_code=self._transaction_code(ntry),
            line=ntry.sourceline or 1,
            position=position,
            status=self.text(ntry, "Sts/Cd", "Sts/Prtry", "Sts") or "BOOK",
            reversal=reversal,
        )

    def _transaction_code(self, ntry: etree._Element) -> str | None:
        domain = self.text(ntry, "BkTxCd/Domn/Cd")
        if domain:
            family = self.text(ntry, "BkTxCd/Domn/Fmly/Cd")
            sub = self.text(ntry, "BkTxCd/Domn/Fmly/SubFmlyCd")
            return "/".join(part for part in (domain, family, sub) if part)
        return self.text(ntry, "BkTxCd/Prtry/Cd")
