"""The sync schedule (R14) and Sync Now."""

from __future__ import annotations

from fastapi import APIRouter

from crmsync.common.clock import utc_now
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CurrentAccount, TransactionsDep
from crmsync.mapping_api.handlers import schedule as handlers
from crmsync.mapping_api.schemas import DueTime, ScheduleIn, ScheduleOut, SyncJobOut, SyncNowIn

router = APIRouter(tags=["schedule"])


def schedule_out(view: handlers.ScheduleView) -> ScheduleOut:
    return ScheduleOut.model_validate(
        {
            **vars(view.schedule),
            "automatic_interval_minutes": view.automatic_interval_minutes,
            "full_sync_requested_at": view.last_runs.full_requested_at,
            "last_full_sync_at": view.last_runs.last_full_success,
            "last_incremental_sync_at": view.last_runs.last_incremental,
            "next_due": [DueTime(kind=kind, at=at) for kind, at in view.next_due],  # type: ignore[arg-type]
        }
    )


@router.get("/schedule", response_model=ScheduleOut, summary="The sync schedule and its next due times")
async def read_schedule(caller: CurrentAccount, tx: TransactionsDep) -> ScheduleOut:
    return schedule_out(await handlers.get_schedule(tx, account_id=caller.account_id, now=utc_now()))


@router.put("/schedule", response_model=ScheduleOut, summary="Set the sync schedule")
async def set_schedule(body: ScheduleIn, caller: AdminAccount, tx: TransactionsDep) -> ScheduleOut:
    view = await handlers.set_schedule(tx, account_id=caller.account_id, **body.model_dump(), now=utc_now())
    return schedule_out(view)


@router.post(
    "/sync-now",
    response_model=SyncJobOut,
    status_code=202,
    summary="Start a sync at once (R14)",
    description="The job goes to crmsync.sync-jobs; a full sync until one has succeeded, then incremental.",
)
async def sync_now(caller: AdminAccount, tx: TransactionsDep, body: SyncNowIn | None = None) -> SyncJobOut:
    job = await handlers.sync_now(
        tx, account_id=caller.account_id, kind=body.kind if body else None, now=utc_now()
    )
    return SyncJobOut(
        job_id=job.job_id, kind=job.kind.value, reason=job.reason.value, requested_at=job.requested_at
    )  # type: ignore[arg-type]
