"""Sync Schedule: the modes (automatic recommended), next due times, Sync Now, and the running
sync's progress, polled as a small fragment until it finishes."""

from __future__ import annotations

from datetime import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.common.domain.schedule import ScheduleMode
from crmsync.mapping_api.console.deps import ConsoleUser, Poster, SecretBoxDep, Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import connection as connection_handlers
from crmsync.mapping_api.handlers import contacts, history
from crmsync.mapping_api.handlers import schedule as handlers
from crmsync.mapping_api.handlers.errors import Invalid, NoConnection
from crmsync.mapping_api.handlers.ports import Secrets, Transactions

router = APIRouter(prefix="/schedule")
MODES = (
    (ScheduleMode.AUTOMATIC, "Automatic (recommended)"),
    (ScheduleMode.INTERVAL, "Every N minutes"),
    (ScheduleMode.HOURLY, "Hourly"),
    (ScheduleMode.DAILY, "Daily at a time"),
    (ScheduleMode.WEEKLY, "Weekly"),
    (ScheduleMode.MANUAL, "Manual only"),
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
UNFINISHED = {"queued", "running", "paused"}


async def _page(
    request: Request,
    user: ConsoleUser,
    tx: Transactions,
    secret_box: Secrets,
    *,
    job: str | None = None,
    error: Invalid | None = None,
) -> Response:
    view = await handlers.get_schedule(tx, account_id=user.account_id, now=utc_now())
    counts = await contacts.segment_counts(tx, account_id=user.account_id)
    try:
        connection = (
            await connection_handlers.get_connection(tx, account_id=user.account_id, secret_box=secret_box)
        ).connection
    except NoConnection:
        connection = None
    return render(
        request,
        "schedule.html",
        user=user,
        active="schedule",
        status_code=422 if error else 200,
        view=view,
        modes=MODES,
        weekdays=WEEKDAYS,
        job=job,
        error=error,
        stored_contacts=counts[0][2],
        connection=connection,
        progress=await _progress(tx, user.account_id, job),
    )


async def _progress(tx: Transactions, account_id: str, job: str | None) -> dict[str, Any]:
    """Returns the runs to show, and whether the requested or a running one is still unfinished."""
    runs = (await history.list_sync_runs(tx, account_id=account_id, limit=5)).items
    mine = next((r for r in runs if r.job_id == job), None) if job else None
    waiting = bool(job) and mine is None
    live = (
        waiting
        or any(r.status in UNFINISHED for r in runs[:1])
        or (mine is not None and mine.status in UNFINISHED)
    )
    return {"runs": runs, "mine": mine, "job": job, "waiting": waiting, "live": live}


@router.get("")
async def schedule_page(
    request: Request, user: User, tx: Tx, secrets: SecretBoxDep, job: str | None = None
) -> Response:
    return await _page(request, user, tx, secrets, job=job)


@router.get("/progress")
async def progress_fragment(request: Request, user: User, tx: Tx, job: str | None = None) -> Response:
    progress = await _progress(tx, user.account_id, job)
    return render(request, "_progress.html", user=user, progress=progress)


@router.post("")
async def save_schedule(request: Request, user: Poster, tx: Tx, secrets: SecretBoxDep) -> Response:
    user.caller.require_admin()
    form = await request.form()

    def text(name: str) -> str | None:
        value = form.get(name)
        return value.strip() or None if isinstance(value, str) else None

    try:
        mode = ScheduleMode(text("mode") or "automatic")
        interval = int(text("interval_minutes")) if text("interval_minutes") else None
        time_of_day = text("time_of_day")
        at = time.fromisoformat(time_of_day) if time_of_day else None
        weekday = int(text("weekday")) if text("weekday") else None
        await handlers.set_schedule(
            tx,
            account_id=user.account_id,
            mode=mode,
            interval_minutes=interval,
            time_of_day=at,
            weekday=weekday,
            timezone=text("timezone") or "UTC",
            now=utc_now(),
        )
    except ValueError as exc:
        return await _page(request, user, tx, secrets, error=Invalid(str(exc), field="schedule"))
    except Invalid as exc:
        return await _page(request, user, tx, secrets, error=exc)
    return RedirectResponse("/console/schedule", status_code=303)


@router.post("/sync-now")
async def sync_now(user: Poster, tx: Tx) -> Response:
    user.caller.require_admin()
    job = await handlers.sync_now(tx, account_id=user.account_id, kind=None, now=utc_now())
    return RedirectResponse(f"/console/schedule?job={job.job_id}", status_code=303)
