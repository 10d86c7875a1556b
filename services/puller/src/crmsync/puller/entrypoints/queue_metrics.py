"""The run queue's backlog per lane on /metrics (R26): what the autoscaler scales the puller on.

Counted every CRMSYNC_PULLER_QUEUE_METRICS_S by one cheap query over the open
runs' partial index, not per scrape. While the database is away the last
figures stay and the loop waits with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib

from crmsync.common.observability.metrics import OLDEST_QUEUED_AGE, QUEUED_RUNS
from crmsync.common.service import Outage, refused_statement
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.handlers.ports import RunQueue


async def count_backlog(queue: RunQueue) -> None:
    """Sets the gauges from the queue's backlog now."""
    for lane in await queue.backlog():
        QUEUED_RUNS.labels(lane.lane.value).set(lane.queued)
        OLDEST_QUEUED_AGE.labels(lane.lane.value).set(round(lane.oldest_s, 3))


async def run_queue_metrics(stop: asyncio.Event, *, queue: RunQueue, interval_s: float) -> None:
    """Counts the backlog every `interval_s` until `stop`."""
    outage = Outage("puller queue metrics", cap_s=max(10.0, interval_s))
    while not stop.is_set():
        wait_s = interval_s
        try:
            await count_backlog(queue)
            outage.recovered()
        except StoreUnavailable as error:
            if refused_statement(error):
                raise
            wait_s = max(wait_s, outage.failed(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait_s)
