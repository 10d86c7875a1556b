"""Faults and service protection: 429 for the next N requests, 503 for a while, a sliding-window limit,
and a lock for the next N writes (SQL Server's deadlock, as Dataverse reports it).

The window counts every Web API request; its remainder is reported on each
answer in `x-ms-ratelimit-burst-remaining-xrm-requests`, and enforced only
when a limit is set (by `--rate-limit` or the control API), since Dataverse's
own 6,000 per 300 seconds would stall a benchmark.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from crmsync.dynamics_emulator.errors import GENERIC_SQL, RATE_LIMIT, UNAVAILABLE, DataverseError

DEFAULT_LIMIT = 6000
DEFAULT_WINDOW = 300.0
EXECUTION_TIME_REMAINING = "1,200,000.00"  # combined execution time (ms): not emulated, always full
# What a write that lost a deadlock to another on the same record gets (a 500, to try again).
DEADLOCK = "Generic SQL error. CRM ErrorCode: -2147204784 Sql ErrorCode: -2146232060 Sql Number: 1205"


@dataclass
class Faults:
    limit: int = DEFAULT_LIMIT
    window: float = DEFAULT_WINDOW
    enforced: bool = False
    throttle_next: int = 0
    retry_after: int = 2
    unavailable_until: float = 0.0
    lock_next: int = 0
    hits: deque[float] = field(default_factory=deque)

    def _slide(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()

    def check(self, now: float) -> DataverseError | None:
        """The refusal this request gets (None: it goes through); counts it in the window."""
        if now < self.unavailable_until:
            return DataverseError(503, UNAVAILABLE, "The service is temporarily unavailable. Try again later.",
                                  {"Retry-After": str(math.ceil(self.unavailable_until - now))})  # fmt: skip
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return self._too_many(self.retry_after)
        self._slide(now)
        if self.enforced and len(self.hits) >= self.limit:
            return self._too_many(max(1, math.ceil(self.hits[0] + self.window - now)))
        self.hits.append(now)
        return None

    def check_write(self) -> None:
        """Raises the deadlock a write meets while a lock fault lasts."""
        if self.lock_next > 0:
            self.lock_next -= 1
            raise DataverseError(500, GENERIC_SQL, DEADLOCK)

    def _too_many(self, seconds: int) -> DataverseError:
        message = f"Number of requests exceeded the limit of {self.limit} over time window of {self.window:g} seconds."
        return DataverseError(429, RATE_LIMIT, message, {"Retry-After": str(seconds)})

    def headers(self, now: float) -> dict[str, str]:
        self._slide(now)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(max(0, self.limit - len(self.hits))),
            "x-ms-ratelimit-time-remaining-xrm-requests": EXECUTION_TIME_REMAINING,
        }

    def describe(self, now: float) -> dict[str, object]:
        return {
            "throttle_next": self.throttle_next,
            "lock_next": self.lock_next,
            "retry_after": self.retry_after,
            "unavailable_for": max(0.0, round(self.unavailable_until - now, 3)),
            "limit": self.limit,
            "window_seconds": self.window,
            "enforced": self.enforced,
            "in_window": len(self.hits),
        }

    def clear(self) -> None:
        self.throttle_next = self.lock_next = 0
        self.unavailable_until = 0.0
        self.enforced = False
        self.limit, self.window = DEFAULT_LIMIT, DEFAULT_WINDOW
        self.hits.clear()
