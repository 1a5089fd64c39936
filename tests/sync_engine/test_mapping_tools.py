"""`billsync mappings check` and `billsync mappings preview`, as an IT admin uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mappings.spec import SpecError, load_spec_text
from sync_engine.cli import app
from sync_engine.cycle import run_cycle
from sync_engine.mapping_tools import fetch_records, preview_lookups, preview_records
from sync_engine.schemas import schema_for
from sync_engine.store.models import CanonicalRecord
from tests.sync_engine.company import TODAY, Company

ACCOUNT = """\
billsync_mapping: 1
system: salesforce
object: Account
entity: customer
direction: inbound
key: Id
fields:
  name: {from: Name, ops: [trim], required: true}
  currency: {from: CurrencyIsoCode, default: USD}
  billing_address.city: BillingCity
  lines_placeholder_unused: {const: 1}
"""
GOOD = ACCOUNT.replace("  lines_placeholder_unused: {const: 1}\n", "")


def only_problem(text: str) -> tuple[int | None, str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "spec.yaml", schema_for)
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    return problem.line, str(problem)


def test_the_shipped_specs_pass_the_check_against_vendor_schemas() -> None:
    result = CliRunner().invoke(app, ["mappings", "check", "-c", "/nonexistent/billsync.yaml"])
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output


def test_a_misspelt_source_field_is_one_error_with_a_suggestion() -> None:
    line, message = only_problem(GOOD.replace("BillingCity", "BillingCty"))
    assert line == 10 and "did you mean BillingCity?" in message


def test_an_unknown_transform_is_one_error() -> None:
    line, message = only_problem(GOOD.replace("ops: [trim]", "ops: [titlecase]"))
    assert line == 8 and "unknown operation 'titlecase'" in message


def test_a_value_of_the_wrong_type_is_one_error() -> None:
    line, message = only_problem(GOOD.replace("default: USD", "default: 12"))
    assert line == 9 and "default 12 is not a valid string" in message


def test_bad_indentation_is_one_syntax_error_with_its_line() -> None:
    line, message = only_problem(
        GOOD.replace("  billing_address.city: BillingCity", "   billing_address.city: BillingCity")
    )
    assert line == 10 and "(syntax)" in message


def test_a_duplicate_key_is_one_error() -> None:
    line, message = only_problem(GOOD + "  currency: {const: EUR}\n")
    assert line == 11 and "written twice (first on line 9)" in message


def test_a_line_item_mapping_without_a_source_array_is_one_error() -> None:
    text = (
        "billsync_mapping: 1\nsystem: quickbooks\nobject: Invoice\nentity: invoice\ndirection: outbound\n"
        "match_on: DocNumber\nfields:\n  DocNumber: number\n  CustomerRef.value: customer_id\n"
        "  Line:\n    fields:\n      Amount: amount\n"
    )
    line, message = only_problem(text)
    assert line == 10 and "add each: naming the source list" in message


def test_check_reports_every_problem_in_every_file_and_exits_2(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD.replace("BillingCity", "BillingCty"))
    second.write_text(GOOD.replace("ops: [trim]", "ops: [titlecase]"))
    result = CliRunner().invoke(app, ["mappings", "check", str(first), str(second)])
    assert result.exit_code == 2
    assert f"{first}:10:" in result.output and f"{second}:8:" in result.output
    assert "2 problem(s) in 2 spec(s)" in result.output


def test_preview_of_a_json_file_shows_output_and_per_record_errors_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "account.in.yaml"
    spec.write_text(GOOD)
    records = tmp_path / "accounts.json"
    records.write_text(json.dumps([{"Id": "001A", "Name": " Acme ", "BillingCity": "Lyon"}, {"Id": "001B"}]))
    result = CliRunner().invoke(
        app,
        [
            "mappings",
            "preview",
            str(spec),
            "--input",
            str(records),
            "--json",
            "-c",
            str(tmp_path / "none.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["output"] == {
        "name": "Acme",
        "currency": "USD",
        "billing_address": {"city": "Lyon"},
        "active": True,
    }
    assert rows[1]["output"] is None and rows[1]["errors"] == [
        "name: is required but the source has no value"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["account.in.yaml", "accounts.json"]


@pytest.mark.integration
def test_preview_from_the_sandbox_shows_what_the_sync_then_stores(company: Company) -> None:
    settings = company.runtime.settings
    spec = company.runtime.spec("builtin:salesforce/order.in")
    run_cycle(company.runtime, as_of=TODAY, steps=("pull",))
    records = fetch_records(settings, "salesforce", spec, limit=25)
    with preview_lookups(settings, spec, "salesforce") as lookups:
        rows = preview_records(spec, records, lookups)
    with company.runtime.sessions() as session:
        stored = {
            r.data["number"]: r.data
            for r in session.scalars(select(CanonicalRecord).where(CanonicalRecord.entity == "order"))
        }
    assert len(rows) == 25
    for row in rows:
        assert row.output is not None and row.output == stored[row.output["number"]]


@pytest.mark.integration
def test_preview_can_read_live_records_from_quickbooks_too(company: Company, tmp_path: Path) -> None:
    run_cycle(company.runtime, as_of=TODAY)
    spec_file = tmp_path / "qbo-customer.in.yaml"
    spec_file.write_text(
        "billsync_mapping: 1\nsystem: quickbooks\nobject: Customer\nentity: customer\ndirection: inbound\nkey: Id\n"
        "fields:\n  name: {from: DisplayName, required: true}\n  currency: {from: CurrencyRef.value, default: USD}\n"
    )
    spec = load_spec_text(spec_file.read_text(), str(spec_file), schema_for)
    records = fetch_records(company.runtime.settings, "quickbooks", spec, limit=7)
    rows = preview_records(spec, records)
    names = {c["DisplayName"] for c in company.qbo.entities("Customer")}
    assert len(rows) == 7 and all(row.output and row.output["name"] in names for row in rows)


def test_outbound_specs_are_checked_against_the_erp_wsdl_types_and_enumerations() -> None:
    text = (
        "billsync_mapping: 1\nsystem: nav\nobject: PaymentStatus\nentity: invoice_status\ndirection: outbound\n"
        "match_on: invoiceNo\nfields:\n  invoiceNo: number\n  status: {from: status, map: {paid: Settled}}\n"
        "  currencyCode: currency\n  amountPaid: {from: amount_paid, cast: date}\n  amountDue: amount_due\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "status.yaml", schema_for)
    messages = [str(p) for p in caught.value.problems]
    assert any(
        "'Settled' is not a value PaymentStatus.status accepts" in m and "Partially Paid" in m
        for m in messages
    )
    assert any("cast date, but PaymentStatus.amountPaid is a decimal" in m for m in messages)
    assert len(messages) == 2
