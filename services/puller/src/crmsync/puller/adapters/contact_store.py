"""The contact store as the puller writes it: batch merges over asyncpg (R5, R12, R13, R16, R17, R23).

Every call runs inside the caller's transaction (one per batch) and never
commits. Rows a batch touches are locked first, merged in Python with the
shared per-field rules, and written back with one statement per kind of
change over unnest() arrays, which is the fastest safe road asyncpg offers
short of COPY.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from crmsync.common.clock import utc_now
from crmsync.common.domain.contacts import merge_from_crm
from crmsync.common.domain.opt_outs import reasserts_opt_out
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.domain.resync import merge_changes_nothing, needs_no_write
from crmsync.puller.adapters import contact_rows
from crmsync.puller.adapters.contact_rows import (
    COPY_COLUMNS,
    INSERT,
    SELECT,
    SELECT_FOR_UPDATE,
    SIGHTED,
    UPDATE,
    StoredContact,
    columns,
    driver,
    email_lower,
    new_row,
    prepare,
    row,
)
from crmsync.puller.adapters.conversions import convert_leads
from crmsync.puller.adapters.opt_outs import apply_suppressions, send_opt_outs_again
from crmsync.puller.adapters.related import upsert_related
from crmsync.puller.domain.batches import BatchCounts, FieldConflict, PreparedBatch

__all__ = ["COPY_COLUMNS", "apply_records", "build_search", "full_load_finished", "prepare"]

# Contacts from which an account's search entries get a table of their own.
OWN_TABLE_AT = 50_000


@dataclass
class _Tally:
    """What a batch changed so far, and the unchanged rows a full sync saw."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    conflicts: list[FieldConflict] = field(default_factory=list)
    sighted: list[uuid.UUID] = field(default_factory=list)
    # CRM records new to the store (inserted, or adopting a local contact): suppressions apply (R23).
    arrived: list[str] = field(default_factory=list)
    # Contacts whose local opt-out the CRM opted in: sent again by the outbound job (R23).
    opted_in_by_crm: list[uuid.UUID] = field(default_factory=list)

    def counts(self) -> BatchCounts:
        return BatchCounts(self.created, self.updated, self.skipped, tuple(self.conflicts))


async def apply_records(
    conn: AsyncConnection,
    *,
    account_id: str,
    run_id: uuid.UUID,
    batch: PreparedBatch,
    full: bool,
) -> BatchCounts:
    """Merges a batch of CRM records into the store; returns what changed.

    A record older than the stored one (read again through the lookback window)
    is skipped; a local value newer than the CRM's is kept (R13); a CRM opt-in
    never clears a local opt-out (R23). A full sync marks every row it sees, so
    the rows it did not see can be removed afterwards (R16). A batch prepared
    for an empty store is written with COPY; should one of its records have
    been stored meanwhile, the batch is merged like any other.
    """
    pg = await driver(conn)
    tally = _Tally()
    if batch.conversions:
        tally.updated += await convert_leads(
            pg, account_id=account_id, run_id=run_id, leads=batch.conversions
        )
    records = batch.records
    if not records:
        return tally.counts()
    if batch.new_rows is not None and await _copy_new(
        pg, account_id=account_id, run_id=run_id, rows=batch.new_rows
    ):
        tally.created += len(batch.new_rows)
        tally.arrived += [r.external_id for r in records]
    else:
        todo = (
            await _sight_unchanged(pg, account_id=account_id, records=records, tally=tally)
            if full
            else records
        )
        await _merge(pg, account_id=account_id, run_id=run_id, records=todo, full=full, tally=tally)
        if tally.sighted:
            await pg.execute(SIGHTED, run_id, tally.sighted)
    now = utc_now()
    await apply_suppressions(pg, account_id=account_id, external_ids=tally.arrived, now=now)
    await send_opt_outs_again(pg, account_id=account_id, contact_ids=tally.opted_in_by_crm, now=now)
    await upsert_related(pg, account_id=account_id, records=records)
    return tally.counts()


async def full_load_finished(session: AsyncConnection, account_id: str, *, first_load: bool) -> None:
    """Builds the account's search entries if its first load deferred them (R19).

    Called once a full sync has succeeded, in the caller's transaction. Whether
    entries are owed is the store's own record (a load COPYing into an empty
    store marks the account), so a first load resumed after a crash, whose
    later batches were merged, is built all the same; `first_load` adds nothing.
    """
    del first_load
    await build_search(await driver(session), account_id)


async def build_search(pg: asyncpg.Connection, account_id: str) -> bool:
    """Builds the search entries of an account marked pending; returns False if none were owed.

    The account's writers wait meanwhile (their triggers take the account's
    search lock shared). An account of OWN_TABLE_AT contacts or more gets a
    table of its own, filled in one statement and then indexed: a sorted
    trigram index build, cheaper than inserting the entries into an index.
    """
    state = await pg.fetchrow(contact_rows.SEARCH_STATE, account_id)
    if state is None or state["pending_since"] is None:
        return False
    await pg.execute(contact_rows.SEARCH_LOCK, account_id)
    await pg.execute(contact_rows.SEARCH_DELETE_SHARED, account_id)
    if state["relname"] is not None:
        await pg.execute(f"drop table if exists {contact_rows.search_part(state['relname'])}")
    relname = None
    if await pg.fetchval(contact_rows.COUNT_CONTACTS, account_id) >= OWN_TABLE_AT:
        relname = account_id
        part = contact_rows.search_part(relname)
        await pg.execute(f"create table {part} (like contact_search including defaults)")
        await pg.execute(contact_rows.SEARCH_FILL.format(table=part), account_id)
        await pg.execute(contact_rows.SEARCH_BUILD_MEMORY)
        await pg.execute(f"create index on {part} using gin (search_text gin_trgm_ops)")
        await pg.execute(f"alter table {part} add primary key (account_id, contact_id)")
        await pg.execute(f"analyze {part}")
    else:
        await pg.execute(contact_rows.SEARCH_FILL.format(table="contact_search"), account_id)
    await pg.execute(contact_rows.SEARCH_BUILT, account_id, relname)
    return True


async def _sight_unchanged(
    pg: asyncpg.Connection, *, account_id: str, records: Sequence[MappedRecord], tally: _Tally
) -> list[MappedRecord]:
    """Sets aside the records their rows already hold (or hold newer); returns the others.

    A full re-sync meets mostly such records. They are read without a lock:
    locking a row writes its header (and WAL) as surely as updating it, and
    nothing is written to these rows. Should a pusher change one of them
    meanwhile, the outcome is the one where this no-op ran first. The records
    returned are read again, locked, and merged.
    """
    rows = await pg.fetch(SELECT, account_id, [r.external_id for r in records], [])
    stored = {row["external_id"]: row for row in rows}
    rest: list[MappedRecord] = []
    for record in records:
        found = stored.get(record.external_id)
        current = StoredContact.of(found) if found is not None else None
        if current is not None and needs_no_write(current, record):
            tally.skipped += 1
            tally.sighted.append(current.id)
        else:
            rest.append(record)
    return rest


async def _stored_for(
    pg: asyncpg.Connection, *, account_id: str, records: Sequence[MappedRecord]
) -> tuple[dict[str, StoredContact], dict[str, StoredContact]]:
    """Locks and returns the rows of the records' CRM ids, and the local rows of their e-mails."""
    if not records:
        return {}, {}
    emails = sorted({e for r in records if (e := email_lower(r.values))})
    by_external: dict[str, StoredContact] = {}
    adoptable: dict[str, StoredContact] = {}
    for found in await pg.fetch(SELECT_FOR_UPDATE, account_id, [r.external_id for r in records], emails):
        existing = StoredContact.of(found)
        if existing.external_id is not None:
            by_external[existing.external_id] = existing
        elif existing.email_lower:
            adoptable.setdefault(existing.email_lower, existing)
    return by_external, adoptable


async def _merge(
    pg: asyncpg.Connection,
    *,
    account_id: str,
    run_id: uuid.UUID,
    records: Sequence[MappedRecord],
    full: bool,
    tally: _Tally,
) -> None:
    """Merges the records into their rows (a local contact with the e-mail is adopted), or inserts them."""
    by_external, adoptable = await _stored_for(pg, account_id=account_id, records=records)
    inserts: list[tuple] = []
    updates: list[tuple] = []
    for record in records:
        current = by_external.get(record.external_id)
        if current is None:
            # A local contact with this e-mail and no CRM record yet becomes this record's.
            email = email_lower(record.values)
            current = adoptable.pop(email, None) if email else None
            tally.arrived.append(record.external_id)
        if current is None:
            inserts.append(new_row(record))
            continue
        update = _merged_row(current, record, tally)
        if update is not None:
            updates.append(update)
        elif full:
            tally.sighted.append(current.id)
    if updates:
        await pg.execute(UPDATE, account_id, run_id, *columns(updates))
    if inserts:
        results = await pg.fetch(INSERT, account_id, run_id, *columns(inserts))
        created = sum(1 for r in results if r["inserted"])
        tally.created += created
        tally.updated += len(results) - created


def _merged_row(current: StoredContact, record: MappedRecord, tally: _Tally) -> tuple | None:
    """Returns the row after the record is merged into it, or None when nothing changes."""
    if needs_no_write(current, record):
        tally.skipped += 1
        return None
    merged = merge_from_crm(current.values, record.values, modstamp=record.modstamp)
    tally.conflicts += [FieldConflict.of(record.external_id, c) for c in merged.conflicts]
    if merge_changes_nothing(current, record, merged):
        tally.skipped += 1
        return None
    if reasserts_opt_out(current.values, record.values, merged):
        tally.opted_in_by_crm.append(current.id)
    tally.updated += 1
    modstamp = max(record.modstamp, current.crm_modstamp or record.modstamp)
    return row(
        id=current.id,
        record=record,
        fields=dict(merged.values.fields),
        meta=merged.values.stored_meta(modstamp),
        modstamp=modstamp,
        converted_from=current.converted_from_lead_id,
    )


async def _copy_new(
    pg: asyncpg.Connection, *, account_id: str, run_id: uuid.UUID, rows: Sequence[tuple]
) -> bool:
    """COPYs rows into a store that had no contact; returns False if one of them exists meanwhile.

    A first full sync writes every row new. COPY writes them in bulk (a page of
    rows per WAL record rather than one record, lock and index probe per row),
    about twice as fast as INSERT … ON CONFLICT. If another writer stored one of
    these CRM ids since the sync began (the pusher linking a record it created),
    or a local contact with one of their e-mails (which the record must adopt),
    the COPY is undone to its savepoint and the caller merges the rows instead.
    """
    records = [(r[0], account_id, *r[1:], run_id) for r in rows]
    emails = sorted({r[3].lower() for r in rows if r[3]})
    try:
        async with pg.transaction():  # a savepoint inside the batch's transaction
            # No search entry per row: the account's are built once the sync has succeeded.
            await pg.execute(contact_rows.SEARCH_PENDING, account_id)
            await pg.execute(contact_rows.SEARCH_DEFERRED, "on")
            await pg.copy_records_to_table("contacts", records=records, columns=COPY_COLUMNS)
            await pg.execute(contact_rows.SEARCH_DEFERRED, "off")
            if await pg.fetchval(_ANY_LOCAL, account_id) and await pg.fetchval(
                _LOCAL_WITH_EMAIL, account_id, emails
            ):
                raise _Adoptable
    except (asyncpg.UniqueViolationError, _Adoptable):
        return False
    return True


class _Adoptable(Exception):
    """A local contact shares an e-mail with a copied row: undo the COPY, merge instead."""


# One probe of the (account_id, external_id) index; most accounts syncing in bulk have no
# local-only contact, and then the batch's e-mails need no lookup each.
_ANY_LOCAL = "select exists (select 1 from contacts where account_id = $1 and external_id is null)"

_LOCAL_WITH_EMAIL = """
    select exists (
        select 1 from contacts where account_id = $1 and external_id is null and email_lower = any($2::text[])
    )
"""
