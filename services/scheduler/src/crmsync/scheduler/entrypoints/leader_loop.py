"""The scheduler's loop: every tick, the leader emits what is due and the outbox is relayed."""

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

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_leader_loop(
    stop: asyncio.Event,
    *,
    sessions: async_sessionmaker[AsyncSession],
    leader: AdvisoryLockLeader,
    relay: OutboxRelay,
    tick_s: float,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Runs until `stop`; only the replica holding the lock emits."""
    try:
        while not stop.is_set():
            try:
                if await leader.ensure():
                    await emit_due_jobs(sessions=sessions, now=clock())
                    while await relay.publish_pending():
                        pass
            except Exception:
                # Postgres or Kafka is away: nothing was committed half-way; the next tick retries.
                log.exception("scheduler_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
    finally:
        await leader.release()
