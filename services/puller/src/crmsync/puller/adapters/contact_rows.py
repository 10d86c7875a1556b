"""Contact rows as the puller reads and writes them: the stored row, the row arrays, the statements.

Rows are read with their values as text and parsed here with orjson (the
connection's own jsonb codec is the standard library's, slower), and their
metadata only when a merge needs it. Rows are written with one statement per
kind of change over unnest() arrays, or with COPY into an empty store.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from crmsync.common.db.ids import new_id
from crmsync.common.domain.contacts import ContactValues
from crmsync.common.domain.fields import EMAIL
from crmsync.common.domain.pulled import MappedRecord
from crmsync.puller.domain.batches import PreparedBatch, newest_per_record


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """Returns the asyncpg connection under a SQLAlchemy connection (same transaction)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


@dataclass(frozen=True)
class StoredContact:
    """A contact row as read for a merge (a `resync.StoredRow`)."""

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

    @classmethod
    def of(cls, row: asyncpg.Record) -> StoredContact:
        return cls(
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


SELECT = """
    select id, external_id, email_lower, crm_object, fields::text as fields,
           field_meta::text as field_meta, crm_modstamp,
           crm_account_external_id, owner_external_id, converted_from_lead_id
    from contacts
    where account_id = $1
      and (external_id = any($2::text[]) or (external_id is null and email_lower = any($3::text[])))
    order by id
"""
# In id order, so two writers locking overlapping rows take the locks in the same order.
SELECT_FOR_UPDATE = SELECT + "    for update\n"

_UNNEST = """unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[],
                $10::text[], $11::text[], $12::text[])
         as u(id, crm_object, external_id, email, fields, meta, modstamp, account_ext, owner_ext, converted_from)"""

INSERT = f"""
    insert into contacts (id, account_id, crm_object, external_id, email, fields, field_meta, crm_modstamp,
                          crm_account_external_id, owner_external_id, converted_from_lead_id,
                          last_seen_run_id)
    select u.id, $1, u.crm_object, u.external_id, u.email, u.fields::jsonb, u.meta::jsonb, u.modstamp,
           u.account_ext, u.owner_ext, u.converted_from, $2
    from {_UNNEST}
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

UPDATE = f"""
    update contacts c set
        crm_object = u.crm_object, external_id = u.external_id, email = u.email,
        fields = u.fields::jsonb, field_meta = u.meta::jsonb, crm_modstamp = u.modstamp,
        crm_account_external_id = u.account_ext, owner_external_id = u.owner_ext,
        converted_from_lead_id = u.converted_from, last_seen_run_id = $2, updated_at = now()
    from {_UNNEST}
    where c.account_id = $1 and c.id = u.id
"""

# A full sync's unchanged contacts: seen, so the sweep keeps them (R16), without a row rewrite.
SIGHTED = """
    insert into sync_run_sightings (run_id, contact_id)
    select $1, unnest($2::uuid[])
    on conflict do nothing
"""

# The contacts columns a row fills, for COPY: id, account, the ten row values, run.
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


def email_lower(values: dict[str, Any]) -> str | None:
    email = values.get(EMAIL)
    return email.lower() if isinstance(email, str) and email else None


def row(
    *,
    id: uuid.UUID,
    record: MappedRecord,
    fields: dict[str, Any],
    meta: dict[str, dict[str, str]],
    modstamp: datetime | None,
    converted_from: str | None,
) -> tuple[Any, ...]:
    """Returns the ten row values (COPY_COLUMNS without account and run) of a record's contact."""
    email = fields.get(EMAIL)
    return (
        id,
        record.crm_object,
        record.external_id,
        email if isinstance(email, str) else None,
        orjson.dumps(fields).decode(),
        orjson.dumps(meta).decode(),
        modstamp,
        record.account_external_id,
        record.owner_external_id,
        converted_from,
    )


def new_row(record: MappedRecord) -> tuple[Any, ...]:
    """Returns the row of a record nothing is stored for yet, with a new id."""
    # Every value is the CRM's at the record's time (R12): the row's modstamp implies it,
    # without an entry per field.
    return row(
        id=new_id(),
        record=record,
        fields=record.values,
        meta={},
        modstamp=record.modstamp,
        converted_from=None,
    )


def columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Returns the rows as the ten column arrays of an unnest() statement."""
    return [list(column) for column in zip(*rows, strict=True)]


def prepare(records: Sequence[MappedRecord], *, empty_store: bool = False) -> PreparedBatch:
    """Returns the batch's newest record per CRM id, lead conversions apart.

    `empty_store` says the account had no contact at all when this full sync
    started: the rows to insert are built now, to be written with COPY.
    """
    conversions, todo = newest_per_record(records)
    if not empty_store:
        return PreparedBatch(conversions, todo)
    return PreparedBatch(conversions, todo, tuple(new_row(record) for record in todo))


# Search entries (R19); their triggers and the contact_search_text() function are in migration 0009.
SEARCH_STATE = "select relname, pending_since from contact_search_state where account_id = $1 for update"
# A first load's COPY writes no entries (the insert trigger skips them); the account's are owed.
SEARCH_PENDING = """
    insert into contact_search_state (account_id, pending_since) values ($1, now())
    on conflict (account_id) do update set pending_since = excluded.pending_since
    where contact_search_state.pending_since is null
"""
SEARCH_DEFERRED = "select set_config('crmsync.search_deferred', $1, true)"
# The account's writers take it shared (in their trigger) and wait while a build holds it.
SEARCH_LOCK = "select pg_advisory_xact_lock(1936876392, hashtext($1))  -- 'srch'"
SEARCH_DELETE_SHARED = "delete from contact_search where account_id = $1"
COUNT_CONTACTS = "select count(*) from contacts where account_id = $1"
SEARCH_FILL = """
    insert into {table} (account_id, contact_id, crm_object, search_text)
    select account_id, id, crm_object, contact_search_text(email, fields) from contacts where account_id = $1
"""
# Enough for a sorted build of a million contacts' trigrams in one pass.
SEARCH_BUILD_MEMORY = "select set_config('maintenance_work_mem', '512MB', true)"
SEARCH_BUILT = "update contact_search_state set relname = $2, pending_since = null where account_id = $1"


def search_part(relname: str) -> str:
    """Returns the quoted name of an account's own search table."""
    return 'contact_search_parts."' + relname.replace('"', '""') + '"'
