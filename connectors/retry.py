"""The one in-call retry policy every connector uses (tenacity underneath).

Two layers of retry (DESIGN.md §4): this module makes the *short* one, inside a call: a bounded number
of attempts, exponential backoff with jitter (so workers that failed together do not come back
together), and the vendor's ``Retry-After`` honoured, in seconds or as an HTTP date (RFC 7231). A wait
longer than ``max_wait`` is not slept: the :class:`~connectors.errors.RateLimitedError` is raised at
once so the job layer reschedules the work and frees the worker. The last error is always re-raised
as itself (``reraise=True``), never wrapped in tenacity's ``RetryError``.

A write that ended without an answer (:class:`~connectors.errors.OutcomeUnknownError`) may have been
applied; with ``write=True`` that fact survives the later attempts: whatever error ends the retries,
the caller gets an ``OutcomeUnknownError`` and must look the write up before sending it again.

``sleep`` and ``random`` are injectable so tests assert the waits without sleeping.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from connectors.errors import ConnectorError, OutcomeUnknownError, RateLimitedError, RetryableError

__all__ = ["RetryPolicy", "parse_retry_after", "retry_after_of"]

_T = TypeVar("_T")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date; None if absent/bad.

    A date in the past means "now" (0). ``now`` (a Unix time) makes date parsing testable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is not a wait
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 7231 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(error: BaseException | None) -> float | None:
    """The wait a rate-limited error asks for, in seconds (None for other errors or no hint)."""
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        return max(0.0, float(error.retry_after))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How a connector retries one call.

    ``attempts`` counts the first try. The n-th wait (n >= 1) is ``backoff * 2**(n-1)`` capped at
    ``max_wait``, reduced by a random share of up to ``jitter`` (0: exact; 0.5: between half and all of
    it), unless the error carries ``retry_after``: then exactly that wait, or an immediate raise when it
    is over ``max_wait``. ``retry_on`` are retried, ``never_retry`` not even when they subclass one
    (e.g. a non-idempotent write would put ``OutcomeUnknownError`` there).
    """

    attempts: int = 3
    backoff: float = 1.0
    max_wait: float = 30.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=_random.random, compare=False)
    retry_on: tuple[type[BaseException], ...] = (RetryableError,)
    never_retry: tuple[type[BaseException], ...] = ()
    on_retry: Callable[[BaseException, int, float], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_wait < 0:
            raise ValueError("backoff and max_wait must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a share between 0 and 1")

    def with_(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed (e.g. ``policy.with_(sleep=fake)`` in a test)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    # -- the three decisions ---------------------------------------------------------------------
    def retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on) and not isinstance(error, self.never_retry)

    def gives_up(self, attempt: int, error: BaseException | None) -> bool:
        """Stop after ``attempts``, or at once when the vendor asks for a wait longer than the cap."""
        if attempt >= self.attempts:
            return True
        wait = retry_after_of(error)
        return wait is not None and wait > self.max_wait

    def wait(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        asked = retry_after_of(error)
        if asked is not None:
            return min(asked, self.max_wait)
        base = min(self.max_wait, self.backoff * 2.0 ** (attempt - 1))
        return float(base * (1.0 - self.jitter * self.random()))

    # -- running ---------------------------------------------------------------------------------
    def retrying(self) -> Retrying:
        """A tenacity ``Retrying`` with this policy (for callers that want tenacity's own API)."""

        def stop(state: RetryCallState) -> bool:
            return self.gives_up(state.attempt_number, _error(state))

        def wait(state: RetryCallState) -> float:
            return self.wait(state.attempt_number, _error(state))

        def before_sleep(state: RetryCallState) -> None:
            error = _error(state)
            if self.on_retry is not None and error is not None:
                sleep = state.next_action.sleep if state.next_action else 0.0
                self.on_retry(error, state.attempt_number, sleep)

        return Retrying(
            retry=retry_if_exception(self.retryable),
            stop=stop,
            wait=wait,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], _T], *, write: bool = False) -> _T:
        """Run ``fn`` under the policy. ``write=True``: once an attempt's outcome was unknown, any
        final :class:`ConnectorError` is raised as :class:`OutcomeUnknownError` (from that error)."""
        outcome_unknown = False

        def attempt() -> _T:
            nonlocal outcome_unknown
            try:
                return fn()
            except OutcomeUnknownError:
                outcome_unknown = True
                raise

        try:
            return self.retrying()(attempt)
        except ConnectorError as exc:
            if write and outcome_unknown and not isinstance(exc, OutcomeUnknownError):
                raise OutcomeUnknownError(
                    f"an earlier attempt may have been applied; last error: {exc.message}",
                    code=exc.code,
                    system=exc.system,
                ) from exc
            raise


def _error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
