"""Planned CRM writes of a batch: one per contact, sent in composite batches per object."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.common.crm.interface import CrmConnector
from crmsync.common.domain.push import fold_writes
from crmsync.common.observability.metrics import PUSH_RESULTS
from crmsync.pusher.adapters.crm import CrmWriter, Outcome, find_recent_by_email


@dataclass
class PlannedWrite:
    """One record's write for one or more events (events of one contact are folded, in order)."""

    contact_id: uuid.UUID
    operation: str  # create | update
    crm_object: str
    crm_id: str | None
    values: dict[str, Any]
    email_lower: str | None
    event_ids: list[str] = field(default_factory=list)

    def fold(self, values: dict[str, Any], event_id: str) -> None:
        self.values = fold_writes(self.values, values)
        self.event_ids.append(event_id)


async def send_writes(
    *,
    connector: CrmConnector,
    writer: CrmWriter,
    writes: Sequence[PlannedWrite],
    concurrency: int,
    reconcile_margin: timedelta,
) -> list[Outcome]:
    """Returns one outcome per planned write, in order."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, w in enumerate(writes):
        groups[(w.operation, w.crm_object)].append(i)
    chunks = [
        (op, obj, idx[k : k + writer.batch_size])
        for (op, obj), idx in groups.items()
        for k in range(0, len(idx), writer.batch_size)
    ]
    outcomes: list[Outcome | None] = [None] * len(writes)
    gate = asyncio.Semaphore(concurrency)

    async def one(op: str, obj: str, idx: list[int]) -> None:
        records = []
        for i in idx:
            record = dict(writes[i].values)
            if op == "update":
                record["Id"] = writes[i].crm_id
            records.append(record)
        started = datetime.now(UTC)

        async def find_created(positions: Sequence[int]) -> dict[int, str]:
            emails = {writes[idx[p]].email_lower: p for p in positions if writes[idx[p]].email_lower}
            found = await find_recent_by_email(
                connector,
                crm_object=obj,
                emails_lower=set(emails),  # type: ignore[arg-type]
                since=started,
                margin=reconcile_margin,
            )
            return {emails[e]: crm_id for e, crm_id in found.items()}

        async with gate:
            results = await writer.write(
                connector,
                operation=op,
                crm_object=obj,
                records=records,
                find_created=find_created if op == "create" else None,
            )
        succeeded = 0
        for i, outcome in zip(idx, results, strict=True):
            outcomes[i] = outcome
            succeeded += outcome.success
        PUSH_RESULTS.labels("succeeded").inc(succeeded)
        PUSH_RESULTS.labels("failed").inc(len(results) - succeeded)

    await asyncio.gather(*(one(op, obj, idx) for op, obj, idx in chunks))
    return [o for o in outcomes if o is not None]


def log_results(
    *, account_id: str, writes: Sequence[PlannedWrite], outcomes: Sequence[Outcome], at: datetime
) -> tuple[list[dict[str, Any]], list[tuple[uuid.UUID, str, str]]]:
    """Returns the push log updates and the (contact, object, id) links of created records."""
    results: list[dict[str, Any]] = []
    links: list[tuple[uuid.UUID, str, str]] = []
    for write, outcome in zip(writes, outcomes, strict=True):
        if write.operation == "create" and outcome.success and outcome.crm_id:
            links.append((write.contact_id, write.crm_object, outcome.crm_id))
        for event_id in write.event_ids:
            results.append(
                {
                    "account": account_id,
                    "event": event_id,
                    "status": "succeeded" if outcome.success else "failed",
                    "crm_id": outcome.crm_id or write.crm_id,
                    "code": outcome.error_code,
                    "message": outcome.error_message,
                    "attempts": outcome.attempts,
                    "at": at,
                }
            )
    return results, links
