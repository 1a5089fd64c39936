"""``billsync billing preview SCENARIO.yaml [--json]``: price a scenario offline, save nothing.

This is the I/O shell around ``billing.scenario`` (which is pure): read the YAML, print a table for
people or the JSON contract for scripts. Every way a scenario can be wrong (unreadable file, YAML
syntax, invalid content, charges the engine cannot bill) exits 2 with one line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from billing.model import Invoice
from billing.scenario import ScenarioError, invoices_json, parse_scenario, run_scenario

__all__ = ["preview_command"]


def _fail(path: Path, message: str) -> int:
    print(f"error: invalid scenario {path}: {message}", file=sys.stderr)
    return 2


def preview_command(path: Path, as_json: bool) -> int:
    """Print the invoices the scenario produces; 0 on success, 2 for an invalid scenario."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return _fail(path, exc.strerror or str(exc))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return _fail(path, f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}")
    try:
        invoices, result = run_scenario(parse_scenario(data))
    except ScenarioError as exc:
        return _fail(path, "; ".join(exc.problems))
    if result.problems:
        return _fail(path, "; ".join(f"{p.subject}: {p.message}" for p in result.problems))
    if as_json:
        print(json.dumps(invoices_json(invoices), indent=2))
    else:
        _print_tables(invoices)
    return 0


def _print_tables(invoices: list[Invoice]) -> None:
    console = Console()
    if not invoices:
        console.print("No invoices are due by as_of.")
        return
    for inv in invoices:
        table = Table(
            title=f"{inv.number}  {inv.customer_id}  issued {inv.issue_date}  due {inv.due_date}",
            title_justify="left",
        )
        for column in ("Description", "Price", "Period", "Qty", "Unit", "Amount", "Discount", "Tax"):
            table.add_column(
                column, justify="right" if column not in ("Description", "Price", "Period") else "left"
            )
        for line in inv.lines:
            period = f"{line.period_start} -> {line.period_end}" if line.period_start else ""
            linear = line.explanation is None or line.explanation.unit_amount is not None
            table.add_row(
                line.description,
                line.product_code,
                period,
                f"{line.quantity:f}",
                f"{line.unit_price.amount:f}" if linear else "tiered",
                str(line.amount.rounded().amount),
                str(line.discount.amount) if line.discount else "",
                str(line.tax_amount.amount) if line.tax_amount else "",
            )
        table.add_section()
        for label, value in (
            ("Subtotal", inv.subtotal),
            ("Discount", inv.discount_total),
            ("Tax", inv.tax_total),
            ("Total", inv.total),
        ):
            table.add_row(label, "", "", "", "", str(value), "", "")
        console.print(table)
