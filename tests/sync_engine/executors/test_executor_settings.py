"""Choosing the executor in billsync.yaml: what an admin sees when the choice cannot work."""

from __future__ import annotations

from pathlib import Path

from sync_engine.settings import load_settings
from tests.sync_engine.test_settings import ENV, GOOD, make_config, only, problems


def test_the_embedded_executor_is_the_default(tmp_path: Path) -> None:
    settings = load_settings(make_config(tmp_path), environ=ENV)
    assert settings.executor == "embedded" and settings.push_parts == 1


def test_procrastinate_on_sqlite_is_refused_with_the_reason_and_the_way_out(tmp_path: Path) -> None:
    path = make_config(tmp_path, GOOD + "executor: procrastinate\n")
    problem = only(problems(path), "executor")
    assert problem.line is not None
    assert "PostgreSQL" in problem.message and "sqlite" in problem.message
    assert problem.allowed is not None and "postgresql+psycopg://" in problem.allowed


def test_an_unknown_executor_lists_the_allowed_ones(tmp_path: Path) -> None:
    problem = only(problems(make_config(tmp_path, GOOD + "executor: celery\n")), "executor")
    assert "'celery'" in problem.message
    assert problem.allowed == "embedded, procrastinate"


def test_procrastinate_on_postgresql_loads(tmp_path: Path) -> None:
    text = GOOD + "executor: procrastinate\npush_parts: 4\ndatabase_url: postgresql+psycopg://b@db/billsync\n"
    settings = load_settings(make_config(tmp_path, text), environ=ENV)
    assert settings.executor == "procrastinate" and settings.push_parts == 4
