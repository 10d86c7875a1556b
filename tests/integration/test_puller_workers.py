"""Puller workers from two replicas: one account's runs one at a time, accounts side by side (R18)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crmsync.common.db.schema import Account, SyncRun
from crmsync.puller.adapters import runs
from crmsync.puller.bootstrap import crm_connectors, sync_runner, workers
from crmsync.puller.domain.lanes import Lane
from crmsync.puller.domain.runs import RunEnd
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


async def _runs_of(sessions, job_ids: list[str]) -> dict[str, SyncRun]:
    async with sessions() as session:
        rows = await session.scalars(select(SyncRun).where(SyncRun.job_id.in_(job_ids)))
        return {r.job_id: r for r in rows}


async def incremental_beside_full_syncs(
    sessions, settings, engine, make_crm_org, *, incremental_slots: int
) -> tuple[float, SyncRun, SyncRun]:
    """Slow full syncs of two accounts fill the full slots (two workers, `incremental_slots` of them
    for incrementals only) while a third account's incremental is due.

    Returns the incremental's due-to-started seconds, the incremental and the first full run.
    """
    accounts = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    async with sessions.begin() as session:
        session.add_all(Account(id=a, name=a) for a in accounts)
    big, bigger, small = accounts
    orgs = {
        big: make_crm_org(leads=6000, contacts=10, seed=61),
        bigger: make_crm_org(leads=6000, contacts=10, seed=62),
        small: make_crm_org(leads=30, contacts=30, seed=63),
    }
    for account, org in orgs.items():
        await connect(sessions, settings, account, org)
    config = puller_settings(
        settings,
        puller_batch_size=200,
        puller_poll_s=0.1,
        puller_concurrency=2,
        puller_incremental_slots=incremental_slots,
    )
    stop = asyncio.Event()
    pool = workers(
        engine=engine,
        sessions=sessions,
        runner=sync_runner(sessions=sessions, crm_factory=crm_connectors(config), settings=config, stop=stop),
        settings=config,
    )
    task = asyncio.create_task(pool.run(stop))

    async def until(job_ids: list[str], done, timeout: float = 120) -> dict[str, SyncRun]:
        deadline = time.monotonic() + timeout
        while not done(current := await _runs_of(sessions, job_ids)):
            assert time.monotonic() < deadline, {k: (v.status, v.error) for k, v in current.items()}
            await asyncio.sleep(0.1)
        return current

    try:
        first = await queue(sessions, small, "full")
        await until([first], lambda r: r[first].status == "succeeded")
        # Every CRM page of the two large accounts now takes a second and a half.
        for account in (big, bigger):
            orgs[account].faults("latency", rate=1.0, latency_ms=1500, path="query")
        fulls = [await queue(sessions, big, "full"), await queue(sessions, bigger, "full")]
        full_slots = 2 - incremental_slots
        await until(fulls, lambda r: sum(v.status == "running" for v in r.values()) == full_slots)
        incremental = await queue(sessions, small, "incremental")
        done = await until(
            [incremental, *fulls], lambda r: all(v.status == "succeeded" for v in r.values()), 240
        )
    finally:
        stop.set()
        await task
    run = done[incremental]
    waited = (run.started_at - run.requested_at).total_seconds()
    return waited, run, min((done[j] for j in fulls), key=lambda r: r.finished_at)


async def test_r26_an_incremental_starts_within_seconds_while_full_syncs_fill_the_full_slots(
    sessions, settings, engine, make_crm_org
) -> None:
    waited, run, first_full = await incremental_beside_full_syncs(
        sessions, settings, engine, make_crm_org, incremental_slots=1
    )
    assert run.kind == "incremental" and run.status == "succeeded"
    # Its lane was free: it started at the next poll, while a full sync was still pulling.
    assert waited < 5, waited
    assert run.finished_at < first_full.finished_at


async def test_r26_the_backlog_counts_per_lane_the_runs_that_could_start_now(sessions) -> None:
    accounts = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    async with sessions.begin() as session:
        session.add_all(Account(id=a, name=a) for a in accounts)
    full, incremental, later, running = accounts
    # The backlog counts the whole database: what other tests left open is counted before.
    async with sessions() as session:
        before = {b.lane: b.queued for b in await runs.backlog(session)}
    await queue(sessions, full, "full")
    await queue(sessions, incremental, "incremental")
    await queue(sessions, incremental, "full")  # behind the account's incremental: not startable yet
    await queue(sessions, later, "incremental")
    await queue(sessions, running, "incremental")
    async with sessions.begin() as session:
        retry = await runs.claim_next_run(session, account_id=later)
        assert retry is not None
        end = RunEnd("failed", error="503", next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
        await runs.finish_run(session, run_id=retry.id, end=end)
        assert await runs.claim_next_run(session, account_id=running) is not None
    async with sessions() as session:
        counted = {b.lane: b for b in await runs.backlog(session)}
        waiting = await runs.waiting_accounts(session, limit=100)
    added = tuple(counted[lane].queued - before.get(lane, 0) for lane in (Lane.FULL, Lane.INCREMENTAL))
    assert added == (1, 1)
    assert counted[Lane.FULL].oldest_s >= 0
    if not before.get(Lane.FULL):  # the oldest is this test's run, queued moments ago
        assert counted[Lane.FULL].oldest_s < 60
    mine = {(w.account_id, w.lane) for w in waiting if w.account_id in accounts}
    # The account waiting for its retry time holds back; a running one is still its worker's.
    assert mine == {(full, Lane.FULL), (incremental, Lane.INCREMENTAL), (running, Lane.INCREMENTAL)}
