"""SOQL names, literals and the sandbox's parser."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.salesforce.soql import (
    SoqlError,
    datetime_literal,
    error_pointer,
    format_datetime,
    is_field_path,
    is_identifier,
    parse,
    parse_datetime,
)
from tests.connectors.salesforce.conftest import fixture_json


def test_the_fixtures_datetime_format_round_trips():
    text = fixture_json("restforce/sobject/query_success_response.json")["records"][0]["DateTime_Label"]
    value = parse_datetime(text)
    assert value == dt.datetime(2011, 7, 7, 0, 37, tzinfo=dt.UTC)
    assert format_datetime(value) == text


def test_datetime_literals_are_utc_whole_seconds_floored():
    local = dt.datetime(2026, 11, 25, 9, 0, 0, 999_000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert datetime_literal(local) == "2026-11-25T08:00:00Z"
    assert parse_datetime("2026-11-25T08:00:00Z") == parse_datetime("2026-11-25T09:00:00.000+0100")


@pytest.mark.parametrize("name", ["Account", "Billing_Status__c", "ns__Thing__c", "Product2"])
def test_identifiers(name):
    assert is_identifier(name)


@pytest.mark.parametrize("name", ["", "1Account", "Account Name", "Name,Id", "Id--", "Account.Name", "x'"])
def test_not_identifiers(name):
    assert not is_identifier(name)


def test_field_paths_allow_parent_relationships_only_as_dotted_names():
    assert is_field_path("Product2.ProductCode") and is_field_path("Order.Account.Name")
    assert not is_field_path("Product2..Code") and not is_field_path("Account.") and not is_field_path("a b")


def test_parse_the_connectors_incremental_query():
    query = parse(
        "SELECT Id, SystemModstamp, Name FROM Account "
        "WHERE SystemModstamp >= 2026-11-25T07:55:00Z ORDER BY SystemModstamp, Id"
    )
    assert query.sobject.path == "Account"
    assert [f.path for f in query.fields] == ["Id", "SystemModstamp", "Name"]
    (condition,) = query.where
    assert (condition.name.path, condition.op) == ("SystemModstamp", ">=")
    assert condition.value.kind == "datetime" and condition.value.value == dt.datetime(
        2026, 11, 25, 7, 55, tzinfo=dt.UTC
    )
    assert [(k.name.path, k.descending) for k in query.order_by] == [("SystemModstamp", False), ("Id", False)]


def test_parse_literals_lists_and_clauses():
    query = parse(
        "select count() from Order where Status not in ('Draft', 'Cancelled') and Name like 'O\\'Brien%' "
        "and EffectiveDate <= 2026-12-01 and TotalAmount > 10.50 and IsDeleted = false "
        "order by Name desc nulls first limit 5 offset 10"
    )
    assert query.count_only and query.limit == 5 and query.offset == 10
    ops = [(c.op, c.value) for c in query.where]
    assert ops[0][0] == "NOT IN" and [v.value for v in ops[0][1]] == ["Draft", "Cancelled"]
    assert ops[1][1].value == "O'Brien%"
    assert ops[2][1].value == dt.date(2026, 12, 1)
    assert ops[3][1].value == Decimal("10.50")
    assert ops[4][1].value is False
    assert query.order_by[0].descending and not query.order_by[0].nulls_last


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Account",
        "SELECT Id Account",
        "SELECT Id FROM Account WHERE",
        "DELETE FROM Account",
        "SELECT Id FROM Account WHERE (Name = 'a')",
        "SELECT Id FROM Account; DROP",
    ],
)
def test_unsupported_or_broken_queries_are_malformed(text):
    with pytest.raises(SoqlError) as caught:
        parse(text)
    assert caught.value.code == "MALFORMED_QUERY"


def test_error_pointer_matches_salesforce_layout():
    text = "SELECT Id, Foo FROM Account"
    assert error_pointer(text, 11, "No such column 'Foo'") == (
        "\nSELECT Id, Foo FROM Account\n           ^\nERROR at Row:1:Column:12\nNo such column 'Foo'"
    )
