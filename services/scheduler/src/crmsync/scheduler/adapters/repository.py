"""What the scheduler reads (due accounts: schedules, last runs) and writes (emitted jobs, next looks, outbox)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import OPEN_SYNC_RUN
from crmsync.common.domain.schedule import LastRuns, Schedule
from crmsync.common.kafka import outbox
from crmsync.scheduler.values import AccountSchedule, JobRecord, NextLook

Value = TypeVar("Value")


# One row per connected account due by :now (through ix_schedule_due_next_due_at, soonest
# first): its schedule (automatic when none is saved), its API limit and allocation, and
# what its latest runs were, read through the sync_runs indexes, in columns named as the
# fields of Schedule and LastRuns. A sync is in progress while a run is open (the one
# definition the puller dispatches by).
_DUE_ACCOUNTS_SQL = text(
    f"""
    with due as (
        select d.account_id, d.generation from schedule_due d
        where d.next_due_at <= :now
        order by d.next_due_at
        limit :limit
    )
    select c.account_id, due.generation,
           coalesce(s.mode, 'automatic') as mode, s.interval_minutes, s.time_of_day, s.weekday,
           coalesce(s.timezone, 'UTC') as timezone, s.full_sync_requested_at as full_requested_at,
           c.api_limit as daily_api_limit, c.api_allocation_share, c.api_allocation_calls,
           lf.started_at as last_full_success, coalesce(lf.pulled, 0) as record_count,
           li.requested_at as last_incremental,
           exists (
               select 1 from sync_runs r
               where r.account_id = c.account_id and r.kind = 'full' and ({OPEN_SYNC_RUN})
           ) as full_in_progress,
           exists (
               select 1 from sync_runs r where r.account_id = c.account_id and ({OPEN_SYNC_RUN})
           ) as sync_in_progress
    from due
    join crm_connections c on c.account_id = due.account_id
    left join sync_schedules s on s.account_id = c.account_id
    left join lateral (
        select r.started_at, r.pulled from sync_runs r
        where r.account_id = c.account_id and r.kind = 'full' and r.status = 'succeeded'
        order by r.finished_at desc nulls last limit 1
    ) lf on true
    left join lateral (
        select max(r.requested_at) as requested_at from sync_runs r
        where r.account_id = c.account_id and r.kind in ('full', 'incremental') and r.status <> 'failed'
    ) li on true
    order by c.account_id
    """
)

# Each account's next look, unless its generation moved since it was read (a trigger
# made it due again meanwhile); none: 'infinity', until a change makes it due.
_SET_NEXT_LOOKS_SQL = text(
    """
    update schedule_due d set next_due_at = coalesce(v.at, 'infinity')
    from unnest(cast(:accounts as text[]), cast(:generations as bigint[]), cast(:ats as timestamptz[]))
        as v(account_id, generation, at)
    where d.account_id = v.account_id and d.generation = v.generation
    """
)


# One statement of six arrays, whatever the number of jobs (a VALUES row each is compiled anew
# for every count and costs more than the insert itself).
_RECORD_JOBS_SQL = text(
    """
    insert into scheduled_jobs (account_id, job_id, topic, kind, reason, slot_at)
    select * from unnest(
        cast(:account_id as text[]), cast(:job_id as text[]), cast(:topic as text[]),
        cast(:kind as text[]), cast(:reason as text[]), cast(:slot_at as timestamptz[])
    )
    on conflict (account_id, job_id) do nothing
    returning account_id, job_id
    """
)


def _value(cls: type[Value], row: Mapping[str, Any], *, unread: frozenset[str] = frozenset()) -> Value:
    """Returns a `cls` built from the row's columns named as its fields (those `unread` keep their default)."""
    return cls(**{f.name: row[f.name] for f in fields(cls) if f.name not in unread})  # type: ignore[arg-type]


class PostgresJobStore:
    """The scheduler's reads and writes on one transaction's session; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def due_accounts(self, *, now: datetime, limit: int) -> list[AccountSchedule]:
        """Returns up to `limit` connected accounts due by `now` with their schedules and last runs."""
        params = {"now": now, "limit": limit}
        rows = (await self._session.execute(_DUE_ACCOUNTS_SQL, params)).mappings().all()
        return [self._account(row) for row in rows]

    @staticmethod
    def _account(row: Mapping[str, Any]) -> AccountSchedule:
        try:
            schedule: Schedule | None = _value(Schedule, row)
        except (ValueError, LookupError):
            schedule = None  # an unusable saved schedule is the API's to refuse; it waits for a change
        return AccountSchedule(
            account_id=row["account_id"],
            schedule=schedule,
            # An outbound job is asked for at every slot; its recorded id makes it once.
            last_runs=_value(LastRuns, row, unread=frozenset({"last_outbound"})),
            record_count=row["record_count"],
            daily_api_limit=row["daily_api_limit"],
            api_allocation_share=row["api_allocation_share"],
            api_allocation_calls=row["api_allocation_calls"],
            generation=row["generation"],
        )

    async def set_next_looks(self, looks: Sequence[NextLook]) -> None:
        """Writes when each account is due next, over the generation it was read at."""
        if not looks:
            return
        await self._session.execute(
            _SET_NEXT_LOOKS_SQL,
            {
                "accounts": [look.account_id for look in looks],
                "generations": [look.generation for look in looks],
                "ats": [look.at for look in looks],
            },
        )

    async def record_new_jobs(self, jobs: Sequence[JobRecord]) -> set[tuple[str, str]]:
        """Inserts the jobs not recorded yet; returns the (account_id, job_id) of those it inserted."""
        if not jobs:
            return set()
        columns = {f.name: [getattr(j, f.name) for j in jobs] for f in fields(JobRecord)}
        rows = await self._session.execute(_RECORD_JOBS_SQL, columns)
        return {(a, j) for a, j in rows.all()}

    def enqueue(self, *, account_id: str, topic: str, key: str, message: BaseModel) -> None:
        """Writes the message to the outbox in this transaction."""
        outbox.enqueue(self._session, account_id=account_id, topic=topic, key=key, message=message)
