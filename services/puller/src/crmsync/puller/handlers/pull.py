"""The passes of one sync: full and incremental pulls of every entity into the store (R5, R15–R18).

Each batch of CRM records is merged in its own transaction together with the
run's counts and resume point (and, for incremental syncs, the watermark it
covers), so a crash, a stop or an exhausted API budget leaves a consistent
store and a run that resumes where it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import CrmAuthError, CrmConnector, CrmRecord, CrmRejected
from crmsync.common.crm.salesforce import DeletedFeedWindowExceeded
from crmsync.common.domain.mapping import Mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.observability.metrics import CONTACTS_DELETED, CONTACTS_UPSERTED, RECORDS_PULLED
from crmsync.puller.domain.batches import PreparedBatch
from crmsync.puller.domain.runs import SUCCEEDED, EntityAdvance, RunCounts, RunEnd, RunProgress, SyncRun
from crmsync.puller.handlers.crm_records import (
    ENTITIES,
    OPPORTUNITY,
    OPPORTUNITY_FIELDS,
    check_mapping,
    fields_to_read,
    map_record,
)
from crmsync.puller.handlers.ports import SyncStore
from crmsync.puller.handlers.prefetch import prefetch
from crmsync.puller.handlers.repair import repair_drift, repair_due
from crmsync.puller.settings import Settings

log = structlog.get_logger(__name__)


class StopRequested(Exception):
    """The process is stopping; the run goes back to the queue with its progress."""


class NeedsFull(Exception):
    """An incremental sync cannot cover the gap (no watermark, deleted feed too short)."""


class MovesToFullLane(Exception):
    """An incremental run that must become full, claimed by an incremental slot: it goes back to
    the queue with its progress, in the full lane (R26)."""


@dataclass(frozen=True)
class MappedBatch:
    """One batch of CRM records of an entity, mapped and prepared for the store.

    `errors` records could not be mapped.
    """

    entity: str
    pulled: int
    prepared: PreparedBatch
    errors: int


class Pull:
    """One execution of a run: reads the CRM and writes the store; `progress` is where it got to."""

    def __init__(
        self,
        *,
        run: SyncRun,
        mapping: Mapping,
        connector: CrmConnector,
        store: SyncStore,
        settings: Settings,
        stop: asyncio.Event,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.run = run
        self.progress: RunProgress = run.progress
        self.mapping = mapping
        self.connector = connector
        self._store = store
        self._settings = settings
        self._stop = stop
        self._clock = clock
        self._fields: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ full

    async def full(self) -> None:
        """Reads every record of every entity; removes what the CRM no longer has (R15, R16)."""
        run = self.run
        await self._prepare()
        # A first sync into an empty store only inserts; a resumed one reads back what it wrote.
        empty_store = False
        if self.progress.full_started_at is None:
            async with self._store.read() as tx:
                empty_store = not await tx.contacts.has_contacts(run.account_id)
            self.progress = replace(self.progress, full_started_at=self._clock())
        started = self.progress.full_started_at
        assert started is not None
        for entity in ENTITIES:
            if entity not in self.progress.full_done:
                await self._full_entity(entity, started=started, empty_store=empty_store)
        if OPPORTUNITY not in self.progress.full_done and await self._has_opportunities():
            await self._full_opportunities(started=started)
        await self._repair()
        async with self._store.begin() as tx:
            await tx.runs.clear_full_request(run.account_id, run.started_at or started)
            await tx.runs.finish_run(run.id, RunEnd(SUCCEEDED, progress=self.progress))

    async def _full_entity(self, entity: str, *, started: datetime, empty_store: bool) -> None:
        run = self.run
        stream = self.connector.export_all(entity, self._fields[entity])
        await self._pull(entity, stream, full=True, empty_store=empty_store)
        progress = self.progress.done(entity)
        async with self._store.begin() as tx:
            removed = 0
            if not empty_store:
                removed = await tx.contacts.sweep_unseen(
                    account_id=run.account_id, entity=entity, run_id=run.id, started_at=started
                )
            # Records changed while the export ran are read again by the next incremental.
            advance = EntityAdvance(watermark=started, deleted_watermark=started, full_at=self._clock())
            await tx.runs.advance_entity(run.account_id, entity, advance)
            await tx.runs.add_progress(run.id, RunCounts(deleted=removed), progress)
        self.progress = progress
        CONTACTS_DELETED.inc(removed)

    async def _full_opportunities(self, *, started: datetime) -> None:
        run = self.run
        async for batch in self._batches(self.connector.export_all(OPPORTUNITY, list(OPPORTUNITY_FIELDS))):
            await self._store_opportunities(batch)
        progress = self.progress.done(OPPORTUNITY)
        async with self._store.begin() as tx:
            advance = EntityAdvance(watermark=started, deleted_watermark=started)
            await tx.runs.advance_entity(run.account_id, OPPORTUNITY, advance)
            await tx.runs.add_progress(run.id, RunCounts(), progress)
        self.progress = progress

    # ----------------------------------------------------------- incremental

    async def incremental(self) -> None:
        """Reads what changed and what was deleted since each entity's watermark (R15, R16, R18).

        Raises NeedsFull when that cannot cover the gap.
        """
        run = self.run
        await self._prepare()
        lookback = timedelta(seconds=self._settings.puller_lookback_s)
        for entity in ENTITIES:
            async with self._store.read() as tx:
                current = await tx.runs.entity_state(run.account_id, entity)
            if current.watermark is None:
                raise NeedsFull(f"no full sync of {entity} yet")
            # Ties at the watermark's second and records committed late with an older
            # SystemModstamp fall inside the lookback window; merging them again is harmless.
            stream = self.connector.changed_since(
                entity, self._fields[entity], current.watermark - lookback, page_size=2000
            )
            await self._pull(entity, stream, full=False)
            await self._deletions(entity, current.deleted_watermark or current.watermark, lookback)
        if await self._has_opportunities():
            await self._incremental_opportunities(lookback)
        interval = self._settings.puller_repair_interval_s
        if await repair_due(self._store, run, interval_s=interval, now=self._clock()):
            await self._repair()
        async with self._store.begin() as tx:
            await tx.runs.finish_run(run.id, RunEnd(SUCCEEDED, progress=self.progress))

    async def _incremental_opportunities(self, lookback: timedelta) -> None:
        async with self._store.read() as tx:
            current = await tx.runs.entity_state(self.run.account_id, OPPORTUNITY)
        fields = list(OPPORTUNITY_FIELDS)
        if current.watermark is None:
            stream = self.connector.export_all(OPPORTUNITY, fields)
        else:
            stream = self.connector.changed_since(OPPORTUNITY, fields, current.watermark - lookback)
        async for batch in self._batches(stream):
            await self._store_opportunities(batch)
        if current.watermark is not None:
            await self._deletions(OPPORTUNITY, current.deleted_watermark or current.watermark, lookback)

    async def _deletions(self, entity: str, since: datetime, lookback: timedelta) -> None:
        """Removes what the CRM's deleted feed lists since the last look (R16)."""
        run = self.run
        end = self._clock()
        try:
            deleted = await self.connector.deleted_since(entity, since - lookback, end)
        except DeletedFeedWindowExceeded as exc:
            raise NeedsFull(f"the CRM's deleted feed no longer reaches back to {since:%Y-%m-%d}") from exc
        self.check_stop()
        async with self._store.begin() as tx:
            removed = await tx.contacts.delete_by_external_ids(
                run.account_id, entity, [d.id for d in deleted]
            )
            await tx.runs.advance_entity(
                run.account_id, entity, EntityAdvance(deleted_watermark=end, incremental_at=end)
            )
            await tx.runs.add_progress(run.id, RunCounts(deleted=removed if entity != OPPORTUNITY else 0))
        if entity != OPPORTUNITY:
            CONTACTS_DELETED.inc(removed)

    # ----------------------------------------------------------------- shared

    async def _repair(self) -> None:
        """Hands the local values the CRM does not hold to the pusher (R25)."""
        await repair_drift(
            run=self.run,
            mapping=self.mapping,
            connector=self.connector,
            store=self._store,
            fields=self._fields,
            clock=self._clock,
            check_stop=self.check_stop,
        )

    async def _prepare(self) -> None:
        """Checks the mapping against the CRM's describe before anything is written."""
        for entity in ENTITIES:
            described = await self.connector.describe(entity)
            names = set(described.fields)
            check_mapping(mapping=self.mapping, entity=entity, described_fields=names)
            self._fields[entity] = fields_to_read(mapping=self.mapping, entity=entity, described_fields=names)

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    async def _batches(self, stream: AsyncIterator[list[CrmRecord]]) -> AsyncIterator[list[CrmRecord]]:
        """Yields the stream's batches cut to the batch size, stopping between batches when asked."""
        size = self._settings.puller_batch_size
        try:
            async for batch in stream:
                for offset in range(0, len(batch), size):
                    self.check_stop()
                    yield batch[offset : offset + size]
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _pull(
        self, entity: str, stream: AsyncIterator[list[CrmRecord]], *, full: bool, empty_store: bool = False
    ) -> None:
        """Stores the stream's batches; the next ones are read, mapped and prepared while one is stored."""
        batches = prefetch(
            self._mapped(entity, stream, empty_store=empty_store), depth=self._settings.puller_read_ahead
        )
        # Closed when done: that stops the reading and closes the stream.
        async with aclosing(batches):
            async for mapped in batches:
                await self._store_batch(mapped, full=full)

    async def _mapped(
        self, entity: str, stream: AsyncIterator[list[CrmRecord]], *, empty_store: bool
    ) -> AsyncIterator[MappedBatch]:
        async for batch in self._batches(stream):
            # In a thread: mapping a batch is tens of milliseconds of CPU that would
            # otherwise hold the event loop, and with it the COPY being sent meanwhile.
            yield await asyncio.to_thread(self._map, entity, batch, empty_store=empty_store)

    def _map(self, entity: str, batch: list[CrmRecord], *, empty_store: bool) -> MappedBatch:
        mapped: list[MappedRecord] = []
        errors = 0
        for record in batch:
            try:
                mapped.append(map_record(mapping=self.mapping, entity=entity, record=record))
            except (KeyError, TypeError, ValueError) as exc:
                # One malformed record is recorded and skipped; the batch goes on (R22).
                errors += 1
                log.warning(
                    "crm_record_skipped",
                    account_id=self.run.account_id,
                    entity=entity,
                    id=record.get("Id"),
                    error=str(exc),
                )
        prepared = self._store.prepare(mapped, empty_store=empty_store)
        return MappedBatch(entity=entity, pulled=len(batch), prepared=prepared, errors=errors)

    async def _store_batch(self, batch: MappedBatch, *, full: bool) -> None:
        self.check_stop()  # batches read ahead are not stored once a stop is asked
        run = self.run
        records = [*batch.prepared.conversions, *batch.prepared.records]
        async with self._store.begin() as tx:
            counts = await tx.contacts.apply_records(
                account_id=run.account_id, run_id=run.id, batch=batch.prepared, full=full
            )
            if not full and records:
                last = max(records, key=lambda r: (r.modstamp, r.external_id))
                advance = EntityAdvance(watermark=last.modstamp, watermark_id=last.external_id)
                await tx.runs.advance_entity(run.account_id, batch.entity, advance)
            added = RunCounts(
                pulled=batch.pulled,
                created=counts.created,
                updated=counts.updated,
                skipped=counts.skipped,
                errors=batch.errors,
            )
            await tx.runs.add_progress(run.id, added, self.progress)
        RECORDS_PULLED.labels(batch.entity).inc(batch.pulled)
        CONTACTS_UPSERTED.inc(counts.created + counts.updated)
        for conflict in counts.conflicts:
            log.info("field_conflict", account_id=run.account_id, **conflict.to_log())

    async def _store_opportunities(self, batch: list[CrmRecord]) -> None:
        run = self.run
        async with self._store.begin() as tx:
            await tx.contacts.apply_opportunities(run.account_id, batch)
            if batch:
                last = max(batch, key=lambda r: (r["SystemModstamp"], r["Id"]))
                advance = EntityAdvance(watermark=last["SystemModstamp"])
                await tx.runs.advance_entity(run.account_id, OPPORTUNITY, advance)
        RECORDS_PULLED.labels(OPPORTUNITY).inc(len(batch))

    async def _has_opportunities(self) -> bool:
        try:
            await self.connector.describe(OPPORTUNITY)
        except CrmRejected as exc:
            if isinstance(exc, CrmAuthError):
                raise
            return False
        return True
