"""The values that cross the scheduler's ports: frozen, no I/O, no ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crmsync.common.domain.schedule import LastRuns, Schedule


@dataclass(frozen=True)
class AccountSchedule:
    """A connected account as the scheduler decides from it: its schedule, its last runs, its size."""

    account_id: str
    schedule: Schedule
    last_runs: LastRuns
    record_count: int
    daily_api_limit: int | None


@dataclass(frozen=True)
class JobRecord:
    """An emitted job as recorded: its id, recorded once, keeps it from being emitted twice (R18)."""

    account_id: str
    job_id: str
    topic: str
    kind: str
    reason: str
    slot_at: datetime
