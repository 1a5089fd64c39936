"""Pulling 100,000 Salesforce accounts: API calls (against a naive script) and peak memory (against a
pull of 10,000), each pull in a child process of its own.

The parent runs the Salesforce sandbox (so its 100,000 records are not in the child's memory) and
counts the calls it receives; the child (``python -m bench.bench_pull_scale --child CONFIG``) runs the
regular incremental pull of the Account stream into a fresh SQLite store: pages of 2,000, each
committed with its bindings, cursor and outbox rows. Its peak RSS is the child's own high-water mark
(``VmHWM``; see :func:`peak_kib` for why not the ``ru_maxrss`` that ``os.wait4`` reports).

Calls: billsync needs a login, one ``query`` and 49 ``queryMore`` (2,000 records a page). Baseline:
the naive simple-salesforce script. SOQL has no ``SELECT *``, so the script a developer writes to get
"every account with all its fields" lists the Ids (``query_all("SELECT Id FROM Account")``, which
pages at 2,000 too) and then reads each record (``sf.Account.get(id)``). Paging the full query with
``query_all`` would cost what billsync costs, so it is not the naive baseline; the per-record reads
are. They are made for a sample of 1,000 Ids and the count extrapolated to 100,000 (one call each,
measured by the sandbox's counter); the login and the Id pages are counted in full.

Goals (issue 8): at most 55 calls per 100,000 accounts; peak RSS at 100,000 at most 1.5 x peak RSS at
10,000 (the pull streams page by page instead of loading everything).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import TODAY, Result, emit, in_workdir, result, write_config
from bench.company import seed_company
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.client import SalesforceConnector
from connectors.salesforce.sandbox import SalesforceSandbox
from connectors.salesforce.settings import SalesforceSettings
from sync_engine.settings import load_settings

BIG, SMALL = 100_000, 10_000
SAMPLE = 1000
CALL_GOAL = 55
RSS_GOAL = 1.5


def child(config: Path) -> None:
    """The measured pull, alone in its process."""
    from sync_engine.pull import pull_stream
    from sync_engine.runtime import Runtime
    from sync_engine.store.db import upgrade_database

    settings = load_settings(config)
    upgrade_database(settings.database_url)
    runtime = Runtime(settings)
    pulled = pull_stream(runtime, settings.streams[0])
    runtime.close()
    print(
        json.dumps(
            {"read": pulled.read, "written": pulled.written, "pages": pulled.pages, "peak_kib": peak_kib()}
        )
    )


def peak_kib() -> int:
    """This process's peak resident set since it was exec'd (``VmHWM``, KiB).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a forked child's ``ru_maxrss``
    across ``exec``, and the parent here holds the sandbox with every record."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def pull_in_child(accounts: int, workdir: Path) -> tuple[dict[str, int], int, int]:
    """(the child's counts, calls the sandbox received, the child's peak RSS in KiB)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with SalesforceSandbox(cert_dir=workdir) as sf, QuickBooksSandbox(cert_dir=workdir) as qbo:
        seed_company(sf, accounts=accounts, today=TODAY, orders=False)
        config = write_config(workdir, sf, qbo, objects=("Account",), qbo_entities=("customer",))
        sf.reset_counters()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_pull_scale", "--child", str(config)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _pid, status, _usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"the pull of {accounts:,} accounts failed ({process.returncode})")
        counts = json.loads(output)
        assert counts["read"] >= accounts, counts
        calls = sf.calls
        if accounts == BIG:
            naive = naive_calls(config, sf, accounts)
            counts["naive_calls"] = naive
    return counts, calls, int(counts["peak_kib"])


def naive_calls(config: Path, sf: SalesforceSandbox, accounts: int) -> int:
    """Login + Id pages in full, per-record gets of a sample extrapolated to every record."""
    settings = load_settings(config).connections["salesforce"]
    assert isinstance(settings, SalesforceSettings)
    before = sf.calls
    connector = SalesforceConnector(settings)
    client = connector.client  # the login
    ids = [r["Id"] for r in client.query_all("SELECT Id FROM Account")["records"]]
    listing = sf.calls - before
    before = sf.calls
    account: Any = client.Account  # simple-salesforce's SFType for Account
    for record_id in ids[:SAMPLE]:
        account.get(record_id)
    per_record = (sf.calls - before) / SAMPLE
    connector.close()
    return round(listing + per_record * len(ids))


def run() -> list[Result]:
    return in_workdir("pull", _run)


def _run(root: Path) -> list[Result]:
    small, _small_calls, small_rss = pull_in_child(SMALL, root / "small")
    big, calls, big_rss = pull_in_child(BIG, root / "big")
    ratio = big_rss / small_rss
    return [
        result(
            "Salesforce: API calls per 100,000 accounts pulled",
            f"<= {CALL_GOAL}",
            calls,
            big["naive_calls"],
            f"calls ({big['pages']} pages; baseline: simple-salesforce Id list + get per record)",
            calls <= CALL_GOAL,
        ),
        result(
            "memory: peak RSS pulling 100,000 accounts / pulling 10,000",
            f"<= {RSS_GOAL}",
            round(ratio, 2),
            round(small_rss / 1024),
            f"x (peak {big_rss / 1024:.0f} MiB at 100,000; baseline: MiB at 10,000)",
            ratio <= RSS_GOAL,
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        emit(run())
