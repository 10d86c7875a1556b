"""Sync runs and sync state in Postgres, as the puller needs them.

The functions run inside the caller's transaction and never commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import OPEN_SYNC_RUN
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.puller.domain.lanes import Lane, LaneBacklog, WaitingAccount
from crmsync.puller.domain.runs import EntityAdvance, EntityState, RunCounts, RunEnd, RunProgress, SyncRun

# First key of the puller's per-account advisory locks (the second is the account's hash).
ACCOUNT_LOCK_SPACE = 0x70756C6C  # "pull"


async def record_job(session: AsyncSession, *, job: RunSync) -> bool:
    """Queues the job as a sync run unless it is known already (R18); returns whether it was new."""
    result = await session.execute(
        text(
            """
            insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at)
            select :id, :account_id, :job_id, :kind, :reason, 'queued', :requested_at
            where exists (select 1 from accounts where id = :account_id)
            on conflict (account_id, job_id) do nothing
            returning id
            """
        ),
        {
            "id": uuid.uuid4(),
            "account_id": job.account_id,
            "job_id": job.job_id,
            "kind": job.kind.value,
            "reason": job.reason.value,
            "requested_at": job.requested_at,
        },
    )
    return result.first() is not None


# An account's runs go one at a time, oldest first: a run paused or failed with a
# retry time holds back the account's later runs until then. (Their turn would
# fail the same way, and a backlog of them must not take the workers from
# accounts that can sync now.)
# Read through the partial index ix_sync_runs_open, whose predicate this is.
_UNFINISHED = f"({OPEN_SYNC_RUN})"
_DUE = "(r.status in ('queued', 'running') or r.next_attempt_at <= now())"


# A run's lane (R26): a full sync, or an incremental one that became full.
_LANE = (
    "(case when r.kind = 'full' or r.progress->>'escalated_to_full' is not null "
    "then 'full' else 'incremental' end)"
)
# Each account's oldest unfinished run, with whether it can start now and its lane.
_HEADS = f"""
    select distinct on (r.account_id) r.id, r.account_id, r.status, r.requested_at, r.next_attempt_at,
           {_DUE} as due, {_LANE} as lane
    from sync_runs r
    where {_UNFINISHED}
    order by r.account_id, r.requested_at, r.created_at
"""

WAITING_ACCOUNTS = text(
    f"""
    select account_id, lane, requested_at from (
        select head.account_id, head.lane, head.requested_at,
               row_number() over (partition by head.lane order by head.requested_at) as place
        from ({_HEADS}) head
        where head.due
    ) ranked
    where place <= :limit
    order by requested_at
    """
)

CLAIM_NEXT_RUN = text(
    f"""
    update sync_runs set status = 'running', attempts = attempts + 1,
           started_at = coalesce(started_at, now()), next_attempt_at = null
    where id = (
        select head.id from (
            select r.id, {_DUE} as due, {_LANE} as lane from sync_runs r
            where r.account_id = :account_id and {_UNFINISHED}
            order by r.requested_at, r.created_at limit 1
        ) head
        where head.due and head.lane = any(:lanes)
    )
    returning id, account_id, job_id, kind, reason, status, attempts, progress, requested_at, started_at
    """
)

# Heads that could start now and have no worker: 'running' ones have one (or are
# resumed by the next worker that takes their lock). The wait counts from when a
# run became startable, so a run that waited out its retry time is not old work.
BACKLOG = text(
    f"""
    select head.lane, count(*) as queued,
           greatest(0, extract(epoch from now() - min(greatest(head.requested_at,
                    coalesce(head.next_attempt_at, head.requested_at))))) as oldest_s
    from ({_HEADS}) head
    where head.due and head.status <> 'running'
    group by head.lane
    """
)


async def waiting_accounts(session: AsyncSession, *, limit: int) -> list[WaitingAccount]:
    """Returns accounts whose oldest unfinished run can start or resume now, up to `limit` per lane,
    those waiting longest first."""
    rows = await session.execute(WAITING_ACCOUNTS, {"limit": limit})
    return [WaitingAccount(account_id=a, lane=Lane(lane), since=since) for a, lane, since in rows]


async def accounts_with_work(session: AsyncSession, *, limit: int) -> list[str]:
    """Returns accounts whose oldest unfinished run can start or resume now, whatever its lane."""
    return [a.account_id for a in await waiting_accounts(session, limit=limit)][:limit]


async def backlog(session: AsyncSession) -> list[LaneBacklog]:
    """Returns, per lane, the runs that could start now and wait for a worker."""
    found = {Lane(lane): (queued, float(oldest)) for lane, queued, oldest in await session.execute(BACKLOG)}
    return [LaneBacklog(lane, *found.get(lane, (0, 0.0))) for lane in Lane]


async def claim_next_run(
    session: AsyncSession, *, account_id: str, lanes: frozenset[Lane] = frozenset(Lane)
) -> SyncRun | None:
    """Marks the account's oldest unfinished run as running and returns it, if it is due and in `lanes`.

    The caller holds the account's lock.
    """
    params = {"account_id": account_id, "lanes": sorted(lanes)}
    row = (await session.execute(CLAIM_NEXT_RUN, params)).mappings().first()
    if row is None:
        return None
    progress = row["progress"]
    return SyncRun(
        id=row["id"],
        account_id=row["account_id"],
        job_id=row["job_id"],
        kind=SyncKind(row["kind"]),
        reason=SyncReason(row["reason"]),
        status=row["status"],
        attempts=row["attempts"],
        progress=RunProgress.from_json(orjson.loads(progress) if isinstance(progress, str) else progress),
        requested_at=row["requested_at"],
        started_at=row["started_at"],
        full_lane=Lane.FULL in lanes,
    )


async def covering_run(session: AsyncSession, *, run: SyncRun) -> uuid.UUID | None:
    """Returns a run that succeeded after this one was requested and covers it, if any."""
    kinds = ["full"] if run.kind == SyncKind.FULL else ["full", "incremental"]
    return await session.scalar(
        text(
            """
            select id from sync_runs
            where account_id = :account_id and id <> :id and status = 'succeeded'
              and kind = any(:kinds) and started_at >= :requested_at
            limit 1
            """
        ),
        {"account_id": run.account_id, "id": run.id, "kinds": kinds, "requested_at": run.requested_at},
    )


def _progress_json(progress: RunProgress | None) -> str | None:
    return None if progress is None else orjson.dumps(progress.to_json()).decode()


_ADD_PROGRESS = text(
    """
    update sync_runs set pulled = pulled + :pulled, created = created + :created,
           updated = updated + :updated, deleted = deleted + :deleted,
           skipped = skipped + :skipped, errors = errors + :errors,
           progress = coalesce(cast(:progress as jsonb), progress)
    where id = :id
    """
)


async def add_progress(
    session: AsyncSession, *, run_id: uuid.UUID, counts: RunCounts, progress: RunProgress | None = None
) -> None:
    """Adds to the run's counts and, when given, replaces its resume point."""
    params: dict[str, Any] = {**vars(counts), "id": run_id, "progress": _progress_json(progress)}
    await session.execute(_ADD_PROGRESS, params)


_FINISH_RUN = text(
    """
    update sync_runs set status = :status, error = :error, next_attempt_at = :next_attempt_at,
           finished_at = case when :status in ('succeeded', 'failed') then now() else null end,
           progress = coalesce(cast(:progress as jsonb), progress)
    where id = :id
    """
)


async def finish_run(session: AsyncSession, *, run_id: uuid.UUID, end: RunEnd) -> None:
    """Records how the run ended (or stopped for now: queued, paused, failed with a retry time)."""
    params = {**vars(end), "id": run_id, "progress": _progress_json(end.progress)}
    await session.execute(_FINISH_RUN, params)
    if end.over:
        # What its full sync saw is of no more use.
        await session.execute(text("delete from sync_run_sightings where run_id = :id"), {"id": run_id})


async def clear_full_request(session: AsyncSession, *, account_id: str, started_at: datetime) -> None:
    """Clears the new-field request a successful full sync has served (R15)."""
    await session.execute(
        text(
            """
            update sync_schedules set full_sync_requested_at = null
            where account_id = :account_id and full_sync_requested_at <= :started_at
            """
        ),
        {"account_id": account_id, "started_at": started_at},
    )


async def entity_state(session: AsyncSession, *, account_id: str, entity: str) -> EntityState:
    """Returns how far the store has the entity's records (nothing yet: all None)."""
    row = (
        await session.execute(
            text(
                "select watermark, deleted_watermark, last_full_at, change_cursor from sync_state "
                "where account_id = :a and entity = :e"
            ),
            {"a": account_id, "e": entity},
        )
    ).first()
    return EntityState() if row is None else EntityState(*row)


# The cursor is opaque, so it is replaced rather than compared: an account's runs go one at a
# time, each from the cursor the one before it stored.
_ADVANCE_ENTITY = text(
    """
    insert into sync_state (account_id, entity, change_cursor, watermark, watermark_id, deleted_watermark,
                            last_full_at, last_incremental_at)
    values (:a, :e, :cursor, :watermark, :watermark_id, :deleted_watermark, :full_at, :incremental_at)
    on conflict (account_id, entity) do update set
        change_cursor = coalesce(excluded.change_cursor, sync_state.change_cursor),
        watermark = greatest(sync_state.watermark, excluded.watermark),
        watermark_id = case when excluded.watermark >= coalesce(sync_state.watermark, excluded.watermark)
                            then coalesce(excluded.watermark_id, sync_state.watermark_id)
                            else sync_state.watermark_id end,
        deleted_watermark = greatest(sync_state.deleted_watermark, excluded.deleted_watermark),
        last_full_at = coalesce(excluded.last_full_at, sync_state.last_full_at),
        last_incremental_at = coalesce(excluded.last_incremental_at, sync_state.last_incremental_at),
        updated_at = now()
    """
)


async def advance_entity(
    session: AsyncSession, *, account_id: str, entity: str, advance: EntityAdvance
) -> None:
    """Stores the entity's change cursor and moves its watermarks forward (never back), in the caller's
    transaction: the one that stored the records they cover (R18)."""
    await session.execute(_ADVANCE_ENTITY, {"a": account_id, "e": entity, **vars(advance)})


async def last_repair_at(session: AsyncSession, *, account_id: str) -> datetime | None:
    """Returns when the account's last run with a drift repair pass began (R25)."""
    return await session.scalar(
        text(
            "select max(started_at) from sync_runs where account_id = :account_id and drift_found is not null"
        ),
        {"account_id": account_id},
    )


async def add_drift_found(session: AsyncSession, *, run_id: uuid.UUID, found: int) -> None:
    """Adds to the fields the run's repair pass handed to the pusher (R25)."""
    await session.execute(
        text("update sync_runs set drift_found = coalesce(drift_found, 0) + :found where id = :id"),
        {"id": run_id, "found": found},
    )
