"""Sync Health: pushes waiting and failed counted by error code, the lists of them and of dead
letters with Retry and Replay (admin keys; disabled for a reader), recent runs, and the push log
by status (R24)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.common.domain.redelivery import FAILED, WAITING
from crmsync.mapping_api.console.deps import Poster, Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.entrypoints.routes.deliveries import MAX_ID, OperatorTx, Topic
from crmsync.mapping_api.handlers import deliveries, history

router = APIRouter(prefix="/health")
STATUSES = ("pending", "waiting", "failed", "succeeded", "skipped")
GROUPED = (WAITING, FAILED)
LISTED = 50


@router.get("")
async def health_page(
    request: Request,
    user: User,
    tx: Tx,
    ops: OperatorTx,
    status: str | None = Query(None, pattern="^[a-z_]{1,20}$"),
    done: str | None = Query(None, pattern="^[a-z_]{1,20}$"),
    n: int | None = Query(None, ge=0),
) -> Response:
    account = user.account_id
    summary = await deliveries.push_summary(ops, account_id=account)
    groups = {
        state: (
            sum(summary.deliveries.get(state, {}).values()),
            sorted(
                ((c or "none", k) for c, k in summary.deliveries.get(state, {}).items()), key=lambda x: -x[1]
            ),
        )
        for state in GROUPED
    }
    pushes = {
        state: (await deliveries.list_pushes(ops, account_id=account, state=state, limit=LISTED)).items
        for state in GROUPED
    }
    return render(
        request,
        "health.html",
        user=user,
        active="health",
        runs=(await history.list_sync_runs(tx, account_id=account, limit=20)).items,
        groups=groups,
        pushes=pushes,
        log_counts=summary.push_log,
        letters=(await deliveries.list_dead_letters(ops, account_id=account, limit=LISTED)).items,
        listed=LISTED,
        statuses=STATUSES,
        status=status,
        log=(await history.list_push_log(tx, account_id=account, status=status, limit=50)).items,
        done=done,
        n=n,
    )


def _back(done: str, n: int) -> Response:
    return RedirectResponse(f"/console/health?done={done}&n={n}", status_code=303)


@router.post("/retry")
async def retry_all(user: Poster, ops: OperatorTx) -> Response:
    user.caller.require_admin()
    n = await deliveries.retry_failed_pushes(ops, account_id=user.account_id, error_code=None, now=utc_now())
    return _back("retried", n)


@router.post("/pushes/{push_id}/retry")
async def retry_one(
    push_id: Annotated[int, Path(ge=1, le=MAX_ID)], user: Poster, ops: OperatorTx
) -> Response:
    user.caller.require_admin()
    n = await deliveries.retry_push(ops, account_id=user.account_id, push_id=push_id, now=utc_now())
    return _back("retried", n)


@router.post("/dead-letters/replay")
async def replay_all(user: Poster, ops: OperatorTx, topic: Topic) -> Response:
    user.caller.require_admin()
    replayed = await deliveries.replay_dead_letters(ops, topic, account_id=user.account_id)
    return _back("replayed", len(replayed.event_ids))


@router.post("/dead-letters/{event_id}/replay")
async def replay_one(
    event_id: Annotated[str, Path(min_length=1, max_length=200)], user: Poster, ops: OperatorTx, topic: Topic
) -> Response:
    user.caller.require_admin()
    replayed = await deliveries.replay_dead_letter(ops, topic, account_id=user.account_id, event_id=event_id)
    return _back("replayed", len(replayed.event_ids))
