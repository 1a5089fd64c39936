"""Client-side rate limits: stay under a vendor's throttles instead of being refused by them.

A vendor's "N requests a minute" and "N requests in flight" hold per account (a QBO company), not per
connection, so one :class:`RateLimiter` is shared by every thread of a process that talks to that
account (:func:`shared_limiter`). It blocks a call until it fits, which costs less than a throttle
answer and its 60-second penalty; it never raises.

Why it counts from the *answer*: the server counts a request when it arrives, somewhere between our
send and our receipt of its answer. A call holds its place in the window while in flight and from the
moment its answer came back, so whenever we send, every request the server may still count in its
window is counted here too: we never exceed ``limit`` in any window the server can observe, whatever
the latency. The price is one round trip of slack per window (0.1 % of a minute at 50 ms).

Several processes for one account each have their own limiter: give each a share of the limits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Rate", "RateLimiter", "shared_limiter"]


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` calls in any ``window`` seconds."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ValueError("a rate needs a limit >= 1 and a window > 0 seconds")


class _Log:
    """The calls of one rate: how many are in flight, and when the answered ones came back."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.in_flight = 0
        self.done: deque[float] = deque()

    def wait(self, now: float) -> float | None:
        """Seconds until one more call fits (0: now; None: when an in-flight call is answered)."""
        while self.done and self.done[0] <= now - self.rate.window:
            self.done.popleft()
        excess = self.in_flight + len(self.done) - self.rate.limit + 1
        if excess <= 0:
            return 0.0
        if excess > len(self.done):
            return None
        return self.done[excess - 1] + self.rate.window - now


class RateLimiter:
    """Rates by kind (e.g. ``{"request": Rate(500, 60), "batch": Rate(40, 60)}``) and a cap on calls
    in flight, for one vendor account; thread-safe.

    ``with limiter.slot("request", "batch"): send()`` waits until the call fits every named rate and
    the in-flight cap, and holds its place until the block ends (the answer came back). Kinds without
    a rate are ignored. ``waited`` (seconds) and ``calls`` say how much pacing happened.
    """

    def __init__(
        self,
        rates: Mapping[str, Rate],
        *,
        max_in_flight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.rates = dict(rates)
        self.max_in_flight = max_in_flight
        self._logs = {kind: _Log(rate) for kind, rate in self.rates.items()}
        self._clock = clock
        self._in_flight = 0
        self._cond = threading.Condition()
        self.calls = 0
        self.waited = 0.0
        self.peak_in_flight = 0

    def _wait(self, logs: list[_Log], now: float) -> float | None:
        if self.max_in_flight is not None and self._in_flight >= self.max_in_flight:
            return None
        longest: float = 0.0
        for log in logs:
            wait = log.wait(now)
            if wait is None:
                return None
            longest = max(longest, wait)
        return longest

    def acquire(self, *kinds: str) -> None:
        """Block until one more call of these kinds fits, then count it as in flight."""
        logs = [self._logs[kind] for kind in dict.fromkeys(kinds) if kind in self._logs]
        started = self._clock()
        with self._cond:
            while True:
                wait = self._wait(logs, self._clock())
                if wait is not None and wait <= 0:
                    break
                # woken early when a call ends; otherwise when the oldest answer leaves its window
                self._cond.wait(timeout=wait)
            for log in logs:
                log.in_flight += 1
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            self.calls += 1
            self.waited += max(0.0, self._clock() - started)

    def release(self, *kinds: str) -> None:
        """The answer of a call acquired with the same kinds came back (or it failed)."""
        logs = [self._logs[kind] for kind in dict.fromkeys(kinds) if kind in self._logs]
        with self._cond:
            now = self._clock()
            for log in logs:
                log.in_flight -= 1
                log.done.append(now)
            self._in_flight -= 1
            self._cond.notify_all()

    @contextmanager
    def slot(self, *kinds: str) -> Iterator[None]:
        self.acquire(*kinds)
        try:
            yield
        finally:
            self.release(*kinds)


_shared: dict[Hashable, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(key: Hashable, make: Callable[[], RateLimiter]) -> RateLimiter:
    """The process's one limiter for ``key`` (an account and its limits), made on first use."""
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = make()
        return limiter
