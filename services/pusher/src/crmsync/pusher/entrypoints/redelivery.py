"""The re-delivery loop (R24): sends waiting pushes when they are due, until `stop`.

Every replica runs one; they share the due pushes (`SKIP LOCKED`). A round
that found a full batch goes again at once; otherwise the loop sleeps
`push_redelivery_interval_s`. A database connection the server dropped is
replaced once per round; any other error is a bug and stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.redeliver import redeliver_due
from crmsync.pusher.settings import Settings

log = structlog.get_logger(__name__)


async def run_redelivery(settings: Settings, ctx: PushContext, *, stop: asyncio.Event) -> None:
    """Sends due waiting pushes in rounds of `push_redelivery_batch` until `stop`."""
    s = settings
    lease = timedelta(seconds=s.push_redelivery_lease_s)
    while not stop.is_set():
        claimed = await ctx.store.retry_if_connection_lost(
            lambda: redeliver_due(ctx, limit=s.push_redelivery_batch, lease=lease),
            step="push_redelivery_retried",
        )
        if claimed >= s.push_redelivery_batch:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), s.push_redelivery_interval_s)
