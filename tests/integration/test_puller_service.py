"""Scheduler and puller as services over the real Kafka: a field added to the mapping brings a full sync."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from crmsync.common.db.schema import Contact, SyncRun, SyncSchedule
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, default_salesforce_mapping
from crmsync.puller.bootstrap import bootstrap as puller_bootstrap
from crmsync.scheduler.bootstrap import bootstrap as scheduler_bootstrap
from crmsync.scheduler.settings import Settings as SchedulerSettings
from tests.integration.test_puller_sync import puller_settings, save_mapping, synced
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration


async def test_r15_adding_a_field_to_the_mapping_triggers_a_full_sync_that_fills_it(
    sessions, settings, engine, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=30, contacts=30, seed=31)
    await synced(sessions, settings, account_id, org)
    base = default_salesforce_mapping()
    added = MappingRow(
        "full_name", DataType.TEXT, FieldKind.CUSTOM, lead_source="Name", contact_source="Name"
    )
    await save_mapping(sessions, account_id, Mapping(version=2, rows=(*base.rows, added)))
    async with sessions.begin() as session:
        session.add(
            SyncSchedule(
                account_id=account_id,
                mode="interval",
                interval_minutes=60,
                full_sync_requested_at=datetime.now(UTC),
            )
        )

    scheduler = scheduler_bootstrap(
        SchedulerSettings(
            **settings.model_dump(), scheduler_tick_s=0.3, scheduler_lock_key=random.randint(1, 2**62)
        ),
        engine=engine,
    )
    puller = puller_bootstrap(
        puller_settings(settings, puller_group_id=f"puller-{uuid.uuid4().hex[:8]}", puller_poll_s=0.3),
        engine=engine,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.main(stop)), asyncio.create_task(puller.main(stop))]

    async def full_done() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # a service that died says why
        async with sessions() as session:
            run = await session.scalar(
                select(SyncRun).where(
                    SyncRun.account_id == account_id,
                    SyncRun.reason == "new_field",
                    SyncRun.status == "succeeded",
                )
            )
        return run is not None

    try:
        await wait_for(full_done, timeout=120, what="the new-field full sync")
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    async with sessions() as session:
        runs = (await session.scalars(select(SyncRun).where(SyncRun.account_id == account_id))).all()
        contacts = (
            await session.scalars(
                select(Contact).where(Contact.account_id == account_id, Contact.external_id.is_not(None))
            )
        ).all()
        schedule = await session.get(SyncSchedule, account_id)
    new_field = [r for r in runs if r.reason == "new_field"]
    assert [(r.kind, r.status) for r in new_field] == [("full", "succeeded")]
    names = {r["Id"]: r["Name"] for e in ("Lead", "Contact") for r in org.records(e)}
    assert {c.external_id: c.fields["full_name"] for c in contacts} == names
    assert schedule.full_sync_requested_at is None  # served (R15)
