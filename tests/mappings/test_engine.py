from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from mappings.engine import Mapper, MappingError
from mappings.spec import SpecError, load_spec_text


class FakeLookups:
    def __init__(self, table: dict[tuple[str, str, str, bool], str]) -> None:
        self.table = table

    def resolve(self, *, system: str, entity: str, value: str, inbound: bool) -> str | None:
        return self.table.get((system, entity, value, inbound))


def spec(
    fields: str,
    *,
    entity: str = "customer",
    direction: str = "inbound",
    system: str = "salesforce",
    match_on: str = "DocNumber",
):
    header = f"billsync_mapping: 1\nsystem: {system}\nobject: X\nentity: {entity}\ndirection: {direction}\n"
    if direction == "inbound":
        header += "key: Id\n"
    else:
        header += f"match_on: {match_on}\n"
    return load_spec_text(header + "fields:\n" + fields, "s.yaml")


def test_ops_map_cast_default_apply_in_order() -> None:
    mapper = Mapper(
        spec(
            "  name: {template: '{First} {Last}', ops: [trim]}\n"
            "  currency: {from: Cur, ops: [upper], default: USD}\n"
            "  payment_terms_days: {from: Terms, map: {'Net 30': 30}, fallback: null}\n"
            "  active: {from: Flag, cast: boolean}\n"
        )
    )
    out = mapper.map(
        {"Id": "1", "First": " Ada", "Last": "Lovelace ", "Cur": "eur", "Terms": "Net 30", "Flag": "yes"}
    )
    assert out == {"name": "Ada Lovelace", "currency": "EUR", "payment_terms_days": 30, "active": True}
    out = mapper.map({"Id": "2", "First": "A", "Last": "B", "Terms": "Net 99", "Flag": "no"})
    assert out["currency"] == "USD" and "payment_terms_days" not in out and out["active"] is False


def test_every_failing_field_of_a_record_is_reported() -> None:
    mapper = Mapper(
        spec(
            "  name: {from: Name, required: true}\n"
            "  currency: {from: Cur, map: {USD: USD}}\n"
            "  payment_terms_days: {from: Terms, cast: integer}\n"
        )
    )
    with pytest.raises(MappingError) as caught:
        mapper.map({"Id": "1", "Cur": "GBP", "Terms": "3.5"})
    fields = {issue.field for issue in caught.value.issues}
    assert fields == {"name", "currency", "payment_terms_days"}
    assert "mapped values: USD" in str(caught.value)


def test_decimal_cast_keeps_the_digits_the_vendor_sent() -> None:
    mapper = Mapper(
        spec(
            "  unit_amount: {from: P, cast: decimal}\n  product_id: {const: p}\n  currency: {const: USD}\n",
            entity="price",
        )
    )
    assert mapper.map({"Id": "1", "P": 19.99})["unit_amount"] == Decimal("19.99")
    assert mapper.map({"Id": "1", "P": 0.1 + 0.2})["unit_amount"] == Decimal("0.30000000000000004")


def test_dates_and_salesforce_datetimes_parse_with_formats_and_time_zones() -> None:
    mapper = Mapper(
        spec(
            "  Day: {from: D, cast: date}\n  Stamp: {from: T, cast: datetime}\n"
            "  Local: {from: L, cast: datetime, format: '%d.%m.%Y %H:%M', timezone: Europe/Berlin}\n",
            entity="invoice",
            direction="outbound",
            system="erp",
            match_on="Day",
        )
    )
    out = mapper.map({"D": "2026-02-28", "T": "2026-11-25T08:00:00.000+0000", "L": "25.11.2026 09:00"})
    assert out["Day"] == dt.date(2026, 2, 28)
    assert out["Stamp"] == dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC)
    assert out["Local"] == dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC)  # 09:00 in Berlin is 08:00 UTC


def test_a_cast_that_can_never_fit_the_canonical_field_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="cast datetime gives a datetime, but order.number is a string"):
        spec(
            "  customer_id: {const: c}\n  currency: {const: USD}\n  status: {const: draft}\n"
            "  effective_date: {const: '2026-01-01'}\n  number: {from: T, cast: datetime}\n",
            entity="order",
        )


def test_split_join_and_money() -> None:
    mapper = Mapper(
        spec(
            "  Tags: {from: T, ops: [{split: ';'}, {join: ', '}]}\n"
            "  Total: {money: {amount: A, currency: C}}\n",
            entity="invoice",
            direction="outbound",
            system="erp",
            match_on="Tags",
        )
    )
    out = mapper.map({"T": "a; b ;c", "A": 12.5, "C": "eur"})
    assert out == {"Tags": "a, b, c", "Total": {"amount": Decimal("12.5"), "currency": "EUR"}}
    with pytest.raises(MappingError, match="both an amount and a currency"):
        mapper.map({"A": 1})


def test_conditions_are_data_and_skip_the_field_when_false() -> None:
    mapper = Mapper(
        spec(
            "  name: Name\n  currency: {const: USD}\n"
            "  email: {from: Mail, when: {all: [{field: Opt, equals: true}, {not: {field: Mail, exists: false}}]}}\n"
        )
    )
    assert mapper.map({"Id": "1", "Name": "n", "Mail": "a@b", "Opt": True})["email"] == "a@b"
    assert "email" not in mapper.map({"Id": "1", "Name": "n", "Mail": "a@b", "Opt": False})


def test_lookups_go_through_bindings_and_a_missing_one_is_flagged_as_such() -> None:
    mapper = Mapper(
        spec(
            "  customer_id: {lookup: {entity: customer, from: AccountId}, required: true}\n"
            "  currency: {const: USD}\n  status: {const: draft}\n  effective_date: {const: '2026-01-01'}\n",
            entity="order",
        ),
        FakeLookups({("salesforce", "customer", "001A", True): "cus_1"}),
    )
    assert mapper.map({"Id": "1", "AccountId": "001A"})["customer_id"] == "cus_1"
    with pytest.raises(MappingError) as caught:
        mapper.map({"Id": "1", "AccountId": "001B"})
    assert caught.value.only_missing_bindings
    assert "no binding for salesforce customer 001B" in str(caught.value)


def test_outbound_line_items_use_a_sub_mapping() -> None:
    mapper = Mapper(
        spec(
            "  DocNumber: number\n"
            "  Line:\n    each: lines\n    fields:\n"
            "      Amount: {from: amount, cast: decimal}\n"
            "      SalesItemLineDetail.ItemRef.value: {lookup: {entity: product, from: product_id}}\n",
            entity="invoice",
            direction="outbound",
            system="quickbooks",
        ),
        FakeLookups({("quickbooks", "product", "prd_1", False): "7"}),
    )
    out = mapper.map({"number": "INV-1", "lines": [{"amount": "10.50", "product_id": "prd_1"}]})
    assert out == {
        "DocNumber": "INV-1",
        "Line": [{"Amount": Decimal("10.50"), "SalesItemLineDetail": {"ItemRef": {"value": "7"}}}],
    }
    with pytest.raises(MappingError, match=r"Line\[0\]\.Amount"):
        mapper.map({"number": "INV-1", "lines": [{"amount": "ten", "product_id": "prd_1"}]})


def test_mapping_a_page_at_once_gives_what_mapping_each_record_gives() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    mapper = Mapper(
        spec(
            "  name: {from: Name, ops: [trim], required: true}\n"
            "  currency: {from: Cur, ops: [upper], default: USD}\n"
            "  billing_address.city: {from: City, ops: [trim]}\n"
            "  phone: Phone\n"
            "  payment_terms_days: {from: Terms, cast: integer}\n"
        )
    )
    text = st.one_of(st.none(), st.just(""), st.just("  "), st.text(max_size=5))
    record = st.fixed_dictionaries(
        {
            "Id": st.just("1"),
            "Name": text,
            "Cur": text,
            "City": text,
            "Phone": text,
            "Terms": st.one_of(text, st.integers()),
        }
    )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(record, max_size=8))
    def same(records: list[dict[str, object]]) -> None:
        expected: list[object] = []
        for r in records:
            try:
                expected.append(mapper.map(r))
            except MappingError as exc:
                expected.append(str(exc))
        got = [str(x) if isinstance(x, MappingError) else x for x in mapper.map_many(records)]
        assert got == expected

    same()
