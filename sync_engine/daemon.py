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
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from sync_engine.cycle import run_cycle
from sync_engine.logging import get_logger
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import ScheduleSettings
from sync_engine.store.models import SyncRun, utcnow

log = get_logger("billsync.daemon")
STEPS = {
    "pull": ("pull",),
    "bill": ("bill",),
    "deliver": ("deliver",),
    "collect": ("collect",),
    "push": ("push",),
    "cycle": ("pull", "bill", "deliver", "collect", "push"),
}


def run_job(runtime: Runtime, schedule: ScheduleSettings) -> None:
    """One scheduled run; a stop request ends it quietly at a checkpoint."""
    log.info("run starting", schedule=schedule.name, job=schedule.job)
    try:
        result = run_cycle(runtime, as_of=dt.datetime.now(dt.UTC).date(), steps=STEPS[schedule.job])
    except StopRequested:
        log.info("run stopped at a checkpoint; the work done is committed", schedule=schedule.name)
        return
    log.info(
        "run finished",
        schedule=schedule.name,
        pulled={p.stream: p.read for p in result.pulls},
        invoices=result.bill.invoices_created if result.bill else None,
        pushed={p.destination: p.sent for p in result.pushes},
    )


class Daemon:
    def __init__(self, runtime: Runtime, *, workers: int = 2) -> None:
        self.runtime = runtime
        self.stopped = threading.Event()
        self.scheduler = BackgroundScheduler(
            timezone=dt.UTC, executors={"default": ThreadPoolExecutor(max_workers=workers)}
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        for schedule in runtime.settings.schedules:
            self.scheduler.add_job(
                run_job,
                trigger=schedule.trigger(),
                args=[runtime, schedule],
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
        self.runtime.close()
        log.info("daemon stopped")
        return 0
