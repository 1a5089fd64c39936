"""A sync cycle with nothing new: at most one Salesforce query per stream and no data written.

A company of 500 accounts with their orders is synced once (pull -> bill -> deliver -> collect ->
push, as ``billsync sync`` does), then the same cycle runs again with nothing changed anywhere.
Counted on that second cycle: Salesforce's query calls per stream (``query`` and ``queryMore``, by the
sandbox's own counter), and every INSERT/UPDATE/DELETE the store receives (a SQLAlchemy
``before_cursor_execute`` listener on the runtime's engine). The run log (``sync_runs``: one row per
stream and step, opened and closed) records that the cycle ran; it is reported in the unit and not
counted as data written. Baseline, in the same run: the same counts for the first cycle.

Goals (issue 8): <= 1 query per stream and 0 writes.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import TODAY, Result, StatementCounter, emit, in_workdir, result, write_config
from bench.company import seed_company
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.cycle import run_cycle
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database

ACCOUNTS = 500
RUN_LOG = "sync_runs"


def queries(sf: SalesforceSandbox) -> int:
    return sf.calls_by_kind["query"] + sf.calls_by_kind["query_more"]


def run() -> list[Result]:
    return in_workdir("nochange", _run)


def _run(workdir: Path) -> list[Result]:
    with SalesforceSandbox(cert_dir=workdir) as sf, QuickBooksSandbox(cert_dir=workdir) as qbo:
        seed_company(sf, accounts=ACCOUNTS, today=TODAY, lines=2)
        settings = load_settings(write_config(workdir, sf, qbo))
        upgrade_database(settings.database_url)
        runtime = Runtime(settings)
        streams = len(settings.streams)
        counts = []
        try:
            for _ in range(2):
                before = queries(sf)
                counter = StatementCounter(runtime.engine)
                cycle = run_cycle(runtime, as_of=TODAY)
                counter.close()
                assert not cycle.unfinished, cycle.retry_later
                data_writes = sum(n for table, n in counter.writes.items() if table != RUN_LOG)
                counts.append(
                    (queries(sf) - before, data_writes, counter.writes[RUN_LOG], dict(counter.writes))
                )
        finally:
            runtime.close()
    (first_queries, first_writes, _, _), (again_queries, again_writes, run_log, tables) = counts
    return [
        result(
            "no-change sync: Salesforce queries per stream",
            "<= 1",
            round(again_queries / streams, 2),
            round(first_queries / streams, 2),
            f"queries/stream ({streams} streams; baseline: the first, full sync)",
            again_queries <= streams,
        ),
        result(
            "no-change sync: writes to the store",
            "0",
            again_writes,
            first_writes,
            f"statements (the run log's own {run_log} excluded; baseline: the first, full sync)",
            again_writes == 0,
        ),
    ]


if __name__ == "__main__":
    emit(run())
