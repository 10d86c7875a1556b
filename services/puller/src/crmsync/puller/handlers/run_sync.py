"""Use case: run one sync of one account, full or incremental (R5, R12–R18, R23).

Each batch of CRM records is merged in its own transaction together with the
run's counts and resume point (and, for incremental syncs, the watermark it
covers), so a crash, a stop or an exhausted API budget leaves a consistent
store and a run that resumes where it was.

Outcomes: succeeded; queued again (the process is stopping); paused (API
budget, resumed later); failed with a retry time (transient trouble, with
backoff); failed for good (the mapping no longer matches the CRM — the error
names the field and the row). Anything else is a bug: the run is recorded as
failed and the exception goes on up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.crm.interface import (
    CrmAuthError,
    CrmBudgetExhausted,
    CrmConnector,
    CrmError,
    CrmRecord,
    CrmRejected,
)
from crmsync.common.crm.salesforce import DeletedFeedWindowExceeded
from crmsync.common.db.schema import CrmConnection
from crmsync.common.domain.mapping import Mapping
from crmsync.common.observability.metrics import (
    CONTACTS_DELETED,
    CONTACTS_UPSERTED,
    JOBS,
    RECORDS_PULLED,
)
from crmsync.puller.adapters import contact_store, runs
from crmsync.puller.adapters.runs import RunRow
from crmsync.puller.handlers.crm_records import (
    ENTITIES,
    OPPORTUNITY,
    OPPORTUNITY_FIELDS,
    MappedRecord,
    MappingMismatch,
    check_mapping,
    fields_to_read,
    map_record,
)
from crmsync.puller.handlers.prefetch import prefetch
from crmsync.puller.settings import Settings

log = structlog.get_logger(__name__)

CrmFactory = Callable[[CrmConnection], CrmConnector]


class StopRequested(Exception):
    """The process is stopping; the run goes back to the queue with its progress."""


class _NeedsFull(Exception):
    """An incremental sync cannot cover the gap (no watermark, deleted feed too short)."""


@dataclass
class _Run:
    row: RunRow
    mapping: Mapping
    connector: CrmConnector
    progress: dict[str, Any]
    fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _MappedBatch:
    """One batch of CRM records of an entity, mapped and prepared for the store.

    `errors` records could not be mapped.
    """

    entity: str
    pulled: int
    prepared: contact_store.PreparedBatch
    errors: int


def utc_now() -> datetime:
    return datetime.now(UTC)


class SyncRunner:
    """Executes claimed runs against the CRM and the contact store."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        crm_factory: CrmFactory,
        settings: Settings,
        stop: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._crm_factory = crm_factory
        self._settings = settings
        self._stop = stop or asyncio.Event()
        self._clock = clock

    async def execute(self, run: RunRow) -> str:
        """Runs a claimed run to its next resting state; returns that status."""
        log_ = log.bind(account_id=run.account_id, job_id=run.job_id, run_id=str(run.id), kind=run.kind)
        if run.attempts == 1 and not run.progress:
            async with self._sessions.begin() as session:
                covered_by = await runs.covering_run(session, run=run)
                if covered_by is not None:
                    # A sync that started after this job was asked for has done its work already.
                    await runs.finish_run(
                        session, run_id=run.id, status="succeeded", progress={"covered_by": str(covered_by)}
                    )
                    log_.info("sync_run_covered", covered_by=str(covered_by))
                    return "succeeded"
        async with self._sessions() as session:
            connection = await runs.load_connection(session, account_id=run.account_id)
            mapping = await runs.load_mapping(session, account_id=run.account_id)
        if connection is None:
            await self._finish(run, "failed", error="the account has no CRM connection")
            return "failed"
        try:
            connector = self._crm_factory(connection)
        except ValueError as exc:
            # Undecryptable or incomplete stored credentials: the connection needs an admin.
            await self._finish(run, "failed", error=f"the CRM connection cannot be used: {exc}")
            JOBS.labels(run.kind, "failed").inc()
            return "failed"
        state = _Run(row=run, mapping=mapping, connector=connector, progress=dict(run.progress))
        started = self._clock()
        try:
            if run.kind == "full" or state.progress.get("escalated_to_full"):
                await self._full(state)
            else:
                try:
                    await self._incremental(state)
                except _NeedsFull as exc:
                    log_.info("sync_escalated_to_full", reason=str(exc))
                    state.progress["escalated_to_full"] = str(exc)
                    await self._full(state)
        except StopRequested:
            await self._finish(run, "queued", progress=state.progress)
            log_.info("sync_run_requeued")
            return "queued"
        except CrmBudgetExhausted as exc:
            resume = self._clock() + timedelta(seconds=self._settings.puller_budget_resume_s)
            await self._finish(
                run,
                "paused",
                error=f"paused: API budget ({exc.used} of {exc.limit} calls used today); resumes at {resume:%H:%M} UTC",
                next_attempt_at=resume,
                progress=state.progress,
            )
            JOBS.labels(run.kind, "paused").inc()
            log_.info("sync_run_paused", used=exc.used, limit=exc.limit)
            return "paused"
        except MappingMismatch as exc:
            await self._finish(run, "failed", error=str(exc), progress=state.progress)
            JOBS.labels(run.kind, "failed").inc()
            log_.warning("sync_run_failed", error=str(exc), permanent=True)
            return "failed"
        except CrmRejected as exc:
            message = _rejected_message(exc, state)
            retry = None if exc.error_code in ("INVALID_FIELD", "INVALID_TYPE") else self._retry_at(run)
            await self._finish(run, "failed", error=message, next_attempt_at=retry, progress=state.progress)
            JOBS.labels(run.kind, "failed").inc()
            log_.warning("sync_run_failed", error=message, retry_at=retry)
            return "failed"
        except (CrmError, OSError, OperationalError, DBAPIError, TimeoutError) as exc:
            retry = self._retry_at(run)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            await self._finish(run, "failed", error=error, next_attempt_at=retry, progress=state.progress)
            JOBS.labels(run.kind, "failed").inc()
            log_.warning("sync_run_failed", error=error, retry_at=retry)
            return "failed"
        except Exception as exc:
            await self._finish(
                run,
                "failed",
                error=f"internal error: {type(exc).__name__}: {exc}"[:2000],
                next_attempt_at=self._retry_at(run),
                progress=state.progress,
            )
            JOBS.labels(run.kind, "bug").inc()
            raise
        finally:
            await connector.aclose()
        JOBS.labels(run.kind, "succeeded").inc()
        log_.info("sync_run_succeeded", seconds=round((self._clock() - started).total_seconds(), 3))
        return "succeeded"

    # ------------------------------------------------------------------ full

    async def _prepare(self, state: _Run) -> None:
        """Checks the mapping against the CRM's describe before anything is written."""
        for entity in ENTITIES:
            described = await state.connector.describe(entity)
            names = set(described.fields)
            check_mapping(mapping=state.mapping, entity=entity, described_fields=names)
            state.fields[entity] = fields_to_read(
                mapping=state.mapping, entity=entity, described_fields=names
            )

    async def _full(self, state: _Run) -> None:
        run = state.row
        await self._prepare(state)
        progress = state.progress
        # A first sync into an empty store only inserts; a resumed one reads back what it wrote.
        empty_store = False
        if "full_started_at" not in progress:
            async with self._sessions() as session:
                conn = await session.connection()
                empty_store = not await contact_store.has_contacts(conn, account_id=run.account_id)
        started = datetime.fromisoformat(progress.setdefault("full_started_at", self._clock().isoformat()))
        done: list[str] = progress.setdefault("full_done", [])
        for entity in ENTITIES:
            if entity in done:
                continue
            stream = state.connector.export_all(entity, state.fields[entity])
            async with aclosing(self._read_ahead(state, entity, stream, empty_store=empty_store)) as batches:
                async for mapped in batches:
                    await self._store(state, mapped, full=True)
            async with self._sessions.begin() as session:
                conn = await session.connection()
                removed = 0
                if not empty_store:
                    removed = await contact_store.sweep_unseen(
                        conn, account_id=run.account_id, entity=entity, run_id=run.id, started_at=started
                    )
                # Records changed while the export ran are read again by the next incremental.
                await runs.save_entity_state(
                    session,
                    account_id=run.account_id,
                    entity=entity,
                    watermark=started,
                    deleted_watermark=started,
                    full_at=self._clock(),
                )
                done.append(entity)
                await runs.add_progress(session, run_id=run.id, deleted=removed, progress=progress)
            CONTACTS_DELETED.inc(removed)
        if OPPORTUNITY not in done and await self._has_opportunities(state):
            async for batch in self._batches(
                state.connector.export_all(OPPORTUNITY, list(OPPORTUNITY_FIELDS))
            ):
                await self._apply_opportunities(state, batch)
            async with self._sessions.begin() as session:
                await runs.save_entity_state(
                    session,
                    account_id=run.account_id,
                    entity=OPPORTUNITY,
                    watermark=started,
                    deleted_watermark=started,
                )
                done.append(OPPORTUNITY)
                await runs.add_progress(session, run_id=run.id, progress=progress)
        async with self._sessions.begin() as session:
            await runs.clear_full_request(
                session, account_id=run.account_id, started_at=run.started_at or started
            )
            await runs.finish_run(session, run_id=run.id, status="succeeded", progress=progress)

    # ----------------------------------------------------------- incremental

    async def _incremental(self, state: _Run) -> None:
        run = state.row
        await self._prepare(state)
        lookback = timedelta(seconds=self._settings.puller_lookback_s)
        for entity in ENTITIES:
            async with self._sessions() as session:
                current = await runs.entity_state(session, account_id=run.account_id, entity=entity)
            if current.watermark is None:
                raise _NeedsFull(f"no full sync of {entity} yet")
            # Ties at the watermark's second and records committed late with an older
            # SystemModstamp fall inside the lookback window; merging them again is harmless.
            stream = state.connector.changed_since(
                entity, state.fields[entity], current.watermark - lookback, page_size=2000
            )
            async with aclosing(self._read_ahead(state, entity, stream)) as batches:
                async for mapped in batches:
                    await self._store(state, mapped, full=False)
            await self._deletions(state, entity, current.deleted_watermark or current.watermark, lookback)
        if await self._has_opportunities(state):
            async with self._sessions() as session:
                current = await runs.entity_state(session, account_id=run.account_id, entity=OPPORTUNITY)
            if current.watermark is None:
                stream = state.connector.export_all(OPPORTUNITY, list(OPPORTUNITY_FIELDS))
            else:
                stream = state.connector.changed_since(
                    OPPORTUNITY, list(OPPORTUNITY_FIELDS), current.watermark - lookback
                )
            async for batch in self._batches(stream):
                await self._apply_opportunities(state, batch)
            if current.watermark is not None:
                await self._deletions(
                    state, OPPORTUNITY, current.deleted_watermark or current.watermark, lookback
                )
        async with self._sessions.begin() as session:
            await runs.finish_run(session, run_id=run.id, status="succeeded", progress=state.progress)

    async def _deletions(self, state: _Run, entity: str, since: datetime, lookback: timedelta) -> None:
        """Removes what the CRM's deleted feed lists since the last look (R16)."""
        run = state.row
        end = self._clock()
        try:
            deleted = await state.connector.deleted_since(entity, since - lookback, end)
        except DeletedFeedWindowExceeded as exc:
            raise _NeedsFull(f"the CRM's deleted feed no longer reaches back to {since:%Y-%m-%d}") from exc
        self._check_stop()
        async with self._sessions.begin() as session:
            conn = await session.connection()
            removed = await contact_store.delete_by_external_ids(
                conn, account_id=run.account_id, entity=entity, external_ids=[d.id for d in deleted]
            )
            await runs.save_entity_state(
                session, account_id=run.account_id, entity=entity, deleted_watermark=end, incremental_at=end
            )
            await runs.add_progress(session, run_id=run.id, deleted=removed if entity != OPPORTUNITY else 0)
        if entity != OPPORTUNITY:
            CONTACTS_DELETED.inc(removed)

    # ----------------------------------------------------------------- shared

    async def _batches(self, stream: AsyncIterator[list[CrmRecord]]) -> AsyncIterator[list[CrmRecord]]:
        """Yields the stream's batches cut to the batch size, stopping between batches when asked."""
        size = self._settings.puller_batch_size
        try:
            async for batch in stream:
                for offset in range(0, len(batch), size):
                    self._check_stop()
                    yield batch[offset : offset + size]
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    def _read_ahead(
        self,
        state: _Run,
        entity: str,
        stream: AsyncIterator[list[CrmRecord]],
        *,
        empty_store: bool = False,
    ) -> AsyncIterator[_MappedBatch]:
        """Yields the stream's prepared batches, the next ones read, mapped and prepared while one is stored.

        Close it when done (`aclosing`): that stops the reading and closes the stream.
        """
        return prefetch(
            self._mapped(state, entity, stream, empty_store=empty_store),
            depth=self._settings.puller_read_ahead,
        )

    async def _mapped(
        self, state: _Run, entity: str, stream: AsyncIterator[list[CrmRecord]], *, empty_store: bool
    ) -> AsyncIterator[_MappedBatch]:
        async for batch in self._batches(stream):
            # In a thread: mapping a batch is tens of milliseconds of CPU that would
            # otherwise hold the event loop, and with it the COPY being sent meanwhile.
            yield await asyncio.to_thread(self._map, state, entity, batch, empty_store=empty_store)

    def _map(
        self, state: _Run, entity: str, batch: list[CrmRecord], *, empty_store: bool = False
    ) -> _MappedBatch:
        run = state.row
        mapped: list[MappedRecord] = []
        errors = 0
        for record in batch:
            try:
                mapped.append(map_record(mapping=state.mapping, entity=entity, record=record))
            except (KeyError, TypeError, ValueError) as exc:
                # One malformed record is recorded and skipped; the batch goes on (R22).
                errors += 1
                log.warning(
                    "crm_record_skipped",
                    account_id=run.account_id,
                    entity=entity,
                    id=record.get("Id"),
                    error=str(exc),
                )
        return _MappedBatch(
            entity=entity,
            pulled=len(batch),
            prepared=contact_store.prepare(mapped, empty_store=empty_store),
            errors=errors,
        )

    async def _store(self, state: _Run, batch: _MappedBatch, *, full: bool) -> None:
        self._check_stop()  # batches read ahead are not stored once a stop is asked
        run = state.row
        entity, mapped = batch.entity, [*batch.prepared.conversions, *batch.prepared.records]
        async with self._sessions.begin() as session:
            conn = await session.connection()
            counts = await contact_store.apply_records(
                conn,
                account_id=run.account_id,
                run_id=run.id,
                batch=batch.prepared,
                full=full,
            )
            if not full and mapped:
                last = max(mapped, key=lambda r: (r.modstamp, r.external_id))
                await runs.save_entity_state(
                    session,
                    account_id=run.account_id,
                    entity=entity,
                    watermark=last.modstamp,
                    watermark_id=last.external_id,
                )
            await runs.add_progress(
                session,
                run_id=run.id,
                pulled=batch.pulled,
                created=counts.created,
                updated=counts.updated,
                skipped=counts.skipped,
                errors=batch.errors,
                progress=state.progress,
            )
        RECORDS_PULLED.labels(entity).inc(batch.pulled)
        CONTACTS_UPSERTED.inc(counts.created + counts.updated)
        for conflict in counts.conflicts:
            log.info("field_conflict", account_id=run.account_id, **conflict)

    async def _apply_opportunities(self, state: _Run, batch: list[CrmRecord]) -> None:
        run = state.row
        async with self._sessions.begin() as session:
            conn = await session.connection()
            await contact_store.apply_opportunities(conn, account_id=run.account_id, records=batch)
            if batch:
                last = max(batch, key=lambda r: (r["SystemModstamp"], r["Id"]))
                await runs.save_entity_state(
                    session, account_id=run.account_id, entity=OPPORTUNITY, watermark=last["SystemModstamp"]
                )
        RECORDS_PULLED.labels(OPPORTUNITY).inc(len(batch))

    async def _has_opportunities(self, state: _Run) -> bool:
        try:
            await state.connector.describe(OPPORTUNITY)
        except CrmRejected as exc:
            if isinstance(exc, CrmAuthError):
                raise
            return False
        return True

    def _retry_at(self, run: RunRow) -> datetime | None:
        if run.attempts >= self._settings.puller_max_attempts:
            return None
        wait = min(
            self._settings.puller_retry_base_s * 2 ** (run.attempts - 1), self._settings.puller_retry_max_s
        )
        return self._clock() + timedelta(seconds=wait)

    async def _finish(
        self,
        run: RunRow,
        status: str,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        progress: dict[str, Any] | None = None,
    ) -> None:
        async with self._sessions.begin() as session:
            await runs.finish_run(
                session,
                run_id=run.id,
                status=status,
                error=error,
                next_attempt_at=next_attempt_at,
                progress=progress,
            )


def _rejected_message(exc: CrmRejected, state: _Run) -> str:
    """Returns the CRM's refusal, naming the mapping rows of the fields it names."""
    message = f"the CRM refused the sync: {exc.message}"
    names = {f.lower() for f in exc.fields}
    rows = [
        f"{row.destination!r}"
        for row in state.mapping.rows
        if {(row.lead_source or "").lower(), (row.contact_source or "").lower()} & names
    ]
    if rows:
        message += f" (mapping rows: {', '.join(rows)})"
    return message[:2000]
