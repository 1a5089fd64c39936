"""Bank statements into payments: matching, the review queue, imports that happen once or not at all.

Runs on SQLite and (with BILLSYNC_TEST_DATABASE_URL) PostgreSQL; statements are built with the
connector's builders (valid camt.053 / MT940) so each test states exactly what the bank sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.bank.build import BuildEntry, camt053_document, mt940_document
from connectors.bank.errors import StatementError
from sync_engine.reconcile import MatchError, ignore_line, import_statement, match_line, review_queue
from sync_engine.runtime import Runtime
from sync_engine.store.models import BankStatement, Payment, StatementLine
from tests.sync_engine.books import add_rows, customer_row, invoice_row, invoice_status, make_runtime

TODAY = dt.date(2026, 11, 25)
CREATED = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.UTC)
ACME_IBAN = "DE89370400440532013000"
OUR_IBAN = "DE02120300000000202051"


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(db_url, tmp_path)
    issued, due = TODAY - dt.timedelta(days=10), TODAY + dt.timedelta(days=20)
    add_rows(
        rt,
        customer_row("cus_acme", name="Acme GmbH", currency="EUR", iban=ACME_IBAN),
        customer_row("cus_globex", name="Globex", currency="EUR"),
        *(
            invoice_row(
                number,
                total,
                invoice_id=f"inv_{number[-1]}",
                customer_id=customer,
                currency="EUR",
                issue=issued,
                due=due,
            )
            for number, customer, total in (
                ("INV-000001", "cus_acme", "100.00"),
                ("INV-000002", "cus_acme", "250.00"),
                ("INV-000003", "cus_globex", "75.50"),
                ("INV-000004", "cus_globex", "75.50"),
            )
        ),
    )
    yield rt
    rt.close()


def entry(
    amount: str, remittance: str, *, name: str = "Acme GmbH", iban: str = ACME_IBAN, ref: str = "R1"
) -> BuildEntry:
    return BuildEntry(
        amount=Decimal(amount),
        booking_date=TODAY,
        counterparty_name=name,
        counterparty_iban=iban,
        remittance=remittance,
        end_to_end_id="NOTPROVIDED",
        reference=ref,
    )


def camt(*entries: BuildEntry, statement_id: str = "STMT-1") -> bytes:
    return camt053_document(OUR_IBAN, statement_id, "EUR", list(entries), CREATED, Decimal("1000.00"))


def count(runtime: Runtime, model: type) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_lines_are_matched_by_number_then_by_payer_and_amount_and_the_rest_waits(runtime: Runtime) -> None:
    data = camt(
        entry("100.00", "Invoice INV-000001", ref="R1"),
        entry("250.00", "monthly payment", ref="R2"),  # Acme's IBAN, one invoice due for that amount
        entry("75.50", "inv 000003 thanks", name="Globex", iban="FR7630006000011234567890189", ref="R3"),
        entry("75.50", "no reference", name="G. Corp", iban="FR7630006000011234567890189", ref="R4"),
        entry("-20.00", "bank fees", name="Our Bank", ref="R5"),
    )
    result = import_statement(runtime, data, "statement.xml", as_of=TODAY)
    assert (result.matched, result.unmatched, result.ignored) == (3, 1, 1)
    assert result.matched_by == {"invoice_number": 2, "amount_customer": 1}
    assert invoice_status(runtime, "inv_1") == ("paid", Decimal("100.00"))
    assert invoice_status(runtime, "inv_2") == ("paid", Decimal("250.00"))
    assert invoice_status(runtime, "inv_3") == ("paid", Decimal("75.50"))
    assert invoice_status(runtime, "inv_4") == ("open", Decimal("0"))
    with runtime.sessions() as session:
        queue = review_queue(session)
    assert len(queue) == 1 and queue[0]["amount"] == "75.50"
    # an unknown payer: Globex's invoice still open for that amount is the candidate
    assert [c["invoice"] for c in queue[0]["candidates"]] == ["INV-000004"]


def test_the_same_statement_twice_imports_nothing_twice(runtime: Runtime) -> None:
    data = camt(entry("100.00", "INV-000001"), entry("30.00", "INV-000002", ref="R2"))
    first = import_statement(runtime, data, "a.xml", as_of=TODAY)
    again = import_statement(runtime, data, "a-copy.xml", as_of=TODAY)
    assert first.matched == 2 and again.already_imported
    # the same lines delivered again in another file (the bank re-sent the statement, other bytes)
    reformatted = data.replace(b"<Stmt>", b"<Stmt>\n")
    assert reformatted != data
    third = import_statement(runtime, reformatted, "a-resent.xml", as_of=TODAY)
    assert (third.duplicates, third.matched) == (2, 0)
    assert count(runtime, Payment) == 2
    assert invoice_status(runtime, "inv_2") == ("partially_paid", Decimal("30.00"))


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (
            b"<?xml version='1.0'?><Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'><BkToCstmrStmt>",
            "camt_truncated.xml:1",
        ),
        (b"%PDF-1.7 not a statement", "not a camt.053 or MT940"),
        (b"", "camt_empty.xml"),
    ],
)
def test_a_malformed_file_imports_nothing_and_says_where(runtime: Runtime, data: bytes, where: str) -> None:
    name = "camt_truncated.xml" if data.startswith(b"<?xml") else ("camt_empty.xml" if not data else "x.pdf")
    with pytest.raises(StatementError) as caught:
        import_statement(runtime, data, name, as_of=TODAY)
    assert where in str(caught.value) or name in str(caught.value)
    assert count(runtime, BankStatement) == count(runtime, StatementLine) == count(runtime, Payment) == 0


def test_a_bad_amount_deep_in_a_valid_file_imports_none_of_its_lines(runtime: Runtime) -> None:
    data = camt(entry("100.00", "INV-000001"), entry("30.00", "INV-000002", ref="R2"))
    broken = data.replace(b">30.00<", b">30,00<")
    with pytest.raises(StatementError, match=r"statement\.xml:\d+"):
        import_statement(runtime, broken, "statement.xml", as_of=TODAY)
    assert count(runtime, Payment) == 0
    assert invoice_status(runtime, "inv_1") == ("open", Decimal("0"))


def test_mt940_lines_are_matched_like_camt(runtime: Runtime) -> None:
    text = mt940_document(
        "DE02120300000000", "STMT940", "EUR", [entry("100.00", "INV000001")], CREATED, Decimal("10.00")
    )
    result = import_statement(runtime, text.encode(), "statement.sta", as_of=TODAY)
    assert result.matched == 1
    assert invoice_status(runtime, "inv_1") == ("paid", Decimal("100.00"))


def test_support_matches_a_waiting_line_by_hand_or_ignores_it(runtime: Runtime) -> None:
    import_statement(
        runtime,
        camt(
            entry("75.50", "payment", name="Someone", iban="FR7630006000011234567890189", ref="R1"),
            entry("12.00", "interest", name="Our Bank", iban=OUR_IBAN, ref="R2"),
        ),
        "s.xml",
        as_of=TODAY,
    )
    with runtime.sessions() as session:
        waiting = {line["remittance"]: line["id"] for line in review_queue(session)}
    with pytest.raises(MatchError, match="different customers"):
        match_line(runtime, waiting["payment"], ["INV-000001", "INV-000003"], as_of=TODAY)
    number = match_line(runtime, waiting["payment"], ["INV-000003"], as_of=TODAY, who="alice")
    assert number.startswith("PAY-")
    assert invoice_status(runtime, "inv_3") == ("paid", Decimal("75.50"))
    with pytest.raises(MatchError, match="already matched"):
        match_line(runtime, waiting["payment"], ["INV-000004"], as_of=TODAY)
    ignore_line(runtime, waiting["interest"], "interest from our bank")
    with runtime.sessions() as session:
        assert review_queue(session) == []
