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
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from crmsync.common.db.ids import new_id
from crmsync.common.domain.contacts import ContactValues, FieldMeta, merge_from_crm
from crmsync.common.domain.fields import EMAIL
from crmsync.puller.handlers.crm_records import CONTACT, MappedRecord


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """Returns the asyncpg connection under a SQLAlchemy connection (same transaction)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


@dataclass
class BatchCounts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Existing:
    id: uuid.UUID
    external_id: str | None
    email_lower: str | None
    crm_object: str | None
    fields: dict[str, Any]
    stored_meta_json: str
    crm_modstamp: datetime | None
    account_external_id: str | None
    owner_external_id: str | None
    converted_from_lead_id: str | None

    @cached_property
    def values(self) -> ContactValues:
        """Every value with its origin and time; parsed only when a merge needs them."""
        stored_meta = orjson.loads(self.stored_meta_json)
        return ContactValues.from_stored(self.fields, stored_meta, self.crm_modstamp)

    def needs_no_write_for(self, record: MappedRecord) -> bool:
        """True when the row holds a newer version of the record (read again through a
        lookback window) or this very version already."""
        newer = self.crm_modstamp is not None and record.modstamp < self.crm_modstamp
        return newer or self.already_holds(record)

    def already_holds(self, record: MappedRecord) -> bool:
        """True when the row is this CRM record as of its SystemModstamp already.

        Then merging it changes nothing, whatever the row's local values: every
        value is the same and so is the stamp they would be stored with. A full
        re-sync meets mostly such records, and this spares parsing each one's
        metadata.
        """
        fields = self.fields
        return (
            self.crm_modstamp == record.modstamp
            and self.external_id == record.external_id
            and self.crm_object == record.crm_object
            and self.account_external_id == record.account_external_id
            and self.owner_external_id == record.owner_external_id
            and all(name in fields and fields[name] == value for name, value in record.values.items())
        )


_SELECT = """
    select id, external_id, email_lower, crm_object, fields::text as fields,
           field_meta::text as field_meta, crm_modstamp,
           crm_account_external_id, owner_external_id, converted_from_lead_id
    from contacts
    where account_id = $1
      and (external_id = any($2::text[]) or (external_id is null and email_lower = any($3::text[])))
    order by id
"""
# In id order, so two writers locking overlapping rows take the locks in the same order.
_SELECT_FOR_UPDATE = _SELECT + "    for update\n"

_INSERT = """
    insert into contacts (id, account_id, crm_object, external_id, email, fields, field_meta, crm_modstamp,
                          crm_account_external_id, owner_external_id, converted_from_lead_id,
                          last_seen_run_id)
    select u.id, $1, u.crm_object, u.external_id, u.email, u.fields::jsonb, u.meta::jsonb, u.modstamp,
           u.account_ext, u.owner_ext, u.converted_from, $2
    from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                $10::text[], $11::text[], $12::text[])
         as u(id, crm_object, external_id, email, fields, meta, modstamp, account_ext, owner_ext, converted_from)
    -- A contact created by another writer between our read and this insert: keep its
    -- values and lay the CRM's over them rather than fail the batch.
    on conflict (account_id, external_id) do update set
        fields = contacts.fields || excluded.fields,
        -- The CRM's values carry no entry (the new modstamp implies them): drop the old ones.
        -- That writer is the pusher linking a record it created, so no entry was implied.
        field_meta = (contacts.field_meta - array(select jsonb_object_keys(excluded.fields)))
                     || excluded.field_meta,
        email = excluded.email,
        crm_object = excluded.crm_object,
        crm_modstamp = excluded.crm_modstamp,
        crm_account_external_id = excluded.crm_account_external_id,
        owner_external_id = excluded.owner_external_id,
        last_seen_run_id = excluded.last_seen_run_id,
        updated_at = now()
    returning (xmax = 0) as inserted
"""

_UPDATE = """
    update contacts c set
        crm_object = u.crm_object, external_id = u.external_id, email = u.email,
        fields = u.fields::jsonb, field_meta = u.meta::jsonb, crm_modstamp = u.modstamp,
        crm_account_external_id = u.account_ext, owner_external_id = u.owner_ext,
        converted_from_lead_id = u.converted_from, last_seen_run_id = $2, updated_at = now()
    from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                $10::text[], $11::text[], $12::text[])
         as u(id, crm_object, external_id, email, fields, meta, modstamp, account_ext, owner_ext, converted_from)
    where c.account_id = $1 and c.id = u.id
"""

# A full sync's unchanged contacts: seen, so the sweep keeps them (R16), without a row rewrite.
_SIGHTED = """
    insert into sync_run_sightings (run_id, contact_id)
    select $1, unnest($2::uuid[])
    on conflict do nothing
"""


def _existing(row: asyncpg.Record) -> _Existing:
    # Read as text and parsed here with orjson: the connection's own jsonb codec is
    # the standard library's, slower, and the metadata is needed only for a merge.
    return _Existing(
        id=row["id"],
        external_id=row["external_id"],
        email_lower=row["email_lower"],
        crm_object=row["crm_object"],
        fields=orjson.loads(row["fields"]),
        stored_meta_json=row["field_meta"],
        crm_modstamp=row["crm_modstamp"],
        account_external_id=row["crm_account_external_id"],
        owner_external_id=row["owner_external_id"],
        converted_from_lead_id=row["converted_from_lead_id"],
    )


def _email_lower(values: dict[str, Any]) -> str | None:
    email = values.get(EMAIL)
    return email.lower() if isinstance(email, str) and email else None


class _Rows:
    """Column arrays for one unnest() statement."""

    def __init__(self) -> None:
        self.columns: list[list[Any]] = [[] for _ in range(10)]

    def add(
        self,
        *,
        id: uuid.UUID,
        crm_object: str | None,
        external_id: str | None,
        fields: dict[str, Any],
        meta: dict[str, dict[str, str]],
        modstamp: datetime | None,
        account_ext: str | None,
        owner_ext: str | None,
        converted_from: str | None,
    ) -> None:
        email = fields.get(EMAIL)
        row = (
            id,
            crm_object,
            external_id,
            email if isinstance(email, str) else None,
            orjson.dumps(fields).decode(),
            orjson.dumps(meta).decode(),
            modstamp,
            account_ext,
            owner_ext,
            converted_from,
        )
        for column, value in zip(self.columns, row, strict=True):
            column.append(value)

    def add_new(self, record: MappedRecord) -> None:
        """Adds a record nothing is stored for yet, as a row with a new id."""
        self.add(
            id=new_id(),
            crm_object=record.crm_object,
            external_id=record.external_id,
            fields=record.values,
            # Every value is the CRM's at the record's time (R12): the row's modstamp
            # implies it, without an entry per field.
            meta={},
            modstamp=record.modstamp,
            account_ext=record.account_external_id,
            owner_ext=record.owner_external_id,
            converted_from=None,
        )

    def __len__(self) -> int:
        return len(self.columns[0])

    def emails_lower(self) -> list[str]:
        return sorted({e.lower() for e in self.columns[3] if e})

    def records(self, account_id: str, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
        """Returns the rows in `COPY_COLUMNS` order."""
        return [(row[0], account_id, *row[1:], run_id) for row in zip(*self.columns, strict=True)]


# The contacts columns _Rows fills, for COPY: id, account, the ten row values, run.
COPY_COLUMNS = (
    "id",
    "account_id",
    "crm_object",
    "external_id",
    "email",
    "fields",
    "field_meta",
    "crm_modstamp",
    "crm_account_external_id",
    "owner_external_id",
    "converted_from_lead_id",
    "last_seen_run_id",
)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch of CRM records made ready for `apply_records` before its transaction.

    What needs no database is done here (dropping a record read twice, and for
    a store known to be empty, building every row), so the puller prepares the
    next batch while the database writes this one.
    """

    conversions: list[MappedRecord]
    records: list[MappedRecord]
    # Every record as a new row; built only when the store had no contact at all.
    new_rows: _Rows | None = None


def prepare(records: Sequence[MappedRecord], *, empty_store: bool = False) -> PreparedBatch:
    """Returns the batch's newest record per CRM id, lead conversions apart.

    `empty_store` says the account had no contact at all when this full sync
    started: the rows to insert are built now, to be written with COPY.
    """
    latest: dict[str, MappedRecord] = {}
    for record in records:
        seen = latest.get(record.external_id)
        if seen is None or record.modstamp >= seen.modstamp:
            latest[record.external_id] = record
    conversions = [r for r in latest.values() if r.converted_contact_id]
    todo = [r for r in latest.values() if not r.converted_contact_id]
    if not empty_store:
        return PreparedBatch(conversions, todo)
    rows = _Rows()
    for record in todo:
        rows.add_new(record)
    return PreparedBatch(conversions, todo, rows)


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
    counts = BatchCounts()
    if batch.conversions:
        counts.updated += await _convert_leads(
            pg, account_id=account_id, run_id=run_id, leads=batch.conversions
        )
    todo = records = batch.records
    if not todo:
        return counts
    if batch.new_rows is not None and await _copy_new(
        pg, account_id=account_id, run_id=run_id, rows=batch.new_rows
    ):
        counts.created += len(batch.new_rows)
        await _upsert_related(pg, account_id=account_id, records=todo)
        return counts
    touched: list[uuid.UUID] = []
    if full:
        todo = await _sight_unchanged(pg, account_id=account_id, records=todo, counts=counts, touched=touched)
    emails = sorted({e for r in todo if (e := _email_lower(r.values))})
    rows = (
        await pg.fetch(_SELECT_FOR_UPDATE, account_id, [r.external_id for r in todo], emails) if todo else []
    )
    by_external: dict[str, _Existing] = {}
    adoptable: dict[str, _Existing] = {}
    for row in rows:
        existing = _existing(row)
        if existing.external_id is not None:
            by_external[existing.external_id] = existing
        elif existing.email_lower:
            adoptable.setdefault(existing.email_lower, existing)

    inserts, updates = _Rows(), _Rows()
    for record in todo:
        current = by_external.get(record.external_id)
        if current is None:
            # A local contact with this e-mail and no CRM record yet becomes this record's.
            email = _email_lower(record.values)
            current = adoptable.pop(email, None) if email else None
        if current is None:
            inserts.add_new(record)
            continue
        if current.needs_no_write_for(record):
            counts.skipped += 1
            if full:
                touched.append(current.id)
            continue
        merged = merge_from_crm(current.values, record.values, modstamp=record.modstamp)
        counts.conflicts += [
            {
                "external_id": record.external_id,
                "field": c.field,
                "local_value": c.local_value,
                "local_at": c.local_at.isoformat(),
                "crm_value": c.crm_value,
                "crm_at": c.crm_at.isoformat(),
                "winner": c.winner,
            }
            for c in merged.conflicts
        ]
        same = (
            not merged.changed
            and current.external_id == record.external_id
            and current.crm_object == record.crm_object
            and current.account_external_id == record.account_external_id
            and current.owner_external_id == record.owner_external_id
            and current.crm_modstamp == record.modstamp
        )
        if same:
            counts.skipped += 1
            if full:
                touched.append(current.id)
            continue
        modstamp = max(record.modstamp, current.crm_modstamp or record.modstamp)
        updates.add(
            id=current.id,
            crm_object=record.crm_object,
            external_id=record.external_id,
            fields=dict(merged.values.fields),
            meta=merged.values.stored_meta(modstamp),
            modstamp=modstamp,
            account_ext=record.account_external_id,
            owner_ext=record.owner_external_id,
            converted_from=current.converted_from_lead_id,
        )
        counts.updated += 1
    if updates:
        await pg.execute(_UPDATE, account_id, run_id, *updates.columns)
    if inserts:
        results = await pg.fetch(_INSERT, account_id, run_id, *inserts.columns)
        created = sum(1 for r in results if r["inserted"])
        counts.created += created
        counts.updated += len(results) - created
    if touched:
        await pg.execute(_SIGHTED, run_id, touched)
    await _upsert_related(pg, account_id=account_id, records=records)
    return counts


async def _sight_unchanged(
    pg: asyncpg.Connection,
    *,
    account_id: str,
    records: list[MappedRecord],
    counts: BatchCounts,
    touched: list[uuid.UUID],
) -> list[MappedRecord]:
    """Sets aside the records their rows already hold (or hold newer); returns the others.

    A full re-sync meets mostly such records. They are read without a lock:
    locking a row writes its header (and WAL) as surely as updating it, and
    nothing is written to these rows. Should a pusher change one of them
    meanwhile, the outcome is the one where this no-op ran first. The records
    returned are read again, locked, and merged.
    """
    rows = await pg.fetch(_SELECT, account_id, [r.external_id for r in records], [])
    stored = {row["external_id"]: row for row in rows}
    rest: list[MappedRecord] = []
    for record in records:
        row = stored.get(record.external_id)
        if row is None:
            rest.append(record)
            continue
        current = _existing(row)
        if current.needs_no_write_for(record):
            counts.skipped += 1
            touched.append(current.id)
        else:
            rest.append(record)
    return rest


async def _copy_new(pg: asyncpg.Connection, *, account_id: str, run_id: uuid.UUID, rows: _Rows) -> bool:
    """COPYs rows into a store that had no contact; returns False if one of them exists meanwhile.

    A first full sync writes every row new. COPY writes them in bulk (a page of
    rows per WAL record rather than one record, lock and index probe per row),
    about twice as fast as INSERT … ON CONFLICT. If another writer stored one of
    these CRM ids since the sync began (the pusher linking a record it created),
    or a local contact with one of their e-mails (which the record must adopt),
    the COPY is undone to its savepoint and the caller merges the rows instead.
    """
    try:
        async with pg.transaction():  # a savepoint inside the batch's transaction
            await pg.copy_records_to_table(
                "contacts", records=rows.records(account_id, run_id), columns=COPY_COLUMNS
            )
            if await pg.fetchval(_LOCAL_WITH_EMAIL, account_id, rows.emails_lower()):
                raise _Adoptable
    except (asyncpg.UniqueViolationError, _Adoptable):
        return False
    return True


class _Adoptable(Exception):
    """A local contact shares an e-mail with a copied row: undo the COPY, merge instead."""


_LOCAL_WITH_EMAIL = """
    select exists (
        select 1 from contacts where account_id = $1 and external_id is null and email_lower = any($2::text[])
    )
"""


async def _convert_leads(
    pg: asyncpg.Connection, *, account_id: str, run_id: uuid.UUID, leads: Sequence[MappedRecord]
) -> int:
    """Hands each converted Lead's contact over to its Contact: one contact, local fields kept (R17).

    Returns how many local contacts changed.
    """
    lead_ids = [r.external_id for r in leads]
    contact_ids = [r.converted_contact_id for r in leads if r.converted_contact_id]
    rows = await pg.fetch(_SELECT_FOR_UPDATE, account_id, lead_ids + contact_ids, [])
    by_external = {row["external_id"]: _existing(row) for row in rows}
    changed = 0
    for lead in leads:
        assert lead.converted_contact_id is not None
        lead_row = by_external.get(lead.external_id)
        if lead_row is None:
            continue  # nothing local yet, or handed over already
        contact_row = by_external.get(lead.converted_contact_id)
        if contact_row is None:
            # The Lead's CRM values are not the Contact's; the Contact's own arrive in the
            # Contact pass of this same run. Local values stay.
            kept = _local_only(lead_row.values)
            await pg.execute(
                """
                update contacts set external_id = $3, crm_object = $4, converted_from_lead_id = $5,
                       last_seen_run_id = $6, fields = $7::jsonb, field_meta = $8::jsonb,
                       crm_modstamp = null, updated_at = now()
                where account_id = $1 and id = $2
                """,
                account_id,
                lead_row.id,
                lead.converted_contact_id,
                CONTACT,
                lead.external_id,
                run_id,
                orjson.dumps(kept.fields).decode(),
                orjson.dumps(kept.stored_meta(None)).decode(),
            )
        else:
            # The Contact is already here: it takes the Lead's local values where they are newer.
            fields = dict(contact_row.values.fields)
            meta = dict(contact_row.values.meta)
            for name, value in lead_row.values.fields.items():
                lead_meta = lead_row.values.meta.get(name)
                mine = meta.get(name)
                if lead_meta is None or lead_meta.from_crm:
                    continue
                if mine is None or mine.at < lead_meta.at:
                    fields[name] = value
                    meta[name] = FieldMeta(lead_meta.origin, lead_meta.at)
            merged = ContactValues(fields, meta)
            await pg.execute(
                "delete from contacts where account_id = $1 and id = $2", account_id, lead_row.id
            )
            await pg.execute(
                """
                update contacts set fields = $3::jsonb, field_meta = $4::jsonb, converted_from_lead_id = $5,
                       email = coalesce(email, $6), updated_at = now()
                where account_id = $1 and id = $2
                """,
                account_id,
                contact_row.id,
                orjson.dumps(merged.fields).decode(),
                orjson.dumps(merged.stored_meta(contact_row.crm_modstamp)).decode(),
                lead.external_id,
                merged.fields.get(EMAIL) if isinstance(merged.fields.get(EMAIL), str) else None,
            )
        changed += 1
    return changed


def _local_only(values: ContactValues) -> ContactValues:
    """Returns the values that did not come from the CRM."""
    keep = {name for name, meta in values.meta.items() if not meta.from_crm}
    return ContactValues(
        {k: v for k, v in values.fields.items() if k in keep}, {k: values.meta[k] for k in keep}
    )


async def _upsert_related(
    pg: asyncpg.Connection, *, account_id: str, records: Sequence[MappedRecord]
) -> None:
    """Keeps the CRM accounts and owners the batch names (R5)."""
    accounts = {r.account_external_id: r.account_name for r in records if r.account_external_id}
    owners = {r.owner_external_id: (r.owner_name, r.owner_email) for r in records if r.owner_external_id}
    if accounts:
        ids = sorted(accounts)
        await pg.execute(
            """
            insert into crm_accounts (account_id, external_id, name)
            select $1, u.id, u.name from unnest($2::text[], $3::text[]) as u(id, name)
            on conflict (account_id, external_id) do update set name = excluded.name
            where crm_accounts.name is distinct from excluded.name
            """,
            account_id,
            ids,
            [accounts[i] for i in ids],
        )
    if owners:
        ids = sorted(owners)
        await pg.execute(
            """
            insert into crm_owners (account_id, external_id, name, email)
            select $1, u.id, u.name, u.email from unnest($2::text[], $3::text[], $4::text[]) as u(id, name, email)
            on conflict (account_id, external_id) do update set name = excluded.name, email = excluded.email
            where (crm_owners.name, crm_owners.email) is distinct from (excluded.name, excluded.email)
            """,
            account_id,
            ids,
            [owners[i][0] for i in ids],
            [owners[i][1] for i in ids],
        )


async def apply_opportunities(
    conn: AsyncConnection, *, account_id: str, records: Sequence[dict[str, Any]]
) -> int:
    """Upserts opportunities, linked to their CRM account and contact (R5); returns how many."""
    if not records:
        return 0
    latest = {r["Id"]: r for r in records}
    ids = sorted(latest)
    pg = await driver(conn)
    await pg.execute(
        """
        insert into crm_opportunities (account_id, external_id, name, stage, amount, close_date,
                                       crm_account_external_id, contact_external_id, crm_modstamp)
        select $1, u.* from unnest($2::text[], $3::text[], $4::text[], $5::numeric[], $6::date[], $7::text[],
                                   $8::text[], $9::timestamptz[])
             as u(id, name, stage, amount, close_date, acc, contact, modstamp)
        on conflict (account_id, external_id) do update set
            name = excluded.name, stage = excluded.stage, amount = excluded.amount,
            close_date = excluded.close_date, crm_account_external_id = excluded.crm_account_external_id,
            contact_external_id = excluded.contact_external_id, crm_modstamp = excluded.crm_modstamp
        where crm_opportunities.crm_modstamp is null or crm_opportunities.crm_modstamp <= excluded.crm_modstamp
        """,
        account_id,
        ids,
        [latest[i].get("Name") for i in ids],
        [latest[i].get("StageName") for i in ids],
        [_decimal(latest[i].get("Amount")) for i in ids],
        [latest[i].get("CloseDate") for i in ids],
        [latest[i].get("AccountId") for i in ids],
        [latest[i].get("ContactId") for i in ids],
        [latest[i].get("SystemModstamp") for i in ids],
    )
    return len(ids)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def has_contacts(conn: AsyncConnection, *, account_id: str) -> bool:
    """Returns whether the account has any contact at all."""
    pg = await driver(conn)
    return bool(await pg.fetchval("select exists (select 1 from contacts where account_id = $1)", account_id))


async def delete_by_external_ids(
    conn: AsyncConnection, *, account_id: str, entity: str, external_ids: Sequence[str]
) -> int:
    """Removes the contacts of records the CRM deleted (R16); returns how many."""
    if not external_ids:
        return 0
    pg = await driver(conn)
    table, object_clause = (
        ("crm_opportunities", "") if entity == "Opportunity" else ("contacts", " and crm_object = $3")
    )
    args: list[Any] = [account_id, list(external_ids)]
    if object_clause:
        args.append(entity)
    status = await pg.execute(
        f"delete from {table} where account_id = $1 and external_id = any($2::text[]){object_clause}", *args
    )
    return int(status.split()[-1])


async def sweep_unseen(
    conn: AsyncConnection, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
) -> int:
    """Removes the entity's contacts a full sync did not see: the CRM no longer has them (R16).

    Seen are the rows the sync wrote (`last_seen_run_id`) and the ones it found
    unchanged (its sightings). Rows written since the sync started (a record the
    pusher created in the CRM after the export passed it) are left alone; the
    deleted feed covers them.
    """
    pg = await driver(conn)
    status = await pg.execute(
        """
        delete from contacts c
        where c.account_id = $1 and c.crm_object = $2 and c.last_seen_run_id is distinct from $3
          and c.updated_at < $4
          and not exists (select 1 from sync_run_sightings s where s.run_id = $3 and s.contact_id = c.id)
        """,
        account_id,
        entity,
        run_id,
        started_at,
    )
    return int(status.split()[-1])
