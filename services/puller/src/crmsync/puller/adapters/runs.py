"""Sync runs, sync state, mappings and connections in Postgres, as the puller needs them.

Helpers run inside the caller's transaction and never commit.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from crmsync.common.db.schema import OPEN_SYNC_RUN, CrmConnection, MappingRowRecord, MappingVersion
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, default_salesforce_mapping
from crmsync.common.messages import RunSync

# First key of the puller's per-account advisory locks (the second is the account's hash).
ACCOUNT_LOCK_SPACE = 0x70756C6C  # "pull"


@dataclass(frozen=True)
class RunRow:
    id: uuid.UUID
    account_id: str
    job_id: str
    kind: str
    reason: str
    status: str
    attempts: int
    progress: dict[str, Any]
    requested_at: datetime
    started_at: datetime | None


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


ACCOUNTS_WITH_WORK = text(
    f"""
    select head.account_id from (
        select distinct on (r.account_id) r.account_id, r.requested_at, {_DUE} as due
        from sync_runs r
        where {_UNFINISHED}
        order by r.account_id, r.requested_at, r.created_at
    ) head
    where head.due
    order by head.requested_at limit :limit
    """
)

CLAIM_NEXT_RUN = text(
    f"""
    update sync_runs set status = 'running', attempts = attempts + 1,
           started_at = coalesce(started_at, now()), next_attempt_at = null
    where id = (
        select head.id from (
            select r.id, {_DUE} as due from sync_runs r
            where r.account_id = :account_id and {_UNFINISHED}
            order by r.requested_at, r.created_at limit 1
        ) head
        where head.due
    )
    returning id, account_id, job_id, kind, reason, status, attempts, progress, requested_at, started_at
    """
)


async def accounts_with_work(session: AsyncSession, *, limit: int) -> list[str]:
    """Returns accounts whose oldest unfinished run can start or resume now, those waiting longest first."""
    rows = await session.execute(ACCOUNTS_WITH_WORK, {"limit": limit})
    return [row[0] for row in rows]


async def claim_next_run(session: AsyncSession, *, account_id: str) -> RunRow | None:
    """Marks the account's oldest unfinished run as running and returns it, if it is due.

    The caller holds the account's lock.
    """
    row = (await session.execute(CLAIM_NEXT_RUN, {"account_id": account_id})).mappings().first()
    if row is None:
        return None
    progress = row["progress"]
    return RunRow(**{**row, "progress": orjson.loads(progress) if isinstance(progress, str) else progress})


async def covering_run(session: AsyncSession, *, run: RunRow) -> uuid.UUID | None:
    """Returns a run that succeeded after this one was requested and covers it, if any."""
    kinds = ["full"] if run.kind == "full" else ["full", "incremental"]
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


async def add_progress(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    pulled: int = 0,
    created: int = 0,
    updated: int = 0,
    deleted: int = 0,
    skipped: int = 0,
    errors: int = 0,
    progress: dict[str, Any] | None = None,
) -> None:
    """Adds to the run's counts and, when given, replaces its resume point."""
    await session.execute(
        text(
            """
            update sync_runs set pulled = pulled + :pulled, created = created + :created,
                   updated = updated + :updated, deleted = deleted + :deleted,
                   skipped = skipped + :skipped, errors = errors + :errors,
                   progress = coalesce(cast(:progress as jsonb), progress)
            where id = :id
            """
        ),
        {
            "id": run_id,
            "pulled": pulled,
            "created": created,
            "updated": updated,
            "deleted": deleted,
            "skipped": skipped,
            "errors": errors,
            "progress": None if progress is None else orjson.dumps(progress).decode(),
        },
    )


async def finish_run(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    status: str,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
    progress: dict[str, Any] | None = None,
) -> None:
    """Records how the run ended (or stopped for now: queued, paused, failed with a retry time)."""
    await session.execute(
        text(
            """
            update sync_runs set status = :status, error = :error, next_attempt_at = :next_attempt_at,
                   finished_at = case when :status in ('succeeded', 'failed') then now() else null end,
                   progress = coalesce(cast(:progress as jsonb), progress)
            where id = :id
            """
        ),
        {
            "id": run_id,
            "status": status,
            "error": error,
            "next_attempt_at": next_attempt_at,
            "progress": None if progress is None else orjson.dumps(progress).decode(),
        },
    )
    if status == "succeeded" or (status == "failed" and next_attempt_at is None):
        # Over for good: what its full sync saw is of no more use.
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


@dataclass(frozen=True)
class EntityState:
    watermark: datetime | None
    deleted_watermark: datetime | None
    last_full_at: datetime | None


async def entity_state(session: AsyncSession, *, account_id: str, entity: str) -> EntityState:
    row = (
        (
            await session.execute(
                text(
                    "select watermark, deleted_watermark, last_full_at from sync_state "
                    "where account_id = :a and entity = :e"
                ),
                {"a": account_id, "e": entity},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return EntityState(None, None, None)
    return EntityState(row["watermark"], row["deleted_watermark"], row["last_full_at"])


async def save_entity_state(
    session: AsyncSession,
    *,
    account_id: str,
    entity: str,
    watermark: datetime | None = None,
    watermark_id: str | None = None,
    deleted_watermark: datetime | None = None,
    full_at: datetime | None = None,
    incremental_at: datetime | None = None,
) -> None:
    """Moves the entity's watermarks forward (never back) in the caller's transaction (R18)."""
    await session.execute(
        text(
            """
            insert into sync_state (account_id, entity, watermark, watermark_id, deleted_watermark,
                                    last_full_at, last_incremental_at)
            values (:a, :e, :w, :wid, :dw, :full, :inc)
            on conflict (account_id, entity) do update set
                watermark = greatest(sync_state.watermark, excluded.watermark),
                watermark_id = case when excluded.watermark >= coalesce(sync_state.watermark, excluded.watermark)
                                    then coalesce(excluded.watermark_id, sync_state.watermark_id)
                                    else sync_state.watermark_id end,
                deleted_watermark = greatest(sync_state.deleted_watermark, excluded.deleted_watermark),
                last_full_at = coalesce(excluded.last_full_at, sync_state.last_full_at),
                last_incremental_at = coalesce(excluded.last_incremental_at, sync_state.last_incremental_at),
                updated_at = now()
            """
        ),
        {
            "a": account_id,
            "e": entity,
            "w": watermark,
            "wid": watermark_id,
            "dw": deleted_watermark,
            "full": full_at,
            "inc": incremental_at,
        },
    )


async def load_connection(session: AsyncSession, *, account_id: str) -> CrmConnection | None:
    return await session.get(CrmConnection, account_id)


async def load_mapping(session: AsyncSession, *, account_id: str) -> Mapping:
    """Returns the account's current mapping version, or the default one when none is saved (R7)."""
    version = await session.scalar(
        select(MappingVersion)
        .where(MappingVersion.account_id == account_id)
        .order_by(MappingVersion.version.desc())
        .limit(1)
    )
    if version is None:
        return default_salesforce_mapping()
    rows = (
        await session.scalars(
            select(MappingRowRecord)
            .where(
                MappingRowRecord.account_id == account_id, MappingRowRecord.mapping_version_id == version.id
            )
            .order_by(MappingRowRecord.position)
        )
    ).all()
    return Mapping(
        version=version.version,
        rows=tuple(
            MappingRow(
                destination=r.destination,
                data_type=DataType(r.data_type),
                kind=FieldKind(r.kind),
                lead_source=r.lead_source,
                contact_source=r.contact_source,
                allow_push=r.allow_push,
            )
            for r in rows
        ),
    )


class AccountLock:
    """A session advisory lock on one account, held on a dedicated connection while its run executes.

    It is what keeps one account's runs one at a time across puller replicas, and
    it dies with the process, so a run left 'running' by a killed puller is free
    to be resumed by the next one that takes the lock.
    """

    def __init__(self, engine: AsyncEngine, account_id: str) -> None:
        self._engine = engine
        self._account_id = account_id
        self._conn: AsyncConnection | None = None

    async def acquire(self) -> bool:
        conn = await self._engine.connect()
        try:
            got = (
                await conn.execute(
                    text("select pg_try_advisory_lock(:space, hashtext(:account))"),
                    {"space": ACCOUNT_LOCK_SPACE, "account": self._account_id},
                )
            ).scalar_one()
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.execute(
                text("select pg_advisory_unlock(:space, hashtext(:account))"),
                {"space": ACCOUNT_LOCK_SPACE, "account": self._account_id},
            )
            await conn.commit()
        with contextlib.suppress(Exception):
            await conn.close()
