"""``billsync daemon``: the schedules of billsync.yaml, run unattended.

Choices made deliberately (DESIGN.md §5, and the failure that hits such daemons in production):
- APScheduler 3.11 in UTC, in this process only; its job store is in memory and never shared
  (APScheduler forbids sharing one between processes); the state that matters is in our database.
- ``coalesce`` (default true): runs missed while the daemon was busy or down collapse into one.
- ``misfire_grace_seconds`` (default 300): a run up to 5 minutes late still happens. APScheduler's
  default grace of 1 second silently skips runs after any pause; here a skipped run is logged as a
  warning and recorded in the run history.
- ``max_instances=1`` and a lock per stream / destination / billing: one run of each at a time.
- SIGTERM/SIGINT: no new runs start; the run in hand stops at its next checkpoint (between pages,
  batches, invoices), with everything done so far committed; the process exits 0. The next start
  resumes from the cursors and the outbox, without duplicates.
- Where a fire's work runs is the executor's business (:mod:`sync_engine.executors`): here, in a thread
  pool (``embedded``), or in ``billsync worker`` processes (``procrastinate``: the daemon only
  enqueues, each fire once however many daemons run).
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import run_job as aps_run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from sync_engine.executors import Executor, make_executor
from sync_engine.executors.base import STEPS
from sync_engine.executors.embedded import run_job
from sync_engine.logging import get_logger
from sync_engine.runtime import Runtime
from sync_engine.store.models import SyncRun, utcnow

__all__ = ["STEPS", "Daemon", "run_job"]

log = get_logger("billsync.daemon")


class _Fire:
    """An APScheduler job as seen for one of its fire times: called with ``fire_time=`` that time."""

    def __init__(self, job: Any, fire_time: dt.datetime) -> None:
        self.id, self.misfire_grace_time = job.id, job.misfire_grace_time
        self.func, self.args, self.kwargs = job.func, job.args, {**job.kwargs, "fire_time": fire_time}
        self._text = str(job)

    def __str__(self) -> str:
        return self._text


def _run_fires(job: Any, jobstore: str, run_times: list[dt.datetime], logger_name: str) -> list[Any]:
    events: list[Any] = []
    for run_time in run_times:
        events += aps_run_job(_Fire(job, run_time), jobstore, [run_time], logger_name)
    return events


class _FireTimePool(ThreadPoolExecutor):  # type: ignore[misc]
    """APScheduler's thread pool, except that each call learns the fire time it is for (which the
    distributed executor needs to enqueue a fire once; APScheduler 3 does not pass it)."""

    def _do_submit_job(self, job: Any, run_times: list[dt.datetime]) -> None:
        def callback(future: Any) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(
            _run_fires, job, job._jobstore_alias, run_times, self._logger.name
        ).add_done_callback(callback)


class Daemon:
    def __init__(self, runtime: Runtime, *, workers: int = 2, executor: Executor | None = None) -> None:
        self.runtime = runtime
        self.executor = executor or make_executor(runtime)
        self.stopped = threading.Event()
        self.scheduler = BackgroundScheduler(
            timezone=dt.UTC, executors={"default": _FireTimePool(max_workers=workers)}
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        for schedule in runtime.settings.schedules:
            self.scheduler.add_job(
                self.executor.fire,
                trigger=schedule.trigger(aligned=self.executor.aligned_triggers),
                args=[schedule],
                id=schedule.name,
                name=schedule.name,
                misfire_grace_time=schedule.misfire_grace_seconds,
                coalesce=schedule.coalesce,
                max_instances=1,
                replace_existing=True,
            )

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "scheduled run missed (later than its misfire grace)",
                schedule=event.job_id,
                due=str(event.scheduled_run_time),
            )
            with self.runtime.transaction() as session:
                session.add(
                    SyncRun(
                        kind="schedule",
                        stream=str(event.job_id),
                        status="missed",
                        finished_at=utcnow(),
                        counts={"due": str(event.scheduled_run_time)},
                    )
                )
        elif event.exception is not None:
            log.error(
                "scheduled run failed",
                schedule=event.job_id,
                error=f"{type(event.exception).__name__}: {event.exception}",
            )

    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        log.info("stop requested; finishing the batch in hand", signal=signum)
        self.runtime.stop_event.set()
        self.stopped.set()

    def run(self, *, run_now: bool = False) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.scheduler.start()
        if run_now:
            for job in self.scheduler.get_jobs():
                job.modify(next_run_time=dt.datetime.now(dt.UTC))
        log.info("daemon started", schedules=[job.id for job in self.scheduler.get_jobs()])
        while not self.stopped.wait(1.0):
            pass
        self.scheduler.shutdown(wait=True)  # running jobs end at their next checkpoint
        self.executor.close()
        self.runtime.close()
        log.info("daemon stopped")
        return 0
