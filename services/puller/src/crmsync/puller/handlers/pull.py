"""The passes of one sync: full and incremental pulls of every entity into the store (R5, R15–R18).

Both read the connector's `changes()`: a full read from no cursor, an
incremental one from the cursor the entity's last read stored. Each batch of
CRM records is merged in its own transaction together with the deletions it
carries, the run's counts and resume point and, for incremental syncs, the
change cursor that covers it, so a crash, a stop or an exhausted API budget
leaves a consistent store and a run that resumes where it was. A full read's
cursor is stored when the entity is done, with the sweep of what it did not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import (
    ChangeBatch,
    ChangeCursorExpired,
    CrmAuthError,
    CrmConnector,
    CrmRejected,
)
from crmsync.common.crm.roles import DEAL
from crmsync.common.domain.mapping import Mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.observability.metrics import CONTACTS_DELETED, CONTACTS_UPSERTED, RECORDS_PULLED
from crmsync.puller.domain.batches import PreparedBatch
from crmsync.puller.domain.runs import SUCCEEDED, EntityAdvance, RunCounts, RunEnd, RunProgress, SyncRun
from crmsync.puller.handlers.crm_records import ENTITIES, check_mapping, fields_to_read, map_deal, map_record
from crmsync.puller.handlers.ports import SyncStore
from crmsync.puller.handlers.prefetch import prefetch
from crmsync.puller.handlers.repair import repair_drift, repair_due
from crmsync.puller.settings import Settings

log = structlog.get_logger(__name__)


class StopRequested(Exception):
    """The process is stopping; the run goes back to the queue with its progress."""


class NeedsFull(Exception):
    """An incremental sync cannot cover the gap (no full sync yet, or the CRM no longer follows the cursor)."""


class MissingCursor(Exception):
    """A change read ended without the cursor its last batch must carry: the connector is wrong (a bug)."""


class MovesToFullLane(Exception):
    """An incremental run that must become full, claimed by an incremental slot: it goes back to
    the queue with its progress, in the full lane (R26)."""


@dataclass(frozen=True)
class MappedBatch:
    """One batch of CRM records of an entity, mapped and prepared for the store, with the deletions
    and the change cursor that came with it.

    `errors` records could not be mapped.
    """

    entity: str
    pulled: int
    prepared: PreparedBatch
    errors: int
    deleted_ids: tuple[str, ...] = ()
    cursor: str | None = None


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
        self._deal_fields: list[str] = []

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
            self.progress = replace(self.progress, full_started_at=self._clock(), first_load=empty_store)
        started = self.progress.full_started_at
        assert started is not None
        for entity in ENTITIES:
            if entity not in self.progress.full_done:
                await self._full_entity(entity, started=started, empty_store=empty_store)
        if DEAL not in self.progress.full_done and await self._has_deals():
            await self._full_deals(started=started)
        await self._repair()
        async with self._store.begin() as tx:
            await tx.contacts.full_load_finished(run.account_id, first_load=self.progress.first_load)
            await tx.runs.clear_full_request(run.account_id, run.started_at or started)
            await tx.runs.finish_run(run.id, RunEnd(SUCCEEDED, progress=self.progress))

    async def _full_entity(self, entity: str, *, started: datetime, empty_store: bool) -> None:
        run = self.run
        stream = self.connector.changes(entity, self._fields[entity], None)
        cursor = await self._pull(entity, stream, full=True, empty_store=empty_store)
        progress = self.progress.done(entity)
        async with self._store.begin() as tx:
            removed = 0
            if not empty_store:
                removed = await tx.contacts.sweep_unseen(
                    account_id=run.account_id, entity=entity, run_id=run.id, started_at=started
                )
            # The cursor follows the changes made since the read began, those made while it ran too.
            advance = EntityAdvance(
                cursor=cursor, watermark=started, deleted_watermark=started, full_at=self._clock()
            )
            await tx.runs.advance_entity(run.account_id, entity, advance)
            await tx.runs.add_progress(run.id, RunCounts(deleted=removed), progress)
        self.progress = progress
        CONTACTS_DELETED.inc(removed)

    async def _full_deals(self, *, started: datetime) -> None:
        run = self.run
        cursor = await self._pull_deals(self.connector.changes(DEAL, self._deal_fields, None), full=True)
        progress = self.progress.done(DEAL)
        async with self._store.begin() as tx:
            advance = EntityAdvance(cursor=cursor, watermark=started, deleted_watermark=started)
            await tx.runs.advance_entity(run.account_id, DEAL, advance)
            await tx.runs.add_progress(run.id, RunCounts(), progress)
        self.progress = progress

    # ----------------------------------------------------------- incremental

    async def incremental(self) -> None:
        """Reads what changed and what was deleted since each entity's cursor (R15, R16, R18).

        Raises NeedsFull when that cannot cover the gap.
        """
        run = self.run
        await self._prepare()
        for entity in ENTITIES:
            async with self._store.read() as tx:
                current = await tx.runs.entity_state(run.account_id, entity)
            if current.cursor is None:
                raise NeedsFull(f"no full sync of {entity} yet")
            await self._incremental_entity(entity, current.cursor)
        if await self._has_deals():
            await self._incremental_deals()
        interval = self._settings.puller_repair_interval_s
        if await repair_due(self._store, run, interval_s=interval, now=self._clock()):
            await self._repair()
        async with self._store.begin() as tx:
            await tx.runs.finish_run(run.id, RunEnd(SUCCEEDED, progress=self.progress))

    async def _incremental_entity(self, entity: str, cursor: str) -> None:
        stream = self.connector.changes(entity, self._fields[entity], cursor)
        await self._follow(entity, self._pull(entity, stream, full=False))

    async def _incremental_deals(self) -> None:
        """Deals since their cursor, or all of them when none was read yet."""
        async with self._store.read() as tx:
            current = await tx.runs.entity_state(self.run.account_id, DEAL)
        stream = self.connector.changes(DEAL, self._deal_fields, current.cursor)
        await self._follow(DEAL, self._pull_deals(stream, full=False))

    async def _follow(self, entity: str, read: Awaitable[str]) -> None:
        """Runs an entity's incremental read, then records that its deletions were read up to when
        it began; NeedsFull when the CRM no longer follows the entity's cursor."""
        began = self._clock()
        try:
            await read
        except ChangeCursorExpired as exc:
            raise NeedsFull(f"the CRM no longer follows the changes of {entity}: {exc.message}") from exc
        async with self._store.begin() as tx:
            advance = EntityAdvance(deleted_watermark=began, incremental_at=self._clock())
            await tx.runs.advance_entity(self.run.account_id, entity, advance)

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
        roles = self.connector.roles
        for entity in ENTITIES:
            described = await self.connector.describe(entity)
            names = set(described.fields)
            check_mapping(mapping=self.mapping, entity=entity, described_fields=names)
            self._fields[entity] = fields_to_read(
                mapping=self.mapping, roles=roles, entity=entity, described_fields=names
            )
        self._deal_fields = list(roles.deal.fields)

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    async def _batches(self, stream: AsyncIterator[ChangeBatch]) -> AsyncIterator[ChangeBatch]:
        """Yields the stream's batches cut to the batch size, stopping between batches when asked.

        The deletions and the cursor of a batch go with its last piece: a cursor covers every
        record before it.
        """
        size = self._settings.puller_batch_size
        try:
            async for batch in stream:
                records = batch.records
                offsets = range(0, len(records), size) or range(1)  # no records: one empty piece
                last = offsets[-1]
                for offset in offsets:
                    self.check_stop()
                    piece = records[offset : offset + size]
                    yield (
                        ChangeBatch(piece, batch.deleted_ids, batch.cursor)
                        if offset == last
                        else ChangeBatch(piece)
                    )
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _pull(
        self, entity: str, stream: AsyncIterator[ChangeBatch], *, full: bool, empty_store: bool = False
    ) -> str:
        """Stores the stream's batches; the next ones are read, mapped and prepared while one is stored.

        Returns the read's last cursor.
        """
        batches = prefetch(
            self._mapped(entity, stream, empty_store=empty_store), depth=self._settings.puller_read_ahead
        )
        cursor = None
        # Closed when done: that stops the reading and closes the stream.
        async with aclosing(batches):
            async for mapped in batches:
                await self._store_batch(mapped, full=full)
                cursor = mapped.cursor or cursor
        return _final(cursor, entity)

    async def _mapped(
        self, entity: str, stream: AsyncIterator[ChangeBatch], *, empty_store: bool
    ) -> AsyncIterator[MappedBatch]:
        async for batch in self._batches(stream):
            # In a thread: mapping a batch is tens of milliseconds of CPU that would
            # otherwise hold the event loop, and with it the COPY being sent meanwhile.
            if batch.records:
                yield await asyncio.to_thread(self._map, entity, batch, empty_store=empty_store)
            else:
                yield self._map(entity, batch, empty_store=empty_store)

    def _map(self, entity: str, batch: ChangeBatch, *, empty_store: bool) -> MappedBatch:
        mapped: list[MappedRecord] = []
        errors = 0
        roles = self.connector.roles
        for record in batch.records:
            try:
                mapped.append(map_record(mapping=self.mapping, roles=roles, entity=entity, record=record))
            except (KeyError, TypeError, ValueError) as exc:
                # One malformed record is recorded and skipped; the batch goes on (R22).
                errors += 1
                log.warning(
                    "crm_record_skipped",
                    account_id=self.run.account_id,
                    entity=entity,
                    id=record.get(roles.id),
                    error=str(exc),
                )
        prepared = self._store.prepare(mapped, empty_store=empty_store)
        return MappedBatch(
            entity=entity,
            pulled=len(batch.records),
            prepared=prepared,
            errors=errors,
            deleted_ids=tuple(batch.deleted_ids),
            cursor=batch.cursor,
        )

    async def _store_batch(self, batch: MappedBatch, *, full: bool) -> None:
        self.check_stop()  # batches read ahead are not stored once a stop is asked
        if not batch.pulled and (full or (not batch.deleted_ids and batch.cursor is None)):
            return  # nothing to store (a full read's cursor is stored with its sweep)
        run = self.run
        records = [*batch.prepared.conversions, *batch.prepared.records]
        async with self._store.begin() as tx:
            counts = await tx.contacts.apply_records(
                account_id=run.account_id, run_id=run.id, batch=batch.prepared, full=full
            )
            removed = await tx.contacts.delete_by_external_ids(
                run.account_id, batch.entity, batch.deleted_ids
            )
            if not full:
                newest = max(records, key=lambda r: (r.modstamp, r.external_id), default=None)
                advance = EntityAdvance(
                    cursor=batch.cursor,
                    watermark=newest.modstamp if newest else None,
                    watermark_id=newest.external_id if newest else None,
                )
                await tx.runs.advance_entity(run.account_id, batch.entity, advance)
            added = RunCounts(
                pulled=batch.pulled,
                created=counts.created,
                updated=counts.updated,
                deleted=removed,
                skipped=counts.skipped,
                errors=batch.errors,
            )
            await tx.runs.add_progress(run.id, added, self.progress)
        RECORDS_PULLED.labels(batch.entity).inc(batch.pulled)
        CONTACTS_UPSERTED.inc(counts.created + counts.updated)
        CONTACTS_DELETED.inc(removed)
        for conflict in counts.conflicts:
            log.info("field_conflict", account_id=run.account_id, **conflict.to_log())

    async def _pull_deals(self, stream: AsyncIterator[ChangeBatch], *, full: bool) -> str:
        """Stores the deals of the stream (R5) with their deletions; returns the read's last cursor."""
        cursor = None
        async for batch in self._batches(stream):
            await self._store_deals(batch, full=full)
            cursor = batch.cursor or cursor
        return _final(cursor, DEAL)

    async def _store_deals(self, batch: ChangeBatch, *, full: bool) -> None:
        if not batch.records and (full or (not batch.deleted_ids and batch.cursor is None)):
            return
        run = self.run
        roles = self.connector.roles.deal
        deals = [map_deal(roles, record) for record in batch.records]
        async with self._store.begin() as tx:
            await tx.contacts.apply_deals(run.account_id, deals)
            await tx.contacts.delete_by_external_ids(run.account_id, DEAL, batch.deleted_ids)
            if not full:
                newest = max((d.modified_at for d in deals), default=None)
                await tx.runs.advance_entity(
                    run.account_id, DEAL, EntityAdvance(cursor=batch.cursor, watermark=newest)
                )
        RECORDS_PULLED.labels(DEAL).inc(len(batch.records))

    async def _has_deals(self) -> bool:
        try:
            await self.connector.describe(DEAL)
        except CrmRejected as exc:
            if isinstance(exc, CrmAuthError):
                raise
            return False
        return True


def _final(cursor: str | None, entity: str) -> str:
    if cursor is None:
        raise MissingCursor(f"the CRM's change read of {entity} ended without a cursor")
    return cursor
