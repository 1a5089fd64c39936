"""The Salesforce objects and fields billsync works with, as in the standard data model.

Used offline by ``billsync mappings check`` (a misspelt source field is caught before any call) and
by the sandbox, which serves exactly these fields. Custom fields (``__c``) exist only in a given
org, so they are accepted without a check.
"""

from __future__ import annotations

#: Field types: id, reference, boolean, double, currency, date, datetime, string (and its kin).
SYSTEM_FIELDS = {
    "Id": "id",
    "IsDeleted": "boolean",
    "CreatedDate": "datetime",
    "CreatedById": "reference",
    "LastModifiedDate": "datetime",
    "LastModifiedById": "reference",
    "SystemModstamp": "datetime",
}
READ_ONLY_FIELDS = frozenset(f.lower() for f in SYSTEM_FIELDS)
_ADDRESS = {
    "BillingStreet": "textarea",
    "BillingCity": "string",
    "BillingState": "string",
    "BillingPostalCode": "string",
    "BillingCountry": "string",
}
STANDARD_FIELDS: dict[str, dict[str, str]] = {
    "Account": {
        "Name": "string",
        "AccountNumber": "string",
        "Type": "picklist",
        "Phone": "phone",
        "Website": "url",
        "Description": "textarea",
        "ParentId": "reference",
        "OwnerId": "reference",
        "CurrencyIsoCode": "picklist",
        **_ADDRESS,
    },
    "Contact": {
        "AccountId": "reference",
        "FirstName": "string",
        "LastName": "string",
        "Name": "string",
        "Email": "email",
        "Phone": "phone",
        "OwnerId": "reference",
    },
    "Product2": {
        "Name": "string",
        "ProductCode": "string",
        "Description": "textarea",
        "Family": "picklist",
        "IsActive": "boolean",
        "QuantityUnitOfMeasure": "picklist",
        "CurrencyIsoCode": "picklist",
    },
    "Pricebook2": {
        "Name": "string",
        "Description": "textarea",
        "IsActive": "boolean",
        "IsStandard": "boolean",
    },
    "PricebookEntry": {
        "Name": "string",
        "Pricebook2Id": "reference",
        "Product2Id": "reference",
        "ProductCode": "string",
        "UnitPrice": "currency",
        "IsActive": "boolean",
        "UseStandardPrice": "boolean",
        "CurrencyIsoCode": "picklist",
    },
    "Order": {
        "AccountId": "reference",
        "Pricebook2Id": "reference",
        "OrderNumber": "string",
        "Status": "picklist",
        "Type": "picklist",
        "EffectiveDate": "date",
        "EndDate": "date",
        "ActivatedDate": "datetime",
        "Description": "textarea",
        "PoNumber": "string",
        "TotalAmount": "currency",
        "CurrencyIsoCode": "picklist",
        "OwnerId": "reference",
        **_ADDRESS,
    },
    "OrderItem": {
        "OrderId": "reference",
        "Product2Id": "reference",
        "PricebookEntryId": "reference",
        "OrderItemNumber": "string",
        "Quantity": "double",
        "UnitPrice": "currency",
        "ListPrice": "currency",
        "TotalPrice": "currency",
        "ServiceDate": "date",
        "EndDate": "date",
        "Description": "textarea",
    },
}


#: Suffix of fields and relationships an org defines itself; they cannot be checked offline.
CUSTOM_SUFFIXES = ("__c", "__r")


def object_fields(sobject: str) -> dict[str, str] | None:
    """Every field of a standard object (system fields included), or None if billsync does not know it."""
    fields = STANDARD_FIELDS.get(sobject)
    if fields is None:
        return None
    return {**SYSTEM_FIELDS, **fields}


def relationship_names(fields: dict[str, str]) -> set[str]:
    """``AccountId`` (a reference) -> ``Account``: the names a dotted path like ``Account.Name`` starts with."""
    return {name[:-2] for name, kind in fields.items() if kind == "reference" and name.endswith("Id")}
