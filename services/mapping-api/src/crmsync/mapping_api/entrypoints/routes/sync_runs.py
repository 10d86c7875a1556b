"""Sync run history: kind, reason, status, counts, errors, durations."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from crmsync.mapping_api.entrypoints.deps import CurrentAccount, TransactionsDep
from crmsync.mapping_api.entrypoints.routes.contacts import Cursor, Limit
from crmsync.mapping_api.handlers import history as handlers
from crmsync.mapping_api.schemas import SyncRunOut, SyncRunPage

router = APIRouter(prefix="/sync-runs", tags=["sync runs"])


@router.get("", response_model=SyncRunPage, summary="Sync runs, newest first")
async def list_runs(
    caller: CurrentAccount,
    tx: TransactionsDep,
    kind: Annotated[Literal["full", "incremental", "scores_optouts"] | None, Query(examples=["full"])] = None,
    status: Annotated[
        Literal["queued", "running", "succeeded", "failed", "paused"] | None, Query(examples=["failed"])
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> SyncRunPage:
    page = await handlers.list_sync_runs(
        tx, account_id=caller.account_id, kind=kind, status=status, cursor=cursor, limit=limit
    )
    return SyncRunPage.model_validate(page, from_attributes=True)


@router.get("/{run_id}", response_model=SyncRunOut, summary="One sync run")
async def read_run(
    run_id: Annotated[uuid.UUID, Path(examples=["0b8f6f2e-8a43-4a55-8f7c-4b0e6f1d2a3b"])],
    caller: CurrentAccount,
    tx: TransactionsDep,
) -> SyncRunOut:
    run = await handlers.get_sync_run(tx, account_id=caller.account_id, run_id=run_id)
    return SyncRunOut.model_validate(run, from_attributes=True)
