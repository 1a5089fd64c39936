"""Engines, migrations and connection errors of the state store, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.store import (
    StoreError,
    check_connection,
    current_revision,
    head_revision,
    make_engine,
    upgrade_database,
)
from sync_engine.store import (
    session_factory as make_session_factory,
)
from sync_engine.store.models import Base, StreamCursor, SyncRun


def test_upgrade_creates_a_schema_identical_to_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None

    upgrade_database(db_url)

    assert current_revision(db_url) == head_revision()
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert diff == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrading_twice_is_a_no_op_that_keeps_the_data(db_url: str) -> None:
    upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine).begin() as session:
            session.add(StreamCursor(stream="salesforce.Account", value="2024-05-01T00:00:00Z"))

        upgrade_database(db_url)

        with make_session_factory(engine)() as session:
            cursor = session.get(StreamCursor, "salesforce.Account")
            assert cursor is not None and cursor.value == "2024-05-01T00:00:00Z"
    finally:
        engine.dispose()
    assert current_revision(db_url) == head_revision()


def test_workers_starting_together_may_all_upgrade(db_url: str) -> None:
    # forked, not spawned: no re-import, so three "workers" start in milliseconds
    workers = [
        multiprocessing.get_context("fork").Process(target=upgrade_database, args=(db_url,)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        if worker.exitcode is None:
            worker.kill()

    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert current_revision(db_url) == head_revision()


def test_upgrade_works_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    upgrade_database("sqlite:///relative.db")

    # the relative path is taken from the working directory, not from the package
    assert (elsewhere / "relative.db").exists()
    assert current_revision(f"sqlite:///{elsewhere / 'relative.db'}") == head_revision()


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_unreachable_postgresql_fails_fast_with_the_password_redacted() -> None:
    url = "postgresql+psycopg://billsync:hunter2-secret@127.0.0.1:1/billsync"

    with pytest.raises(StoreError) as caught:
        upgrade_database(url)

    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "billsync:***@127.0.0.1:1/billsync" in message


def test_sessions_on_an_unreachable_database_raise_store_error() -> None:
    engine = make_engine("postgresql+psycopg://billsync:hunter2-secret@127.0.0.1:1/billsync")
    with make_session_factory(engine)() as session, pytest.raises(StoreError) as caught:
        session.execute(text("SELECT 1"))
    assert "hunter2-secret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_check_connection_reports_an_unusable_sqlite_path(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'billsync.db'}")
    with pytest.raises(StoreError, match="missing-dir"):
        check_connection(engine)


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    engine = make_engine("postgresql://billsync:pw@127.0.0.1:1/billsync")
    assert engine.dialect.driver == "psycopg"


def test_unsupported_or_malformed_urls_are_refused_without_showing_the_password() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        make_engine("mysql://root:topsecret@localhost/db")
    with pytest.raises(StoreError) as caught:
        make_engine("not a url with topsecret")
    assert "topsecret" not in str(caught.value)


def test_timestamps_come_back_aware_in_utc(session: Session) -> None:
    started = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    session.add(SyncRun(kind="pull", stream="salesforce.Account", started_at=started))
    session.commit()
    session.expire_all()

    run = session.scalars(select(SyncRun)).one()

    assert run.started_at == started
    assert run.started_at.utcoffset() == dt.timedelta(0)
    assert run.started_at.hour == 7


def test_naive_timestamps_are_refused(session: Session) -> None:
    session.add(SyncRun(kind="pull", stream="s", started_at=dt.datetime(2024, 3, 1, 9, 30)))
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_a_read_only_session_does_not_block_writers(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with make_session_factory(engine, read_only=True)() as reader:
        reader.execute(text("SELECT count(*) FROM sync_runs")).scalar()  # transaction now open
        with session_factory.begin() as writer:  # would wait for busy_timeout if reads took the lock
            writer.add(SyncRun(kind="pull", stream="s"))
    with session_factory() as session:
        assert session.scalars(select(SyncRun)).one().stream == "s"


@pytest.mark.postgres
def test_postgresql_schema_of_each_test_is_isolated(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL isolation")
    assert "search_path" in db_url
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
    finally:
        engine.dispose()
