"""The embedded executor: a schedule's run happens in the daemon's own thread pool (the default)."""

from __future__ import annotations

import datetime as dt

from sync_engine.cycle import run_cycle
from sync_engine.executors.base import STEPS
from sync_engine.logging import get_logger
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import ScheduleSettings

log = get_logger("billsync.daemon")


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


class EmbeddedExecutor:
    """Runs the whole schedule in the calling (APScheduler pool) thread; locks live in the runtime."""

    aligned_triggers = False

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def fire(self, schedule: ScheduleSettings, fire_time: dt.datetime | None = None) -> None:
        run_job(self.runtime, schedule)

    def close(self) -> None:
        return None
