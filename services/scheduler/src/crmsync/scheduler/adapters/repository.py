"""What the scheduler reads (schedules, last runs) and writes (emitted jobs) in Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import OPEN_SYNC_RUN, ScheduledJob
from crmsync.common.domain.schedule import LastRuns, Schedule


@dataclass(frozen=True)
class AccountSchedule:
    account_id: str
    schedule: Schedule
    last_runs: LastRuns
    record_count: int
    daily_api_limit: int | None


# One row per connected account: its schedule (automatic when none is saved) and
# what its latest runs were, read through the sync_runs indexes. A sync is in progress
# while a run is open (the one definition the puller dispatches by).
_ACCOUNTS_SQL = text(
    f"""
    select c.account_id,
           coalesce(s.mode, 'automatic') as mode, s.interval_minutes, s.time_of_day, s.weekday,
           coalesce(s.timezone, 'UTC') as timezone, s.full_sync_requested_at,
           c.api_limit,
           lf.started_at as last_full_success, coalesce(lf.pulled, 0) as record_count,
           li.requested_at as last_incremental,
           exists (
               select 1 from sync_runs r
               where r.account_id = c.account_id and r.kind = 'full' and ({OPEN_SYNC_RUN})
           ) as full_in_progress,
           exists (
               select 1 from sync_runs r where r.account_id = c.account_id and ({OPEN_SYNC_RUN})
           ) as sync_in_progress
    from crm_connections c
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


async def load_account_schedules(session: AsyncSession) -> list[AccountSchedule]:
    """Returns every connected account with its schedule and last runs."""
    rows = (await session.execute(_ACCOUNTS_SQL)).mappings().all()
    out = []
    for row in rows:
        try:
            schedule = Schedule(
                mode=row["mode"],
                interval_minutes=row["interval_minutes"],
                time_of_day=row["time_of_day"],
                weekday=row["weekday"],
                timezone=row["timezone"],
            )
        except (ValueError, LookupError):
            continue  # an unusable saved schedule is the API's to refuse; skip rather than stop all
        out.append(
            AccountSchedule(
                account_id=row["account_id"],
                schedule=schedule,
                last_runs=LastRuns(
                    last_full_success=row["last_full_success"],
                    last_incremental=row["last_incremental"],
                    full_requested_at=row["full_sync_requested_at"],
                    full_in_progress=row["full_in_progress"],
                    sync_in_progress=row["sync_in_progress"],
                ),
                record_count=row["record_count"],
                daily_api_limit=row["api_limit"],
            )
        )
    return out


@dataclass(frozen=True)
class JobRecord:
    account_id: str
    job_id: str
    topic: str
    kind: str
    reason: str
    slot_at: datetime


async def record_new_jobs(session: AsyncSession, jobs: Sequence[JobRecord]) -> set[tuple[str, str]]:
    """Inserts the jobs not recorded yet; returns the (account_id, job_id) of those it inserted."""
    if not jobs:
        return set()
    stmt = (
        insert(ScheduledJob)
        .values(
            [
                {
                    "account_id": j.account_id,
                    "job_id": j.job_id,
                    "topic": j.topic,
                    "kind": j.kind,
                    "reason": j.reason,
                    "slot_at": j.slot_at,
                }
                for j in jobs
            ]
        )
        .on_conflict_do_nothing(index_elements=["account_id", "job_id"])
        .returning(ScheduledJob.account_id, ScheduledJob.job_id)
    )
    return {(a, j) for a, j in (await session.execute(stmt)).all()}
