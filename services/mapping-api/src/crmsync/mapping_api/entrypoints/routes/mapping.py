"""The mapping: read, save a whole new version (the guide's Save), list and diff versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from crmsync.common.clock import utc_now
from crmsync.common.domain.mapping import MappingRow, PushPolicy, effective_allow_push
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CrmDep, CurrentAccount, TransactionsDep
from crmsync.mapping_api.handlers import mapping as handlers
from crmsync.mapping_api.schemas import (
    MappingDiffOut,
    MappingIn,
    MappingOut,
    MappingRowOut,
    MappingSaved,
    MappingVersionOut,
    RowChange,
)

router = APIRouter(prefix="/mapping", tags=["mapping"])
Version = Annotated[int, Path(ge=1, le=2_000_000_000, examples=[1])]


def row_out(row: MappingRow, policy: PushPolicy) -> MappingRowOut:
    return MappingRowOut.model_validate(
        {**vars(row), "effective_allow_push": effective_allow_push(row, policy), "local_only": row.local_only}
    )


def mapping_out(view: handlers.MappingView) -> MappingOut:
    stored = view.mapping
    return MappingOut(
        version=stored.version,
        note=stored.note,
        created_at=stored.created_at,
        default_allow_push=view.policy.default_allow_push,
        rows=[row_out(r, view.policy) for r in stored.rows],
    )


@router.get("", response_model=MappingOut, summary="The current mapping")
async def read_mapping(caller: CurrentAccount, tx: TransactionsDep) -> MappingOut:
    return mapping_out(await handlers.read_mapping(tx, account_id=caller.account_id))


@router.put(
    "",
    response_model=MappingSaved,
    summary="Save a whole mapping as a new version",
    description=(
        "Checks R1–R6 and R8 against the CRM's live describe; a refused save answers 422 naming "
        "every broken row and rule. A mapping that reads a CRM field it did not read before "
        "flags a full sync and enqueues it (R15)."
    ),
)
async def save_mapping(
    body: MappingIn, caller: AdminAccount, tx: TransactionsDep, crm: CrmDep
) -> MappingSaved:
    rows = [handlers.RowInput(**row.model_dump()) for row in body.rows]
    result = await handlers.save_mapping(
        tx, account_id=caller.account_id, rows=rows, note=body.note, crm=crm, now=utc_now()
    )
    return MappingSaved(
        **mapping_out(result).model_dump(),
        checked_against_crm=result.checked_against_crm,
        new_sources=result.new_sources,
        full_sync_job_id=result.full_sync_job_id,
    )


@router.get("/versions", response_model=list[MappingVersionOut], summary="Every saved version, newest first")
async def list_versions(caller: CurrentAccount, tx: TransactionsDep) -> list[MappingVersionOut]:
    return [
        MappingVersionOut.model_validate(v, from_attributes=True)
        for v in await handlers.list_versions(tx, account_id=caller.account_id)
    ]


@router.get("/versions/{version}", response_model=MappingOut, summary="One saved version")
async def read_version(version: Version, caller: CurrentAccount, tx: TransactionsDep) -> MappingOut:
    return mapping_out(await handlers.read_mapping(tx, account_id=caller.account_id, version=version))


@router.get("/diff", response_model=MappingDiffOut, summary="What changed between two versions")
async def diff_versions(
    caller: CurrentAccount,
    tx: TransactionsDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=2_000_000_000, examples=[1])],
    to_version: Annotated[int, Query(alias="to", ge=1, le=2_000_000_000, examples=[2])],
) -> MappingDiffOut:
    diff = await handlers.diff_versions(
        tx, account_id=caller.account_id, from_version=from_version, to_version=to_version
    )
    return MappingDiffOut(
        from_version=diff.from_version,
        to_version=diff.to_version,
        added=[row_out(r, diff.policy) for r in diff.added],
        removed=[row_out(r, diff.policy) for r in diff.removed],
        changed=[RowChange(destination=d, changes=c) for d, c in diff.changed],
    )
