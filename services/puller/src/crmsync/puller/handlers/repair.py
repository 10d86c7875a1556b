"""Use case: repair drift (R25), a pass at the end of a sync run.

It runs after every full sync, and after an incremental one when the account's
last pass is older than `puller_repair_interval_s`. Candidates come from the
store's per-field origin and time (a local value newer than the CRM version
the last pull saw); the CRM's current record of each is read again, by id, and
what it still does not hold is handed to the pusher (`crmsync.common.domain.drift`).
The run records how many fields it handed over (`drift_found`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog

from crmsync.common.crm.interface import CrmConnector
from crmsync.common.domain.drift import (
    CrmVersion,
    RepairPlan,
    StoredForRepair,
    candidates,
    find_drift,
    repair_plan,
)
from crmsync.common.domain.mapping import Mapping, PushPolicy
from crmsync.common.messages import EventSource
from crmsync.puller.domain.runs import SyncRun
from crmsync.puller.handlers.crm_records import map_record
from crmsync.puller.handlers.ports import SyncStore

log = structlog.get_logger(__name__)

# Contacts read per page, and CRM records read by id per request.
PAGE = 200
ORIGINS = frozenset(s.value for s in EventSource)


async def repair_due(store: SyncStore, run: SyncRun, *, interval_s: float, now: datetime) -> bool:
    """Returns whether an incremental run should end with a repair pass (0: only after full syncs)."""
    if interval_s <= 0:
        return False
    async with store.read() as tx:
        last = await tx.runs.last_repair_at(run.account_id)
    return last is None or now - last >= timedelta(seconds=interval_s)


async def repair_drift(
    *,
    run: SyncRun,
    mapping: Mapping,
    connector: CrmConnector,
    store: SyncStore,
    fields: dict[str, list[str]],
    clock: Callable[[], datetime],
    check_stop: Callable[[], None],
) -> int:
    """Hands the account's drift to the pusher; returns how many fields went."""
    async with store.read() as tx:
        policy = await tx.runs.policy(run.account_id)
    handed = 0
    after = None
    while True:
        check_stop()
        async with store.read() as tx:
            page = await tx.repairs.candidates(run.account_id, after=after, limit=PAGE)
        if not page:
            break
        after = page[-1].id
        plans = await _plans(
            run.account_id, page, mapping=mapping, policy=policy, connector=connector, fields=fields
        )
        if plans:
            async with store.begin() as tx:
                handed += await tx.repairs.apply(run.account_id, plans, now=clock())
    async with store.begin() as tx:
        await tx.runs.add_drift_found(run.id, handed)
    if handed:
        log.info("drift_repaired", account_id=run.account_id, run_id=str(run.id), fields=handed)
    return handed


async def _plans(
    account_id: str,
    page: Sequence[StoredForRepair],
    *,
    mapping: Mapping,
    policy: PushPolicy,
    connector: CrmConnector,
    fields: dict[str, list[str]],
) -> list[RepairPlan]:
    """Returns the repairs of a page of candidates, their CRM records read again."""
    chosen = [(c, f) for c in page if (f := candidates(c, mapping=mapping, policy=policy, origins=ORIGINS))]
    versions: dict[str, CrmVersion] = {}
    for entity in sorted({c.crm_object for c, _ in chosen}):
        ids = [c.external_id for c, _ in chosen if c.crm_object == entity]
        for record in await connector.get_by_ids(entity, ids, fields[entity]):
            mapped = map_record(mapping=mapping, roles=connector.roles, entity=entity, record=record)
            versions[mapped.external_id] = CrmVersion(mapped.values, mapped.modstamp)
    plans = [
        repair_plan(account_id, c, find_drift(c, f, versions.get(c.external_id), mapping=mapping))
        for c, f in chosen
    ]
    return [p for p in plans if p.found]
