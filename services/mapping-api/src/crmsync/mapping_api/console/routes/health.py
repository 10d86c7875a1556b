"""Sync Health: recent runs with counts and errors, pushes waiting and failed grouped by error
code, and the push log by status. Dead letters and operator retry/replay come with the
re-delivery calls; this page links to them once the API offers them."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from crmsync.mapping_api.console.deps import Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import history

router = APIRouter(prefix="/health")
STATUSES = ("pending", "waiting", "failed", "succeeded", "skipped")
GROUPED = ("waiting", "failed")
SAMPLE = 200


@router.get("")
async def health_page(
    request: Request, user: User, tx: Tx, status: str | None = Query(None, pattern="^[a-z_]{1,20}$")
) -> Response:
    runs = (await history.list_sync_runs(tx, account_id=user.account_id, limit=20)).items
    groups = {}
    for state in GROUPED:
        entries = (
            await history.list_push_log(tx, account_id=user.account_id, status=state, limit=SAMPLE)
        ).items
        groups[state] = (len(entries), Counter(e.error_code or "none" for e in entries).most_common())
    log = (await history.list_push_log(tx, account_id=user.account_id, status=status, limit=50)).items
    return render(
        request,
        "health.html",
        user=user,
        active="health",
        runs=runs,
        groups=groups,
        sample=SAMPLE,
        statuses=STATUSES,
        status=status,
        log=log,
    )
