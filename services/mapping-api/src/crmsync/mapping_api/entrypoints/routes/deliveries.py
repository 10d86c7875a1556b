"""Waiting and failed pushes and dead letters: what operators see and do about them (R24)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from crmsync.common.clock import utc_now
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.mapping_api.adapters.dead_letter_topic import KafkaDeadLetterTopic
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CurrentAccount
from crmsync.mapping_api.entrypoints.routes.contacts import Limit
from crmsync.mapping_api.handlers import deliveries as handlers
from crmsync.mapping_api.handlers.ports import DeadLetterTopic, OperatorTransactions
from crmsync.mapping_api.operator_values import Replayed
from crmsync.mapping_api.schemas import (
    DeadLetterPage,
    PushOut,
    PushPage,
    PushSummaryOut,
    ReplayedOut,
    RetriedOut,
    RetryIn,
)

router = APIRouter(tags=["pushes and dead letters"])
MAX_ID = 2**63 - 1


def operator_transactions(request: Request) -> OperatorTransactions:
    """The services' unit of work, whose stores include the deliveries (the API's and the console's)."""
    return request.app.state.services.tx


def dead_letter_topic(request: Request) -> DeadLetterTopic:
    """The dead-letter topic on the services' Kafka (the API's and the console's)."""
    return KafkaDeadLetterTopic(request.app.state.services.settings)


OperatorTx = Annotated[OperatorTransactions, Depends(operator_transactions)]
Topic = Annotated[DeadLetterTopic, Depends(dead_letter_topic)]
After = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="next_cursor of the previous page.", examples=[42])
]
ErrorCode = Annotated[str | None, Query(max_length=200, examples=["SERVER_UNAVAILABLE"])]


def push_out(push: WaitingPush) -> PushOut:
    """Returns the push as the API shows it."""
    return PushOut(
        id=push.id or 0,
        state=push.state,
        contact_id=push.contact_id,
        operation=push.operation,
        crm_object=push.crm_object,
        crm_id=push.crm_id,
        values={
            name: {"value": v.value, "occurred_at": v.occurred_at, "event_id": v.event_id, "field": v.field}
            for name, v in push.values.items()
        },
        event_ids=list(push.event_ids),
        failures=push.failures,
        first_failed_at=push.first_failed_at,
        next_attempt_at=push.next_attempt_at,
        last_error_code=push.last_error_code,
        last_error_message=push.last_error_message,
        created_at=push.created_at,
    )


def _by_code(counts: Mapping[str, Mapping[str | None, int]]) -> dict[str, dict[str, int]]:
    return {state: {code or "": n for code, n in codes.items()} for state, codes in counts.items()}


@router.get("/pushes", response_model=PushPage, summary="Waiting and failed pushes, oldest first")
async def list_pushes(
    caller: CurrentAccount,
    tx: OperatorTx,
    state: Annotated[Literal["waiting", "failed"] | None, Query(examples=["failed"])] = None,
    error_code: ErrorCode = None,
    after: After = None,
    limit: Limit = 50,
) -> PushPage:
    page = await handlers.list_pushes(
        tx, account_id=caller.account_id, state=state, error_code=error_code, after=after, limit=limit
    )
    return PushPage(items=[push_out(p) for p in page.items], next_cursor=page.next_cursor)


@router.get(
    "/pushes/summary", response_model=PushSummaryOut, summary="Pushes and push log counted by error code"
)
async def summary(caller: CurrentAccount, tx: OperatorTx) -> PushSummaryOut:
    counts = await handlers.push_summary(tx, account_id=caller.account_id)
    return PushSummaryOut(pushes=_by_code(counts.deliveries), push_log=_by_code(counts.push_log))


@router.post("/pushes/retry", response_model=RetriedOut, summary="Retry every failed push (of an error code)")
async def retry_all(caller: AdminAccount, tx: OperatorTx, body: RetryIn | None = None) -> RetriedOut:
    retried = await handlers.retry_failed_pushes(
        tx, account_id=caller.account_id, error_code=body.error_code if body else None, now=utc_now()
    )
    return RetriedOut(retried=retried)


@router.post("/pushes/{push_id}/retry", response_model=RetriedOut, summary="Retry one failed push")
async def retry_one(
    push_id: Annotated[int, Path(ge=1, le=MAX_ID, examples=[42])], caller: AdminAccount, tx: OperatorTx
) -> RetriedOut:
    retried = await handlers.retry_push(tx, account_id=caller.account_id, push_id=push_id, now=utc_now())
    return RetriedOut(retried=retried)


@router.get("/dead-letters", response_model=DeadLetterPage, summary="Dead-lettered events with their reasons")
async def list_dead_letters(
    caller: CurrentAccount, tx: OperatorTx, after: After = None, limit: Limit = 50
) -> DeadLetterPage:
    page = await handlers.list_dead_letters(tx, account_id=caller.account_id, after=after, limit=limit)
    return DeadLetterPage.model_validate(page, from_attributes=True)


def _replayed(replayed: Replayed) -> ReplayedOut:
    return ReplayedOut(replayed=list(replayed.event_ids), not_on_topic=list(replayed.not_on_topic))


@router.post("/dead-letters/replay", response_model=ReplayedOut, summary="Replay every dead letter")
async def replay_all(caller: AdminAccount, tx: OperatorTx, topic: Topic) -> ReplayedOut:
    return _replayed(await handlers.replay_dead_letters(tx, topic, account_id=caller.account_id))


@router.post("/dead-letters/{event_id}/replay", response_model=ReplayedOut, summary="Replay one dead letter")
async def replay_one(
    event_id: Annotated[
        str, Path(min_length=1, max_length=200, examples=["6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11"])
    ],
    caller: AdminAccount,
    tx: OperatorTx,
    topic: Topic,
) -> ReplayedOut:
    return _replayed(
        await handlers.replay_dead_letter(tx, topic, account_id=caller.account_id, event_id=event_id)
    )
