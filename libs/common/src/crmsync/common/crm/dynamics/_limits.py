"""Service protection: the window's requests and execution time left, kept above the reserve.

Dataverse reports on every answer how many requests
(`x-ms-ratelimit-burst-remaining-xrm-requests`) and how much execution time
(`x-ms-ratelimit-time-remaining-xrm-requests`, milliseconds) the caller has
left in the current sliding window. The connector spends neither below the
reserve kept for the customer's other tools, and slows down near it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import structlog

from crmsync.common.crm.dynamics._config import DynamicsOptions
from crmsync.common.crm.interface import ApiBudget, CrmBudgetExhausted
from crmsync.common.observability.metrics import CRM_API_BUDGET_LEFT

log = structlog.get_logger(__name__)

BURST_REMAINING = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_REMAINING = "x-ms-ratelimit-time-remaining-xrm-requests"


def _number(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


class RequestBudget:
    """The requests used and allowed in the window, as Dataverse last reported them.

    A reading older than the window says nothing any more (the window slid past it).
    """

    def __init__(
        self, options: DynamicsOptions, *, account: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._options = options
        self._account = account
        self._clock = clock
        self._remaining: int | None = None
        self._time_remaining_ms: float | None = None
        self._read_at = 0.0

    @property
    def limit(self) -> int:
        return self._options.window_requests

    def _current(self) -> tuple[int | None, float | None]:
        if self._clock() - self._read_at > self._options.window_s:
            return None, None
        return self._remaining, self._time_remaining_ms

    def count_call(self) -> None:
        if self._remaining is not None:
            self._remaining = max(0, self._remaining - 1)  # until the next answer corrects it

    def read(self, response: httpx.Response) -> None:
        """Takes the remainders an answer's service-protection headers report."""
        burst = _number(response.headers.get(BURST_REMAINING))
        spent_time = _number(response.headers.get(TIME_REMAINING))
        if burst is None and spent_time is None:
            return
        self._read_at = self._clock()
        if burst is not None:
            self._remaining = int(burst)
            CRM_API_BUDGET_LEFT.labels(self._account).set(max(0, self._remaining))
        if spent_time is not None:
            self._time_remaining_ms = spent_time

    def budget(self) -> ApiBudget:
        """Returns the window's budget; a full window when Dataverse has not reported lately."""
        remaining, _ = self._current()
        left = self.limit if remaining is None else min(remaining, self.limit)
        return ApiBudget(used=self.limit - left, limit=self.limit)

    async def pace(self) -> None:
        """Slows calls down near the reserve; refuses to eat into it."""
        remaining, time_ms = self._current()
        opts = self._options
        if time_ms is not None and time_ms <= opts.window_execution_ms * opts.budget_reserve_fraction:
            raise self._exhausted(f"execution time left in the window is down to {time_ms:.0f} ms")
        if remaining is None:
            return
        reserve = opts.reserve_for(self.limit)
        left = remaining - reserve
        if left <= 0:
            raise self._exhausted(f"requests left in the window down to the reserve of {reserve}")
        window = self.limit * opts.budget_slowdown_fraction
        if left < window:
            delay = opts.budget_slowdown_max_delay_s * (1 - left / window)
            log.info("crm.budget.slowdown", crm="dynamics", left=left, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _exhausted(self, why: str) -> CrmBudgetExhausted:
        budget = self.budget()
        return CrmBudgetExhausted(
            f"Dataverse service protection: {why}, kept for other tools", used=budget.used, limit=budget.limit
        )
