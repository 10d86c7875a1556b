"""The mapping: read, save a whole new version (the guide's Save), list and diff versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY, DataType
from crmsync.common.domain.mapping import FieldKind, MappingRow, PushPolicy, effective_allow_push
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CrmDep, CurrentAccount, RelayDep, SessionDep
from crmsync.mapping_api.handlers import mapping as handlers
from crmsync.mapping_api.handlers.errors import Invalid
from crmsync.mapping_api.schemas import (
    MappingDiffOut,
    MappingIn,
    MappingOut,
    MappingRowIn,
    MappingRowOut,
    MappingSaved,
    MappingVersionOut,
    RowChange,
)

router = APIRouter(prefix="/mapping", tags=["mapping"])


def row_out(row: MappingRow, policy: PushPolicy) -> MappingRowOut:
    return MappingRowOut(
        destination=row.destination,
        kind=row.kind,
        lead_source=row.lead_source,
        contact_source=row.contact_source,
        data_type=row.data_type,
        allow_push=row.allow_push,
        effective_allow_push=effective_allow_push(row, policy),
        local_only=row.local_only,
    )


def mapping_out(stored: handlers.StoredMapping, policy: PushPolicy) -> MappingOut:
    return MappingOut(
        version=stored.version,
        note=stored.note,
        created_at=stored.created_at,
        default_allow_push=policy.default_allow_push,
        rows=[row_out(r, policy) for r in stored.rows],
    )


def row_in(index: int, row: MappingRowIn) -> MappingRow:
    data_type = row.data_type
    if data_type is None:
        if row.kind == FieldKind.CUSTOM:
            raise Invalid("a custom field needs a data_type", field=f"rows[{index}].data_type")
        standard = STANDARD_FIELDS_BY_KEY.get(row.destination)
        # An unknown standard field is reported by the rule checks (R1); any type will do here.
        data_type = standard.data_type if standard else DataType.TEXT
    return MappingRow(
        destination=row.destination,
        data_type=data_type,
        kind=row.kind,
        lead_source=row.lead_source,
        contact_source=row.contact_source,
        allow_push=row.allow_push,
    )


@router.get("", response_model=MappingOut, summary="The current mapping")
async def read_mapping(caller: CurrentAccount, session: SessionDep) -> MappingOut:
    stored = await handlers.load_mapping(session, account_id=caller.account_id)
    return mapping_out(stored, await handlers.load_policy(session, account_id=caller.account_id))


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
    body: MappingIn, caller: AdminAccount, session: SessionDep, crm: CrmDep, relay: RelayDep
) -> MappingSaved:
    rows = [row_in(i, r) for i, r in enumerate(body.rows)]
    result = await handlers.save_mapping(
        session, account_id=caller.account_id, rows=rows, note=body.note, crm=crm, now=datetime.now(UTC)
    )
    await session.commit()
    relay.notify()
    policy = await handlers.load_policy(session, account_id=caller.account_id)
    return MappingSaved(
        **mapping_out(result.mapping, policy).model_dump(),
        checked_against_crm=result.checked_against_crm,
        new_sources=result.new_sources,
        full_sync_job_id=result.full_sync_job_id,
    )


@router.get("/versions", response_model=list[MappingVersionOut], summary="Every saved version, newest first")
async def list_versions(caller: CurrentAccount, session: SessionDep) -> list[MappingVersionOut]:
    return [
        MappingVersionOut(version=v.version, note=v.note, created_at=v.created_at, row_count=n)
        for v, n in await handlers.list_versions(session, account_id=caller.account_id)
    ]


@router.get("/versions/{version}", response_model=MappingOut, summary="One saved version")
async def read_version(
    version: Annotated[int, Path(ge=1, le=2_000_000_000, examples=[1])],
    caller: CurrentAccount,
    session: SessionDep,
) -> MappingOut:
    stored = await handlers.load_mapping(session, account_id=caller.account_id, version=version)
    return mapping_out(stored, await handlers.load_policy(session, account_id=caller.account_id))


@router.get("/diff", response_model=MappingDiffOut, summary="What changed between two versions")
async def diff_versions(
    caller: CurrentAccount,
    session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=2_000_000_000, examples=[1])],
    to_version: Annotated[int, Query(alias="to", ge=1, le=2_000_000_000, examples=[2])],
) -> MappingDiffOut:
    before = await handlers.load_mapping(session, account_id=caller.account_id, version=from_version)
    after = await handlers.load_mapping(session, account_id=caller.account_id, version=to_version)
    policy = await handlers.load_policy(session, account_id=caller.account_id)
    added, removed, changed = handlers.diff_rows(before.rows, after.rows)
    return MappingDiffOut(
        from_version=from_version,
        to_version=to_version,
        added=[row_out(r, policy) for r in added],
        removed=[row_out(r, policy) for r in removed],
        changed=[RowChange(destination=d, changes=c) for d, c in changed],
    )
