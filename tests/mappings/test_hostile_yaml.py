"""Specs and settings come from people and tools we do not control: a hostile file must end in a
clear error, never in code execution, a hang or an exhausted machine."""

from __future__ import annotations

import pytest

from mappings.spec import SpecError, load_spec_text
from mappings.yaml_lines import Limits, YamlSyntaxError, load_located

HEADER = "billsync_mapping: 1\nsystem: salesforce\nobject: Account\nentity: customer\ndirection: inbound\nkey: Id\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_python_tags_are_refused_not_executed(tmp_path: pytest.TempPathFactory) -> None:
    marker = "/tmp/billsync-hostile-marker"
    text = f"fields: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecError, match="not allowed|could not determine a constructor") as caught:
        load_spec_text(HEADER + text, "evil.yaml")
    assert caught.value.problems[0].line == 7
    import os

    assert not os.path.exists(marker)


def test_exponential_anchors_stop_at_the_value_budget() -> None:
    with pytest.raises(YamlSyntaxError, match="expands to more than 100,000 values"):
        load_located(billion_laughs())


def test_huge_strings_and_files_are_refused() -> None:
    with pytest.raises(YamlSyntaxError, match="characters long"):
        load_located("a: " + "x" * 70_000)
    with pytest.raises(YamlSyntaxError, match="at most 1,000,000"):
        load_located("# " + "x" * 1_000_001)


def test_deep_nesting_is_refused_without_a_recursion_crash() -> None:
    with pytest.raises(YamlSyntaxError, match="levels deep"):
        load_located("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(YamlSyntaxError, match="levels deep"):
        load_located("a: " + "[" * 60 + "]" * 60, Limits(max_depth=40))


def test_templates_cannot_reach_attributes() -> None:
    with pytest.raises(SpecError, match="is not a field path") as caught:
        load_spec_text(
            HEADER + "fields:\n  name: {template: '{Name.__class__}'}\n  currency: {const: USD}\n", "t.yaml"
        )
    assert len(caught.value.problems) == 1
