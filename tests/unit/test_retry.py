"""The retry policy: full-jitter waits under a growing ceiling, bounded attempts, one round per failure."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.common.crm.interface import CrmRejected, CrmTransientError
from crmsync.common.retry import (
    RetryPolicy,
    backoff_ceiling,
    backoff_delay,
    call_with_retries,
    is_transient,
)

retries = st.integers(min_value=0, max_value=5000)
seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
policies = st.builds(
    RetryPolicy, max_attempts=st.integers(min_value=1, max_value=12), base_s=st.just(0.0), cap_s=st.just(0.0)
)


class Extreme:
    """Jitter that always lands on one end of the range."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@given(retry=retries, base=seconds, cap=seconds, seed=st.integers(), high=st.booleans() | st.none())
def test_a_delay_lies_between_zero_and_the_ceiling_and_never_above_the_cap(
    retry: int, base: float, cap: float, seed: int, high: bool | None
) -> None:
    rng = random.Random(seed) if high is None else Extreme(high)
    delay = backoff_delay(retry, base=base, cap=cap, rng=rng)
    assert 0 <= delay <= backoff_ceiling(retry, base=base, cap=cap) <= cap


@given(retry=retries, base=seconds, cap=seconds)
def test_the_ceiling_grows_with_each_retry_until_the_cap(retry: int, base: float, cap: float) -> None:
    assert backoff_ceiling(retry, base=base, cap=cap) <= backoff_ceiling(retry + 1, base=base, cap=cap)


@given(retry=st.integers(min_value=1, max_value=40), base=st.floats(min_value=0.001, max_value=10))
def test_below_the_cap_the_ceiling_doubles_from_the_base(retry: int, base: float) -> None:
    assert backoff_ceiling(retry, base=base, cap=float("inf")) == base * 2 ** (retry - 1)


def test_the_first_retry_and_the_zeroth_share_the_base() -> None:
    assert backoff_ceiling(0, base=0.5, cap=30) == backoff_ceiling(1, base=0.5, cap=30) == 0.5
    assert [backoff_ceiling(n, base=0.5, cap=30) for n in range(2, 9)] == [1, 2, 4, 8, 16, 30, 30]


def test_the_policy_waits_at_least_the_retry_after_the_crm_asked_for_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=0.0, cap_s=5.0)
    asked = CrmTransientError("slow down", status=429)
    asked.retry_after = 2.0
    assert policy.wait(1, asked) == 2.0
    asked.retry_after = 60.0
    assert policy.wait(1, asked) == 5.0
    assert policy.wait(1, CrmTransientError("busy")) == 0.0


@given(
    retry=retries,
    base=seconds,
    cap=seconds,
    asked=st.none() | seconds,
    high=st.booleans(),
)
def test_a_wait_honours_retry_after_and_never_passes_the_cap(
    retry: int, base: float, cap: float, asked: float | None, high: bool
) -> None:
    error = CrmTransientError("429", status=429)
    error.retry_after = asked
    wait = RetryPolicy(max_attempts=2, base_s=base, cap_s=cap).wait(retry, error, rng=Extreme(high))
    assert 0 <= wait <= cap
    assert wait >= min(asked or 0, cap)


def test_a_policy_refuses_meaningless_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0, base_s=1, cap_s=1)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_attempts=1, base_s=-1, cap_s=1)


@given(policy=policies, made=st.integers(min_value=0, max_value=20))
def test_can_retry_allows_attempts_up_to_the_maximum(policy: RetryPolicy, made: int) -> None:
    assert policy.can_retry(made) == (made < policy.max_attempts)


def test_only_a_transient_error_not_yet_retried_is_transient() -> None:
    fresh = CrmTransientError("503", status=503)
    assert is_transient(fresh)
    assert not is_transient(CrmRejected("INVALID_FIELD"))
    assert not is_transient(ValueError("bug"))
    fresh.retried = True
    assert not is_transient(fresh)


def test_a_request_that_may_have_been_applied_is_repeated_only_when_idempotent() -> None:
    timeout = CrmTransientError("timeout")
    timeout.maybe_applied = True
    assert is_transient(timeout, idempotent=True)
    assert not is_transient(timeout, idempotent=False)
    assert is_transient(CrmTransientError("429"), idempotent=False)


def _failing(failures: list[BaseException], calls: list[int]) -> Callable[[], Awaitable[str]]:
    async def attempt() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return attempt


@settings(max_examples=40, deadline=None)
@given(policy=policies, failing=st.integers(min_value=0, max_value=15))
async def test_attempts_are_bounded_by_the_policy(policy: RetryPolicy, failing: int) -> None:
    calls: list[int] = []
    attempt = _failing([CrmTransientError(f"503 #{i}") for i in range(failing)], calls)
    if failing < policy.max_attempts:
        assert await call_with_retries(attempt, policy=policy) == "done"
        assert len(calls) == failing + 1
    else:
        with pytest.raises(CrmTransientError) as caught:
            await call_with_retries(attempt, policy=policy)
        assert len(calls) == policy.max_attempts
        assert caught.value.message == f"503 #{policy.max_attempts - 1}"  # the last failure, as it is


async def test_a_permanent_failure_is_raised_at_once() -> None:
    calls: list[int] = []
    attempt = _failing([CrmRejected("INVALID_FIELD")], calls)
    with pytest.raises(CrmRejected):
        await call_with_retries(attempt, policy=RetryPolicy(max_attempts=5, base_s=0, cap_s=0))
    assert len(calls) == 1


async def test_a_failure_that_had_its_round_is_not_retried_by_an_enclosing_round() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=0, cap_s=0)
    inner_calls: list[int] = []
    inner = _failing([CrmTransientError("unreachable") for _ in range(20)], inner_calls)

    async def outer() -> str:
        return await call_with_retries(inner, policy=policy)

    with pytest.raises(CrmTransientError) as caught:
        await call_with_retries(outer, policy=policy)
    assert len(inner_calls) == 3  # one round, not 3 x 3
    assert caught.value.retried
    assert not is_transient(caught.value)


async def test_each_retry_is_announced_with_its_attempt_and_error() -> None:
    seen: list[tuple[int, str]] = []
    attempt = _failing([CrmTransientError("a"), CrmTransientError("b")], [])
    result = await call_with_retries(
        attempt,
        policy=RetryPolicy(max_attempts=3, base_s=0, cap_s=0),
        on_retry=lambda n, error: seen.append((n, str(error))),
    )
    assert result == "done"
    assert seen == [(1, "a"), (2, "b")]
