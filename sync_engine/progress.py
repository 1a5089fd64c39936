"""Progress bars for people (rich), behind the small ``Progress`` interface of the cycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class RichProgress:
    """One line per step: a spinner while it runs, the count of records it handled, the time."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<36}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        task_id = self._progress.add_task(description, total=total)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self._progress.update(task_id, completed=done)

        try:
            yield advance
        finally:
            self._progress.update(task_id, total=max(done, 1), completed=max(done, 1) if done == 0 else done)
