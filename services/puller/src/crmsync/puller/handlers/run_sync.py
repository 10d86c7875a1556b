"""Use case: run one sync of one account, full or incremental, to its next resting state.

Outcomes: succeeded; queued again (the process is stopping); paused (API
budget, resumed later); failed with a retry time (transient trouble, with
backoff); failed for good (the mapping no longer matches the CRM — the error
names the field and the row). Anything else is a bug: the run is recorded as
failed and the exception goes on up (see `outcomes`). A database that cannot
record the outcome (`StoreUnavailable`), whatever the outcome, ends `execute`
with that error: the run stays as its last transaction left it and is resumed
once the database is back (a bug then comes again and is recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.messages import SyncKind
from crmsync.common.observability.metrics import JOBS
from crmsync.common.retry import RetryPolicy
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.runs import FAILED, SUCCEEDED, RunEnd, RunProgress, SyncRun
from crmsync.puller.handlers import outcomes
from crmsync.puller.handlers.ports import ConnectorFactory, SyncStore
from crmsync.puller.handlers.pull import MovesToFullLane, NeedsFull, Pull
from crmsync.puller.settings import Settings

log = structlog.get_logger(__name__)


class SyncRunner:
    """Executes claimed runs against the CRM and the contact store."""

    def __init__(
        self,
        *,
        store: SyncStore,
        crm_factory: ConnectorFactory,
        settings: Settings,
        stop: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._crm_factory = crm_factory
        self._settings = settings
        self._stop = stop or asyncio.Event()
        self._clock = clock
        self._retry = RetryPolicy(
            max_attempts=settings.puller_max_attempts,
            base_s=settings.puller_retry_base_s,
            cap_s=settings.puller_retry_max_s,
        )

    async def execute(self, run: SyncRun) -> str:
        """Runs a claimed run to its next resting state; returns that status."""
        log_ = log.bind(account_id=run.account_id, job_id=run.job_id, run_id=str(run.id), kind=run.kind)
        if await self._covered(run, log_):
            return SUCCEEDED
        pull = await self._start(run)
        if pull is None:
            return FAILED
        started = self._clock()
        try:
            await self._pull(pull, log_)
        except outcomes.CLASSIFIED as exc:
            return await self._stopped(pull, exc, log_)
        except Exception as exc:
            JOBS.labels(run.kind, "bug").inc()
            try:
                await self._finish(run, outcomes.bug(exc, self._stopped_at(pull)))
            except StoreUnavailable as unrecorded:
                # The database went away with it: a connection broken mid-statement
                # surfaces as an odd client error. The run stays 'running' and is
                # resumed once the database is back; a true bug comes again then,
                # is recorded, and ends the process.
                log_.warning("sync_run_error_unrecorded", error=f"{type(exc).__name__}: {exc}"[:300])
                raise unrecorded from exc
            raise
        finally:
            await pull.connector.aclose()
        JOBS.labels(run.kind, SUCCEEDED).inc()
        log_.info("sync_run_succeeded", seconds=round((self._clock() - started).total_seconds(), 3))
        return SUCCEEDED

    async def _covered(self, run: SyncRun, log_: structlog.BoundLogger) -> bool:
        """Finishes a fresh run whose work a sync that started after it was asked for has done already."""
        if run.attempts != 1 or not run.progress.empty:
            return False
        async with self._store.begin() as tx:
            covered_by = await tx.runs.covering_run(run)
            if covered_by is None:
                return False
            progress = RunProgress(covered_by=str(covered_by))
            await tx.runs.finish_run(run.id, RunEnd(SUCCEEDED, progress=progress))
        log_.info("sync_run_covered", covered_by=str(covered_by))
        return True

    async def _start(self, run: SyncRun) -> Pull | None:
        """Returns the run's pull with its mapping and CRM connector; None when the run failed for want of them."""
        async with self._store.read() as tx:
            connection = await tx.runs.connection(run.account_id)
            mapping = await tx.runs.mapping(run.account_id)
        if connection is None:
            await self._finish(run, RunEnd(FAILED, error="the account has no CRM connection"))
            return None
        try:
            connector = self._crm_factory(connection)
        except ValueError as exc:
            # Undecryptable or incomplete stored credentials: the connection needs an admin.
            await self._finish(run, RunEnd(FAILED, error=f"the CRM connection cannot be used: {exc}"))
            JOBS.labels(run.kind, FAILED).inc()
            return None
        pull = Pull(
            run=run,
            mapping=mapping,
            connector=connector,
            store=self._store,
            settings=self._settings,
            stop=self._stop,
            clock=self._clock,
        )
        return pull

    async def _pull(self, pull: Pull, log_: structlog.BoundLogger) -> None:
        """A full sync, or an incremental one that becomes full when it cannot cover the gap."""
        if pull.run.kind == SyncKind.FULL or pull.progress.escalated_to_full:
            await pull.full()
            return
        try:
            await pull.incremental()
        except NeedsFull as exc:
            log_.info("sync_escalated_to_full", reason=str(exc))
            pull.progress = replace(pull.progress, escalated_to_full=str(exc))
            if not pull.run.full_lane:
                raise MovesToFullLane(str(exc)) from exc
            await pull.full()

    async def _stopped(self, pull: Pull, exc: BaseException, log_: structlog.BoundLogger) -> str:
        """Records a run that stopped before its end, as its error is classified; returns its status."""
        run = pull.run
        result = outcomes.outcome(exc, self._stopped_at(pull))
        await self._finish(run, result.end)
        if result.metric is not None:
            JOBS.labels(run.kind, result.metric).inc()
        (log_.warning if result.warning else log_.info)(result.event, **result.details)
        return result.end.status

    def _stopped_at(self, pull: Pull) -> outcomes.Stopped:
        return outcomes.Stopped(
            run=pull.run,
            mapping=pull.mapping,
            progress=pull.progress,
            now=self._clock(),
            retry=self._retry,
            budget_resume=timedelta(seconds=self._settings.puller_budget_resume_s),
        )

    async def _finish(self, run: SyncRun, end: RunEnd) -> None:
        async with self._store.begin() as tx:
            await tx.runs.finish_run(run.id, end)
