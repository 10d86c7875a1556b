"""The sync schedule (R14), its next due times, and Sync Now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import CrmConnection, SyncRun, SyncSchedule
from crmsync.common.domain.schedule import (
    LastRuns,
    Schedule,
    ScheduleMode,
    automatic_interval_minutes,
    next_due_times,
)
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.mapping_api.handlers.errors import Invalid, NoConnection


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    automatic_interval_minutes: int | None
    last_runs: LastRuns
    next_due: list[tuple[str, datetime]]


async def _last_runs(
    session: AsyncSession, *, account_id: str, requested: datetime | None
) -> tuple[LastRuns, int]:
    """Returns the account's last runs and its record count, read as the scheduler reads them.

    So the interval and due times shown are the ones the scheduler acts on: the
    last successful full sync (its start, and how many records it pulled), and
    the latest sync requested that did not fail.
    """
    last_full = (
        await session.execute(
            select(func.coalesce(SyncRun.started_at, SyncRun.requested_at), SyncRun.pulled)
            .where(SyncRun.account_id == account_id, SyncRun.kind == "full", SyncRun.status == "succeeded")
            .order_by(SyncRun.finished_at.desc().nulls_last())
            .limit(1)
        )
    ).first()
    last_sync = await session.scalar(
        select(func.max(SyncRun.requested_at)).where(
            SyncRun.account_id == account_id,
            SyncRun.kind.in_(("full", "incremental")),
            SyncRun.status != "failed",
        )
    )
    last_outbound = await session.scalar(
        select(func.max(SyncRun.requested_at)).where(
            SyncRun.account_id == account_id, SyncRun.kind == "scores_optouts"
        )
    )
    runs = LastRuns(
        last_full_success=last_full[0] if last_full else None,
        last_incremental=last_sync,
        last_outbound=last_outbound,
        full_requested_at=requested,
    )
    return runs, last_full[1] if last_full else 0


async def get_schedule(session: AsyncSession, *, account_id: str, now: datetime) -> ScheduleView:
    """Returns the schedule, the interval automatic chose, and the next due times."""
    record = await session.get(SyncSchedule, account_id)
    schedule = (
        Schedule(
            mode=ScheduleMode(record.mode),
            interval_minutes=record.interval_minutes,
            time_of_day=record.time_of_day,
            weekday=record.weekday,
            timezone=record.timezone,
        )
        if record
        else Schedule(mode=ScheduleMode.AUTOMATIC)
    )
    last_runs, record_count = await _last_runs(
        session, account_id=account_id, requested=record.full_sync_requested_at if record else None
    )
    connection = await session.get(CrmConnection, account_id)
    api_limit = connection.api_limit if connection else None
    chosen = (
        automatic_interval_minutes(record_count=record_count or 0, daily_api_limit=api_limit)
        if schedule.mode == ScheduleMode.AUTOMATIC
        else None
    )
    due = next_due_times(
        schedule=schedule,
        last_runs=last_runs,
        now=now,
        record_count=record_count or 0,
        daily_api_limit=api_limit,
    )
    return ScheduleView(schedule, chosen, last_runs, due)


async def set_schedule(
    session: AsyncSession,
    *,
    account_id: str,
    mode: ScheduleMode,
    interval_minutes: int | None,
    time_of_day: time | None,
    weekday: int | None,
    timezone: str,
) -> None:
    """Stores the schedule; refuses settings the mode needs but lacks, naming the field."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown time zone {timezone!r}", field="timezone") from exc
    if mode == ScheduleMode.INTERVAL and interval_minutes is None:
        raise Invalid("mode interval needs interval_minutes", field="interval_minutes")
    if mode == ScheduleMode.WEEKLY and weekday is None:
        raise Invalid("mode weekly needs weekday (0 = Monday … 6 = Sunday)", field="weekday")
    if mode in (ScheduleMode.DAILY, ScheduleMode.WEEKLY) and time_of_day is None:
        raise Invalid(f"mode {mode.value} needs time_of_day", field="time_of_day")
    if time_of_day is not None and time_of_day.tzinfo is not None:
        raise Invalid(
            "time_of_day is a wall-clock time in `timezone`, without an offset", field="time_of_day"
        )
    record = await session.get(SyncSchedule, account_id)
    if record is None:
        record = SyncSchedule(account_id=account_id)
        session.add(record)
    record.mode = mode.value
    # Keep only what the mode uses, so the stored schedule says one thing.
    record.interval_minutes = interval_minutes if mode == ScheduleMode.INTERVAL else None
    record.time_of_day = time_of_day if mode in (ScheduleMode.DAILY, ScheduleMode.WEEKLY) else None
    record.weekday = weekday if mode == ScheduleMode.WEEKLY else None
    record.timezone = timezone
    record.updated_at = datetime.now(UTC)
    await session.flush()


async def sync_now(session: AsyncSession, *, account_id: str, kind: str | None, now: datetime) -> RunSync:
    """Returns the sync job enqueued at once (R14): full until one succeeded, else incremental."""
    if await session.get(CrmConnection, account_id) is None:
        raise NoConnection()
    if kind is None:
        last, _ = await _last_runs(session, account_id=account_id, requested=None)
        kind = "incremental" if last.last_full_success else "full"
    job = RunSync(
        job_id=f"{account_id}:{kind}:sync_now:{uuid.uuid4().hex[:12]}",
        account_id=account_id,
        kind=SyncKind(kind),
        reason=SyncReason.SYNC_NOW,
        requested_at=now.astimezone(UTC),
    )
    enqueue(session, account_id=account_id, topic=SYNC_JOBS, key=account_id, message=job)
    await session.flush()
    return job
