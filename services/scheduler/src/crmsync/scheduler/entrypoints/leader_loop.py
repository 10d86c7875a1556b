"""The scheduler's loop: every tick, the leader emits what is due, relays the outbox and deletes expired history.

Postgres or Kafka being away is logged and the next tick tries again (the lead,
lost with its connection, is taken again then); any other error is a bug and
ends the loop, so the service exits and is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.clock import utc_now
from crmsync.common.kafka.startup import start_when_reachable
from crmsync.common.service import DEPENDENCY_ERRORS, Outage, refused_statement
from crmsync.scheduler.handlers.emit_due_jobs import emit_due_jobs
from crmsync.scheduler.handlers.ports import JobStore, Leader, Outbox, Transactions
from crmsync.scheduler.handlers.purge_history import Housekeeping

log = structlog.get_logger(__name__)


@dataclass
class LeaderLoop:
    """Only the replica that holds the lead emits; the others stand by."""

    leader: Leader
    jobs: Transactions[JobStore]
    outbox: Outbox
    housekeeping: Housekeeping
    tick_s: float
    accounts_per_batch: int = 500
    open_run_recheck: timedelta = timedelta(minutes=1)
    clock: Callable[[], datetime] = utc_now
    outage: Outage = field(default_factory=lambda: Outage("scheduler tick"))

    async def tick(self) -> bool:
        """Runs one tick; returns whether this replica leads."""
        leading = False
        try:
            leading = await self.leader.ensure()
            if leading:
                await self._emit()
            self.outage.recovered()
        except DEPENDENCY_ERRORS as error:
            if refused_statement(error):
                raise
            # Each batch of accounts commits whole or not at all; the next tick retries the rest.
            self.outage.failed(error, step="scheduler_tick")
        if not leading:
            self.housekeeping.abandon()
            return False
        try:
            # After the jobs: deleting old history never delays them by more than a tick's batches.
            await self.housekeeping.tick(self.clock())
        except DEPENDENCY_ERRORS as error:
            if refused_statement(error):
                raise
            self.outage.failed(error, step="housekeeping")  # the same batch is tried again next tick
        return True

    async def _emit(self) -> None:
        """Emits the due accounts' jobs a batch at a time, publishing each batch before the next."""
        while True:
            emitted = await emit_due_jobs(
                jobs=self.jobs,
                now=self.clock(),
                limit=self.accounts_per_batch,
                open_run_recheck=self.open_run_recheck,
            )
            while await self.outbox.publish_pending():
                pass
            if emitted.accounts < self.accounts_per_batch:
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Ticks until `stop`, then gives the lead back."""
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(self.tick_s, self.outage.wait_s))
        finally:
            await self.leader.release()


async def serve(
    stop: asyncio.Event, *, loop: LeaderLoop, producer: AIOKafkaProducer, owned_engine: AsyncEngine | None
) -> None:
    """Runs the loop with the producer started; disposes `owned_engine` (the service's own) at the end."""
    try:
        if await start_when_reachable(producer, stop=stop, what="kafka producer"):
            try:
                await loop.run(stop)
            finally:
                await producer.stop()
    finally:
        if owned_engine is not None:
            await owned_engine.dispose()
