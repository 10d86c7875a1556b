"""The push policy: the global default and each field's Allow Push (R8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from crmsync.common.clock import utc_now
from crmsync.common.domain.mapping import effective_allow_push
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CrmDep, CurrentAccount, TransactionsDep
from crmsync.mapping_api.handlers import mapping as handlers
from crmsync.mapping_api.schemas import FieldPushIn, FieldPushOut, PushPolicyIn, PushPolicyOut

router = APIRouter(prefix="/push-policy", tags=["push policy"])


def policy_out(view: handlers.MappingView) -> PushPolicyOut:
    return PushPolicyOut(
        default_allow_push=view.policy.default_allow_push,
        mapping_version=view.mapping.version,
        fields=[
            FieldPushOut(
                destination=r.destination,
                allow_push=r.allow_push,
                effective_allow_push=effective_allow_push(r, view.policy),
                locked=r.is_score,
            )
            for r in view.mapping.rows
            if not r.local_only
        ],
    )


@router.get("", response_model=PushPolicyOut, summary="The default and each mapped field's Allow Push")
async def read_policy(caller: CurrentAccount, tx: TransactionsDep) -> PushPolicyOut:
    return policy_out(await handlers.read_mapping(tx, account_id=caller.account_id))


@router.put(
    "",
    response_model=PushPolicyOut,
    summary="Set the default push policy",
    description="Refused (422, R4) when a mapped field that would then push is read-only in the CRM.",
)
async def set_default(
    body: PushPolicyIn, caller: AdminAccount, tx: TransactionsDep, crm: CrmDep
) -> PushPolicyOut:
    view = await handlers.set_default_push(
        tx, account_id=caller.account_id, default_allow_push=body.default_allow_push, crm=crm, now=utc_now()
    )
    return policy_out(view)


@router.put(
    "/fields/{destination}",
    response_model=PushPolicyOut,
    summary="Set one field's Allow Push (saves a new mapping version)",
    description="Score fields cannot be turned off (422, R8): remove their mapping instead.",
)
async def set_field(
    destination: Annotated[str, Path(min_length=1, max_length=80, examples=["company"])],
    body: FieldPushIn,
    caller: AdminAccount,
    tx: TransactionsDep,
    crm: CrmDep,
) -> PushPolicyOut:
    result = await handlers.set_field_push(
        tx,
        account_id=caller.account_id,
        destination=destination,
        allow_push=body.allow_push,
        crm=crm,
        now=utc_now(),
    )
    return policy_out(result)
