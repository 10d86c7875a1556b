"""The push policy: the global default and each field's Allow Push (R8)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path

from crmsync.common.domain.mapping import PushPolicy, effective_allow_push
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CrmDep, CurrentAccount, SessionDep
from crmsync.mapping_api.handlers import mapping as handlers
from crmsync.mapping_api.schemas import FieldPushIn, FieldPushOut, PushPolicyIn, PushPolicyOut

router = APIRouter(prefix="/push-policy", tags=["push policy"])


def policy_out(stored: handlers.StoredMapping, policy: PushPolicy) -> PushPolicyOut:
    return PushPolicyOut(
        default_allow_push=policy.default_allow_push,
        mapping_version=stored.version,
        fields=[
            FieldPushOut(
                destination=r.destination,
                allow_push=r.allow_push,
                effective_allow_push=effective_allow_push(r, policy),
                locked=r.is_score,
            )
            for r in stored.rows
            if not r.local_only
        ],
    )


@router.get("", response_model=PushPolicyOut, summary="The default and each mapped field's Allow Push")
async def read_policy(caller: CurrentAccount, session: SessionDep) -> PushPolicyOut:
    stored = await handlers.load_mapping(session, account_id=caller.account_id)
    return policy_out(stored, await handlers.load_policy(session, account_id=caller.account_id))


@router.put(
    "",
    response_model=PushPolicyOut,
    summary="Set the default push policy",
    description="Refused (422, R4) when a mapped field that would then push is read-only in the CRM.",
)
async def set_default(
    body: PushPolicyIn, caller: AdminAccount, session: SessionDep, crm: CrmDep
) -> PushPolicyOut:
    policy = await handlers.set_default_push(
        session, account_id=caller.account_id, default_allow_push=body.default_allow_push, crm=crm
    )
    await session.commit()
    stored = await handlers.load_mapping(session, account_id=caller.account_id)
    return policy_out(stored, policy)


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
    session: SessionDep,
    crm: CrmDep,
) -> PushPolicyOut:
    result = await handlers.set_field_push(
        session,
        account_id=caller.account_id,
        destination=destination,
        allow_push=body.allow_push,
        crm=crm,
        now=datetime.now(UTC),
    )
    await session.commit()
    return policy_out(result.mapping, await handlers.load_policy(session, account_id=caller.account_id))
