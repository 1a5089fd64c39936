"""A Salesforce company shaped for the benchmarks: N accounts, each with one activated order of one
or two subscription lines this month, so a billing run makes exactly one invoice per account."""

from __future__ import annotations

import datetime as dt
from typing import Any

from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo_data import PRODUCTS, build_demo_company, resolve_placeholders

#: The demo catalog's monthly subscriptions (index into PRODUCTS).
SUBSCRIPTIONS = [i for i, p in enumerate(PRODUCTS) if p["ProductCode"].endswith("-M")]


def seed_company(
    sf: SalesforceSandbox, *, accounts: int, today: dt.date, lines: int = 1, orders: bool = True
) -> int:
    """Load the company into the sandbox; returns how many invoices a billing run will make."""
    company = build_demo_company(accounts=accounts, orders=0, today=today)
    records: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in company.records.items()}
    records["Account"] = records["Account"][:accounts]  # without the demo's accounts broken on purpose
    billable = 0
    if orders:
        for n, account in enumerate(records["Account"][:accounts]):
            currency = str(account["CurrencyIsoCode"])
            records["Order"].append(
                {
                    "AccountId": f"@Account:{n}",
                    "Pricebook2Id": "@Pricebook2:0",
                    "OrderNumber": f"{n + 1:08d}",
                    "EffectiveDate": (today.replace(day=1) + dt.timedelta(days=n % 14)).isoformat(),
                    "EndDate": None,
                    "Status": "Activated",
                    "CurrencyIsoCode": currency,
                }
            )
            for k in range(lines):
                p_index = SUBSCRIPTIONS[(n + k) % len(SUBSCRIPTIONS)]
                product = PRODUCTS[p_index]
                records["OrderItem"].append(
                    {
                        "OrderId": f"@Order:{n}",
                        "Product2Id": f"@Product2:{p_index}",
                        "PricebookEntryId": f"@PricebookEntry:{p_index * 2 + (1 if currency == 'EUR' else 0)}",
                        "Quantity": float(1 + n % 5),
                        "UnitPrice": float(product[currency]),
                        "Description": product["Name"],
                    }
                )
            billable += 1
    ids: dict[str, list[str]] = {}
    for sobject, rows in records.items():
        ids[sobject] = sf.add_records(sobject, [resolve_placeholders(r, ids) for r in rows])
    return billable
