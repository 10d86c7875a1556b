"""The scheduler's loop: every tick, the leader emits what is due, relays the outbox and deletes expired history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.scheduler.adapters.leader import AdvisoryLockLeader
from crmsync.scheduler.handlers.emit_due_jobs import emit_due_jobs
from crmsync.scheduler.handlers.purge_history import Housekeeping

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_leader_loop(
    stop: asyncio.Event,
    *,
    sessions: async_sessionmaker[AsyncSession],
    leader: AdvisoryLockLeader,
    relay: OutboxRelay,
    housekeeping: Housekeeping,
    tick_s: float,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Runs until `stop`; only the replica holding the lock emits."""
    try:
        while not stop.is_set():
            leading = False
            try:
                leading = await leader.ensure()
                if leading:
                    await emit_due_jobs(sessions=sessions, now=clock())
                    while await relay.publish_pending():
                        pass
            except Exception:
                # Postgres or Kafka is away: nothing was committed half-way; the next tick retries.
                log.exception("scheduler_tick_failed")
            if not leading:
                housekeeping.abandon()
            else:
                try:
                    # After the jobs: deleting old history never delays them by more than a tick's batches.
                    await housekeeping.tick(clock())
                except Exception:
                    log.exception("housekeeping_failed")  # the same batch is tried again next tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
    finally:
        await leader.release()
