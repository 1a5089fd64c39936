"""The collector pause nests across threads and leaves the collector as it found it."""

from __future__ import annotations

import gc
import threading
import weakref

from sync_engine.gc_pause import collector_paused


def test_the_collector_runs_again_only_when_the_last_overlapping_run_ends() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with collector_paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other_run)
    with collector_paused():
        assert not gc.isenabled()
        thread.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other thread's run is still going
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_exception_still_re_enables_the_collector() -> None:
    try:
        with collector_paused():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.isenabled()


def test_garbage_from_before_the_pause_is_released_when_it_starts() -> None:
    """An abandoned session in a reference cycle would keep SQLite's write lock through the run."""

    class Abandoned:
        pass

    released: list[str] = []
    abandoned = Abandoned()
    abandoned.cycle = abandoned  # type: ignore[attr-defined]
    weakref.finalize(abandoned, released.append, "connection returned")
    del abandoned
    with collector_paused():
        assert released == ["connection returned"]
