"""The interface between the daemon's schedules and whatever runs their work."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sync_engine.runtime import Runtime
    from sync_engine.settings import ScheduleSettings

#: The steps of each schedule ``job``, in the order a cycle runs them.
STEPS: dict[str, tuple[str, ...]] = {
    "pull": ("pull",),
    "bill": ("bill",),
    "deliver": ("deliver",),
    "collect": ("collect",),
    "push": ("push",),
    "cycle": ("pull", "bill", "deliver", "collect", "push"),
}


class Executor(Protocol):
    """Turns one fire of a schedule into work: run it here, or enqueue it for the workers."""

    #: intervals count from a fixed epoch, so every daemon computes the same fire times
    aligned_triggers: bool

    def fire(self, schedule: ScheduleSettings, fire_time: dt.datetime | None = None) -> None:
        """Called by the daemon's scheduler thread when ``schedule`` is due at ``fire_time``."""

    def close(self) -> None:
        """Release what the executor holds (nothing for the embedded one)."""


def make_executor(runtime: Runtime) -> Executor:
    """The executor that billsync.yaml asks for."""
    if runtime.settings.executor == "procrastinate":
        from sync_engine.executors.distributed import ProcrastinateExecutor

        return ProcrastinateExecutor(runtime)
    from sync_engine.executors.embedded import EmbeddedExecutor

    return EmbeddedExecutor(runtime)
