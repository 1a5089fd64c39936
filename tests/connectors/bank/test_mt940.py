"""MT940 reading: the mt-940 project's samples agree with its expected results, and nothing is lost.

Samples and expected ``.yml`` results come from the mt-940 project (``tests/fixtures/standards/mt940``,
see its README). The YAML holds pickled mt-940 objects, so it is loaded with ``yaml.unsafe_load``
(trusted, in-repo files; tests only). Upstream parses leniently; this reader refuses what cannot be
imported whole, so the upstream tag fragments (no ``:20:`` header) are checked wrapped in a header.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.bank import Statement, StatementError, parse_mt940, parse_statement

MT940 = Path(__file__).parents[2] / "fixtures" / "standards" / "mt940"
ALL_STA = sorted(MT940.rglob("*.sta"))
#: Files with a statement header that this reader refuses, and why (line, message).
REFUSED = {
    "betterplace/sepa_snippet_broken.sta": (6, "repeated :25: in one statement"),
    "betterplace/empty_line.sta": (2, "MT940 statement has no :25: account identification"),
    "cmxl/reference.sta": (1, "MT940 statement has no :25: account identification"),
    "self-provided/raphaelm.sta": (27, "MT940 balance has no valid currency code ('105')"),
}
HEADER = ":20:FRAGMENT\n:25:NL00TEST0123456789\n:28C:1/1\n:60F:C200101EUR0,00\n"


def _name(path: Path) -> str:
    return path.relative_to(MT940).as_posix()


def _has_header(path: Path) -> bool:
    return any(line.startswith(":20:") for line in path.read_text(errors="replace").splitlines())


COMPLETE = [p for p in ALL_STA if _has_header(p) and _name(p) not in REFUSED]
FRAGMENTS = [p for p in ALL_STA if not _has_header(p)]


def _expected(path: Path) -> list[dict[str, Any]]:
    loaded = yaml.unsafe_load(path.with_suffix(".yml").read_text(encoding="utf-8"))  # trusted in-repo fixture
    return [transaction.data for transaction in loaded.transactions]


def _signed(data: dict[str, Any]) -> Decimal:
    """The amount with this reader's sign rule: D and RC (reversal of a credit) take money out."""
    amount: Decimal = abs(data["amount"].amount)
    return -amount if str(data["status"]).upper() in ("D", "RC") else amount


def _assert_agrees(statements: list[Statement], expected: list[dict[str, Any]]) -> None:
    entries = [entry for statement in statements for entry in statement.entries]
    assert len(entries) == len(expected)
    for entry, data in zip(entries, expected, strict=True):
        assert entry.amount == _signed(data)
        assert entry.value_date == data["date"]
        if data.get("entry_date"):
            assert entry.booking_date == data["entry_date"]
        assert entry.currency == (data["amount"].currency or statements[0].currency)


def test_the_fixture_set_is_complete() -> None:
    assert len(ALL_STA) == 49
    assert len(COMPLETE) == 28
    assert len(FRAGMENTS) == 17


@pytest.mark.parametrize("path", COMPLETE, ids=_name)
def test_statement_agrees_with_the_upstream_expectation(path: Path) -> None:
    statements = parse_mt940(path.read_bytes(), path.name)
    _assert_agrees(statements, _expected(path))
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    for statement in statements:
        assert lines[statement.line - 1].startswith(":20:")
        assert statement.format in ("mt940", "mt942")
        assert all(lines[entry.line - 1].startswith(":61:") for entry in statement.entries)
        assert [e.position for e in statement.entries] == list(range(1, len(statement.entries) + 1))


@pytest.mark.parametrize("path", [p for p in FRAGMENTS if ":61:" in p.read_text(errors="replace")], ids=_name)
def test_fragment_with_transactions_agrees_once_given_a_header(path: Path) -> None:
    with pytest.raises(StatementError, match=r":1: MT940 tag :61: before the first :20: statement header"):
        parse_mt940(path.read_bytes(), path.name)
    statements = parse_mt940(HEADER + path.read_text(encoding="utf-8"), path.name)
    _assert_agrees(statements, _expected(path))


@pytest.mark.parametrize(
    "path", [p for p in FRAGMENTS if ":61:" not in p.read_text(errors="replace")], ids=_name
)
def test_file_without_any_statement_is_refused(path: Path) -> None:
    """Upstream parses these to an empty result; an import must not report success on them."""
    with pytest.raises(StatementError) as caught:
        parse_statement(path.read_bytes(), path.name)
    assert "statement" in caught.value.message or "not a camt.053 or MT940 file" in caught.value.message


@pytest.mark.parametrize(("name", "problem"), sorted(REFUSED.items()))
def test_malformed_statement_is_refused_at_its_line(name: str, problem: tuple[int, str]) -> None:
    line, message = problem
    with pytest.raises(StatementError) as caught:
        parse_mt940((MT940 / name).read_bytes(), Path(name).name)
    assert str(caught.value) == f"{Path(name).name}:{line}: {message}"


def test_asn_bank_file_with_envelopes_and_long_references() -> None:
    """Upstream needed a special tag for ASN's 18-character references; the fallback grammar reads them."""
    path = MT940 / "ASNB" / "0708271685_09022020_164516.940.txt"
    statements = parse_mt940(path.read_bytes(), path.name)
    assert len(statements) == 31
    assert [s.sequence for s in statements[:3]] == ["1/1", "2/1", "3/1"]
    assert len({s.statement_id for s in statements}) == 31
    entries = [e for s in statements for e in s.entries]
    assert len(entries) == path.read_text().count("\n:61:")
    assert all(s.balances_consistent for s in statements)
    first = entries[0]
    assert (first.amount, first.value_date, first.line) == (Decimal("-65.00"), date(2020, 1, 1), 6)
    assert first.remittance_info == "NL47INGB9999999999 hr gjlm paulissen Betaling sieraden"


def test_german_structured_details() -> None:
    path = MT940 / "betterplace" / "sepa_snippet.sta"
    first = parse_mt940(path.read_bytes())[0].entries[0]
    assert first.counterparty_name == "KARL KAUFMANN"
    assert first.counterparty_iban == "DE14508800500194785000"  # ?31
    assert first.remittance_info == "Verw CTSc-01 BC-PPP TFNr 22 004"  # SVWZ+
    assert first.end_to_end_id == "EndToEndId TFNR 22 004 00001"  # EREF+
    assert first.entry_reference == "0724710333343453"  # bank reference after //
    assert first.bank_transaction_code == "NTRF/166"
    assert (first.booking_date, first.value_date) == (date(2007, 9, 4), date(2007, 9, 7))


def test_german_details_without_svwz_keep_the_purpose_text() -> None:
    path = MT940 / "betterplace" / "sepa_snippet.sta"
    fourth = parse_mt940(path.read_bytes())[0].entries[3]
    assert fourth.remittance_info.startswith(
        "KREF+TFNr 01022 MSGID CTSc-01 EBBMTLG:SEPA-Ueberweisungsauftrag"
    )


def test_dutch_slash_structured_details() -> None:
    path = MT940 / "jejik" / "rabobank-iban.sta"
    entries = parse_mt940(path.read_bytes())[0].entries
    assert (entries[1].counterparty_name, entries[1].remittance_info) == ("JOHN DOE", "Reference 201301234")
    assert entries[0].counterparty_name == "CONTRA ACCOUNT HOLDER"  # wrapped over two lines
    assert entries[0].end_to_end_id == "01-01-2013 12:00 0030000987654321"
    assert entries[0].entry_reference.startswith("derived:")  # NONREF: no bank reference


def test_reversal_of_a_credit_takes_money_out() -> None:
    path = MT940 / "betterplace" / "sepa_mt9401.sta"
    entries = {e.line: e for s in parse_mt940(path.read_bytes()) for e in s.entries}
    reversal = entries[19]  # :61:0709040904RCR204,88NRTINONREF
    assert (reversal.amount, reversal.reversal) == (Decimal("-204.88"), True)


def test_mt942_interim_report_is_labelled() -> None:
    (statement,) = parse_mt940((MT940 / "self-provided" / "mt942.sta").read_bytes())
    assert statement.format == "mt942"
    assert statement.opening_balance is None and statement.currency == "EUR"
    assert statement.created is not None and statement.created.replace(tzinfo=None) == datetime(
        2016, 10, 30, 17, 30
    )
    assert statement.created.utcoffset() == timedelta(0)


def test_non_utf8_file_is_decoded_like_mt940_does() -> None:
    (statement,) = parse_mt940((MT940 / "self-provided" / "raiffeisen-cmi.sta").read_bytes())
    assert len(statement.entries) == 7
    assert "napi összevont utánvét" in statement.entries[0].remittance_info  # code page 852


GENERIC = (MT940 / "jejik" / "generic.sta").read_text()


def test_mangled_statement_line_is_refused_at_its_line() -> None:
    broken = GENERIC.replace(":61:110101D10,00N000NONREF", ":61:11O1O1D10,00N000NONREF")
    with pytest.raises(StatementError) as caught:
        parse_mt940(broken, "generic.sta")
    assert caught.value.line == 5 and caught.value.location == ":61:"
    assert str(caught.value) == "generic.sta:5: MT940 :61: cannot be parsed: '11O1O1D10,00N000NONREF'"


def test_impossible_date_and_bad_balance_are_refused() -> None:
    with pytest.raises(
        StatementError, match=r"^g\.sta:5: MT940 :61: cannot be parsed: .*month must be in 1\.\.12"
    ):
        parse_mt940(GENERIC.replace(":61:110101D", ":61:111301D"), "g.sta")
    with pytest.raises(StatementError, match=r"^g\.sta:4: MT940 :60F: cannot be parsed"):
        parse_mt940(GENERIC.replace(":60F:C110101EUR100,00", ":60F:X110101EUR100,00"), "g.sta")


def test_statement_without_opening_balance_is_refused() -> None:
    with pytest.raises(StatementError, match=r"^g\.sta:1: MT940 statement has no :60F: opening balance"):
        parse_mt940(GENERIC.replace(":60F:C110101EUR100,00\n", "", 1), "g.sta")


def test_empty_and_tagless_input_is_refused() -> None:
    for data in (b"", b"  \r\n\r\n", "\ufeff"):
        with pytest.raises(StatementError, match="empty file"):
            parse_mt940(data, "e.sta")
    with pytest.raises(StatementError, match=r"^t\.sta: no MT940 statement found \(no :20: tag\)$"):
        parse_mt940("just some text\nover two lines\n", "t.sta")


def test_details_after_the_closing_balance_belong_to_the_statement() -> None:
    """SWIFT puts statement-level :86: after :62F:; mt-940 would glue it to the last entry."""
    text = GENERIC.replace(":62F:C110201EUR90,00\n", ":62F:C110201EUR90,00\n:86:STATEMENT NOTE\n", 1)
    assert parse_mt940(text)[0].entries[-1].remittance_info == ""


def test_crlf_bom_and_envelope_do_not_move_line_numbers() -> None:
    text = (
        "\ufeff{1:F01BANKDEFFXXXX0000000000}{2:O940BANKDEFFXXXXN}{4:\r\n"
        + GENERIC.replace("\n", "\r\n")
        + "-}\r\n"
    )
    statements = parse_mt940(text.encode("utf-8"), "env.sta")
    assert [s.line for s in statements] == [2, 10]
    assert [e.line for s in statements for e in s.entries] == [6, 14]
    assert all(s.balances_consistent for s in statements)
