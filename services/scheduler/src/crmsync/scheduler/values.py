"""The values that cross the scheduler's ports: frozen, no I/O, no ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crmsync.common.domain.allowance import allocated_calls
from crmsync.common.domain.schedule import LastRuns, Schedule


@dataclass(frozen=True)
class AccountSchedule:
    """A connected account as the scheduler decides from it: its schedule, its last runs, its size.

    schedule: None when the saved one is unusable (the API's to refuse; the account waits for
        a change of it). generation: of the account's due time as read, see `NextLook`.
    """

    account_id: str
    schedule: Schedule | None
    last_runs: LastRuns
    record_count: int
    daily_api_limit: int | None
    api_allocation_share: float | None = None
    api_allocation_calls: int | None = None
    generation: int = 0

    @property
    def allocated_calls(self) -> int | None:
        """The calls a day crmsync may make for the account; None when no allocation holds it."""
        return allocated_calls(self.daily_api_limit, self.api_allocation_share, self.api_allocation_calls)


@dataclass(frozen=True)
class NextLook:
    """When the scheduler looks at an account again: its next tick (sooner while a run is open).

    at None: not until what decides its jobs changes (a manual or unusable schedule). Written
    only over the `generation` read, so a change made meanwhile keeps the account due.
    """

    account_id: str
    generation: int
    at: datetime | None


@dataclass(frozen=True)
class JobRecord:
    """An emitted job as recorded: its id, recorded once, keeps it from being emitted twice (R18)."""

    account_id: str
    job_id: str
    topic: str
    kind: str
    reason: str
    slot_at: datetime


@dataclass(frozen=True)
class Emitted:
    """What one batch of due accounts gave: the jobs newly emitted, and how many accounts were due."""

    jobs: list[JobRecord]
    accounts: int
