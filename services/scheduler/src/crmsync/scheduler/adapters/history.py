"""Deletes expired history from Postgres, one bounded batch per call.

Every method deletes at most `limit` rows and returns how many it deleted;
the caller runs each in its own short transaction and calls again while a
batch comes back full. Each statement finds its rows through an index, so a
call costs the same whatever the table's size.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import OPEN_SYNC_RUN

# Finished runs that ended before the cutoff, oldest first. A successful run
# goes only when a later one of its kind succeeded for the account: the
# scheduler counts the next full (R15) and incremental from the latest ones.
_DELETE_SYNC_RUNS = text(
    """
    delete from sync_runs where id = any(array(
        select r.id from sync_runs r
        where r.finished_at < :cutoff
          and (r.status = 'failed' and r.next_attempt_at is null
               or r.status = 'succeeded' and exists (
                   select 1 from sync_runs newer
                   where newer.account_id = r.account_id and newer.kind = r.kind
                     and newer.status = 'succeeded' and newer.finished_at > r.finished_at))
        order by r.finished_at
        limit :limit
    ))
    """
)

# Sightings belong to a full sync that is still open (R16); those of a run that
# finished or no longer exists are garbage. The run ids are read with a loose
# scan of the primary key: one index probe per run, not one per sighting.
_DELETE_STALE_SIGHTINGS = text(
    f"""
    with recursive seen(run_id) as (
        (select run_id from sync_run_sightings order by run_id limit 1)
        union all
        select (select s.run_id from sync_run_sightings s
                where s.run_id > seen.run_id order by s.run_id limit 1)
        from seen where seen.run_id is not null
    ),
    stale as (
        select seen.run_id from seen
        where seen.run_id is not null
          and not exists (select 1 from sync_runs x where x.id = seen.run_id and {OPEN_SYNC_RUN})
    )
    delete from sync_run_sightings where ctid = any(array(
        select s.ctid from sync_run_sightings s
        where s.run_id = any(array(select run_id from stale))
        limit :limit
    ))
    """
)

_DELETE_SCHEDULED_JOBS = text(
    """
    delete from scheduled_jobs where ctid = any(array(
        select ctid from scheduled_jobs
        where slot_at < :cutoff
        order by slot_at
        limit :limit
    ))
    """
)

# Every delete names its rows as `= any(array(subquery))` (by id, or by row address
# where the key has two columns): `in (subquery)` is planned as a hash join over a
# scan of the whole table, where the array is looked up through the index.

# push_log and outbox ids grow with time, so their oldest rows are the first ids:
# each call looks at the first `limit` ids only and deletes those past the cutoff.
# When none of them is, nothing older is left behind them, and no index on the
# time column has to be kept up by every insert of the pusher's hot path.
_DELETE_PUSH_LOG = text(
    """
    delete from push_log where id = any(array(
        select head.id from (select id, created_at from push_log order by id limit :limit) head
        where head.created_at < :cutoff
    ))
    """
)

_DELETE_OUTBOX = text(
    """
    delete from outbox where id = any(array(
        select head.id from (select id, published_at from outbox order by id limit :limit) head
        where head.published_at < :cutoff
    ))
    """
)


_DELETE_API_USAGE = text(
    """
    delete from crm_api_usage where ctid = any(array(
        select ctid from crm_api_usage where day < :cutoff limit :limit
    ))
    """
)


class PostgresHistory:
    """Deletes on one transaction's session; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def delete_sync_runs(self, *, finished_before: datetime, limit: int) -> int:
        return await self._delete(_DELETE_SYNC_RUNS, cutoff=finished_before, limit=limit)

    async def delete_stale_sightings(self, *, limit: int) -> int:
        return await self._delete(_DELETE_STALE_SIGHTINGS, limit=limit)

    async def delete_scheduled_jobs(self, *, slot_before: datetime, limit: int) -> int:
        return await self._delete(_DELETE_SCHEDULED_JOBS, cutoff=slot_before, limit=limit)

    async def delete_push_log(self, *, created_before: datetime, limit: int) -> int:
        return await self._delete(_DELETE_PUSH_LOG, cutoff=created_before, limit=limit)

    async def delete_outbox(self, *, published_before: datetime, limit: int) -> int:
        return await self._delete(_DELETE_OUTBOX, cutoff=published_before, limit=limit)

    async def delete_api_usage(self, *, day_before: date, limit: int) -> int:
        return await self._delete(_DELETE_API_USAGE, cutoff=day_before, limit=limit)

    async def _delete(self, statement: TextClause, **params: object) -> int:
        result = await self._session.execute(statement, params)
        return result.rowcount  # type: ignore[attr-defined, no-any-return]
