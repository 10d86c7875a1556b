"""The sync schedule (R14), its next due times, and Sync Now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmsync.common.domain.schedule import (
    LastRuns,
    Schedule,
    ScheduleMode,
    automatic_interval_minutes,
    next_due_times,
)
from crmsync.common.messages import RunOutbound, RunSync, SyncKind, SyncReason
from crmsync.mapping_api.handlers.errors import Invalid, NoConnection
from crmsync.mapping_api.handlers.ports import Stores, Transactions


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    automatic_interval_minutes: int | None
    last_runs: LastRuns
    next_due: list[tuple[str, datetime]]


async def _view(stores: Stores, *, account_id: str, now: datetime) -> ScheduleView:
    """Returns the schedule as the scheduler acts on it.

    The last runs are read as the scheduler reads them: the last successful full
    sync (its start, and how many records it pulled), and the latest sync
    requested that did not fail.
    """
    stored = await stores.schedules.get(account_id)
    schedule = stored.schedule if stored else Schedule(mode=ScheduleMode.AUTOMATIC)
    history = await stores.sync_runs.history(account_id)
    last_runs = LastRuns(
        last_full_success=history.last_full_success,
        last_incremental=history.last_incremental,
        last_outbound=history.last_outbound,
        full_requested_at=stored.full_sync_requested_at if stored else None,
    )
    connection = await stores.connections.get(account_id)
    api_limit = connection.api_limit if connection else None
    # The same budget and per-account phase the scheduler plans with, so what is shown is what runs.
    allocated = connection.allocated_calls if connection else None
    chosen = (
        automatic_interval_minutes(
            record_count=history.last_full_pulled, daily_api_limit=api_limit, allocated_calls=allocated
        )
        if schedule.mode == ScheduleMode.AUTOMATIC
        else None
    )
    due = next_due_times(
        schedule=schedule,
        last_runs=last_runs,
        now=now,
        account_id=account_id,
        record_count=history.last_full_pulled,
        daily_api_limit=api_limit,
        allocated_calls=allocated,
    )
    return ScheduleView(schedule, chosen, last_runs, due)


async def get_schedule(tx: Transactions, *, account_id: str, now: datetime) -> ScheduleView:
    """Returns the schedule, the interval automatic chose, and the next due times."""
    async with tx.read() as stores:
        return await _view(stores, account_id=account_id, now=now)


def _checked_schedule(
    *,
    mode: ScheduleMode,
    interval_minutes: int | None,
    time_of_day: time | None,
    weekday: int | None,
    timezone: str,
) -> Schedule:
    """Returns the schedule keeping only what the mode uses; refuses what the mode needs but lacks."""
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
    # Keep only what the mode uses, so the stored schedule says one thing.
    return Schedule(
        mode=mode,
        interval_minutes=interval_minutes if mode == ScheduleMode.INTERVAL else None,
        time_of_day=time_of_day if mode in (ScheduleMode.DAILY, ScheduleMode.WEEKLY) else None,
        weekday=weekday if mode == ScheduleMode.WEEKLY else None,
        timezone=timezone,
    )


async def set_schedule(
    tx: Transactions,
    *,
    account_id: str,
    mode: ScheduleMode,
    interval_minutes: int | None,
    time_of_day: time | None,
    weekday: int | None,
    timezone: str,
    now: datetime,
) -> ScheduleView:
    """Stores the schedule and returns it as `get_schedule` does; refuses settings the mode needs
    but lacks, naming the field."""
    schedule = _checked_schedule(
        mode=mode,
        interval_minutes=interval_minutes,
        time_of_day=time_of_day,
        weekday=weekday,
        timezone=timezone,
    )
    async with tx.begin() as stores:
        await stores.schedules.put(account_id, schedule, updated_at=now)
        return await _view(stores, account_id=account_id, now=now)


async def sync_now(tx: Transactions, *, account_id: str, kind: str | None, now: datetime) -> RunSync:
    """Returns the sync job enqueued at once (R14): full until one succeeded, else incremental.

    Under the manual schedule nothing else sends scores and opt-outs, so Sync Now
    enqueues the outbound job too (R11, R23).
    """
    async with tx.begin() as stores:
        if await stores.connections.get(account_id) is None:
            raise NoConnection()
        if kind is None:
            history = await stores.sync_runs.history(account_id)
            kind = "incremental" if history.last_full_success else "full"
        job = RunSync(
            job_id=f"{account_id}:{kind}:sync_now:{uuid.uuid4().hex[:12]}",
            account_id=account_id,
            kind=SyncKind(kind),
            reason=SyncReason.SYNC_NOW,
            requested_at=now.astimezone(UTC),
        )
        stores.outbox.sync_job(job)
        stored = await stores.schedules.get(account_id)
        if stored is not None and stored.schedule.mode == ScheduleMode.MANUAL:
            stores.outbox.outbound_job(
                RunOutbound(
                    job_id=f"{account_id}:outbound:sync_now:{uuid.uuid4().hex[:12]}",
                    account_id=account_id,
                    requested_at=job.requested_at,
                )
            )
    return job
