"""What the puller writes beside contacts (R5, R16): CRM accounts, owners and opportunities;
deletions and the full sync's sweep."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from crmsync.common.crm.roles import DEAL
from crmsync.common.domain.pulled import MappedRecord
from crmsync.puller.adapters.contact_rows import driver
from crmsync.puller.domain.deals import PulledDeal

_UPSERT_ACCOUNTS = """
    insert into crm_accounts (account_id, external_id, name)
    select $1, u.id, u.name from unnest($2::text[], $3::text[]) as u(id, name)
    on conflict (account_id, external_id) do update set name = excluded.name
    where crm_accounts.name is distinct from excluded.name
"""

_UPSERT_OWNERS = """
    insert into crm_owners (account_id, external_id, name, email)
    select $1, u.id, u.name, u.email from unnest($2::text[], $3::text[], $4::text[]) as u(id, name, email)
    on conflict (account_id, external_id) do update set name = excluded.name, email = excluded.email
    where (crm_owners.name, crm_owners.email) is distinct from (excluded.name, excluded.email)
"""

_UPSERT_OPPORTUNITIES = """
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
"""

# Seen are the rows the sync wrote (`last_seen_run_id`) and the ones it found unchanged
# (its sightings). Rows written since the sync started (a record the pusher created in
# the CRM after the export passed it) are left alone; the deleted feed covers them.
_SWEEP_UNSEEN = """
    delete from contacts c
    where c.account_id = $1 and c.crm_object = $2 and c.last_seen_run_id is distinct from $3
      and c.updated_at < $4
      and not exists (select 1 from sync_run_sightings s where s.run_id = $3 and s.contact_id = c.id)
"""

_DELETE_RECORDS = """
    delete from contacts where account_id = $1 and external_id = any($2::text[]) and crm_object = $3
"""


def _keeping_suppressions(delete: str) -> str:
    """Returns the contacts' delete that also keeps the e-mails of opted-out ones (R23); it counts the rows."""
    return f"""
    with gone as ({delete} returning email_lower, fields -> 'opted_out' = 'true'::jsonb as opted_out),
    kept as (
        insert into email_suppressions (account_id, email_lower, reason)
        select distinct $1, email_lower, 'crm_record_deleted' from gone
        where opted_out and email_lower is not null
        on conflict do nothing
    )
    select count(*) from gone
    """


_SWEEP_KEEPING_SUPPRESSIONS = _keeping_suppressions(_SWEEP_UNSEEN)
_DELETE_KEEPING_SUPPRESSIONS = _keeping_suppressions(_DELETE_RECORDS)


async def upsert_related(pg: asyncpg.Connection, *, account_id: str, records: Sequence[MappedRecord]) -> None:
    """Keeps the CRM accounts and owners the batch names (R5)."""
    accounts = {r.account_external_id: r.account_name for r in records if r.account_external_id}
    owners = {r.owner_external_id: (r.owner_name, r.owner_email) for r in records if r.owner_external_id}
    if accounts:
        ids = sorted(accounts)
        await pg.execute(_UPSERT_ACCOUNTS, account_id, ids, [accounts[i] for i in ids])
    if owners:
        ids = sorted(owners)
        await pg.execute(
            _UPSERT_OWNERS, account_id, ids, [owners[i][0] for i in ids], [owners[i][1] for i in ids]
        )


async def apply_deals(conn: AsyncConnection, *, account_id: str, deals: Sequence[PulledDeal]) -> int:
    """Upserts deals (the CRM's opportunities), linked to their CRM company and contact (R5);
    returns how many."""
    if not deals:
        return 0
    latest = {d.external_id: d for d in deals}
    rows = [latest[i] for i in sorted(latest)]
    pg = await driver(conn)
    await pg.execute(
        _UPSERT_OPPORTUNITIES,
        account_id,
        [d.external_id for d in rows],
        [d.name for d in rows],
        [d.stage for d in rows],
        [d.amount for d in rows],
        [d.close_date for d in rows],
        [d.company_external_id for d in rows],
        [d.contact_external_id for d in rows],
        [d.modified_at for d in rows],
    )
    return len(rows)


async def has_contacts(conn: AsyncConnection, *, account_id: str) -> bool:
    """Returns whether the account has any contact at all."""
    pg = await driver(conn)
    return bool(await pg.fetchval("select exists (select 1 from contacts where account_id = $1)", account_id))


async def delete_by_external_ids(
    conn: AsyncConnection, *, account_id: str, entity: str, external_ids: Sequence[str]
) -> int:
    """Removes the contacts (or deals) of records the CRM deleted (R16); returns how many.

    An opted-out contact leaves its e-mail as a suppression entry (R23).
    """
    if not external_ids:
        return 0
    pg = await driver(conn)
    if entity == DEAL:
        status = await pg.execute(
            "delete from crm_opportunities where account_id = $1 and external_id = any($2::text[])",
            account_id,
            list(external_ids),
        )
        return int(status.split()[-1])
    return int(await pg.fetchval(_DELETE_KEEPING_SUPPRESSIONS, account_id, list(external_ids), entity))


async def sweep_unseen(
    conn: AsyncConnection, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
) -> int:
    """Removes the entity's contacts a full sync did not see: the CRM no longer has them (R16).

    An opted-out contact leaves its e-mail as a suppression entry (R23).
    """
    pg = await driver(conn)
    return int(await pg.fetchval(_SWEEP_KEEPING_SUPPRESSIONS, account_id, entity, run_id, started_at))
