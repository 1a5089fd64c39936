"""Payment status written back to Account and Order, and the payment profile an Account holds, in the
Salesforce sandbox: the custom fields exist (describe), default to null, are set by the seed path, by
single PATCH and by sObject Collections updates (``PATCH composite/sobjects``), are validated on every
write path like the org validates them, and read back with SOQL through simple-salesforce.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.retry import RetryPolicy
from connectors.salesforce.client import SalesforceConnector, encode_json
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.salesforce.schema import (
    CUSTOM_FIELDS,
    PAYMENT_METHOD_VALUES,
    PAYMENT_STATUS_VALUES,
    object_fields,
)
from tests.connectors.salesforce.conftest import make_settings

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=dt.UTC)
STATUS_FIELDS = ("Payment_Status__c", "Balance__c", "Last_Payment_Date__c", "Overdue_Amount__c")
PROFILE_FIELDS = (
    "Billing_Email__c",
    "Payment_Method__c",
    "Stripe_Customer_Id__c",
    "IBAN__c",
    "BIC__c",
    "SEPA_Mandate_Id__c",
    "SEPA_Mandate_Date__c",
    "Dunning_Group__c",
    "Invoice_Delivery__c",
    "Invoice_Language__c",
    "Invoice_Format__c",
    "VAT_Number__c",
    "Buyer_Reference__c",
    "E_Invoice_Address__c",
    "E_Invoice_Scheme__c",
)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def sf(shared_sandbox: SalesforceSandbox, clock: Clock) -> SalesforceSandbox:
    shared_sandbox.reset()
    shared_sandbox.now = clock
    return shared_sandbox


@pytest.fixture
def connector(sf: SalesforceSandbox) -> SalesforceConnector:
    settings = make_settings(
        username=sf.username,
        password=sf.password,
        security_token=sf.security_token,
        login_url=sf.base_url,
        ca_file=str(sf.cert_file),
    )
    return SalesforceConnector(settings, retry=RetryPolicy(sleep=lambda seconds: None))


def update_collection(connector: SalesforceConnector, records: list[dict[str, Any]], **options: Any) -> Any:
    """``PATCH composite/sobjects`` through simple-salesforce (records carry ``attributes.type`` and Id)."""
    body = encode_json({"allOrNone": False, **options, "records": records})
    return connector.client.restful("composite/sobjects", method="PATCH", data=body)


def sobject(connector: SalesforceConnector, name: str) -> SFType:
    """simple-salesforce's ``sf.<name>`` (its attribute access is typed loosely)."""
    return cast(SFType, getattr(connector.client, name))


def soql(connector: SalesforceConnector, statement: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = connector.client.query_all(statement)["records"]
    return [{k: v for k, v in record.items() if k != "attributes"} for record in records]


@pytest.fixture
def crm(sf: SalesforceSandbox) -> dict[str, str]:
    """Two accounts (one with a payment profile, seeded), an order of each."""
    acme, bare = sf.add_records(
        "Account",
        [
            {
                "Name": "Acme GmbH",
                "Billing_Email__c": "ap@acme.example",
                "Payment_Method__c": "Direct Debit",
                "Stripe_Customer_Id__c": "cus_Q4mLx9",
                "IBAN__c": "DE89370400440532013000",
                "BIC__c": "COBADEFFXXX",
                "SEPA_Mandate_Id__c": "ACME-MANDATE-0001",
                "SEPA_Mandate_Date__c": "2026-01-15",
                "Dunning_Group__c": "Standard",
            },
            {"Name": "Bare Ltd"},
        ],
    )
    orders = sf.add_records(
        "Order",
        [
            {"AccountId": acme, "Status": "Activated", "EffectiveDate": "2026-11-01"},
            {"AccountId": bare, "Status": "Activated", "EffectiveDate": "2026-11-02"},
        ],
    )
    return {"acme": acme, "bare": bare, "acme_order": orders[0], "bare_order": orders[1]}


def test_describe_shows_the_payment_fields_with_their_types_and_picklists(
    sf: SalesforceSandbox, connector: SalesforceConnector
) -> None:
    account = {f["name"]: f for f in sobject(connector, "Account").describe()["fields"]}
    order = {f["name"]: f for f in sobject(connector, "Order").describe()["fields"]}

    assert {name: account[name]["type"] for name in (*STATUS_FIELDS, *PROFILE_FIELDS)} == {
        "Payment_Status__c": "picklist",
        "Balance__c": "currency",
        "Last_Payment_Date__c": "date",
        "Overdue_Amount__c": "currency",
        "Billing_Email__c": "email",
        "Payment_Method__c": "picklist",
        "Stripe_Customer_Id__c": "string",
        "IBAN__c": "string",
        "BIC__c": "string",
        "SEPA_Mandate_Id__c": "string",
        "SEPA_Mandate_Date__c": "date",
        "Dunning_Group__c": "string",
        "Invoice_Delivery__c": "picklist",
        "Invoice_Language__c": "string",
        "Invoice_Format__c": "picklist",
        "VAT_Number__c": "string",
        "Buyer_Reference__c": "string",
        "E_Invoice_Address__c": "string",
        "E_Invoice_Scheme__c": "string",
    }
    assert {name: order[name]["type"] for name in STATUS_FIELDS} == {
        name: account[name]["type"] for name in STATUS_FIELDS
    }
    assert not set(PROFILE_FIELDS) & set(order)
    status = account["Payment_Status__c"]
    assert status["restrictedPicklist"] and status["nillable"] and status["custom"]
    assert [v["value"] for v in status["picklistValues"]] == list(PAYMENT_STATUS_VALUES)
    assert {"Open", "Partially Paid", "Paid", "Overdue"} <= set(PAYMENT_STATUS_VALUES)
    assert [v["value"] for v in account["Payment_Method__c"]["picklistValues"]] == list(PAYMENT_METHOD_VALUES)
    assert (account["IBAN__c"]["length"], account["BIC__c"]["length"]) == (34, 11)
    assert [v["value"] for v in account["Invoice_Delivery__c"]["picklistValues"]] == ["Email", "Post"]
    assert account["Name"]["picklistValues"] == [] and not account["Name"]["restrictedPicklist"]


def test_the_mapping_schema_knows_the_fields(sf: SalesforceSandbox) -> None:
    assert set(CUSTOM_FIELDS["Order"]) == set(STATUS_FIELDS)
    account = object_fields("Account")
    assert account is not None and account["Payment_Status__c"] == "picklist"
    assert account["SEPA_Mandate_Date__c"] == "date" and account["Name"] == "string"


def test_seeded_profiles_read_back_with_soql_and_default_to_null(
    crm: dict[str, str], connector: SalesforceConnector
) -> None:
    rows = soql(
        connector, f"SELECT Id, Name, {', '.join(PROFILE_FIELDS + STATUS_FIELDS)} FROM Account ORDER BY Name"
    )

    acme, bare = rows
    assert acme["IBAN__c"] == "DE89370400440532013000" and acme["BIC__c"] == "COBADEFFXXX"
    assert acme["Payment_Method__c"] == "Direct Debit" and acme["SEPA_Mandate_Date__c"] == "2026-01-15"
    assert acme["Stripe_Customer_Id__c"] == "cus_Q4mLx9" and acme["Billing_Email__c"] == "ap@acme.example"
    assert all(acme[name] is None for name in STATUS_FIELDS)
    assert all(bare[name] is None for name in PROFILE_FIELDS + STATUS_FIELDS)
    direct_debit = soql(
        connector,
        "SELECT Name FROM Account WHERE Payment_Method__c = 'Direct Debit' AND SEPA_Mandate_Date__c < 2026-02-01",
    )
    assert direct_debit == [{"Name": "Acme GmbH"}]
    assert soql(connector, "SELECT Name FROM Account WHERE IBAN__c = null") == [{"Name": "Bare Ltd"}]


def test_statuses_written_back_in_one_collection_update_are_visible_to_soql(
    sf: SalesforceSandbox, clock: Clock, crm: dict[str, str], connector: SalesforceConnector
) -> None:
    clock.now = T0 + dt.timedelta(hours=1)
    results = update_collection(
        connector,
        [
            {
                "attributes": {"type": "Account"},
                "Id": crm["acme"],
                "Payment_Status__c": "Overdue",
                "Balance__c": Decimal("1250.10"),
                "Overdue_Amount__c": Decimal("250.10"),
                "Last_Payment_Date__c": "2026-11-20",
            },
            {
                "attributes": {"type": "Order"},
                "Id": crm["acme_order"],
                "Payment_Status__c": "Partially Paid",
                "Balance__c": Decimal("99.99"),
            },
            {
                "attributes": {"type": "Order"},
                "Id": crm["bare_order"][:15],  # a 15-character Id works as well
                "Payment_Status__c": "Paid",
                "Balance__c": Decimal("0"),
            },
        ],
    )

    assert results == [
        {"id": crm["acme"], "success": True, "errors": []},
        {"id": crm["acme_order"], "success": True, "errors": []},
        {"id": crm["bare_order"], "success": True, "errors": []},
    ]
    account = soql(
        connector,
        "SELECT Payment_Status__c, Balance__c, Overdue_Amount__c, Last_Payment_Date__c, SystemModstamp "
        f"FROM Account WHERE Id = '{crm['acme']}'",
    )[0]
    assert account["Payment_Status__c"] == "Overdue" and account["Balance__c"] == Decimal("1250.10")
    assert account["Overdue_Amount__c"] == Decimal("250.10")
    assert account["Last_Payment_Date__c"] == "2026-11-20"
    assert account["SystemModstamp"].startswith("2026-11-25T09:00:00")
    overdue_or_partial = soql(
        connector,
        "SELECT Id FROM Order WHERE Payment_Status__c IN ('Partially Paid', 'Overdue') AND Balance__c > 50",
    )
    assert overdue_or_partial == [{"Id": crm["acme_order"]}]
    paid = soql(connector, "SELECT Id, Balance__c FROM Order WHERE Payment_Status__c = 'Paid'")
    assert paid == [{"Id": crm["bare_order"], "Balance__c": Decimal("0")}]


def test_a_collection_update_refuses_bad_records_one_by_one(
    sf: SalesforceSandbox, crm: dict[str, str], connector: SalesforceConnector
) -> None:
    missing = crm["acme"][:-6] + "ZZZZZZ"
    results = update_collection(
        connector,
        [
            {"attributes": {"type": "Account"}, "Id": crm["acme"], "Payment_Status__c": "Paid"},
            {"attributes": {"type": "Account"}, "Id": crm["bare"], "Payment_Status__c": "Settled"},
            {"attributes": {"type": "Order"}, "Id": crm["acme_order"], "Paid_Amount__c": Decimal("1")},
            {"attributes": {"type": "Order"}, "Id": crm["bare_order"], "Balance__c": "12.50"},
            {"attributes": {"type": "Order"}, "Payment_Status__c": "Paid"},
            {"attributes": {"type": "Order"}, "Id": crm["acme"], "Payment_Status__c": "Paid"},
            {"attributes": {"type": "Account"}, "Id": missing, "Payment_Status__c": "Paid"},
            {"attributes": {"type": "Account"}, "Id": crm["bare"], "Billing_Email__c": "not-an-address"},
        ],
    )

    codes = [None if r["success"] else r["errors"][0]["statusCode"] for r in results]
    assert codes == [
        None,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "INVALID_FIELD",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "MISSING_ARGUMENT",
        "MALFORMED_ID",
        "INVALID_CROSS_REFERENCE_KEY",
        "INVALID_EMAIL_ADDRESS",
    ]
    assert results[1]["errors"][0] == {
        "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "message": "Payment Status: bad value for restricted picklist field: Settled",
        "fields": ["Payment_Status__c"],
    }
    statuses = {
        r["Id"]: r["Payment_Status__c"] for r in soql(connector, "SELECT Id, Payment_Status__c FROM Account")
    }
    assert statuses == {crm["acme"]: "Paid", crm["bare"]: None}

    rolled_back = update_collection(
        connector,
        [
            {"attributes": {"type": "Account"}, "Id": crm["bare"], "Payment_Status__c": "Open"},
            {"attributes": {"type": "Account"}, "Id": crm["acme"], "IBAN__c": "DE" + "0" * 40},
        ],
        allOrNone=True,
    )
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "STRING_TOO_LONG",
    ]
    assert rolled_back[1]["errors"][0]["message"].endswith("(max length=34)")
    assert soql(connector, f"SELECT Payment_Status__c FROM Account WHERE Id = '{crm['bare']}'") == [
        {"Payment_Status__c": None}
    ]


def test_single_patch_and_upsert_validate_the_new_fields_and_others_still_fail_as_unknown(
    crm: dict[str, str], connector: SalesforceConnector
) -> None:
    accounts = sobject(connector, "Account")
    assert (
        accounts.update(crm["bare"], {"Payment_Method__c": "Card", "Dunning_Group__c": "Key accounts"}) == 204
    )
    accounts.update(crm["acme"], {"IBAN__c": None})  # null clears the value
    refusals: dict[str, str] = {}
    for changes in (
        {"Payment_Method__c": "PayPal"},
        {"Billing_Email__c": "ap at acme"},
        {"BIC__c": "COBADEFFXXXX"},
        {"Balance__c": "lots"},
        {"Paymnet_Status__c": "Paid"},
    ):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            accounts.update(crm["acme"], changes)
        refusals[next(iter(changes))] = cast(list[dict[str, Any]], refused.value.content)[0]["errorCode"]
    assert refusals == {
        "Payment_Method__c": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "Billing_Email__c": "INVALID_EMAIL_ADDRESS",
        "BIC__c": "STRING_TOO_LONG",
        "Balance__c": "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "Paymnet_Status__c": "INVALID_FIELD",
    }
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"):
        accounts.upsert("Stripe_Customer_Id__c/cus_Q4mLx9", {"Payment_Status__c": "Late"})
    assert (
        accounts.upsert("Stripe_Customer_Id__c/cus_Q4mLx9", {"Payment_Status__c": "Open"}) == 200
    )  # updated

    rows = soql(
        connector,
        "SELECT Name, Payment_Method__c, Dunning_Group__c, IBAN__c, BIC__c, Payment_Status__c "
        "FROM Account ORDER BY Name",
    )
    assert rows == [
        {
            "Name": "Acme GmbH",
            "Payment_Method__c": "Direct Debit",
            "Dunning_Group__c": "Standard",
            "IBAN__c": None,
            "BIC__c": "COBADEFFXXX",
            "Payment_Status__c": "Open",
        },
        {
            "Name": "Bare Ltd",
            "Payment_Method__c": "Card",
            "Dunning_Group__c": "Key accounts",
            "IBAN__c": None,
            "BIC__c": None,
            "Payment_Status__c": None,
        },
    ]


def test_an_org_saved_before_the_fields_existed_gains_them(sf: SalesforceSandbox, tmp_path: Path) -> None:
    sf.add_records("Account", [{"Name": "Old Org Account"}])
    path = tmp_path / "sf.json"
    sf.save_state(path)
    state = json.loads(path.read_text(encoding="utf-8"))
    for name in ("Account", "Order"):
        state["schema"][name] = {
            key: value for key, value in state["schema"][name].items() if not key.endswith("__c")
        }
    path.write_text(json.dumps(state), encoding="utf-8")

    with SalesforceSandbox() as restarted:
        restarted.load_state(path)
        settings = make_settings(
            username=restarted.username,
            password=restarted.password,
            security_token=restarted.security_token,
            login_url=restarted.base_url,
            ca_file=str(restarted.cert_file),
        )
        connector = SalesforceConnector(settings, retry=RetryPolicy(sleep=lambda seconds: None))
        assert soql(connector, "SELECT Name, Payment_Status__c FROM Account") == [
            {"Name": "Old Org Account", "Payment_Status__c": None}
        ]
        order = {f["name"] for f in sobject(connector, "Order").describe()["fields"]}
        assert set(STATUS_FIELDS) <= order
