"""Sync run history: kind, reason, status, counts, errors, durations."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from crmsync.common.db.schema import SyncRun
from crmsync.mapping_api.entrypoints.deps import CurrentAccount, SessionDep
from crmsync.mapping_api.entrypoints.routes.contacts import Cursor, Limit
from crmsync.mapping_api.handlers import contacts as handlers
from crmsync.mapping_api.schemas import SyncRunOut, SyncRunPage

router = APIRouter(prefix="/sync-runs", tags=["sync runs"])


def run_out(run: SyncRun) -> SyncRunOut:
    duration = None
    if run.started_at and run.finished_at:
        duration = (run.finished_at - run.started_at).total_seconds()
    return SyncRunOut(
        id=run.id,
        job_id=run.job_id,
        kind=run.kind,
        reason=run.reason,
        status=run.status,
        attempts=run.attempts,
        pulled=run.pulled,
        created=run.created,
        updated=run.updated,
        deleted=run.deleted,
        skipped=run.skipped,
        errors=run.errors,
        error=run.error,
        requested_at=run.requested_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_s=duration,
    )


@router.get("", response_model=SyncRunPage, summary="Sync runs, newest first")
async def list_runs(
    caller: CurrentAccount,
    session: SessionDep,
    kind: Annotated[Literal["full", "incremental", "scores_optouts"] | None, Query(examples=["full"])] = None,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "paused"] | None, Query(examples=["failed"])
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> SyncRunPage:
    page = await handlers.list_sync_runs(
        session, account_id=caller.account_id, kind=kind, status=status, cursor=cursor, limit=limit
    )
    return SyncRunPage(items=[run_out(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{run_id}", response_model=SyncRunOut, summary="One sync run")
async def read_run(
    run_id: Annotated[uuid.UUID, Path(examples=["0b8f6f2e-8a43-4a55-8f7c-4b0e6f1d2a3b"])],
    caller: CurrentAccount,
    session: SessionDep,
) -> SyncRunOut:
    return run_out(await handlers.get_sync_run(session, account_id=caller.account_id, run_id=run_id))
