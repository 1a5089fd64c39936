"""``make bench``: run every benchmark, print one table, write ``bench/results.json``.

Each module runs in a process of its own (``python -m bench.<module>``), so one benchmark's memory,
threads and sandboxes cannot slow the next; a module that crashes is a failed row, not a lost table.
Exit status 1 when any goal is missed. ``python -m bench bench_qbo_push ...`` runs only those.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result, result

HERE = Path(__file__).resolve().parent
#: Cheapest first; all of them take about 5 minutes on 2 cores (the budget is 10).
MODULES = (
    "bench_mappings",
    "bench_billing",
    "bench_nochange",
    "bench_qbo_push",
    "bench_pipeline",
    "bench_pull_scale",
    "bench_qbo_rate",
    "bench_billing_pg",
)
COLUMNS = ("name", "goal", "measured", "baseline", "unit", "pass")


def run_module(module: str) -> list[Result]:
    process = subprocess.run(
        [sys.executable, "-m", f"bench.{module}"], cwd=HERE.parent, capture_output=True, text=True
    )
    if process.returncode != 0:
        last = (process.stderr.strip().splitlines() or ["no output"])[-1]
        return [result(f"{module} (crashed)", "runs", 0, 0, last[:120], False)]
    results: list[Result] = json.loads(process.stdout)
    return results


def table(results: list[Result]) -> str:
    rows = [
        [
            str(r["name"]),
            str(r["goal"]),
            f"{r['measured']:,}",
            f"{r['baseline']:,}",
            str(r["unit"]),
            "pass" if r["pass"] else "FAIL",
        ]
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)), line]
    for row in rows:
        cells = [
            cell.rjust(w) if i in (2, 3) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    modules = argv or list(MODULES)
    started = time.monotonic()
    results: list[Result] = []
    for module in modules:
        began = time.monotonic()
        print(f"bench: {module} ...", file=sys.stderr, flush=True)
        results.extend(run_module(module))
        print(f"bench: {module} took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    (HERE / "results.json").write_text(json.dumps({"results": results}, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    failed = sum(1 for r in results if not r["pass"])
    print(
        f"\n{len(results)} results, {failed} goal(s) missed, in {time.monotonic() - started:.0f} s; "
        f"written to {HERE / 'results.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
