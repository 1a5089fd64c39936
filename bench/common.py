"""What the benchmarks share: the result shape, a working directory wired to the sandboxes, PostgreSQL
schemas of their own, a SQL statement counter, and the bulk-load floor (COPY / executemany).

Every benchmark module has ``run() -> list[Result]`` and prints its results as JSON when run alone
(``.venv/bin/python -m bench.bench_x``); ``make bench`` runs them all through :mod:`bench.__main__`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import yaml
from sqlalchemy import Engine, create_engine, event, text

from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.demo import write_workdir
from sync_engine.store.models import Base

#: One row of the table: ``pass`` is a keyword, hence the functional form.
Result = TypedDict(
    "Result",
    {"name": str, "goal": str, "measured": float, "baseline": float, "unit": str, "pass": bool},
)

PG_URL = os.environ.get("BILLSYNC_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: A fixed billing date, so every run bills the same charges.
TODAY = dt.date(2024, 12, 15)


def result(name: str, goal: str, measured: float, baseline: float, unit: str, ok: bool) -> Result:
    return {"name": name, "goal": goal, "measured": measured, "baseline": baseline, "unit": unit, "pass": ok}


def emit(results: list[Result]) -> None:
    """How a module run alone reports: its results as one JSON document on stdout."""
    print(json.dumps(results, indent=2))


def write_config(
    workdir: Path,
    sf: SalesforceSandbox,
    qbo: QuickBooksSandbox,
    *,
    database_url: str | None = None,
    objects: tuple[str, ...] | None = None,
    qbo_entities: tuple[str, ...] = ("customer", "product", "invoice"),
    qbo_connection: dict[str, Any] | None = None,
    name: str = "billsync.yaml",
) -> Path:
    """The demo's ``billsync.yaml`` cut down to what a benchmark measures: Salesforce streams (all, or
    ``objects``), one QuickBooks destination with ``qbo_entities``, and no other destination;
    ``qbo_connection`` overrides settings of the QuickBooks connection (e.g. its rate limits)."""
    path = write_workdir(workdir, sf, qbo)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if database_url is not None:
        config["database_url"] = database_url
    config["connections"]["quickbooks"].update(qbo_connection or {})
    if objects is not None:
        config["streams"] = [s for s in config["streams"] if s["object"] in objects]
    qbo_destination = next(d for d in config["destinations"] if d["name"] == "quickbooks")
    qbo_destination["mappings"] = {k: v for k, v in qbo_destination["mappings"].items() if k in qbo_entities}
    config["destinations"] = [qbo_destination] if qbo_entities else []
    out = workdir / name
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


@contextmanager
def pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards."""
    admin = create_engine(PG_URL)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield admin.url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class StatementCounter:
    """Counts the SQL statements an engine runs, and the writes among them by table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements = 0
        self.writes: Counter[str] = Counter()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.statements += 1
        words = statement.split(None, 3)
        verb = words[0].upper() if words else ""
        if verb in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if verb in ("INSERT", "DELETE") and len(words) > 2 else words[1]
            self.writes[table.strip('"').lower()] += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def in_workdir(name: str, body: Callable[[Path], list[Result]]) -> list[Result]:
    """``body`` run in a new temporary folder (databases, sandbox certificates, configs), which is
    removed when it returns: a full ``make bench`` otherwise left about 300 MB in /tmp."""
    with tempfile.TemporaryDirectory(prefix=f"billsync-bench-{name}-") as tmp:
        return body(Path(tmp))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def data_tables(engine: Engine, only: set[str] | None = None) -> list[str]:
    """The store's tables in foreign-key order (parents first) that hold rows (or ``only`` those)."""
    names = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if only is not None and table.name not in only:
                continue
            if connection.execute(text(f'SELECT 1 FROM "{table.name}" LIMIT 1')).first() is not None:
                names.append(table.name)
    return names


def bulk_reload_seconds(engine: Engine, tables: list[str]) -> tuple[float, int]:
    """The bulk-load floor of the rows now in ``tables``: they are taken out, then loaded back in
    one transaction with COPY (PostgreSQL, from the text COPY itself wrote) or ``executemany``
    (SQLite, the rows as sqlite3 returned them), into the same tables with the same indexes and
    constraints. Returns (seconds of the load alone, rows loaded)."""
    raw = engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection
        if engine.dialect.name == "postgresql":
            dumps: dict[str, bytes] = {}
            rows = 0
            with dbapi.cursor() as cursor:
                for name in tables:
                    buffer = io.BytesIO()
                    with cursor.copy(f'COPY "{name}" TO STDOUT') as copy:
                        for chunk in copy:
                            buffer.write(chunk)
                    dumps[name] = buffer.getvalue()
                    rows += dumps[name].count(b"\n")
                cursor.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in tables) + " CASCADE")
            dbapi.commit()
            start = time.perf_counter()
            with dbapi.cursor() as cursor:
                for name in tables:
                    with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
                        copy.write(dumps[name])
            dbapi.commit()
            return time.perf_counter() - start, rows
        # SQLite
        cursor = dbapi.cursor()
        saved = {name: cursor.execute(f'SELECT * FROM "{name}"').fetchall() for name in tables}
        for name in reversed(tables):
            cursor.execute(f'DELETE FROM "{name}"')
        dbapi.commit()
        start = time.perf_counter()
        cursor.execute("BEGIN")
        for name in tables:
            if saved[name]:
                marks = ", ".join("?" * len(saved[name][0]))
                cursor.executemany(f'INSERT INTO "{name}" VALUES ({marks})', saved[name])
        dbapi.commit()
        return time.perf_counter() - start, sum(len(r) for r in saved.values())
    finally:
        raw.close()
