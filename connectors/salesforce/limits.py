"""The org's daily API allowance, read from Salesforce's own answers, with a reserve billsync leaves alone.

Every API call counts against a rolling 24-hour allowance shared by every integration of the org; past
it, Salesforce refuses *all* of them (403 ``REQUEST_LIMIT_EXCEEDED``) until the window rolls on. So
billsync stops earlier: every REST answer carries ``Sforce-Limit-Info: api-usage=N/M``, and once
``N`` plus the calls still in flight would reach ``M`` less the reserve, the next call raises
:class:`~connectors.salesforce.errors.ApiBudgetError` (a FatalError: the stream stops and a person is
told) instead of being sent. One :class:`ApiBudget` per org is shared by the process's threads.

Answers of concurrent calls may come back out of order: a lower usage is believed only from a call
sent after the current figure was learned, so an old answer never makes the budget look larger.

What it knows ages: after :data:`RECHECK_SECONDS` without an answer it lets one call through to learn
the current usage (the window rolls, and other integrations' calls come and go).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable

from connectors.salesforce.errors import SYSTEM, ApiBudgetError

__all__ = ["RECHECK_SECONDS", "ApiBudget", "parse_limit_info", "shared_budget"]

#: Seconds after which the last known usage no longer stops a call (one call then learns it anew).
RECHECK_SECONDS = 300.0
_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """``(used, max)`` from a ``Sforce-Limit-Info`` value (``api-usage=25/15000``), None if absent."""
    match = _API_USAGE.search(header or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


class ApiBudget:
    """What Salesforce last said of the org's daily API usage, the calls in flight, and the reserve
    (``reserve_percent`` of the allowance) that no call of billsync may eat into. Thread-safe."""

    def __init__(self, reserve_percent: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= reserve_percent < 100.0:
            raise ValueError("the reserve is a percentage between 0 and 100")
        self.reserve_percent = reserve_percent
        self._clock = clock
        self._lock = threading.Lock()
        self.used: int | None = None
        self.max: int | None = None
        self._seen_at = 0.0
        self._in_flight = 0
        self._sent = 0  # calls counted by before_call so far
        self._learned_after = 0  # how many had been sent when ``used`` was learned

    @property
    def reserve(self) -> int | None:
        """Calls of the allowance left to others (None until Salesforce told the allowance)."""
        return None if self.max is None else math.ceil(self.max * self.reserve_percent / 100.0)

    def before_call(self) -> int:
        """Count a call as in flight and return its ticket for :meth:`after_call`, or raise
        ApiBudgetError if it would eat into the reserve."""
        with self._lock:
            known = self.used is not None and self.max is not None
            fresh = self._clock() - self._seen_at < RECHECK_SECONDS
            if known and fresh:
                assert self.used is not None and self.max is not None and self.reserve is not None
                usable = self.max - self.reserve
                if self.used + self._in_flight + 1 > usable:
                    raise ApiBudgetError(
                        f"Salesforce daily API allowance nearly used: {self.used:,} of {self.max:,} "
                        f"requests in the last 24 hours. billsync keeps {self.reserve:,} "
                        f"({self.reserve_percent:g} %) for the org's other integrations and sends nothing "
                        f"more while the usage is {usable:,} or more (daily_api_reserve_percent in the "
                        "connection settings).",
                        code="API_BUDGET_RESERVE",
                        system=SYSTEM,
                    )
            self._in_flight += 1
            self._sent += 1
            return self._sent

    def after_call(self, ticket: int, limit_info: str | None) -> None:
        """The call of ``ticket`` ended; ``limit_info`` is its answer's ``Sforce-Limit-Info``."""
        parsed = parse_limit_info(limit_info)
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if parsed is None:
                return
            newer = ticket > self._learned_after  # sent after the figure we hold was learned
            if self.used is None or newer or parsed[0] >= self.used:
                self.used, self.max = parsed
                self._learned_after = self._sent
                self._seen_at = self._clock()


def shared_budget(key: object, reserve_percent: float) -> ApiBudget:
    """The process's one budget for an org (``key``: its login host and user) and this reserve."""
    with _lock:
        budget = _budgets.get((key, reserve_percent))
        if budget is None:
            budget = _budgets[(key, reserve_percent)] = ApiBudget(reserve_percent)
        return budget


_budgets: dict[object, ApiBudget] = {}
_lock = threading.Lock()
