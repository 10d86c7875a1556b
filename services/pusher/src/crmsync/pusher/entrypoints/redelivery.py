"""The re-delivery loop (R24): sends waiting pushes when they are due, until `stop`.

Every replica runs one; they share the due pushes (`SKIP LOCKED`). A round
that found a full batch goes again at once; otherwise the loop sleeps
`push_redelivery_interval_s`. A database connection the server dropped is
replaced once per round; a database that does not answer is waited for, with
growing waits; any other error is a bug and stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from sqlalchemy.exc import DBAPIError

from crmsync.common.retry import RetryPolicy
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.redeliver import redeliver_due
from crmsync.pusher.settings import Settings

log = structlog.get_logger(__name__)

# The longest wait between rounds while the database does not answer.
_OUTAGE_WAIT_MAX_S = 10.0


async def run_redelivery(settings: Settings, ctx: PushContext, *, stop: asyncio.Event) -> None:
    """Sends due waiting pushes in rounds of `push_redelivery_batch` until `stop`."""
    s = settings
    lease = timedelta(seconds=s.push_redelivery_lease_s)
    outage = RetryPolicy(max_attempts=1, base_s=s.push_redelivery_interval_s, cap_s=_OUTAGE_WAIT_MAX_S)
    unavailable = 0
    while not stop.is_set():
        try:
            claimed = await ctx.store.retry_if_connection_lost(
                lambda: redeliver_due(ctx, limit=s.push_redelivery_batch, lease=lease),
                step="push_redelivery_retried",
            )
        except (DBAPIError, OSError) as exc:
            # The database is down or restarting: transient. What was claimed comes back at its lease.
            unavailable += 1
            log.warning("push_redelivery_database_unavailable", error=str(exc)[:300], rounds=unavailable)
            await _pause(stop, outage.ceiling(unavailable))
            continue
        unavailable = 0
        if claimed < s.push_redelivery_batch:
            await _pause(stop, s.push_redelivery_interval_s)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
