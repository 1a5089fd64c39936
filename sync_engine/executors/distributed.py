"""The distributed executor: procrastinate's job queue in billsync's own PostgreSQL database.

``billsync daemon`` only enqueues; ``billsync worker`` processes (any number, any machine) run the
jobs. What keeps it correct:

- **One enqueue per fire, however many daemons.** Every daemon computes the same fire times (cron, or
  intervals counted from a fixed epoch). The fire is recorded as a ``sync_runs`` row (kind
  ``schedule``, status ``enqueued``, ``started_at`` = fire time) in the same transaction as its jobs,
  under a transaction-scoped advisory lock on (schedule, fire time): the second daemon waits for the
  first to commit, sees the row and enqueues nothing. Neither of procrastinate's own mechanisms is
  enough on its own: a ``queueing_lock`` only holds while the first job is still waiting (once a
  worker has picked it up, a late daemon would enqueue it again), and periodic tasks keep only the
  newest fire per task, are cron-only and run from the workers, not the daemon. The queueing lock is
  still used, per stream / step, so that runs do not pile up behind a slow worker.
- **One job per stream / step / destination part at a time:** procrastinate's ``lock``
  (``stream:NAME``, ``billing``, ``delivery``, ``collect``, ``push:DEST:PART``). The push also takes the
  cross-process push lock (see :mod:`sync_engine.push`), so a ``billsync sync`` run beside the workers
  never pushes the same rows.
- **Jobs enqueued with the state change that causes them:** an outbox row committed anywhere (the
  billing run's invoices, a resync, a void) enqueues the push of its destination in that transaction,
  through our own connection; a rollback takes both away. A push job waits at its start (an advisory
  lock barrier) until every transaction that found it already waiting has committed, so none of their
  rows can slip past it.
- **Stalled jobs recovered:** workers send heartbeats; every worker periodically retries the jobs of
  workers whose heartbeat stopped (``get_stalled_jobs`` / ``retry_job``). The outbox's idempotency
  (rows marked in flight before the call, looked up by natural key after a crash) makes the rerun
  of a push safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import signal
import socket
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate import manager as pmanager
from procrastinate import tasks as ptasks
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from procrastinate.worker import Worker
from sqlalchemy import Connection, Engine, event, make_url, select, text
from sqlalchemy.orm import Session

from connectors.errors import RetryableError
from sync_engine.executors.base import STEPS
from sync_engine.logging import get_logger
from sync_engine.runtime import Runtime, StopRequested
from sync_engine.settings import ScheduleSettings
from sync_engine.store.models import OutboxItem, SyncRun, utcnow
from sync_engine.store.process_lock import process_lock

log = get_logger("billsync.executor")

QUEUE = "billsync"
#: a push that left rows for later (throttled, waiting for another part's customers) comes back after
RETRY_LATER_SECONDS = 20
#: failures worth another attempt: a vendor still unavailable after the in-call retries, a stop request
RETRY = procrastinate.RetryStrategy(
    max_attempts=6, exponential_wait=3, retry_exceptions={RetryableError, StopRequested}
)

app = procrastinate.App(connector=procrastinate.PsycopgConnector())
# Deferring always runs on a connection of ours, in our transaction; this manager never opens a pool.
_deferrer = pmanager.JobManager(SyncPsycopgConnector())


# -- the schema ---------------------------------------------------------------------------------


def apply_schema(engine: Engine) -> bool:
    """Create procrastinate's tables next to billsync's (the first schema of the search path), once.

    Idempotent and safe from several processes at once (an advisory lock); returns True when created.
    """
    sql = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    with engine.connect() as connection, connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key(connection, "queue-schema")})
        if connection.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return False
        connection.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
        return True


def conninfo(url: str) -> str:
    """libpq's form of a SQLAlchemy URL (keeps ``options=-csearch_path=...``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _key(connection: Connection | Session, name: str) -> int:
    """An advisory-lock key for ``name`` in this schema (two installations never share one)."""
    schema = connection.execute(text("SELECT current_schema()")).scalar()
    digest = hashlib.sha256(f"billsync:{schema}:{name}".encode()).digest()[:8]
    return int.from_bytes(digest, "big", signed=True)


# -- enqueueing -----------------------------------------------------------------------------------


def defer(
    session: Session,
    task: str,
    *,
    lock: str,
    queueing_lock: str | None = None,
    schedule_in: float | None = None,
    **kwargs: Any,
) -> int | None:
    """Enqueue ``task`` in the session's transaction; None when a job with ``queueing_lock`` waits already.

    A savepoint keeps the caller's transaction usable when procrastinate refuses the duplicate."""
    raw = session.connection().connection.driver_connection
    options: dict[str, Any] = {"lock": lock, "queueing_lock": queueing_lock, "queue": QUEUE}
    if schedule_in:
        options["schedule_in"] = {"seconds": schedule_in}
    deferrer = ptasks.configure_task(name=task, job_manager=_deferrer, connection=raw, **options)
    try:
        with session.begin_nested():
            return deferrer.defer(**kwargs)
    except pexc.AlreadyEnqueued:
        return None


def _push_lock(destination: str, part: int) -> str:
    return f"push:{destination}:{part}"


def defer_pushes(session: Session, runtime: Runtime, destinations: Iterable[str]) -> list[int]:
    """Make sure a push job of every part of ``destinations`` will run after this transaction commits;
    returns the ids of the jobs added (none for a part whose push is waiting already)."""
    parts = runtime.settings.push_parts
    wanted = [(d, p) for d in sorted(set(destinations)) for p in range(parts)]
    if not wanted:
        return []
    locks = [_push_lock(d, p) for d, p in wanted]
    # the barrier (see _barrier): a waiting job that a worker picks up now waits for our commit
    for name in locks:
        session.execute(
            text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _key(session, f"intake:{name}")}
        )
    waiting = set(
        session.scalars(
            text(
                "SELECT queueing_lock FROM procrastinate_jobs WHERE status = 'todo' AND queueing_lock = ANY(:l)"
            ),
            {"l": locks},
        )
    )
    added = []
    for (destination, part), name in zip(wanted, locks, strict=True):
        if name not in waiting:
            job = defer(
                session,
                "billsync.push",
                lock=name,
                queueing_lock=name,
                destination=destination,
                part=part,
                parts=parts,
            )
            if job is not None:
                added.append(job)
    return added


def _barrier(runtime: Runtime, name: str) -> None:
    """Wait until every transaction that saw this job waiting (and so did not enqueue another) committed."""
    with runtime.transaction() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key(session, f"intake:{name}")})


def install_outbox_hook(runtime: Runtime) -> None:
    """Every transaction of this runtime that adds outbox rows also enqueues their destinations' pushes."""
    apply_schema(runtime.engine)
    sessions = runtime.sessions

    @event.listens_for(sessions, "before_flush")
    def _collect(session: Session, _context: Any, _instances: Any) -> None:
        new = {o.destination for o in session.new if isinstance(o, OutboxItem)}
        if new:
            session.info.setdefault("billsync_outbox", set()).update(new)

    @event.listens_for(sessions, "before_commit")
    def _enqueue(session: Session) -> None:
        session.flush()
        destinations = session.info.pop("billsync_outbox", None)
        if destinations:
            defer_pushes(session, runtime, destinations)

    @event.listens_for(sessions, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop("billsync_outbox", None)


def enqueue_steps(
    session: Session, runtime: Runtime, steps: tuple[str, ...], as_of: dt.date, cycle: int | None = None
) -> list[int]:
    """Enqueue the jobs of ``steps``; a cycle starts with its pulls, the rest follows when they end."""
    settings = runtime.settings
    ids: list[int | None] = []
    if "pull" in steps:
        ids += enqueue_pulls(session, runtime, cycle).values()
        if cycle is not None:
            return [i for i in ids if i is not None]
    if "bill" in steps:
        after = [s for s in steps if s in ("deliver", "collect", "push")]
        ids.append(
            defer(
                session,
                "billsync.bill",
                lock="billing",
                queueing_lock="billing",
                as_of=str(as_of),
                then=after,
            )
        )
        steps = tuple(s for s in steps if s not in after)  # the billing job enqueues them when it ends
    if "deliver" in steps:
        ids.append(defer(session, "billsync.deliver", lock="delivery", queueing_lock="delivery"))
    if "collect" in steps:
        ids.append(
            defer(session, "billsync.collect", lock="collect", queueing_lock="collect", as_of=str(as_of))
        )
    if "push" in steps:
        ids += defer_pushes(session, runtime, [d.name for d in settings.destinations])
    return [i for i in ids if i is not None]


def enqueue_pulls(session: Session, runtime: Runtime, cycle: int | None = None) -> dict[str, int]:
    """A pull job per enabled stream, unless one waits already; returns the streams enqueued."""
    enqueued = {}
    for stream in runtime.settings.streams:
        if stream.enabled:
            name = f"stream:{stream.name}"
            job = defer(
                session, "billsync.pull", lock=name, queueing_lock=name, stream=stream.name, cycle=cycle
            )
            if job is not None:
                enqueued[stream.name] = job
    return enqueued


class ProcrastinateExecutor:
    """The daemon side: each fire of a schedule enqueues its jobs once, whatever the number of daemons."""

    aligned_triggers = True

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def fire(self, schedule: ScheduleSettings, fire_time: dt.datetime | None = None) -> None:
        enqueue_fire(self.runtime, schedule, fire_time or dt.datetime.now(dt.UTC))

    def close(self) -> None:
        return None


def enqueue_fire(runtime: Runtime, schedule: ScheduleSettings, fire_time: dt.datetime) -> list[int] | None:
    """Enqueue the jobs of one fire; None when another daemon enqueued this fire already."""
    fire_time = fire_time.astimezone(dt.UTC)
    with runtime.transaction() as session:
        key = _key(session, f"schedule:{schedule.name}:{fire_time.isoformat()}")
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        done = session.scalar(
            select(SyncRun.id).where(
                SyncRun.kind == "schedule",
                SyncRun.stream == schedule.name,
                SyncRun.status == "enqueued",
                SyncRun.started_at == fire_time,
            )
        )
        if done is not None:
            log.info("fire already enqueued by another daemon", schedule=schedule.name, due=str(fire_time))
            return None
        run = SyncRun(kind="schedule", stream=schedule.name, status="enqueued", started_at=fire_time)
        session.add(run)
        session.flush()
        steps = STEPS[schedule.job]
        if steps[0] == "pull" and len(steps) > 1:  # a cycle: billing and the rest follow the last pull
            pulls = enqueue_pulls(session, runtime, cycle=run.id)
            jobs = list(pulls.values())
            run.counts = {"jobs": jobs, "waiting": sorted(pulls)}
            if not pulls:  # nothing to pull (or every pull waits already): go on at once
                jobs += enqueue_steps(session, runtime, steps[1:], fire_time.date())
        else:
            jobs = enqueue_steps(session, runtime, steps, fire_time.date())
            run.counts = {"jobs": jobs}
        run.finished_at = utcnow()
    log.info("fire enqueued", schedule=schedule.name, due=str(fire_time), jobs=jobs)
    return jobs


# -- the tasks (run by billsync worker) ---------------------------------------------------------


def _runtime(context: procrastinate.JobContext) -> Runtime:
    runtime: Runtime = context.additional_context["runtime"]
    return runtime


@app.task(name="billsync.pull", queue=QUEUE, pass_context=True, retry=RETRY)
def pull_task(context: procrastinate.JobContext, stream: str, cycle: int | None = None) -> None:
    """Pull one stream; the last pull of a cycle enqueues its billing run (same transaction)."""
    from sync_engine.pull import pull_stream

    runtime = _runtime(context)
    settings = next((s for s in runtime.settings.streams if s.name == stream), None)
    try:
        if settings is not None and settings.enabled:
            pull_stream(runtime, settings)
    finally:
        if cycle is not None:
            _pull_done(runtime, cycle, stream)


def _pull_done(runtime: Runtime, cycle: int, stream: str) -> None:
    with runtime.transaction() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.id == cycle).with_for_update()).first()
        if run is None:
            return
        counts = dict(run.counts or {})
        waiting = [s for s in counts.get("waiting", []) if s != stream]
        if waiting == counts.get("waiting"):
            return  # a retried job already reported
        counts["waiting"] = waiting
        run.counts = counts
        if not waiting:
            steps = STEPS["cycle"][1:]
            enqueue_steps(session, runtime, steps, run.started_at.date())


@app.task(name="billsync.bill", queue=QUEUE, pass_context=True, retry=RETRY)
def bill_task(context: procrastinate.JobContext, as_of: str, then: list[str] | None = None) -> None:
    """The billing run; each invoice's transaction enqueues its pushes (the outbox hook)."""
    from sync_engine.invoicing import run_billing

    runtime = _runtime(context)
    day = dt.date.fromisoformat(as_of)
    run_billing(runtime, day)
    if then:
        with runtime.transaction() as session:
            enqueue_steps(session, runtime, tuple(then), day)


@app.task(name="billsync.deliver", queue=QUEUE, pass_context=True, retry=RETRY)
def deliver_task(context: procrastinate.JobContext) -> None:
    from sync_engine.delivery import run_deliveries
    from sync_engine.einvoices import run_folder_exports

    runtime = _runtime(context)
    run_deliveries(runtime)
    run_folder_exports(runtime)


@app.task(name="billsync.collect", queue=QUEUE, pass_context=True, retry=RETRY)
def collect_task(context: procrastinate.JobContext, as_of: str) -> None:
    from sync_engine.receivables import run_receivables

    run_receivables(_runtime(context), as_of=dt.date.fromisoformat(as_of))


@app.task(name="billsync.push", queue=QUEUE, pass_context=True, retry=RETRY)
def push_task(context: procrastinate.JobContext, destination: str, part: int, parts: int) -> None:
    """Push one part of a destination's outbox; what is left for later comes back as a new job."""
    from sync_engine.push import push_destination

    runtime = _runtime(context)
    settings = next((d for d in runtime.settings.destinations if d.name == destination), None)
    if settings is None:
        log.warning("push of a destination no longer configured; dropped", destination=destination)
        return
    name = _push_lock(destination, part)
    _barrier(runtime, name)
    result = push_destination(runtime, settings, part=(part, parts))
    progressed = bool(result.sent) or bool(result.adopted)
    if result.busy or result.retry_later or (result.deferred and progressed):
        with runtime.transaction() as session:
            defer(
                session,
                "billsync.push",
                lock=name,
                queueing_lock=name,
                schedule_in=RETRY_LATER_SECONDS,
                destination=destination,
                part=part,
                parts=parts,
            )
    log.info(
        "push finished",
        destination=destination,
        part=f"{part + 1}/{parts}",
        sent=result.sent,
        deferred=result.deferred,
        busy=result.busy,
    )


# -- the worker -----------------------------------------------------------------------------------


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def run_worker(runtime: Runtime, *, name: str | None, concurrency: int, heartbeat: float = 10.0) -> int:
    """Run jobs until SIGTERM/SIGINT (the jobs in hand stop at a checkpoint). Exit code 3: name taken."""
    name = name or default_worker_name()
    with process_lock(runtime.engine, f"worker-{name}") as unique:
        if not unique:
            log.error("another worker with this name is running", worker=name)
            return 3
        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo(runtime.settings.database_url), min_size=1, max_size=concurrency + 4
        )
        with app.replace_connector(connector):
            asyncio.run(_work(runtime, name, concurrency, heartbeat))
    return 0


async def _work(
    runtime: Runtime,
    name: str,
    concurrency: int,
    heartbeat: float,
    *,
    install_signals: bool = True,
    started: Callable[[Worker], None] | None = None,
) -> None:
    """The worker's event loop: procrastinate's worker plus the stalled-job recovery beside it."""
    async with app.open_async():
        worker = Worker(
            app,
            queues=[QUEUE],
            name=name,
            concurrency=concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=heartbeat,
            stalled_worker_timeout=3 * heartbeat,
            fetch_job_polling_interval=1.0,
            additional_context={"runtime": runtime},
        )
        loop = asyncio.get_running_loop()

        def stop() -> None:
            log.info("stop requested; the jobs in hand end at their next checkpoint", worker=name)
            runtime.stop_event.set()
            worker.stop()  # type: ignore[no-untyped-call]

        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop)
        if started is not None:
            started(worker)
        recover = asyncio.create_task(_recover_stalled(3 * heartbeat))
        log.info("worker started", worker=name, concurrency=concurrency)
        try:
            await worker.run()  # type: ignore[no-untyped-call]
        finally:
            recover.cancel()
        log.info("worker stopped", worker=name)


async def _recover_stalled(stalled_after: float) -> None:
    """Retry the jobs of workers whose heartbeat stopped (killed, machine lost)."""
    while True:
        try:
            await retry_stalled_jobs(stalled_after)
        except Exception as exc:  # a database hiccup must not stop the worker
            log.warning("could not check for stalled jobs", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(max(1.0, stalled_after / 3))


async def retry_stalled_jobs(stalled_after: float) -> list[int]:
    """Put the stalled jobs back in the queue; returns their ids."""
    stalled = await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled_after)
    retried = []
    for job in stalled:
        assert job.id is not None
        await app.job_manager.retry_job(job)
        retried.append(job.id)
        log.warning("retrying a job of a stalled worker", job=job.id, task=job.task_name)
    return retried
