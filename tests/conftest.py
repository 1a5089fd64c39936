"""Fixtures shared by every test that needs the state store.

- ``db_url``: the URL of an empty database, once per backend: ``sqlite`` (a file in the test's
  temporary directory) and ``postgresql`` (only when ``BILLSYNC_TEST_DATABASE_URL`` is set, e.g.
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; skipped otherwise). On PostgreSQL each test
  gets its own schema, selected through ``search_path`` in the URL and dropped afterwards, so tests
  never see each other's rows and the URL works with ``make_engine`` and ``upgrade_database``.
- ``engine``: ``make_engine(db_url)`` after ``upgrade_database(db_url)`` (the real migrations).
- ``session_factory``: ``sync_engine.store.session_factory(engine)``; open one session per thread.
- ``session``: one session from it, closed (uncommitted work rolled back) after the test.

A test that asks for any of them runs twice, once per backend. Mark tests that only make sense on
PostgreSQL with ``@pytest.mark.postgres`` and skip them yourself when ``db_url`` is SQLite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from sync_engine.store.db import make_engine, upgrade_database
from sync_engine.store.db import session_factory as make_session_factory
from tests.demo_fixture import demo_workdir

#: ``demo_workdir`` is registered here once: pytest caches a session fixture per registration, so a
#: second conftest importing it would run the demo (minutes) a second time.
__all__ = ["demo_workdir"]

PG_URL_ENV = "BILLSYNC_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Engine]:
    """One engine on the PostgreSQL test database, used only to create and drop per-test schemas."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {PG_URL_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each backend (see the module docstring)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'billsync.db'}"
        return
    admin: Engine = request.getfixturevalue("_pg_admin")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the newest revision."""
    upgrade_database(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


# Property tests explore new examples on every developer run; CI runs a fixed, repeatable set so a
# red build always points at a change, never at luck (.ci/run sets HYPOTHESIS_PROFILE=ci).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    _hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
