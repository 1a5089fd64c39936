from __future__ import annotations

import pytest

from mappings.spec import SpecError, load_spec_text

GOOD = """\
billsync_mapping: 1
system: salesforce
object: Account
entity: customer
direction: inbound
key: Id
fields:
  name: {from: Name, ops: [trim]}
  currency: {from: CurrencyIsoCode, default: USD}
  billing_address.city: BillingCity
"""


def test_a_valid_spec_compiles_and_lists_the_source_fields_to_query() -> None:
    spec = load_spec_text(GOOD, "account.in.yaml")
    assert spec.entity == "customer"
    assert spec.source_fields == ("BillingCity", "CurrencyIsoCode", "Id", "Name")


def test_every_problem_is_reported_at_once_with_file_line_and_a_suggestion() -> None:
    text = """\
billsync_mapping: 1
system: salesforce
object: Account
entity: customer
direction: inbound
key: Id
fields:
  name: {from: Name, ops: [strip]}
  curency: {from: CurrencyIsoCode}
  currency: {from: CurrencyIsoCode, cast: money}
  phone: {from: Phone, const: x}
"""
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "bad.yaml")
    problems = {(p.line, p.field): p for p in caught.value.problems}
    assert (8, "name") in problems and "unknown operation 'strip'" in problems[(8, "name")].message
    assert problems[(8, "name")].allowed and "trim" in problems[(8, "name")].allowed
    assert "did you mean currency?" in problems[(9, "curency")].message
    assert "unknown cast 'money'" in problems[(10, "currency")].message
    assert "more than one value source" in problems[(11, "phone")].message
    assert str(caught.value).startswith("bad.yaml:")


def test_a_required_canonical_field_left_unmapped_is_an_error() -> None:
    text = GOOD.replace("  name: {from: Name, ops: [trim]}\n", "")
    with pytest.raises(SpecError, match="required customer field 'name' is not mapped"):
        load_spec_text(text, "x.yaml")


def test_yaml_syntax_errors_carry_the_position() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text("fields:\n  name: [unclosed\n", "broken.yaml")
    problem = caught.value.problems[0]
    assert problem.file == "broken.yaml" and problem.line is not None


def test_templates_accept_field_substitution_only() -> None:
    bad = GOOD.replace("BillingCity", "{template: '{BillingCity'}")
    with pytest.raises(SpecError, match="template must be text"):
        load_spec_text(bad, "t.yaml")


def test_unknown_direction_and_entity_list_the_allowed_values() -> None:
    text = GOOD.replace("direction: inbound", "direction: sideways").replace(
        "entity: customer", "entity: custmer"
    )
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "d.yaml")
    messages = " | ".join(str(p) for p in caught.value.problems)
    assert "(allowed: inbound, outbound)" in messages
    assert "did you mean customer?" in messages


def test_match_on_must_name_a_mapped_target_field_of_an_outbound_spec() -> None:
    text = (
        "billsync_mapping: 1\nsystem: quickbooks\nobject: Invoice\nentity: invoice\ndirection: outbound\n"
        "match_on: DocNumbr\nfields:\n  DocNumber: number\n"
    )
    with pytest.raises(SpecError, match="'DocNumbr' is not one of the mapped target fields"):
        load_spec_text(text, "i.yaml")
    assert load_spec_text(text.replace("DocNumbr", "DocNumber"), "i.yaml").match_on == "DocNumber"
