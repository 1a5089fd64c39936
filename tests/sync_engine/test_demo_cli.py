"""The acceptance run of `billsync demo --json`, as a newcomer would type it, twice in one workdir."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

pytestmark = pytest.mark.integration
BILLSYNC = Path(sys.executable).parent / "billsync"


def demo(workdir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(BILLSYNC), "demo", "--json", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_demo_pushes_every_invoice_once_and_a_second_run_pushes_nothing(tmp_path: Path) -> None:
    first = demo(tmp_path)
    assert first["accounts_pulled"] >= 200 and first["orders_pulled"] >= 500
    assert first["invoices_in_quickbooks"] == first["invoices_created"] > 0
    assert first["duplicate_invoices_in_quickbooks"] == 0
    assert set(first["api_calls"]) == {"salesforce", "quickbooks", "erp"}
    assert first["invoices_in_erp"] == first["invoices_created"] and first["duplicate_invoices_in_erp"] == 0
    assert first["invoice_statuses_in_crm"] == first["invoices_created"]
    assert first["duplicate_invoice_statuses_in_crm"] == 0
    assert set(first["invoice_totals"]) == {"USD", "EUR"}
    # payments from every source; paid status counted back through each system's API
    sources = first["payments_recorded"]
    assert sources["quickbooks"] > 0 and sources["stripe"] > 0 and sources["bank"] > 0
    assert first["invoices_paid"] > 0 and first["invoices_partially_paid"] > 0
    assert first["invoices_overdue"] > 0 and first["reminders_sent"] > 0
    assert first["reminders_delivered_to_smtp"] == first["reminders_sent"]
    # every invoice e-mailed once, except to the addresses that bounce (dead letters) or are missing
    # (printed); the bad and missing ones are counted from the customer records, not from delivery
    assert first["invoices_finalised"] == first["invoices_created"]
    bad, missing = first["invoices_with_bad_address"], first["invoices_without_address"]
    assert bad > 0 and missing > 0
    assert first["invoices_delivered"] == first["invoices_finalised"] - bad - missing
    assert first["deliveries_failed"] == bad
    assert first["invoices_to_print"] == missing
    assert first["invoice_mails_received"] == first["invoices_delivered"]
    assert first["duplicate_invoice_mails"] == 0
    assert first["dead_letters"] == 2 + bad  # the two accounts broken on purpose, and the bounces
    (print_file,) = first["print_files"]
    assert len(PdfReader(print_file).pages) >= missing
    # customers who asked for e-invoices got them, each file validated before it went
    assert set(first["invoices_delivered_by_format"]) == {"pdf", "peppol", "xrechnung", "facturx"}
    # every invoice and credit note of the demo, in every format, passed the official rules ...
    documents = first["invoices_finalised"] + first["credit_notes_issued"]
    assert first["credit_notes_issued"] == first["credit_notes_delivered"] == 3
    assert first["einvoice_files"] == {f: documents for f in ("cii", "facturx", "peppol", "ubl", "xrechnung")}
    assert first["einvoices_invalid"] == 0
    # ... and `billsync invoices validate` agrees, file by file
    files = sorted(str(p) for p in (tmp_path / "einvoices").iterdir())
    checked = subprocess.run(
        [str(BILLSYNC), "invoices", "validate", *files], capture_output=True, text=True, timeout=600
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert f"{len(files)} files: {len(files)} valid, 0 invalid" in checked.stdout
    assert first["statement_lines_unmatched"] == 3  # the demo's unknown payers
    assert first["webhooks_refused"] == 2  # a forged event and an exact replay
    paid = first["invoices_paid"]
    assert first["paid_status_in_quickbooks"] == first["paid_status_in_erp"] == paid
    assert first["paid_status_in_salesforce"] == paid
    assert first["ledger_check"] == "ok"
    bean_check = Path(sys.executable).with_name("bean-check")
    checked = subprocess.run([str(bean_check), first["ledger"]], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # API budget: Salesforce one page per object (< 2,000 records each) + login;
    # QuickBooks one batch per 30 records of each entity + the token refresh.
    # (+ the invoice statuses written back: sObject collections of up to 200 records)
    assert first["api_calls"]["salesforce"] <= 5 + 1 + math.ceil(first["invoices_created"] / 200)
    pushed = first["pushed_to_quickbooks"]
    batches = sum(math.ceil(n / 30) for n in pushed.values())
    assert first["api_calls"]["quickbooks"] <= batches + 2
    assert math.ceil(pushed["invoice"] / 30) <= batches

    second = demo(tmp_path)
    assert second["reused_workdir"] is True
    assert second["invoices_created"] == 0
    assert second["pushed_to_quickbooks"] == {}
    assert second["invoices_in_quickbooks"] == first["invoices_in_quickbooks"]
    assert second["duplicate_invoices_in_quickbooks"] == 0
    assert second["invoices_in_erp"] == first["invoices_in_erp"] and second["pushed_to_erp"] == {}
    # nothing paid, reminded or imported twice
    for key in ("payments_recorded", "invoices_paid", "reminders_sent", "statement_lines_unmatched"):
        assert second[key] == first[key], key
    assert second["paid_status_in_quickbooks"] == first["paid_status_in_quickbooks"]
    # nothing delivered or printed twice
    assert second["invoice_mails_received"] == 0
    assert second["invoices_delivered"] == first["invoices_delivered"]
    assert second["print_files"] == first["print_files"]
    assert second["einvoice_files"] == first["einvoice_files"] and second["credit_notes_issued"] == 3


def test_demo_with_faults_still_delivers_every_invoice_once_to_both_systems(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BILLSYNC), "demo", "--json", "--faults", "0.1", "--seed", "5", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["invoices_in_quickbooks"] == summary["invoices_in_erp"] == summary["invoices_created"] > 0
    assert summary["duplicate_invoices_in_quickbooks"] == summary["duplicate_invoices_in_erp"] == 0
    # the two accounts the demo data makes invalid on purpose, and the invoices whose address bounces
    assert summary["dead_letters"] == 2 + summary["deliveries_failed"]
    assert summary["deliveries_failed"] == summary["invoices_with_bad_address"] > 0
    assert summary["invoice_mails_received"] == summary["invoices_delivered"]
    assert sum(sum(kinds.values()) for kinds in summary["faults_injected"].values()) > 0
    # payments too: each paid invoice is paid once in every system, however often calls failed
    paid = summary["invoices_paid"]
    assert paid > 0
    assert summary["paid_status_in_quickbooks"] == summary["paid_status_in_erp"] == paid
    assert summary["paid_status_in_salesforce"] == paid
    assert summary["ledger_check"] == "ok"
