"""The sync schedule (R14) and Sync Now."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from crmsync.mapping_api.entrypoints.deps import AdminAccount, CurrentAccount, RelayDep, SessionDep
from crmsync.mapping_api.handlers import schedule as handlers
from crmsync.mapping_api.schemas import DueTime, ScheduleIn, ScheduleOut, SyncJobOut, SyncNowIn

router = APIRouter(tags=["schedule"])


def schedule_out(view: handlers.ScheduleView) -> ScheduleOut:
    s = view.schedule
    return ScheduleOut(
        mode=s.mode,
        interval_minutes=s.interval_minutes,
        time_of_day=s.time_of_day,
        weekday=s.weekday,
        timezone=s.timezone,
        automatic_interval_minutes=view.automatic_interval_minutes,
        full_sync_requested_at=view.last_runs.full_requested_at,
        last_full_sync_at=view.last_runs.last_full_success,
        last_incremental_sync_at=view.last_runs.last_incremental,
        next_due=[DueTime(kind=kind, at=at) for kind, at in view.next_due],  # type: ignore[arg-type]
    )


@router.get("/schedule", response_model=ScheduleOut, summary="The sync schedule and its next due times")
async def read_schedule(caller: CurrentAccount, session: SessionDep) -> ScheduleOut:
    view = await handlers.get_schedule(session, account_id=caller.account_id, now=datetime.now(UTC))
    return schedule_out(view)


@router.put("/schedule", response_model=ScheduleOut, summary="Set the sync schedule")
async def set_schedule(body: ScheduleIn, caller: AdminAccount, session: SessionDep) -> ScheduleOut:
    await handlers.set_schedule(
        session,
        account_id=caller.account_id,
        mode=body.mode,
        interval_minutes=body.interval_minutes,
        time_of_day=body.time_of_day,
        weekday=body.weekday,
        timezone=body.timezone,
    )
    await session.commit()
    view = await handlers.get_schedule(session, account_id=caller.account_id, now=datetime.now(UTC))
    return schedule_out(view)


@router.post(
    "/sync-now",
    response_model=SyncJobOut,
    status_code=202,
    summary="Start a sync at once (R14)",
    description="The job goes to crmsync.sync-jobs; a full sync until one has succeeded, then incremental.",
)
async def sync_now(
    caller: AdminAccount, session: SessionDep, relay: RelayDep, body: SyncNowIn | None = None
) -> SyncJobOut:
    job = await handlers.sync_now(
        session, account_id=caller.account_id, kind=body.kind if body else None, now=datetime.now(UTC)
    )
    await session.commit()
    relay.notify()
    return SyncJobOut(
        job_id=job.job_id, kind=job.kind.value, reason=job.reason.value, requested_at=job.requested_at
    )  # type: ignore[arg-type]
