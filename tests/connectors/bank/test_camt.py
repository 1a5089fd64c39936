"""camt.053 reading: the upstream samples agree with the upstream parser, broken files are refused.

The samples and their expected JSON come from genkgo/camt (``tests/fixtures/standards/camt``, see
its README). The JSON is that PHP parser's serialized result: amounts in minor units as strings,
dates in UTC, and only the first entry of each message under ``getEntries``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.bank import StatementError, parse_camt053, parse_statement
from connectors.bank.camt import SUPPORTED_VERSIONS

CAMT = Path(__file__).parents[2] / "fixtures" / "standards" / "camt"
STATEMENTS = sorted(p for p in CAMT.glob("camt*.xml") if p.name.startswith(("camt053", "camt53")))
VALID_STATEMENTS = [p for p in STATEMENTS if p.name != "camt053.v2.wrong.xml"]
REPORTS_AND_NOTIFICATIONS = sorted(CAMT.glob("camt05[24]*.xml"))
MINOR_UNITS = {"EUR": 2, "SEK": 2, "CHF": 2, "RON": 2, "JPY": 0}


def _minor(amount: Decimal, currency: str) -> Decimal:
    return amount.scaleb(MINOR_UNITS[currency])


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def test_the_fixture_set_is_complete() -> None:
    assert len(VALID_STATEMENTS) == 11
    assert len(REPORTS_AND_NOTIFICATIONS) == 14
    assert len(list(CAMT.glob("*.json"))) == 25


@pytest.mark.parametrize("path", VALID_STATEMENTS, ids=lambda p: p.name)
def test_sample_agrees_with_the_upstream_parser(path: Path) -> None:
    statements = parse_camt053(path.read_bytes(), path.name)
    expected: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())

    assert len(statements) == len(expected["getRecords"])
    by_id = {s.statement_id: s for s in statements}
    assert all(
        s.format == "camt.053" and s.message_id == expected["getGroupHeader"]["getMessageId"]
        for s in statements
    )

    records = [e["getRecord"] for e in expected["getEntries"]] or expected["getRecords"]
    for record in records:
        statement = by_id[record["getId"]]
        assert statement.account == record["getAccount"]["getIdentification"]
        assert len(statement.entries) == len(record["getEntries"])
        if record["getCreatedOn"]:
            assert statement.created is not None
            assert _aware(statement.created) == _utc(record["getCreatedOn"]["0"])
        for kind, ours in (("opening", statement.opening_balance), ("closing", statement.closing_balance)):
            theirs = next((b for b in record["getBalances"] if b["getType"] == kind), None)
            if theirs is None:
                assert ours is None
                continue
            currency = theirs["getAmount"]["getCurrency"]["getCode"]
            if currency != statement.currency:
                # A balance in another currency than the account's is not this account's balance.
                assert ours is None
            else:
                assert ours is not None and _minor(ours, currency) == Decimal(
                    theirs["getAmount"]["getAmount"]
                )

    for entry_json in expected["getEntries"]:
        statement = by_id[entry_json["getRecord"]["getId"]]
        entry = statement.entries[entry_json["getIndex"]]
        money = entry_json["getAmount"]
        assert entry.currency == money["getCurrency"]["getCode"]
        assert _minor(entry.amount, entry.currency) == Decimal(money["getAmount"])
        assert (entry.amount < 0) == (entry_json["getCreditDebitIndicator"] == "DBIT")
        for ours, key in ((entry.booking_date, "getBookingDate"), (entry.value_date, "getValueDate")):
            theirs = entry_json[key]
            assert ours == (date.fromisoformat(theirs["0"][:10]) if theirs else None)
        if entry_json["getAccountServicerReference"]:
            assert entry.entry_reference == entry_json["getAccountServicerReference"]
        else:
            assert entry.entry_reference.startswith("derived:")
        detail = entry_json.get("getTransactionDetail") or {}
        e2e = (detail.get("getReference") or {}).get("getEndToEndId")
        assert entry.end_to_end_id == (e2e if e2e and e2e != "NOTPROVIDED" else None)


def test_all_balance_types_keeps_exact_decimals_and_reads_booked_balances() -> None:
    (statement,) = parse_camt053((CAMT / "camt053.v2.all-balance-types.xml").read_bytes())
    assert statement.opening_balance == Decimal("1.01")  # OPBD, not PRCD/OPAV/ITBD...
    assert statement.closing_balance == Decimal("4.04")  # CLBD, not CLAV/FWAV...
    assert statement.balances_consistent is False  # the sample does not add up; parsing still works


def test_five_decimals_amounts_are_kept_exactly() -> None:
    (statement,) = parse_camt053((CAMT / "camt053.v2.five.decimals.xml").read_bytes())
    assert statement.opening_balance == Decimal("18.150")
    assert str(statement.entries[0].amount) == "8.850"


def test_multi_statement_file_keeps_both_statements_in_order_with_lines() -> None:
    statements = parse_camt053((CAMT / "camt053.v2.multi.statement.xml").read_bytes())
    assert [s.statement_id for s in statements] == ["253EURNL26VAYB8060476890", "254EURNL26VAYB8060476890"]
    assert [s.balances_consistent for s in statements] == [True, True]
    first, second = (s.entries[0] for s in statements)
    assert (first.amount, second.amount) == (Decimal("8.85"), Decimal("-7.00"))
    assert first.line < second.line
    lines = (CAMT / "camt053.v2.multi.statement.xml").read_text().splitlines()
    assert lines[second.line - 1].strip() == "<Ntry>"
    # Outgoing money: the counterparty is the creditor.
    assert second.counterparty_name == "Company Name 2"
    assert second.remittance_info == "Transaction Description 2"
    assert len({first.fingerprint, second.fingerprint}) == 2


def test_v8_entry_details() -> None:
    (statement,) = parse_camt053((CAMT / "camt053.v8.xml").read_bytes())
    (entry,) = statement.entries
    assert entry.counterparty_name == "NAME NAME"  # Dbtr/Pty/Nm in .08
    assert entry.counterparty_iban == "NL56AGDH9619008421"
    assert entry.remittance_info == "4654654654654654"  # structured creditor reference
    assert entry.bank_transaction_code == "PMNT/RCDT/BOOK"
    assert entry.booking_date == date(2014, 12, 31)  # BookgDt/DtTm, as written
    assert entry.status == "BOOK" and entry.reversal is False


def test_statement_without_entries_and_nanosecond_timestamps() -> None:
    (statement,) = parse_camt053((CAMT / "camt53.only-Dt-with-DtTm.xml").read_bytes())
    assert statement.entries == ()
    assert statement.currency == "RON"  # no Acct/Ccy: taken from the balance
    assert statement.opening_balance == Decimal("5442.09000")
    assert statement.created == datetime(2025, 7, 24, 6, 10, 29)


def test_wrong_sample_is_refused_with_its_line() -> None:
    with pytest.raises(StatementError) as caught:
        parse_camt053((CAMT / "camt053.v2.wrong.xml").read_bytes(), "camt053.v2.wrong.xml")
    error = caught.value
    assert error.line == 3
    assert str(error) == (
        "camt053.v2.wrong.xml:3: camt.053 schema: Element 'BkToCstmrStmt': Missing child element(s). "
        "Expected is ( Stmt )."
    )
    assert error.location is not None and error.location.startswith("/")  # an XPath into the document


@pytest.mark.parametrize("path", REPORTS_AND_NOTIFICATIONS, ids=lambda p: p.name)
def test_camt052_and_camt054_are_refused_as_not_a_statement(path: Path) -> None:
    with pytest.raises(
        StatementError, match=r"not a camt\.053 statement: this is an? .*\(camt\.05[24]\.001\.0\d\)"
    ):
        parse_statement(path.read_bytes(), path.name)


def _minimal(version: str = "camt.053.001.02", amount: str = "8.85", extra: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>{extra}
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:{version}">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-03-05T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>S1</Id><CreDtTm>2024-03-05T18:00:00</CreDtTm>
      <Acct><Id><IBAN>DE44500105175407324931</IBAN></Id></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">1.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-03-05</Dt></Dt></Bal>
      <Ntry>
        <Amt Ccy="EUR">{amount}</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BkTxCd><Prtry><Cd>X</Cd></Prtry></BkTxCd>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
""".encode()


def test_hand_written_minimal_statement_parses() -> None:
    (statement,) = parse_camt053(_minimal())
    (entry,) = statement.entries
    assert entry.amount == Decimal("-8.85")  # DBIT
    assert entry.line == 10  # the <Ntry> line
    assert entry.booking_date is None and entry.counterparty_name is None and entry.remittance_info == ""


def test_bad_amount_is_a_schema_error_on_its_line() -> None:
    with pytest.raises(StatementError) as caught:
        parse_camt053(_minimal(amount="abc"), "statement.xml")
    message = str(caught.value)
    assert message.startswith(
        "statement.xml:11: camt.053 schema: Element 'Amt': 'abc' is not a valid value of the atomic type"
    )
    assert "{urn:" not in message  # namespaces stripped for readability


def test_negative_amount_is_refused_because_the_sign_is_cdtdbtind() -> None:
    with pytest.raises(StatementError, match=r":11: camt\.053 schema: Element 'Amt'"):
        parse_camt053(_minimal(amount="-8.85"), "statement.xml")


def test_truncated_xml_names_the_line() -> None:
    data = _minimal()
    with pytest.raises(StatementError) as caught:
        parse_camt053(data[: data.index(b"<Ntry>")], "cut.xml")
    assert caught.value.line is not None and caught.value.line >= 10
    assert "not well-formed XML" in str(caught.value)
    assert str(caught.value).startswith(f"cut.xml:{caught.value.line}: ")


def test_dtd_and_entities_are_refused() -> None:
    bomb = _minimal(extra='\n<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>')
    bomb = bomb.replace(b"<Id>S1</Id>", b"<Id>&b;</Id>")
    with pytest.raises(StatementError, match="declares a DTD") as caught:
        parse_camt053(bomb, "bomb.xml")
    assert caught.value.line == 2


def test_external_entity_is_not_fetched() -> None:
    xxe = _minimal(extra='\n<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    xxe = xxe.replace(b"<Id>S1</Id>", b"<Id>&x;</Id>")
    with pytest.raises(StatementError, match="declares a DTD"):
        parse_camt053(xxe)


def test_unsupported_camt053_version_and_foreign_xml() -> None:
    with pytest.raises(
        StatementError, match=r"unsupported camt\.053 version camt\.053\.001\.06 \(supported: "
    ):
        parse_camt053(_minimal(version="camt.053.001.06"))
    with pytest.raises(
        StatementError, match=r"not a camt\.053 statement: ISO 20022 message pain\.001\.001\.03"
    ):
        parse_camt053(_minimal(version="pain.001.001.03"))
    with pytest.raises(StatementError, match=r"^x\.xml:1: not a camt\.053 statement: root element invoice"):
        parse_camt053(b"<invoice><total>1</total></invoice>", "x.xml")
    assert len(SUPPORTED_VERSIONS) == 4


def test_every_supported_version_has_its_schema_vendored() -> None:
    for version in SUPPORTED_VERSIONS:
        path = Path(__file__).parents[3] / "connectors" / "bank" / "xsd" / f"{version}.xsd"
        assert f'targetNamespace="urn:iso:std:iso:20022:tech:xsd:{version}"' in path.read_text()
