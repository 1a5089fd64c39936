"""Support staff's tools: dead letters replayed after a fix, one-record resyncs, runs and status."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sync_engine.cli import app
from sync_engine.cycle import run_cycle
from sync_engine.support import (
    LetterFilter,
    find_letters,
    replay_letters,
    resync_customer,
    resync_record,
    status,
)
from tests.sync_engine.company import TODAY, Company

pytestmark = pytest.mark.integration


def add_order_for_new_product(company: Company) -> str:
    [product] = company.sf.add_records(
        "Product2", [{"Name": "Widget XL", "ProductCode": "WIDGET-XL", "IsActive": True}]
    )
    account = next(a for a in company.sf.records("Account") if a.get("CurrencyIsoCode") == "USD")
    [order] = company.sf.add_records(
        "Order",
        [
            {
                "AccountId": account["Id"],
                "Status": "Activated",
                "EffectiveDate": "2026-11-20",
                "CurrencyIsoCode": "USD",
            }
        ],
    )
    company.sf.add_records(
        "OrderItem", [{"OrderId": order, "Product2Id": product, "Quantity": 2.0, "UnitPrice": 75.0}]
    )
    return order


def test_an_order_for_an_unknown_product_is_delivered_after_the_catalog_is_fixed(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY)
    invoices_before = company.qbo.count("Invoice")
    order = add_order_for_new_product(company)
    result = run_cycle(company.runtime, as_of=TODAY)
    assert result.bill is not None and result.bill.invoices_created == 0
    [letter] = find_letters(company.runtime, LetterFilter(stream="billing"))
    assert "WIDGET-XL" in letter.error and letter.external_id and letter.external_id.startswith("ord_")
    assert order  # the Salesforce order became canonical order letter.external_id

    catalog = company.runtime.settings.catalog
    data = yaml.safe_load(catalog.read_text())
    data["products"].append(
        {"code": "WIDGET-XL", "name": "Widget XL", "billing_model": "one_time", "prices": {"USD": "80.00"}}
    )
    catalog.write_text(yaml.safe_dump(data))
    runtime = company.fresh_runtime()  # a new process reads the new catalog
    replayed = replay_letters(runtime, LetterFilter(stream="billing"), "support@example.com", TODAY)
    assert replayed.resolved == 1 and replayed.still_failing == 0
    assert company.qbo.count("Invoice") == invoices_before + 1
    assert not find_letters(runtime, LetterFilter(stream="billing"))


def test_resyncing_one_record_calls_the_apis_only_for_that_record(company: Company) -> None:
    run_cycle(company.runtime, as_of=TODAY)
    account = next(a for a in company.sf.records("Account") if a.get("CurrencyIsoCode") == "USD")
    sf_before, qbo_before = company.sf.calls, company.qbo.calls
    result = resync_record(company.runtime, "salesforce", "Account", account["Id"], "support@example.com")
    assert result.read == 1 and result.written == 1
    assert company.sf.calls - sf_before == 1  # one GET of that Account
    run_cycle(company.runtime, as_of=TODAY, steps=("push",))
    assert company.qbo.calls - qbo_before == 1  # one batch holding that customer's update
    runs = status(company.runtime)["last_runs"]
    assert (
        runs["sf-account"]["kind"] == "resync"
        and runs["sf-account"]["counts"]["requested_by"] == "support@example.com"
    )


def test_the_cli_lists_shows_and_discards_dead_letters(company: Company, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the CLI reads billsync.yaml, which points at the SQLite file")
    run_cycle(company.runtime, as_of=TODAY)
    config = str(company.runtime.settings.source)
    runner = CliRunner()
    listed = runner.invoke(app, ["dead-letters", "list", "--json", "-c", config])
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)
    assert len(letters) == 2 and {d["error_type"] for d in letters} == {"ValidationError"}
    shown = runner.invoke(app, ["dead-letters", "show", str(letters[0]["id"]), "-c", config])
    assert json.loads(shown.output)["payload"]["CurrencyIsoCode"] == "XTS"
    discarded = runner.invoke(
        app, ["dead-letters", "discard", "--stream", "sf-account", "--by", "ann", "-c", config]
    )
    assert "discarded 2" in discarded.output
    assert json.loads(runner.invoke(app, ["dead-letters", "list", "--json", "-c", config]).output) == []
    runs = json.loads(runner.invoke(app, ["runs", "--json", "-c", config]).output)
    assert runs[0]["kind"] == "discard" and runs[0]["counts"]["requested_by"] == "ann"


def test_resyncing_a_customer_brings_its_orders_and_lines_in_three_calls(company: Company) -> None:
    from collections import Counter

    run_cycle(company.runtime, as_of=TODAY)
    orders = company.sf.records("Order")
    account_id = Counter(o["AccountId"] for o in orders).most_common(1)[0][0]
    own_orders = {o["Id"] for o in orders if o["AccountId"] == account_id}
    own_lines = [i for i in company.sf.records("OrderItem") if i["OrderId"] in own_orders]
    before = company.sf.calls
    results = resync_customer(company.runtime, "salesforce", account_id, "support@example.com")
    read = {r.stream: r.read for r in results}
    assert read == {"sf-account": 1, "sf-order": len(own_orders), "sf-orderitem": len(own_lines)}
    assert company.sf.calls - before == 3  # the account, its orders, their lines
