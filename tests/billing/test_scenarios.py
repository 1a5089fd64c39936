"""The acceptance scenarios of docs/billing.md, run through ``billing preview`` as a user would.

Each ``scenarios/*.yaml`` holds a scenario and, under ``expect``, the part of the preview JSON it
must produce (a subset: only the keys written are compared; lists must have the same length).
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_engine.billing_preview import preview_command

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
ROOT = Path(__file__).resolve().parents[2]


def assert_subset(expected: Any, actual: Any, path: str = "$") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key}: missing in {sorted(actual)}"
            assert_subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {len(expected)} items, got {actual!r}"
        )
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, got, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


def preview_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert preview_command(path, as_json=True) == 0, capsys.readouterr().err
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_produces_the_expected_invoices(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = yaml.safe_load(path.read_text())["expect"]
    assert_subset(expected, preview_json(path, capsys))


def test_every_amount_is_an_exact_decimal_string_and_every_date_iso(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = preview_json(Path(__file__).parent / "scenarios" / "issue_example.yaml", capsys)
    for invoice in out["invoices"]:
        assert set(invoice) >= {
            "customer", "currency", "number", "issue_date", "period_start", "period_end", "lines",
            "subtotal", "discount", "tax", "total",
        }  # fmt: skip
        for key in ("subtotal", "discount", "tax", "total"):
            assert isinstance(invoice[key], str) and invoice[key].count(".") == 1
            assert len(invoice[key].split(".")[1]) == 2
        for line in invoice["lines"]:
            assert set(line) >= {
                "description", "price", "quantity", "unit_amount", "amount", "period_start", "period_end",
            }  # fmt: skip
            assert Decimal(line["explanation"]["rounded"]) == Decimal(line["amount"])


def test_table_output_shows_each_invoice_and_its_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to the terminal; keep rows on one line here
    path = Path(__file__).parent / "scenarios" / "killbill_leading_proration.yaml"
    assert preview_command(path, as_json=False) == 0
    out = capsys.readouterr().out
    assert "INV-000001" in out and "INV-000002" in out
    assert "7.24" in out and "2021-09-16 -> 2021-09-25" in out


def test_nothing_due_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "early.yaml"
    path.write_text(
        "as_of: 2021-01-01\ncurrency: USD\nprices: [{id: p, model: one_time, amount: '5'}]\n"
        "customers: [{id: c}]\norders: [{customer: c, date: 2021-02-01, lines: [{price: p}]}]\n"
    )
    assert preview_command(path, as_json=False) == 0
    assert "No invoices" in capsys.readouterr().out
    assert preview_command(path, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"invoices": []}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("as_of: [", "not valid YAML at line"),
        ("- just a list", "<root>: expected a mapping"),
        (
            "as_of: 2021-01-01\ncurrency: USD\nprices: [{id: p, model: one_time, amount: 24.95}]\ncustomers: [{id: c}]\n",
            'prices[0].amount: 24.95 was read as a float, which cannot hold money exactly; quote it: "24.95"',
        ),
        (
            "as_of: 2021-01-01\ncurrency: USD\nprices: [{id: p, model: one_time, amount: '1'}]\ncustomers: [{id: c}]\n"
            "orders: [{customer: d, date: 2021-01-01, lines: [{price: q}]}]\n",
            "orders[0].customer: unknown customer 'd'",
        ),
        (
            "as_of: 2021-01-01\ncurrency: USD\nprices: [{id: p, model: recurring, amount: '1', interval: month}]\n"
            "customers: [{id: c, currency: EUR}]\nsubscriptions: [{customer: c, price: p, start: 2021-01-01}]\n",
            "subscription sub-1: price 'p' has no EUR amount (priced in: USD)",
        ),
    ],
    ids=["yaml-syntax", "not-a-mapping", "float-amount", "unknown-customer", "engine-problem"],
)
def test_an_invalid_scenario_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert preview_command(path, as_json=True) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"error: invalid scenario {path}: ")
    assert message in captured.err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert preview_command(tmp_path / "nope.yaml", as_json=False) == 2
    assert "No such file" in capsys.readouterr().err


def test_cli_contract_in_a_fresh_process() -> None:
    """The JSON goes to stdout alone (scripts parse it), and the exit code is the function's."""
    path = Path(__file__).parent / "scenarios" / "tax_inclusive.yaml"
    code = f"import sys; from pathlib import Path; from sync_engine.billing_preview import preview_command; sys.exit(preview_command(Path({str(path)!r}), True))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["invoices"][0]["tax"] == "90.91"
