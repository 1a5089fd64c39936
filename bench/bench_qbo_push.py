"""QuickBooks Online API calls per 1,000 invoices pushed, against a naive per-record script.

Scenario: 1,000 customers (each with one subscription order billed this month) are pulled from the
Salesforce sandbox and billed, which makes 1,000 invoices. Customers and items are pushed first (as
an earlier run would have), then the 1,000 invoices are pushed; the calls of that push are counted by
the QBO sandbox's own counter (token refreshes included). billsync sends them as batches of 30.

Baseline, in the same harness and against the same sandbox: the script a developer writes with
python-quickbooks, one record at a time: for each invoice, find its customer by DisplayName (create it
if missing), find each line's item by Name (create it if missing), create the invoice. The customers
and items exist already, so it never creates one: its count is the lowest such a script can reach.
Its invoices get other DocNumbers (``N-...``), so both copies live side by side.

Goal (issue 8): at most 35 calls per 1,000 invoices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import TODAY, Result, emit, in_workdir, result, write_config
from bench.company import seed_company
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.cycle import run_cycle
from sync_engine.push import push_destination
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import CanonicalRecord, Invoice

INVOICES = 1000
GOAL = 35


def naive_push(qb: Any, invoices: list[dict[str, Any]]) -> None:
    """One call per lookup and per write, as the python-quickbooks README shows them."""
    from quickbooks.objects.customer import Customer
    from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
    from quickbooks.objects.invoice import Invoice as QboInvoice
    from quickbooks.objects.item import Item

    for doc in invoices:
        found = Customer.filter(DisplayName=doc["customer"], qb=qb)
        if found:
            customer = found[0]
        else:
            customer = Customer()
            customer.DisplayName = doc["customer"]
            customer.save(qb=qb)
        invoice = QboInvoice()
        invoice.DocNumber = f"N-{doc['number']}"
        invoice.CustomerRef = customer.to_ref()
        for line in doc["lines"]:
            items = Item.filter(Name=line["item"], qb=qb)
            if items:
                item = items[0]
            else:
                item = Item()
                item.Name, item.Type = line["item"], "Service"
                item.save(qb=qb)
            detail = SalesItemLineDetail()
            detail.ItemRef = item.to_ref()
            detail.Qty, detail.UnitPrice = line["quantity"], line["unit_price"]
            row = SalesItemLine()
            row.Amount, row.Description, row.SalesItemLineDetail = line["amount"], line["item"], detail
            invoice.Line.append(row)
        invoice.save(qb=qb)


def naive_client(runtime: Runtime) -> Any:
    """A plain python-quickbooks client on the same company and access token (none of billsync's
    pacing, batching or retries)."""
    from quickbooks import QuickBooks
    from requests_oauthlib import OAuth2Session

    connector = runtime.quickbooks("quickbooks")
    settings = connector.settings
    session = OAuth2Session(
        settings.client_id, token={"access_token": connector.tokens.access_token(), "token_type": "Bearer"}
    )
    session.verify = str(settings.ca_file)
    session.trust_env = False
    qb = QuickBooks(company_id=settings.company_id, minorversion=settings.minorversion, use_decimal=True)
    qb.session = session
    qb.sandbox = True
    qb.api_url_v3 = qb.sandbox_api_url_v3 = connector.qb.api_url_v3
    return qb


def naive_input(runtime: Runtime) -> list[dict[str, Any]]:
    """The stored invoices as the naive script would read them: names, numbers, line amounts."""
    with runtime.sessions() as session:
        data = {r.id: r.data for r in session.scalars(select(CanonicalRecord))}
        products = {d["code"]: d["name"] for d in data.values() if "code" in d}
        return [
            {
                "customer": data[inv.customer_id]["name"],
                "number": inv.number,
                "lines": [
                    {
                        "item": products[str(line.product_code)],
                        "quantity": line.quantity,
                        "unit_price": line.unit_price,
                        "amount": line.amount,
                    }
                    for line in inv.lines
                ],
            }
            for inv in session.scalars(select(Invoice).order_by(Invoice.number))
        ]


def run() -> list[Result]:
    return in_workdir("qbo", _run)


def _run(workdir: Path) -> list[Result]:
    with SalesforceSandbox(cert_dir=workdir) as sf, QuickBooksSandbox(cert_dir=workdir) as qbo:
        expected = seed_company(sf, accounts=INVOICES, today=TODAY)
        full = write_config(workdir, sf, qbo)
        refs = write_config(workdir, sf, qbo, qbo_entities=("customer", "product"), name="refs.yaml")
        settings = load_settings(full)
        upgrade_database(settings.database_url)
        runtime = Runtime(settings)
        refs_runtime = Runtime(load_settings(refs))
        try:
            cycle = run_cycle(runtime, as_of=TODAY, steps=("pull", "bill"))
            assert cycle.bill is not None and cycle.bill.invoices_created == expected == INVOICES
            push_destination(refs_runtime, refs_runtime.settings.destinations[0])  # customers, items
            assert qbo.count("Invoice") == 0
            before = qbo.calls
            pushed = push_destination(runtime, settings.destinations[0])
            ours = qbo.calls - before
            assert pushed.sent.get("invoice") == INVOICES and qbo.count("Invoice") == INVOICES, pushed

            documents = naive_input(runtime)
            before = qbo.calls
            naive_push(naive_client(runtime), documents)
            naive = qbo.calls - before
            assert qbo.count("Invoice") == 2 * INVOICES
        finally:
            runtime.close()
            refs_runtime.close()
    return [
        result(
            "QBO: API calls per 1,000 invoices pushed",
            f"<= {GOAL}",
            ours,
            naive,
            "calls (baseline: python-quickbooks one record at a time)",
            ours <= GOAL,
        )
    ]


if __name__ == "__main__":
    emit(run())
