"""The account's API allowance: crmsync's part of the CRM's daily limit (R26)."""

from __future__ import annotations

from fastapi import APIRouter

from crmsync.common.clock import utc_now
from crmsync.mapping_api.entrypoints.deps import AdminAccount, AllowanceDep, CurrentAccount
from crmsync.mapping_api.handlers import allowance as handlers
from crmsync.mapping_api.schemas.allowance import ApiAllowanceIn, ApiAllowanceOut

router = APIRouter(tags=["crm"])


def allowance_out(view: handlers.AllowanceView) -> ApiAllowanceOut:
    return ApiAllowanceOut(
        share=view.allocation.share,
        calls=view.allocation.calls,
        api_limit=view.api_limit,
        api_limit_checked_at=view.api_limit_checked_at,
        allocated_calls=view.allocated_calls,
        day=view.day,
        used_today=view.used,
        remaining_today=view.remaining,
    )


@router.get(
    "/api-allowance",
    response_model=ApiAllowanceOut,
    summary="crmsync's part of the CRM's daily API limit, and the calls it took today",
)
async def read_allowance(caller: CurrentAccount, allowance: AllowanceDep) -> ApiAllowanceOut:
    return allowance_out(await handlers.get_allowance(allowance, account_id=caller.account_id, now=utc_now()))


@router.put(
    "/api-allowance",
    response_model=ApiAllowanceOut,
    summary="Allocate a part of the CRM's daily API limit to crmsync",
    description="A share of the daily limit (`share`, more than 0 and at most 1) or a number of calls "
    "(`calls`), not both; neither: crmsync is held to no allocation of its own (only to the reserve "
    "its connectors keep for other tools). Pulls, pushes and their retries all take from it; a pull "
    "that meets its end pauses and resumes later, a push waits and never fails (R24). Automatic "
    "schedules pick their interval from it (R14). The CRM day is the UTC date.",
)
async def set_allowance(
    body: ApiAllowanceIn, caller: AdminAccount, allowance: AllowanceDep
) -> ApiAllowanceOut:
    view = await handlers.set_allowance(
        allowance, account_id=caller.account_id, share=body.share, calls=body.calls, now=utc_now()
    )
    return allowance_out(view)
