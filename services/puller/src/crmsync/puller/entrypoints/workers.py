"""The workers: runs are taken from the sync_runs table, one account at a time, several accounts at once.

The slots are split into lanes (R26, `domain.lanes`): incremental slots take
incremental runs only, full slots take full runs and, when none waits,
incremental ones; so a long full sync never holds another account's
incremental behind it.

Queued runs, runs left 'running' by a process that died, and paused or failed
runs whose retry time has come are all picked up here, so a restart resumes
everything that was in flight. While the database is away (`StoreUnavailable`)
the dispatcher backs off and the runs in hand stop where their last batch was
committed; each is resumed from there once the database is back (R18).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from crmsync.common.observability.metrics import BUSY_SLOTS
from crmsync.common.service import Outage, refused_statement
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.lanes import Lane, Slots, assign, lanes_for_slot
from crmsync.puller.domain.runs import FAILED, PAUSED, QUEUED
from crmsync.puller.handlers.ports import AccountLock, RunQueue
from crmsync.puller.handlers.run_sync import SyncRunner

log = structlog.get_logger(__name__)


class Workers:
    def __init__(
        self,
        *,
        queue: RunQueue,
        lock_for: Callable[[str], AccountLock],
        runner: SyncRunner,
        concurrency: int,
        poll_s: float,
        incremental_slots: int = 0,
    ) -> None:
        """`concurrency` slots in all, `incremental_slots` of them for incremental runs only
        (at most all but one: a full run always has a slot)."""
        self._queue = queue
        self._lock_for = lock_for
        self._runner = runner
        incremental = max(0, min(incremental_slots, concurrency - 1))
        self._lanes = Slots(full=concurrency - incremental, incremental=incremental)
        self._poll_s = poll_s
        self._active: dict[str, asyncio.Task[None]] = {}
        self._slot_of: dict[str, Lane] = {}
        self._wakeup = asyncio.Event()
        self._outage = Outage("puller workers", cap_s=max(10.0, poll_s))

    def notify(self) -> None:
        """Asks the dispatcher to look for work now rather than at its next poll."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatches runs until `stop`; in-flight runs stop between batches and are requeued.

        Cancelled (the process is out of time to stop), it cancels the runs in hand:
        they stay 'running' and the next process to take the account's lock resumes them.
        """
        try:
            while not stop.is_set():
                wait_s = self._poll_s
                try:
                    await self._dispatch()
                    self._outage.recovered()
                except StoreUnavailable as error:
                    if refused_statement(error):
                        raise
                    wait_s = max(wait_s, self._outage.failed(error))
                self._wakeup.clear()
                waiters = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
                waiters |= set(self._active.values())
                _, pending = await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    if task not in self._active.values():
                        task.cancel()
                try:
                    self._reap()
                except BaseException:
                    stop.set()  # the other accounts' runs stop between batches and are requeued
                    raise
        except asyncio.CancelledError:
            for task in self._active.values():
                task.cancel()
            raise
        finally:
            if self._active:
                # Cancelled while waiting here, gather cancels the runs too.
                await asyncio.gather(*self._active.values(), return_exceptions=True)
            self._reap(raise_errors=False)

    def _reap(self, *, raise_errors: bool = True) -> None:
        for account_id, task in list(self._active.items()):
            if task.done():
                del self._active[account_id]
                self._slot_of.pop(account_id, None)
                self._count_busy()
                if raise_errors and not task.cancelled() and task.exception() is not None:
                    # A bug: the run is recorded as failed; crash loudly so the process restarts.
                    raise task.exception()  # type: ignore[misc]

    def _free(self) -> Slots:
        taken = list(self._slot_of.values())
        return Slots(
            full=self._lanes.full - taken.count(Lane.FULL),
            incremental=self._lanes.incremental - taken.count(Lane.INCREMENTAL),
        )

    def _count_busy(self) -> None:
        free = self._free()
        for lane in Lane:
            BUSY_SLOTS.labels(lane.value).set(self._lanes.of(lane) - free.of(lane))

    async def _dispatch(self) -> None:
        if not (self._free().full or self._free().incremental):
            return
        waiting = await self._queue.waiting_accounts(self._lanes.full + self._lanes.incremental + 10)
        passed = set(self._active)
        while plan := assign(waiting, self._free(), busy=passed):
            locked_out = False
            for chosen in plan:
                passed.add(chosen.account_id)
                lock = self._lock_for(chosen.account_id)
                if not await lock.try_acquire():
                    locked_out = True  # another replica is syncing this account: the slot goes on
                    continue
                self._slot_of[chosen.account_id] = chosen.slot
                self._active[chosen.account_id] = asyncio.create_task(
                    self._drain(chosen.account_id, lock, chosen.slot), name=f"sync-{chosen.account_id}"
                )
            self._count_busy()
            if not locked_out:
                return

    async def _drain(self, account_id: str, lock: AccountLock, slot: Lane) -> None:
        """Runs the account's runnable runs of the slot's lanes one after the other while holding its lock.

        An incremental slot stops at a full run: the lock goes back and a full slot takes the account.

        The database going away ends the drain: the run in hand stays as its last
        transaction left it ('running', or failed with a retry time) and its lock is
        gone with the connection, so whichever worker takes the lock next resumes it.
        """
        try:
            while True:
                run = await self._queue.claim_next_run(account_id, lanes_for_slot(slot))
                if run is None:
                    return
                log.info(
                    "sync_run_started",
                    account_id=account_id,
                    job_id=run.job_id,
                    kind=run.kind,
                    slot=slot.value,
                    attempt=run.attempts,
                )
                status = await self._runner.execute(run)
                if status in (QUEUED, PAUSED, FAILED):
                    return  # stopping, or waiting for its retry time: later runs wait behind it
        except StoreUnavailable as error:
            if refused_statement(error):
                raise
            log.warning("sync_runs_interrupted", account_id=account_id, error=str(error)[:300])
        finally:
            await lock.release()  # never raises for a lost connection: closing it frees the lock too
