"""A seeded demo company for the Salesforce sandbox: products, price books, accounts and orders.

Deterministic for a given seed and date, so demo runs and tests are repeatable. A few records are
wrong on purpose (an unsupported currency) to show the dead-letter store at work.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PRODUCTS: list[dict[str, Any]] = [
    {"ProductCode": "SETUP-FEE", "Name": "Onboarding and setup", "USD": "500.00", "EUR": "450.00"},
    {"ProductCode": "TRAINING-DAY", "Name": "Training day", "USD": "1200.00", "EUR": "1100.00"},
    {"ProductCode": "PLAT-BASIC-M", "Name": "Platform Basic (monthly)", "USD": "49.00", "EUR": "45.00"},
    {"ProductCode": "PLAT-PRO-M", "Name": "Platform Pro (monthly)", "USD": "199.00", "EUR": "179.00"},
    {"ProductCode": "SEATS-M", "Name": "Additional seat (monthly)", "USD": "12.50", "EUR": "11.50"},
    {"ProductCode": "SUPPORT-PREM-Y", "Name": "Premium support (annual)", "USD": "2400.00", "EUR": "2200.00"},
]

_US_CITIES = [
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"),
    ("Seattle", "WA", "98101"),
]
_EU_CITIES = [
    ("Berlin", None, "10115", "Germany"),
    ("Lyon", None, "69001", "France"),
    ("Utrecht", None, "3511", "Netherlands"),
]
_WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Pied Piper",
    "Aperture",
    "Black Mesa",
    "Gringotts",
    "Monarch",
    "Oscorp",
]
_SUFFIX = ["Inc.", "LLC", "GmbH", "SARL", "B.V.", "Ltd"]
_TERMS = ["Net 30", "Net 30", "Net 15", "Net 45", "Due on receipt", None]


@dataclass(frozen=True)
class DemoCompany:
    """Records per sObject, in the order they must be loaded (references point backwards)."""

    records: dict[str, list[dict[str, Any]]]
    bad_accounts: int


def _money(text: str) -> float:
    # Salesforce's JSON carries currency fields as JSON numbers; the sandbox stores what the API sends.
    return float(Decimal(text))


def build_demo_company(
    *, accounts: int = 240, orders: int = 520, today: dt.date, seed: int = 7
) -> DemoCompany:
    """Accounts (about a quarter in EUR) with orders effective over the last ~80 days.

    Ids are placeholders (``@Account:3``) that the loader swaps for the sandbox's real ids.
    """
    rng = random.Random(seed)
    records: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("Pricebook2", "Product2", "PricebookEntry", "Account", "Order", "OrderItem")
    }
    records["Pricebook2"].append({"Name": "Standard Price Book", "IsStandard": True, "IsActive": True})
    for product in PRODUCTS:
        records["Product2"].append(
            {
                "Name": product["Name"],
                "ProductCode": product["ProductCode"],
                "Description": product["Name"],
                "IsActive": True,
            }
        )
    for p_index, product in enumerate(PRODUCTS):
        for currency in ("USD", "EUR"):
            records["PricebookEntry"].append(
                {
                    "Pricebook2Id": "@Pricebook2:0",
                    "Product2Id": f"@Product2:{p_index}",
                    "UnitPrice": _money(product[currency]),
                    "CurrencyIsoCode": currency,
                    "IsActive": True,
                    "UseStandardPrice": False,
                }
            )
    currencies: list[str] = []
    for n in range(accounts):
        eur = rng.random() < 0.25
        name = f"{_WORDS[n % len(_WORDS)]} {rng.choice(_SUFFIX)} #{n + 1:04d}"
        if eur:
            city, state, postal, country = rng.choice(_EU_CITIES)
        else:
            (city, state, postal), country = rng.choice(_US_CITIES), "United States"
        currency = "EUR" if eur else "USD"
        currencies.append(currency)
        records["Account"].append(
            {
                "Name": name,
                "AccountNumber": f"CUST-{n + 1:05d}",
                "Phone": f"+1 555 {rng.randint(1000000, 9999999)}",
                "BillingStreet": f"{rng.randint(1, 999)} Market Street",
                "BillingCity": city,
                "BillingState": state,
                "BillingPostalCode": postal,
                "BillingCountry": country,
                "CurrencyIsoCode": currency,
                "Payment_Terms__c": rng.choice(_TERMS),
            }
        )
    bad = 2  # an unsupported currency: these accounts land in the dead letters, the run goes on
    for n in range(bad):
        records["Account"].append(
            {
                "Name": f"Misconfigured Test Account {n + 1}",
                "AccountNumber": f"BAD-{n + 1}",
                "CurrencyIsoCode": "XTS",
            }
        )
    item_index = 0
    for n in range(orders):
        account = rng.randrange(accounts)
        currency = currencies[account]
        effective = today - dt.timedelta(days=rng.randint(0, 80))
        records["Order"].append(
            {
                "AccountId": f"@Account:{account}",
                "Pricebook2Id": "@Pricebook2:0",
                "OrderNumber": f"{100 + n:08d}",
                "EffectiveDate": effective.isoformat(),
                "EndDate": None,
                "Status": "Activated" if rng.random() < 0.92 else "Draft",
                "CurrencyIsoCode": currency,
            }
        )
        for p_index in rng.sample(range(len(PRODUCTS)), rng.randint(1, 3)):
            product = PRODUCTS[p_index]
            quantity = rng.randint(5, 40) if product["ProductCode"] == "SEATS-M" else rng.randint(1, 3)
            list_price = Decimal(product[currency])
            price = (
                (list_price * Decimal("0.90")).quantize(Decimal("0.01"))
                if rng.random() < 0.15
                else list_price
            )
            records["OrderItem"].append(
                {
                    "OrderId": f"@Order:{n}",
                    "Product2Id": f"@Product2:{p_index}",
                    "PricebookEntryId": f"@PricebookEntry:{p_index * 2 + (1 if currency == 'EUR' else 0)}",
                    "Quantity": float(quantity),
                    "UnitPrice": _money(str(price)),
                    "Description": product["Name"],
                }
            )
            item_index += 1
    return DemoCompany(records=records, bad_accounts=bad)


def resolve_placeholders(record: dict[str, Any], ids: dict[str, list[str]]) -> dict[str, Any]:
    """Swap ``@Type:index`` placeholders for the ids the sandbox assigned."""
    out = {}
    for key, value in record.items():
        if isinstance(value, str) and value.startswith("@") and ":" in value:
            sobject, index = value[1:].split(":")
            value = ids[sobject][int(index)]
        out[key] = value
    return out
