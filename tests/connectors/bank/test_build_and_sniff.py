"""Format sniffing, the statement builders (round trips through the parsers) and fingerprints."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.bank import Statement, StatementError, parse_camt053, parse_mt940, parse_statement
from connectors.bank.build import BuildEntry, camt053_document, mt940_document

ACCOUNT = "DE44500105175407324931"
CREATED = datetime(2024, 3, 5, 18, 0, tzinfo=UTC)
ENTRIES = [
    BuildEntry(
        amount=Decimal("1190.00"),
        booking_date=date(2024, 3, 4),
        counterparty_name="Muster GmbH",
        counterparty_iban="DE89370400440532013000",
        remittance="Invoice INV-2024-0042, thanks for the quick delivery of everything we ordered last month",
        end_to_end_id="E2E-INV-2024-0042",
        reference="BANKREF0001",
    ),
    BuildEntry(
        amount=Decimal("-12.5"),
        booking_date=date(2024, 3, 5),
        counterparty_name="Hausbank AG",
        counterparty_iban="DE02120300000000202051",
        remittance="Fees: March",
        end_to_end_id="",
        reference="FEE0305",
        value_date=date(2024, 3, 6),
    ),
]


def _camt(entries: list[BuildEntry] = ENTRIES, opening: Decimal = Decimal("100.00")) -> bytes:
    return camt053_document(ACCOUNT, "STMT-2024-03", "EUR", entries, CREATED, opening)


def _mt940(entries: list[BuildEntry] = ENTRIES, opening: Decimal = Decimal("100.00")) -> str:
    return mt940_document(ACCOUNT, "STMT-2024-03", "EUR", entries, CREATED, opening)


def _assert_round_trip(statement: Statement, entries: list[BuildEntry], opening: Decimal) -> None:
    assert statement.account == ACCOUNT and statement.currency == "EUR"
    assert statement.opening_balance == opening
    assert statement.closing_balance == opening + sum((e.amount for e in entries), Decimal(0))
    assert statement.balances_consistent is True
    assert len(statement.entries) == len(entries)
    for parsed, built in zip(statement.entries, entries, strict=True):
        assert parsed.amount == built.amount
        assert parsed.booking_date == built.booking_date
        assert parsed.value_date == (built.value_date or built.booking_date)
        assert parsed.counterparty_name == built.counterparty_name
        assert parsed.counterparty_iban == built.counterparty_iban
        assert parsed.remittance_info == built.remittance
        assert parsed.end_to_end_id == (built.end_to_end_id or None)
        assert parsed.entry_reference == built.reference
        assert parsed.currency == "EUR"


def test_camt053_round_trip() -> None:
    (statement,) = parse_statement(_camt(), "built.xml")
    assert statement.format == "camt.053" and statement.statement_id == "STMT-2024-03"
    assert statement.created == CREATED and statement.statement_date == date(2024, 3, 5)
    _assert_round_trip(statement, ENTRIES, Decimal("100.00"))
    assert [e.bank_transaction_code for e in statement.entries] == ["PMNT/RCDT/ESCT", "PMNT/ICDT/ESCT"]


def test_mt940_round_trip() -> None:
    text = _mt940()
    (statement,) = parse_statement(text.encode(), "built.sta")
    assert statement.format == "mt940" and statement.statement_id == "STMT-2024-03/1"
    assert statement.statement_date == date(2024, 3, 5)
    _assert_round_trip(statement, ENTRIES, Decimal("100.00"))
    assert all(len(line) <= 69 for line in text.splitlines())  # ":86:" + 65
    assert text.endswith("\r\n-\r\n")


def test_negative_balances_round_trip() -> None:
    entries = [replace(ENTRIES[1], amount=Decimal("-250.75"))]
    for statement in (
        parse_camt053(_camt(entries, Decimal("-10")))[0],
        parse_mt940(_mt940(entries, Decimal("-10")))[0],
    ):
        assert (statement.opening_balance, statement.closing_balance) == (Decimal("-10"), Decimal("-260.75"))


def test_empty_statement_round_trip() -> None:
    for statement in (parse_camt053(_camt([]))[0], parse_mt940(_mt940([]))[0]):
        assert statement.entries == () and statement.balances_consistent is True
        assert statement.statement_date == date(2024, 3, 5)


swift_text = st.text(alphabet="abcXYZ019/-:().,'+ ", min_size=1, max_size=140).map(
    lambda s: " ".join(s.split())
)


@settings(max_examples=60, deadline=None)
@given(
    remittance=swift_text.filter(lambda s: s and "+" not in s),
    name=st.text(alphabet="ab -:", min_size=1, max_size=54).map(lambda s: " ".join(s.split())).filter(bool),
    cents=st.integers(min_value=-(10**12), max_value=10**12),
)
def test_mt940_wrapping_never_loses_text(remittance: str, name: str, cents: int) -> None:
    """Line wrapping at 65 characters must survive trailing-blank stripping and ':'/'-' line starts."""
    entry = replace(
        ENTRIES[0], remittance=remittance, counterparty_name=name, amount=Decimal(cents).scaleb(-2)
    )
    (statement,) = parse_mt940(_mt940([entry]))
    _assert_round_trip(statement, [entry], Decimal("100.00"))


def test_builders_refuse_what_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="characters MT940 cannot carry"):
        _mt940([replace(ENTRIES[0], remittance="Rechnung? Nr 1")])
    with pytest.raises(ValueError, match="purpose keyword"):
        _mt940([replace(ENTRIES[0], remittance="see EREF+123")])
    with pytest.raises(ValueError, match="longer than 140"):
        _mt940([replace(ENTRIES[0], remittance="x" * 141)])
    with pytest.raises(ValueError, match="15 characters"):
        _mt940([replace(ENTRIES[0], amount=Decimal("1234567890123.45"))])
    with pytest.raises(ValueError, match="1-16 characters"):
        mt940_document(ACCOUNT, "X" * 17, "EUR", [], CREATED, Decimal(0))
    with pytest.raises(ValueError, match="not schema-valid"):
        _camt([replace(ENTRIES[0], remittance="x" * 141)])
    with pytest.raises(ValueError, match="not a finite decimal"):
        _camt([replace(ENTRIES[0], amount=Decimal("NaN"))])


# -- fingerprints -----------------------------------------------------------------------------------


def test_reimporting_the_same_file_gives_the_same_fingerprints() -> None:
    for data, name in ((_camt(), "s.xml"), (_mt940().encode(), "s.sta")):
        first = [e.fingerprint for e in parse_statement(data, name)[0].entries]
        again = [e.fingerprint for e in parse_statement(data, name)[0].entries]
        assert first == again and len(set(first)) == 2
        assert all(len(f) == 64 and int(f, 16) >= 0 for f in first)


def test_a_longer_version_of_a_statement_shares_the_earlier_lines() -> None:
    extra = replace(ENTRIES[0], reference="BANKREF0002", booking_date=date(2024, 3, 5))
    short = parse_mt940(_mt940())[0].entries
    longer = parse_mt940(_mt940([*ENTRIES, extra]))[0].entries
    assert [e.fingerprint for e in longer[:2]] == [e.fingerprint for e in short]
    assert longer[2].fingerprint not in {e.fingerprint for e in short}


def test_identical_payments_on_one_statement_stay_distinct() -> None:
    twin = replace(ENTRIES[0], reference="SAME")
    first, second = parse_camt053(_camt([twin, twin]))[0].entries
    assert first.fingerprint != second.fingerprint  # only the position differs


def test_fingerprint_ignores_trailing_zeros_but_not_the_amount() -> None:
    (entry,) = parse_camt053(_camt([ENTRIES[0]]))[0].entries
    assert replace(entry, amount=Decimal("1190")).fingerprint == entry.fingerprint
    assert replace(entry, amount=Decimal("1190.01")).fingerprint != entry.fingerprint
    assert replace(entry, statement_id="OTHER").fingerprint != entry.fingerprint
    assert replace(entry, line=999).fingerprint == entry.fingerprint  # layout is not identity


def test_source_sha256_is_of_the_file_bytes() -> None:
    data = _camt()
    assert parse_camt053(data)[0].source_sha256 == hashlib.sha256(data).hexdigest()
    text = _mt940()
    assert parse_mt940(text)[0].source_sha256 == hashlib.sha256(text.encode()).hexdigest()


# -- sniffing ----------------------------------------------------------------------------------------


def test_sniffing_picks_the_format() -> None:
    assert parse_statement(b"\xef\xbb\xbf" + _camt(), "bom.xml")[0].format == "camt.053"
    assert parse_statement(_mt940().encode(), "s.sta")[0].format == "mt940"


@pytest.mark.parametrize(
    "data",
    [
        random.Random(6).randbytes(4096),
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        b'{"statement": []}',
        b"date;amount;text\n2024-03-05;10,00;Invoice 1\n",
    ],
    ids=["random-bytes", "pdf", "json", "csv"],
)
def test_other_files_are_refused(data: bytes) -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(data, "upload.bin")
    assert str(caught.value) == "upload.bin: not a camt.053 or MT940 file"
    assert caught.value.line is None


def test_empty_file_is_refused() -> None:
    for data in (b"", b"\xef\xbb\xbf", b" \n\t\r\n"):
        with pytest.raises(StatementError, match=r"^e\.txt: empty file$"):
            parse_statement(data, "e.txt")


def test_garbage_xml_goes_to_the_xml_reader() -> None:
    with pytest.raises(StatementError, match=r"^g\.xml:1: not well-formed XML"):
        parse_statement(b"<Document><BkToCstmrStmt>", "g.xml")
    with pytest.raises(StatementError) as caught:
        parse_statement(b"\n  " + _camt(), "late.xml")  # an XML declaration must come first
    assert (
        str(caught.value)
        == "late.xml:2: not well-formed XML: XML declaration allowed only at the start of the document"
    )
    assert caught.value.location == "column 8"


def test_error_reads_like_a_compiler_message() -> None:
    error = StatementError("s.xml", "camt.053 schema: boom", line=42, location="/*/*[2]")
    assert str(error) == "s.xml:42: camt.053 schema: boom"
    assert (error.filename, error.line, error.location, error.message) == (
        "s.xml",
        42,
        "/*/*[2]",
        "camt.053 schema: boom",
    )
    assert str(StatementError("s.sta", "empty file")) == "s.sta: empty file"
    assert isinstance(error, ValueError)
