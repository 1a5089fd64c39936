"""Records/s through map -> bill -> persist on one core, on SQLite and on PostgreSQL, against the
bulk-load floor of the same rows.

The workload is the demo company at scale (3,000 accounts, 6,000 orders and their ~12,000 order
lines, products and price-book entries: ~21,000 CRM records). Its raw Salesforce payloads are read
from the sandbox once, before the clock starts, so the network is not measured. Timed: every stream's
records through the inbound mappings, validation, bindings and outbox (``pull_stream`` with the
fetched pages), then the billing run that prices the orders and stores the invoices, numbered, with
their lines, explanations and outbox rows. One Python thread does it all (PostgreSQL's server runs
on the machine's other core).

Baseline, in the same run: every row the pipeline left in the store (canonical records, bindings,
invoices, lines, outbox, runs...) taken out and loaded back in one transaction with COPY (PostgreSQL)
or ``executemany`` (SQLite) into the same tables, indexes and constraints: the floor no loader of
those rows can beat. Both rates count the same CRM records. Goal (issue 8): at least 1/5 of the
baseline's rate.

Not timed: reading the mapping specs and the catalog, which a daemon does once per process, not once
per run. Each database is measured in three rounds (a new database each) and the round with the
median ratio is reported, pipeline and baseline from the same round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import (
    TODAY,
    Result,
    bulk_reload_seconds,
    data_tables,
    emit,
    in_workdir,
    pg_schema,
    result,
    timed,
    write_config,
)
from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo import seed_salesforce
from sync_engine.invoicing import run_billing
from sync_engine.pull import pull_stream, query_fields
from sync_engine.runtime import Runtime
from sync_engine.settings import load_settings
from sync_engine.store.db import upgrade_database

ACCOUNTS, ORDERS = 3000, 6000
SHARE = 5  # the goal: at least 1/SHARE of the bulk load's rate
#: Rounds per database, each pipeline and its baseline on a new database; the median one is reported
#: (one round on a shared two-core machine varies by about a tenth).
ROUNDS = 3


def fetch(workdir: Path) -> tuple[Path, dict[str, list[list[dict[str, Any]]]]]:
    """The raw pages of every stream, read once through the real connector; and a config to reuse."""
    with SalesforceSandbox(cert_dir=workdir) as sf, QuickBooksSandbox(cert_dir=workdir) as qbo:
        seed_salesforce(sf, accounts=ACCOUNTS, orders=ORDERS, today=TODAY)
        config = write_config(workdir, sf, qbo)
        settings = load_settings(config)
        upgrade_database(settings.database_url)
        runtime = Runtime(settings)
        try:
            pages = {
                stream.name: list(
                    runtime.salesforce(stream.connection).pull_pages(
                        runtime.spec(stream.mapping).object, query_fields(runtime.spec(stream.mapping)), None
                    )
                )
                for stream in settings.streams
            }
        finally:
            runtime.close()
    return config, pages


def measure(
    config: Path, database_url: str, pages: dict[str, list[list[dict[str, Any]]]]
) -> tuple[int, float, float]:
    """(records, pipeline seconds, bulk-load seconds of the rows it stored) on one database."""
    settings = load_settings(config)
    settings.database_url = database_url
    upgrade_database(database_url)
    runtime = Runtime(settings)
    try:
        records = sum(len(page) for stream in pages.values() for page in stream)
        for stream in settings.streams:  # read once per process by the daemon, not once per run
            runtime.spec(stream.mapping)
        runtime.catalog()

        def pipeline() -> int:
            for stream in settings.streams:
                pull_stream(runtime, stream, pages=pages[stream.name])
            return run_billing(runtime, TODAY).invoices_created

        invoices, seconds = timed(pipeline)
        assert invoices > 0
        floor, _rows = bulk_reload_seconds(
            runtime.engine, [t for t in data_tables(runtime.engine) if t != "alembic_version"]
        )
        return records, seconds, floor
    finally:
        runtime.close()


def rounds(
    config: Path, workdir: Path, label: str, pages: dict[str, list[list[dict[str, Any]]]]
) -> list[tuple[int, float, float]]:
    """``ROUNDS`` measurements, each on a new database."""
    measured = []
    for n in range(ROUNDS):
        if label == "SQLite":
            measured.append(measure(config, f"sqlite:///{workdir / f'pipeline-{n}.db'}", pages))
        else:
            with pg_schema() as pg_url:
                measured.append(measure(config, pg_url, pages))
    return measured


def run() -> list[Result]:
    return in_workdir("pipeline", _run)


def _run(workdir: Path) -> list[Result]:
    config, pages = fetch(workdir)
    results: list[Result] = []
    for label in ("SQLite", "PostgreSQL"):
        # the round with the median ratio (pipeline time / its own bulk load), reported whole
        records, seconds, floor = sorted(rounds(config, workdir, label, pages), key=lambda r: r[1] / r[2])[
            ROUNDS // 2
        ]
        rate, base = records / seconds, records / floor
        loader = "COPY" if label == "PostgreSQL" else "executemany"
        results.append(
            result(
                f"pipeline: map -> bill -> persist on {label} (records/s, one core)",
                f">= 1/{SHARE} of baseline",
                round(rate),
                round(base),
                f"records/s ({records:,} CRM records; median of {ROUNDS} rounds; "
                f"baseline: the stored rows loaded by {loader})",
                rate * SHARE >= base,
            )
        )
    return results


if __name__ == "__main__":
    emit(run())
