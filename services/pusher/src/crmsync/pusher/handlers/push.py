"""Steps 2 and 3 for one account: its planned writes to the CRM, then the answers recorded."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.domain.mapping import Mapping
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import ContactChanged
from crmsync.common.observability.metrics import PUSH_LATENCY
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.record import record
from crmsync.pusher.values import PlannedWrite

log = structlog.get_logger(__name__)


@dataclass
class AccountPush:
    """One account's part of an applied batch: its planned CRM writes."""

    account_id: str
    connection: CrmConnectionInfo
    mapping: Mapping
    writes: list[PlannedWrite]
    batch: list[Delivery[ContactChanged]]
    applied_ms: float
    # How long the batch's oldest event waited, from its produce to the start of step 1.
    waited_ms: float

    async def send(self, ctx: PushContext) -> None:
        started = time.perf_counter()
        outcomes = await ctx.crm.write(self.connection, self.writes, mapping=self.mapping)
        written = time.perf_counter()
        await record(ctx, account_id=self.account_id, writes=self.writes, outcomes=outcomes)
        _observe_latency(self.batch)
        log.debug(
            "push_batch",
            account_id=self.account_id,
            events=len(self.batch),
            writes=len(self.writes),
            waited_ms=self.waited_ms,
            apply_ms=self.applied_ms,
            crm_ms=round((written - started) * 1000, 1),
            record_ms=round((time.perf_counter() - written) * 1000, 1),
        )


def _observe_latency(batch: Sequence[Delivery[ContactChanged]]) -> None:
    now_ms = utc_now().timestamp() * 1000
    for d in batch:
        PUSH_LATENCY.observe(max(0.0, (now_ms - d.timestamp_ms) / 1000))
