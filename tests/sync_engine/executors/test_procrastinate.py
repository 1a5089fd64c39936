"""The distributed executor on PostgreSQL: what an operator running several daemons and workers relies on."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import procrastinate
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select, text

from connectors.quickbooks.sandbox import QuickBooksSandbox
from connectors.salesforce.sandbox import SalesforceSandbox
from sync_engine.daemon import Daemon
from sync_engine.demo import write_workdir
from sync_engine.executors import distributed
from sync_engine.outbox import enqueue
from sync_engine.runtime import Runtime
from sync_engine.settings import ScheduleSettings, Settings, load_settings
from sync_engine.store.db import upgrade_database
from sync_engine.store.models import OutboxItem, SyncRun

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Iterator[Settings]:
    if not db_url.startswith("postgresql"):
        pytest.skip("the procrastinate executor needs PostgreSQL")
    with SalesforceSandbox(cert_dir=tmp_path) as sf, QuickBooksSandbox(cert_dir=tmp_path) as qbo:
        settings = load_settings(write_workdir(tmp_path, sf, qbo))
        settings.database_url = db_url
        settings.executor = "procrastinate"
        settings.push_parts = 2
        upgrade_database(db_url)
        yield settings


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)  # applies procrastinate's schema and installs the outbox hook
    yield runtime
    runtime.close()


def jobs(runtime: Runtime, task: str | None = None) -> list[dict[str, Any]]:
    with runtime.transaction() as session:
        rows = session.execute(
            text(
                "SELECT id, task_name, status, lock, args, attempts FROM procrastinate_jobs"
                " WHERE (CAST(:t AS text) IS NULL OR task_name = :t) ORDER BY id"
            ),
            {"t": task},
        )
        return [dict(row._mapping) for row in rows]


def take_waiting_jobs(runtime: Runtime) -> None:
    """What a worker does to a job: picks it up (doing), then finishes it."""
    with runtime.transaction() as session:
        session.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'"))
    with runtime.transaction() as session:
        session.execute(text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE status = 'doing'"))


class WorkerThread:
    """A ``billsync worker`` inside the test process (its own event loop, no signal handlers)."""

    def __init__(self, runtime: Runtime, *, concurrency: int = 2, heartbeat: float = 10.0) -> None:
        self.runtime, self.concurrency, self.heartbeat = runtime, concurrency, heartbeat
        self.ready = threading.Event()
        self.worker: Any = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _started(self, worker: Any) -> None:
        self.worker = worker
        self.ready.set()

    def _main(self) -> None:
        connector = procrastinate.PsycopgConnector(
            conninfo=distributed.conninfo(self.runtime.settings.database_url), min_size=1, max_size=8
        )
        with distributed.app.replace_connector(connector):
            asyncio.run(
                distributed._work(
                    self.runtime,
                    "test-worker",
                    self.concurrency,
                    self.heartbeat,
                    install_signals=False,
                    started=self._started,
                )
            )

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        assert self.ready.wait(20), "the worker did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(30)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_db_upgrade_applies_the_queue_schema_once(runtime: Runtime) -> None:
    assert distributed.apply_schema(runtime.engine) is False  # the runtime created it; again: no-op
    assert jobs(runtime) == []


def test_two_daemons_side_by_side_enqueue_each_scheduled_run_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_second = IntervalTrigger(seconds=1, start_date=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    monkeypatch.setattr(ScheduleSettings, "trigger", lambda self, aligned=False: every_second)
    settings.schedules = [ScheduleSettings(name="bill-often", job="bill", every_minutes=1)]
    first, second = Runtime(settings), Runtime(settings)
    fired: Counter[dt.datetime] = Counter()
    daemons = [Daemon(first), Daemon(second)]
    for daemon in daemons:
        fire = daemon.executor.fire

        def counted(
            schedule: ScheduleSettings, fire_time: dt.datetime | None = None, fire: Any = fire
        ) -> None:
            assert fire_time is not None
            fired[fire_time] += 1
            fire(schedule, fire_time)

        daemon.scheduler.modify_job("bill-often", func=counted)
    try:
        for daemon in daemons:
            daemon.scheduler.start()
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:  # a fast worker: every job is taken as soon as it exists
            take_waiting_jobs(first)
            time.sleep(0.05)
    finally:
        for daemon in daemons:
            daemon.scheduler.shutdown(wait=True)
    take_waiting_jobs(first)
    with first.transaction() as session:
        recorded = list(session.scalars(select(SyncRun).where(SyncRun.kind == "schedule")))
    both = [t for t, n in fired.items() if n == 2]
    assert len(both) >= 3, f"both daemons should have fired the same seconds: {fired}"
    fires = Counter(run.started_at for run in recorded)
    assert set(fires) == set(fired) and max(fires.values()) == 1  # one record per fire time
    bill_jobs = jobs(first, "billsync.bill")
    assert len(bill_jobs) == sum(len(run.counts["jobs"]) for run in recorded)
    assert len(bill_jobs) >= len(fires) - 1  # the fast worker left (nearly) every fire its own job
    first.close()
    second.close()


def test_a_daemon_late_for_a_fire_another_enqueued_enqueues_nothing(
    runtime: Runtime, settings: Settings
) -> None:
    schedule = ScheduleSettings(name="nightly", job="cycle", cron="0 2 * * *")
    due = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
    first = distributed.enqueue_fire(runtime, schedule, due)
    assert first and len(first) == len([s for s in settings.streams if s.enabled])
    take_waiting_jobs(runtime)  # the pulls were picked up: a queueing lock alone would not stop a rerun
    late = Runtime(settings)
    try:
        assert distributed.enqueue_fire(late, schedule, due) is None
    finally:
        late.close()
    assert len(jobs(runtime, "billsync.pull")) == len(first)


def test_the_stream_lock_keeps_two_syncs_of_one_stream_apart(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans: dict[str, list[tuple[float, float]]] = {}
    guard = threading.Lock()

    def slow_pull(rt: Runtime, stream: Any, *args: Any, **kwargs: Any) -> None:
        start = time.monotonic()
        time.sleep(0.6)
        with guard:
            spans.setdefault(stream.name, []).append((start, time.monotonic()))

    monkeypatch.setattr("sync_engine.pull.pull_stream", slow_pull)
    accounts, orders = "sf-account", "sf-order"
    with runtime.transaction() as session:
        for stream in (accounts, accounts, orders):
            distributed.defer(session, "billsync.pull", lock=f"stream:{stream}", stream=stream)
    with WorkerThread(runtime, concurrency=3):
        wait_for(
            lambda: all(j["status"] == "succeeded" for j in jobs(runtime)), 30, "the three pulls to finish"
        )
    (a1, a2), (b,) = sorted(spans[accounts]), spans[orders]
    assert a1[1] <= a2[0], "two syncs of one stream overlapped"
    assert b[0] < a1[1], "another stream should run beside it"


def test_a_job_enqueued_with_its_state_change_is_gone_when_that_transaction_rolls_back(
    runtime: Runtime,
) -> None:
    def owe_an_invoice(canonical_id: str) -> None:
        with runtime.transaction() as session:
            enqueue(
                session,
                destination="quickbooks",
                entity="invoice",
                canonical_id=canonical_id,
                action="upsert",
                version="1",
            )
            # a job deferred explicitly mid-transaction shares its fate too
            distributed.defer(session, "billsync.deliver", lock="delivery", queueing_lock="delivery")
            if canonical_id == "inv_rolled_back":
                raise RuntimeError("the billing run failed after writing the invoice")

    with pytest.raises(RuntimeError):
        owe_an_invoice("inv_rolled_back")
    assert jobs(runtime) == []
    owe_an_invoice("inv_committed")
    pushes = jobs(runtime, "billsync.push")
    assert sorted((j["args"]["destination"], j["args"]["part"]) for j in pushes) == [
        ("quickbooks", 0),
        ("quickbooks", 1),
    ]
    assert len(jobs(runtime, "billsync.deliver")) == 1
    with runtime.transaction() as session:
        assert [r.canonical_id for r in session.scalars(select(OutboxItem))] == ["inv_committed"]
    owe_an_invoice("inv_second")  # the pushes still wait: not enqueued twice
    assert len(jobs(runtime, "billsync.push")) == 2


def test_a_stalled_job_of_a_killed_worker_is_retried(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        distributed.defer_pushes(session, runtime, ["quickbooks"])
        # a worker that took one push and then died: no heartbeat for an hour
        dead = session.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
            )
        ).scalar_one()
        session.execute(
            text("SELECT procrastinate_fetch_job_v2(ARRAY['billsync']::varchar[], :w)"), {"w": dead}
        )
    stuck = [j for j in jobs(runtime) if j["status"] == "doing"]
    assert len(stuck) == 1
    with WorkerThread(runtime, heartbeat=0.5):
        wait_for(
            lambda: all(j["status"] == "succeeded" for j in jobs(runtime)), 30, "the stalled push to be rerun"
        )
    rerun = next(j for j in jobs(runtime) if j["id"] == stuck[0]["id"])
    assert rerun["status"] == "succeeded" and rerun["attempts"] >= 1
