"""The mapping preview: what a save would do, before anything is saved (R1–R6, R8, R15)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crmsync.mapping_api.entrypoints.deps import CrmDep, CurrentAccount, TransactionsDep
from crmsync.mapping_api.entrypoints.errors import violation_details
from crmsync.mapping_api.entrypoints.routes.mapping import row_out
from crmsync.mapping_api.handlers import mapping as mapping_handlers
from crmsync.mapping_api.handlers import preview as handlers
from crmsync.mapping_api.schemas import ErrorDetail, MappingIn, MappingRowOut, RowChange

router = APIRouter(prefix="/mapping", tags=["mapping"])


class FieldImpactOut(BaseModel):
    destination: str
    change: str = Field(examples=["added"], description="added, removed or changed")
    gain: int = Field(description="Stored contacts without a value that the next sync would fill.")
    change_value: int = Field(description="Stored contacts whose value the next sync would replace.")
    lose: int = Field(description="Stored contacts whose value is dropped with the row.")
    note: str = ""


class MappingPreviewOut(BaseModel):
    valid: bool = Field(description="False when the save would be refused; `violations` say why.")
    violations: list[ErrorDetail]
    current_version: int | None
    unchanged: bool = Field(description="The rows are the saved version's: a save would change nothing.")
    added: list[MappingRowOut]
    removed: list[MappingRowOut]
    changed: list[RowChange]
    full_sync: bool = Field(
        description="The save reads a CRM field not read before, so runs a full sync (R15)."
    )
    new_sources: list[str]
    impacts: list[FieldImpactOut]
    checked_against_crm: bool


@router.post(
    "/preview",
    response_model=MappingPreviewOut,
    summary="Preview a mapping before saving it",
    description=(
        "Checks the rows as `PUT /v1/mapping` does and says, without saving, what the save would "
        "change: rows added, removed and changed, whether it runs a full sync (R15), and per changed "
        "field how many stored contacts would gain, change or lose a value. Readers may preview."
    ),
)
async def preview_mapping(
    body: MappingIn, caller: CurrentAccount, tx: TransactionsDep, crm: CrmDep
) -> MappingPreviewOut:
    rows = [mapping_handlers.RowInput(**row.model_dump()) for row in body.rows]
    return preview_out(await handlers.preview_mapping(tx, account_id=caller.account_id, rows=rows, crm=crm))


def preview_out(preview: handlers.MappingPreview) -> MappingPreviewOut:
    return MappingPreviewOut(
        valid=not preview.violations,
        violations=violation_details(preview.violations),
        current_version=preview.current_version,
        unchanged=preview.unchanged,
        added=[row_out(r, preview.policy) for r in preview.added],
        removed=[row_out(r, preview.policy) for r in preview.removed],
        changed=[RowChange(destination=d, changes=c) for d, c in preview.changed],
        full_sync=preview.full_sync,
        new_sources=preview.new_sources,
        impacts=[FieldImpactOut(**vars(i)) for i in preview.impacts],
        checked_against_crm=preview.checked_against_crm,
    )
