"""Use case: delete history past its retention, a few bounded batches per tick.

Sync runs, push log entries, records of emitted jobs, published outbox
messages and each account's daily count of API calls are written for every account all the time; kept for ever, they
would grow every table and every index without end. A pass goes through
each kind of history in turn, a batch (one short transaction) at a time. A
tick runs a few batches and leaves the rest of the pass for the next tick,
so a large backlog never holds up the emitting of due jobs. A new pass
starts once the interval has passed since the last one began.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from crmsync.common.observability.metrics import HISTORY_PURGED
from crmsync.scheduler.handlers.ports import HistoryStore, Transactions

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Retention:
    sync_runs: timedelta
    push_log: timedelta
    scheduled_jobs: timedelta
    outbox: timedelta
    # Days of crmsync's API calls per account: the allowance needs today's only; a month is kept to look at.
    api_usage: timedelta = timedelta(days=35)


# One batch of one kind of history: (store, pass began at, batch rows) -> rows deleted.
Purge = Callable[[HistoryStore, datetime, int], Awaitable[int]]


def purges(retention: Retention) -> list[tuple[str, Purge]]:
    """Returns each kind of history with the call that deletes a batch of it, in pass order."""
    return [
        (
            "outbox",
            lambda h, now, n: h.delete_outbox(published_before=now - retention.outbox, limit=n),
        ),
        (
            "sync_runs",
            lambda h, now, n: h.delete_sync_runs(finished_before=now - retention.sync_runs, limit=n),
        ),
        # After the runs: sightings of a run deleted just now go in the same pass.
        ("sync_run_sightings", lambda h, now, n: h.delete_stale_sightings(limit=n)),
        (
            "scheduled_jobs",
            lambda h, now, n: h.delete_scheduled_jobs(slot_before=now - retention.scheduled_jobs, limit=n),
        ),
        (
            "push_log",
            lambda h, now, n: h.delete_push_log(created_before=now - retention.push_log, limit=n),
        ),
        (
            "crm_api_usage",
            lambda h, now, n: h.delete_api_usage(day_before=(now - retention.api_usage).date(), limit=n),
        ),
    ]


@dataclass
class _Pass:
    began_at: datetime
    position: int = 0
    deleted: dict[str, int] = field(default_factory=dict)


@dataclass
class Housekeeping:
    """Runs passes of history deletion, `batches_per_tick` batches at a time."""

    history: Transactions[HistoryStore]
    retention: Retention
    interval_s: float
    batch_rows: int
    batches_per_tick: int
    monotonic: Callable[[], float] = time.monotonic
    _pass: _Pass | None = None
    _next_pass_at: float | None = None

    async def tick(self, now: datetime) -> dict[str, int] | None:
        """Works on the current pass; returns its deletions per kind when this tick finished it."""
        if self._pass is None:
            if self._next_pass_at is not None and self.monotonic() < self._next_pass_at:
                return None
            # Cutoffs are taken once, when the pass begins: a long pass has one fixed horizon.
            self._pass = _Pass(began_at=now)
            self._next_pass_at = self.monotonic() + self.interval_s
        current = self._pass
        steps = purges(self.retention)
        batches = 0
        while current.position < len(steps) and batches < self.batches_per_tick:
            name, purge = steps[current.position]
            async with self.history.begin() as store:
                deleted = await purge(store, current.began_at, self.batch_rows)
            batches += 1
            if deleted:
                current.deleted[name] = current.deleted.get(name, 0) + deleted
                HISTORY_PURGED.labels(name).inc(deleted)
            if deleted < self.batch_rows:
                current.position += 1  # nothing more of this kind is past its cutoff
        if current.position < len(steps):
            return None
        self._pass = None
        log.info("history_purged", **{name: current.deleted.get(name, 0) for name, _ in steps})
        return current.deleted

    def abandon(self) -> None:
        """Forgets the pass in progress (the lead was lost); the next leader starts its own."""
        self._pass = None
        self._next_pass_at = None
