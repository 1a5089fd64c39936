"""Binding lookups stay index lookups when PostgreSQL's statistics are out of date."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.bindings import bindings_by_canonical
from sync_engine.store.bulk import insert_rows
from sync_engine.store.models import Binding


def _bindings(system: str, entity: str, count: int) -> list[dict[str, Any]]:
    return [
        {"system": system, "entity": entity, "external_id": f"{n}", "canonical_id": f"{entity[:3]}-{n:06d}"}
        for n in range(count)
    ]


@pytest.mark.postgres
def test_a_first_push_finds_its_bindings_without_reading_the_destinations_others(
    db_url: str, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """Statistics taken before QuickBooks had bindings (autovacuum off or behind): the lookup of a
    batch's bindings must not walk every QuickBooks binding, or a push slows with its square."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's planner")
    with session_factory.begin() as session:
        insert_rows(session, Binding, _bindings("salesforce", "invoice", 2000))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE bindings")
    with session_factory.begin() as session:  # the push's bindings, after the statistics
        session.execute(Binding.__table__.insert(), _bindings("quickbooks", "invoice", 5000))

    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM bindings" in statement:
            statements.append((statement, parameters))

    wanted = [f"inv-{n:06d}" for n in range(4970, 5000)]
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with session_factory() as session:
            found = bindings_by_canonical(session, "quickbooks", "invoice", wanted)
    finally:
        event.remove(engine, "before_cursor_execute", capture)

    assert sorted(found) == wanted and {b.system for b in found.values()} == {"quickbooks"}
    [(statement, parameters)] = statements
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            [[plan]] = cursor.fetchall()
    read = _rows_read(plan[0]["Plan"])
    assert read <= 4 * len(wanted), f"read {read} rows to find {len(wanted)}: {plan}"


def _rows_read(node: dict[str, Any]) -> int:
    """Rows a plan node produced or threw away, summed over the plan."""
    own = int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))
    own += int(node.get("Rows Removed by Index Recheck", 0))
    return own + sum(_rows_read(child) for child in node.get("Plans", ()))
