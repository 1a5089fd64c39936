"""The shared retry policy: what a connector call does after a throttle, a 5xx or a timeout."""

from __future__ import annotations

import email.utils
import random

import pytest

from connectors.errors import (
    AuthError,
    OutcomeUnknownError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from connectors.retry import RetryPolicy, parse_retry_after


class Flaky:
    """A call that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(**kwargs: object) -> tuple[RetryPolicy, list[float]]:
    waits: list[float] = []
    kwargs.setdefault("sleep", waits.append)
    return RetryPolicy(**kwargs), waits  # type: ignore[arg-type]


def test_retry_after_in_seconds_is_waited_exactly() -> None:
    retry, waits = policy(jitter=0.5)
    call = Flaky(RateLimitedError("429", retry_after=7))
    assert retry.call(call) == "ok"
    assert waits == [7.0] and call.calls == 2


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after(header, now=now) == 12.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("-5") == 0.0
    for bad in (None, "", "soon", "nan", "Tue, 99 Foo 2026 00:00:00 GMT"):
        assert parse_retry_after(bad) is None
    # through the policy: a date parsed at translation time becomes the wait
    retry, waits = policy()
    error = RateLimitedError("429", retry_after=parse_retry_after(header, now=now))
    assert retry.call(Flaky(error)) == "ok" and waits == [12.0]


def test_a_wait_over_the_cap_is_raised_at_once_for_the_job_layer() -> None:
    retry, waits = policy(max_wait=30)
    call = Flaky(RateLimitedError("429", retry_after=31))
    with pytest.raises(RateLimitedError) as info:
        retry.call(call)
    assert info.value.retry_after == 31  # the job layer reschedules with it
    assert waits == [] and call.calls == 1


def test_a_wait_at_the_cap_is_slept() -> None:
    retry, waits = policy(max_wait=30)
    assert retry.call(Flaky(RateLimitedError("429", retry_after=30))) == "ok"
    assert waits == [30.0]


def test_backoff_is_exponential_capped_and_jitter_stays_within_its_share() -> None:
    rng = random.Random(7)
    retry = RetryPolicy(attempts=8, backoff=1.0, max_wait=10.0, jitter=0.5, random=rng.random)
    for _ in range(200):
        for attempt, base in enumerate([1, 2, 4, 8, 10, 10, 10], start=1):
            wait = retry.wait(attempt, RetryableError("503"))
            assert base * 0.5 <= wait <= base
    exact = RetryPolicy(backoff=0.5, jitter=0.0)
    assert [exact.wait(n, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    spread = {round(retry.wait(3, None), 6) for _ in range(50)}
    assert len(spread) > 10  # really random, not a constant


def test_attempts_are_bounded_and_the_last_error_is_re_raised_as_itself() -> None:
    retry, waits = policy(attempts=4, jitter=0.0, backoff=0.25)
    errors = [RetryableError(f"503 #{n}") for n in range(10)]
    call = Flaky(*errors)
    with pytest.raises(RetryableError) as info:
        retry.call(call)
    assert info.value is errors[3]
    assert call.calls == 4 and waits == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("error", [AuthError("401"), RecordError("6240"), ValueError("bug")])
def test_errors_that_are_not_retryable_are_raised_after_one_attempt(error: Exception) -> None:
    retry, waits = policy()
    call = Flaky(error)
    with pytest.raises(type(error)):
        retry.call(call)
    assert call.calls == 1 and waits == []


def test_never_retry_excludes_a_subclass_of_a_retried_class() -> None:
    retry, _ = policy(never_retry=(OutcomeUnknownError,))
    call = Flaky(OutcomeUnknownError("timeout"))
    with pytest.raises(OutcomeUnknownError):
        retry.call(call, write=True)
    assert call.calls == 1


def test_a_write_whose_earlier_attempt_timed_out_stays_unknown_whatever_ends_it() -> None:
    retry, _ = policy(attempts=3)
    auth = AuthError("refresh token rejected", code="invalid_grant", system="quickbooks")
    with pytest.raises(OutcomeUnknownError) as info:
        retry.call(Flaky(OutcomeUnknownError("timeout"), auth), write=True)
    assert info.value.__cause__ is auth and info.value.system == "quickbooks"
    # a read is never "unknown": the same errors surface as they are
    with pytest.raises(AuthError):
        retry.call(Flaky(RetryableError("timeout"), AuthError("401")))
    # and a write that succeeds on a later attempt is simply a success
    assert retry.call(Flaky(OutcomeUnknownError("timeout")), write=True) == "ok"


def test_on_retry_reports_each_retry_with_its_wait() -> None:
    seen: list[tuple[str, int, float]] = []
    retry, _ = policy(jitter=0.0, on_retry=lambda e, n, w: seen.append((str(e), n, w)))
    retry.call(Flaky(RetryableError("a"), RateLimitedError("b", retry_after=2)))
    assert seen == [("a", 1, 1.0), ("b", 2, 2.0)]


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"attempts": 0}, {"jitter": 1.5}, {"backoff": -1.0}):
        with pytest.raises(ValueError):
            RetryPolicy(**kwargs)
