"""The push log: what was sent to the CRM for each event, and why (R8–R13, R22)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from crmsync.mapping_api.entrypoints.deps import CurrentAccount, TransactionsDep
from crmsync.mapping_api.entrypoints.routes.contacts import Limit
from crmsync.mapping_api.handlers import history as handlers
from crmsync.mapping_api.schemas import PushLogOut, PushLogPage

router = APIRouter(prefix="/push-log", tags=["push log"])
MAX_ID = 2**63 - 1


@router.get("", response_model=PushLogPage, summary="Push log entries, newest first")
async def list_entries(
    caller: CurrentAccount,
    tx: TransactionsDep,
    contact_id: Annotated[uuid.UUID | None, Query(examples=["7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e"])] = None,
    status: Annotated[
        Literal["pending", "succeeded", "failed", "skipped"] | None, Query(examples=["failed"])
    ] = None,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_cursor of the previous page.", examples=[1017])
    ] = None,
    limit: Limit = 50,
) -> PushLogPage:
    page = await handlers.list_push_log(
        tx, account_id=caller.account_id, contact_id=contact_id, status=status, cursor=cursor, limit=limit
    )
    return PushLogPage.model_validate(page, from_attributes=True)


@router.get("/{entry_id}", response_model=PushLogOut, summary="One push log entry")
async def read_entry(
    entry_id: Annotated[int, Path(ge=1, le=MAX_ID, examples=[1017])],
    caller: CurrentAccount,
    tx: TransactionsDep,
) -> PushLogOut:
    entry = await handlers.get_push_log_entry(tx, account_id=caller.account_id, entry_id=entry_id)
    return PushLogOut.model_validate(entry, from_attributes=True)
