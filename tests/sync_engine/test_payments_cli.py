"""The payments commands as an operator types them: clear errors, nothing imported twice or half."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import yaml

from connectors.bank.build import BuildEntry, camt053_document

BILLSYNC = Path(sys.executable).parent / "billsync"


def config(tmp_path: Path) -> Path:
    (tmp_path / "catalog.yaml").write_text("version: 1\nproducts: []\n", encoding="utf-8")
    path = tmp_path / "billsync.yaml"
    settings = {
        "version": 1,
        "database_url": f"sqlite:///{tmp_path / 'billsync.db'}",
        "connections": {},
        "streams": [],
        "destinations": [],
    }
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def billsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BILLSYNC), *args], capture_output=True, text=True, timeout=120, check=False)


def statement() -> bytes:
    entry = BuildEntry(
        amount=Decimal("42.00"),
        booking_date=dt.date(2026, 11, 25),
        counterparty_name="Someone",
        counterparty_iban="DE89370400440532013000",
        remittance="INV-000001",
        end_to_end_id="E2E1",
        reference="R1",
    )
    return camt053_document(
        "DE02120300000000202051", "S1", "EUR", [entry], dt.datetime(2026, 11, 25, tzinfo=dt.UTC), Decimal(0)
    )


def test_a_broken_statement_is_refused_with_its_line_and_nothing_is_imported(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(statement().replace(b">42.00<", b">forty-two<"))
    done = billsync("payments", "import", str(broken), "-c", str(cfg))
    assert done.returncode == 2
    assert f"{broken}:" in done.stderr and "nothing imported" in done.stderr
    queue = billsync("payments", "unmatched", "-c", str(cfg))
    assert queue.returncode == 0 and "nothing to review" in queue.stdout


def test_a_statement_imported_twice_is_imported_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    good = tmp_path / "good.xml"
    good.write_bytes(statement())
    first = billsync("payments", "import", str(good), "-c", str(cfg))
    assert first.returncode == 0 and "1 lines: 0 matched, 1 to review" in first.stdout
    second = billsync("payments", "import", str(good), "-c", str(cfg))
    assert second.returncode == 0 and "already imported" in second.stdout
    queue = billsync("payments", "unmatched", "-c", str(cfg))
    assert queue.stdout.count("42.00 EUR") == 1


def test_exports_say_what_is_missing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    sepa = billsync("payments", "sepa-export", "--out", str(tmp_path / "dd.xml"), "-c", str(cfg))
    assert sepa.returncode == 2 and "sepa" in sepa.stderr.lower()
    ledger = billsync(
        "export", "ledger", "--format", "ledger-cli", "--out", str(tmp_path / "x"), "-c", str(cfg)
    )
    assert ledger.returncode == 2 and "allowed: beancount" in ledger.stderr
