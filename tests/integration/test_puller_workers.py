"""Puller workers from two replicas: one account's runs one at a time, accounts side by side (R18)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import select

from crmsync.common.db.schema import Account, SyncRun
from crmsync.puller.bootstrap import crm_connectors, sync_runner, workers
from tests.integration.test_puller_sync import connect, expected_store, puller_settings, queue, store_of

pytestmark = pytest.mark.integration


async def test_two_replicas_run_one_account_s_jobs_one_at_a_time_and_other_accounts_beside_it(
    sessions, settings, engine, account_id, make_crm_org
) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        session.add(Account(id=other, name="other"))
    big, small = make_crm_org(leads=6000, contacts=10, seed=51), make_crm_org(leads=40, contacts=40, seed=52)
    config = puller_settings(settings, puller_batch_size=500, puller_poll_s=0.1, puller_concurrency=2)
    await connect(sessions, settings, account_id, big)
    await connect(sessions, settings, other, small)
    first_job = await queue(sessions, account_id, "full")
    second_job = await queue(sessions, account_id, "full")
    other_job = await queue(sessions, other, "full")

    stop = asyncio.Event()
    replicas = [
        workers(
            engine=engine,
            sessions=sessions,
            runner=sync_runner(
                sessions=sessions, crm_factory=crm_connectors(config), settings=config, stop=stop
            ),
            settings=config,
        )
        for _ in range(2)
    ]
    tasks = [asyncio.create_task(w.run(stop)) for w in replicas]

    async def runs() -> dict[str, SyncRun]:
        async with sessions() as session:
            rows = await session.scalars(select(SyncRun).where(SyncRun.account_id.in_([account_id, other])))
            return {r.job_id: r for r in rows}

    try:
        deadline = time.monotonic() + 120
        while True:
            current = await runs()
            if all(r.status == "succeeded" for r in current.values()) and len(current) == 3:
                break
            assert time.monotonic() < deadline, {k: (v.status, v.error) for k, v in current.items()}
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    current = await runs()
    first, second = current[first_job], current[second_job]
    # The second full was asked for before the first started: the first covers it, it does not run again.
    assert first.pulled == 6010
    assert (second.pulled, second.progress.get("covered_by")) == (0, str(first.id))
    assert current[other_job].pulled == 80
    assert await store_of(sessions, account_id) == expected_store(big)
    assert await store_of(sessions, other) == expected_store(small)
