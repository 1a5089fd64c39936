"""One sync cycle: pull every enabled stream, run billing, deliver the new invoices to customers,
collect payments, push to every destination.

The daemon's schedules, ``billsync sync`` and the demo all call :func:`run_cycle`; progress is
reported through a small callback interface so the CLI can draw bars and the daemon can log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from connectors.errors import RetryableError
from sync_engine.delivery import DeliveryResult, run_deliveries
from sync_engine.einvoices import FolderExportResult, run_folder_exports
from sync_engine.invoicing import BillResult, run_billing
from sync_engine.pull import PullResult, pull_stream
from sync_engine.push import PushResult, push_destination
from sync_engine.receivables import ReceivablesResult, run_receivables
from sync_engine.runtime import Runtime


class Progress(Protocol):
    """``task(description, total)`` opens a step and yields an ``advance(n)`` callback."""

    def task(
        self, description: str, total: int | None = None
    ) -> AbstractContextManager[Callable[[int], None]]: ...


class NoProgress:
    def task(
        self, description: str, total: int | None = None
    ) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda n: None)


@dataclass
class CycleResult:
    pulls: list[PullResult] = field(default_factory=list)
    bill: BillResult | None = None
    pushes: list[PushResult] = field(default_factory=list)
    #: streams / destinations that hit a transient failure: left for the next run, the rest went on
    retry_later: dict[str, str] = field(default_factory=dict)
    receivables: ReceivablesResult | None = None
    delivery: DeliveryResult | None = None
    einvoice_files: FolderExportResult | None = None

    @property
    def unfinished(self) -> bool:
        """True when the next run has work this one could not finish (transient failures)."""
        return bool(self.retry_later) or any(p.retry_later or p.deferred or p.busy for p in self.pushes)


@contextmanager
def _transient(result: CycleResult, name: str) -> Iterator[None]:
    """A stream or destination whose vendor stays unavailable past the in-call retries is left for
    the next run (its cursor / outbox keep its place); the other streams and steps go on."""
    try:
        yield
    except RetryableError as exc:
        result.retry_later[name] = str(exc)


def run_cycle(
    runtime: Runtime,
    *,
    as_of: dt.date,
    progress: Progress | None = None,
    steps: tuple[str, ...] = ("pull", "bill", "deliver", "collect", "push"),
) -> CycleResult:
    progress = progress or NoProgress()
    result = CycleResult()
    settings = runtime.settings
    if "pull" in steps:
        for stream in settings.streams:
            if stream.enabled:
                with (
                    runtime.lock(f"stream:{stream.name}"),
                    progress.task(f"pull {stream.name} ({stream.object})") as advance,
                ):
                    result.pulls.append(pull_stream(runtime, stream, advance))
    if "bill" in steps:
        with runtime.lock("billing"), progress.task(f"bill as of {as_of.isoformat()}") as advance:
            result.bill = run_billing(runtime, as_of, advance)
    if "deliver" in steps:
        with progress.task("deliver invoices to customers"):
            result.delivery = run_deliveries(runtime)
            result.einvoice_files = run_folder_exports(runtime)
    if "collect" in steps:
        with progress.task("payments, overdue invoices, reminders"):
            result.receivables = run_receivables(runtime, as_of=as_of)
    if "push" in steps:
        for destination in settings.destinations:
            with (
                runtime.lock(f"destination:{destination.name}"),
                progress.task(f"push to {destination.name}") as advance,
            ):
                result.pushes.append(push_destination(runtime, destination, advance))
    return result
