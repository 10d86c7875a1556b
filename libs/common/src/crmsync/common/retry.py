"""The one retry policy: how long to wait before a retry, and which failures earn one.

- `RetryPolicy(max_attempts, base_s, cap_s)`: a frozen value. `ceiling(n)` is the
  upper bound of the n-th retry's wait (`base_s` doubling per retry, never above
  `cap_s`); `delay(n)` a full-jitter wait in [0, ceiling(n)]; `wait(n, error)` the
  same, raised to the `retry_after` the CRM asked for (up to `cap_s`);
  `can_retry(attempts_made)` whether another attempt is allowed.
- `backoff_ceiling(n, *, base, cap)` and `backoff_delay(n, *, base, cap, rng)`: the
  same arithmetic as plain functions (from crmsync.common.domain.backoff, re-exported
  here). `n` counts retries from 1 (= attempts failed so far).
- `is_transient(exc, *, idempotent=True)`: whether a failure is worth another try:
  a `CrmTransientError` that has not had its round of retries yet (and, for a
  request that is not idempotent, one the CRM surely did not act on).
- `is_transient_result(result)`: whether a record the CRM refused in a batch write
  was refused for a passing reason only (a locked row), so sending it again may work.
- `call_with_retries(attempt, policy=...)`: runs `attempt` up to `max_attempts`
  times; a `CrmTransientError` leaving it is marked `retried`, so an enclosing
  loop using `is_transient` does not retry it again (which would multiply the tries).

Full jitter keeps replicas that failed together from coming back together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from crmsync.common.crm.interface import CrmTransientError, WriteResult
from crmsync.common.domain.backoff import Uniform, backoff_ceiling, backoff_delay

__all__ = [
    "RetryPolicy",
    "Uniform",
    "backoff_ceiling",
    "backoff_delay",
    "call_with_retries",
    "is_transient",
    "is_transient_result",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try and how long to wait in between."""

    max_attempts: int  # tries in all, the first included
    base_s: float  # ceiling of the first retry's wait
    cap_s: float  # the ceiling stops growing here

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must not be negative")

    def can_retry(self, attempts_made: int) -> bool:
        """Returns whether another attempt is allowed after `attempts_made`."""
        return attempts_made < self.max_attempts

    def ceiling(self, retry: int) -> float:
        """Returns the longest wait before the n-th retry."""
        return backoff_ceiling(retry, base=self.base_s, cap=self.cap_s)

    def delay(self, retry: int, *, rng: Uniform | None = None) -> float:
        """Returns a full-jitter wait before the n-th retry."""
        return backoff_delay(retry, base=self.base_s, cap=self.cap_s, rng=rng)

    def wait(self, retry: int, error: BaseException | None = None, *, rng: Uniform | None = None) -> float:
        """Returns the wait before the n-th retry, at least the error's Retry-After (up to the cap)."""
        delay = self.delay(retry, rng=rng)
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            delay = max(delay, min(retry_after, self.cap_s))
        return delay


def is_transient(error: BaseException, *, idempotent: bool = True) -> bool:
    """Returns whether the failure is worth another try.

    A request that is not idempotent (a create) is repeated only when the CRM
    surely did not act on it (`maybe_applied` false).
    """
    if not isinstance(error, CrmTransientError) or error.retried:
        return False
    return idempotent or not error.maybe_applied


def is_transient_result(result: WriteResult | None) -> bool:
    """Returns whether a record's refusal was for passing reasons only (UNABLE_TO_LOCK_ROW and the like)."""
    return (
        result is not None
        and not result.success
        and bool(result.errors)
        and all(e.transient for e in result.errors)
    )


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool] = is_transient,
    on_retry: Callable[[int, BaseException | None], None] | None = None,
    rng: Uniform | None = None,
) -> T:
    """Returns what `attempt` returns, trying it up to `policy.max_attempts` times.

    The last failure is raised as it is; a CrmTransientError is marked `retried` first.
    `on_retry(attempt_number, error)` is called before each wait.
    """

    def wait(state: RetryCallState) -> float:
        return policy.wait(state.attempt_number, _failure(state), rng=rng)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.attempt_number, _failure(state))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception(retry_if),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for state in retrying:
            with state:
                return await attempt()
    except CrmTransientError as error:
        error.retried = True
        raise
    raise AssertionError("unreachable: tenacity reraises the last error")


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None
