"""The scheduler reads only the accounts due, against the real Postgres (R14, R15, R18).

Each account's next look (schedule_due) is written by the scheduler once a tick's
jobs are recorded, and moved to 'at once' by the database when what decides the
account's jobs changes, whoever changes it. The scheduler reads every due account
of its database, so these tests run in a database of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.domain.schedule import (
    Schedule,
    ScheduleMode,
    automatic_interval_minutes,
    job_id_for,
    next_tick_after,
    tick_at_or_before,
)
from crmsync.common.settings import CommonSettings
from crmsync.scheduler.adapters.repository import _DUE_ACCOUNTS_SQL, PostgresJobStore
from crmsync.scheduler.adapters.transactions import InTransaction
from crmsync.scheduler.handlers.emit_due_jobs import emit_due_jobs, next_look
from tests.support.databases import asyncpg_dsn, scratch_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 10, 7, 30, tzinfo=UTC)
RECHECK = timedelta(minutes=1)
FIFTEEN = Schedule(ScheduleMode.INTERVAL, interval_minutes=15)


@pytest_asyncio.fixture
async def scratch(base_settings: CommonSettings) -> AsyncIterator[tuple[asyncpg.Connection, InTransaction]]:
    async with scratch_database(base_settings.database_url, label="due") as url:
        engine = create_engine(base_settings.model_copy(update={"database_url": url}), pool_size=2)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            yield conn, InTransaction(UnitOfWork(create_sessionmaker(engine)), PostgresJobStore)
        finally:
            await conn.close()
            await engine.dispose()


async def _accounts(
    conn: asyncpg.Connection, count: int, *, prefix: str = "a", schedule: bool = True
) -> list[str]:
    """Connected accounts with a full sync a day before NOW and, if `schedule`, every 15 minutes."""
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    await conn.execute("insert into accounts (id, name) select i, i from unnest($1::text[]) as i", ids)
    await conn.execute(
        "insert into crm_connections (account_id, login_url, auth_method, client_id, secrets_encrypted) "
        "select i, 'http://crm.invalid', 'client_credentials', 'c', '\\x00' from unnest($1::text[]) as i",
        ids,
    )
    if schedule:
        await conn.execute(
            "insert into sync_schedules (account_id, mode, interval_minutes) "
            "select i, 'interval', 15 from unnest($1::text[]) as i",
            ids,
        )
    await conn.execute(
        "insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at, started_at, "
        "finished_at, pulled) select gen_random_uuid(), i, i || ':seed', 'full', 'first_sync', 'succeeded', "
        "$2, $2, $2, 100 from unnest($1::text[]) as i",
        ids,
        NOW - timedelta(days=1),
    )
    return ids


async def _emit(jobs: InTransaction, at: datetime, *, limit: int = 500):
    return await emit_due_jobs(jobs=jobs, now=at, limit=limit, open_run_recheck=RECHECK)


async def _next_due(conn: asyncpg.Connection, account_id: str) -> datetime:
    return await conn.fetchval("select next_due_at from schedule_due where account_id = $1", account_id)


async def test_r14_a_tick_reads_only_the_accounts_due_and_each_is_due_again_at_its_own_next_tick(
    scratch,
) -> None:
    conn, jobs = scratch
    ids = await _accounts(conn, 60)
    first = await _emit(jobs, NOW, limit=25)
    assert first.accounts == 25  # a batch at a time, soonest due first
    assert (await _emit(jobs, NOW, limit=25)).accounts == 25
    assert (await _emit(jobs, NOW, limit=25)).accounts == 10
    assert await _emit(jobs, NOW + timedelta(seconds=1)) == type(first)([], 0)  # nothing due: nothing read
    nexts = {a: await _next_due(conn, a) for a in ids}
    assert nexts == {a: next_tick_after(schedule=FIFTEEN, moment=NOW, account_id=a) for a in ids}
    # Spread over the interval by each account's phase, not one instant for all.
    assert max(nexts.values()) - min(nexts.values()) > timedelta(minutes=10)
    soonest = min(nexts, key=nexts.__getitem__)
    again = await _emit(jobs, nexts[soonest])
    assert again.accounts == 1
    assert {j.job_id for j in again.jobs} == {
        job_id_for(account_id=soonest, kind=kind, slot=nexts[soonest])
        for kind in ("incremental", "scores_optouts")
    }


async def test_r14_the_due_accounts_are_read_through_their_index_not_by_reading_every_account(
    scratch,
) -> None:
    conn, jobs = scratch
    await _accounts(conn, 3000)
    await conn.execute("update schedule_due set next_due_at = $1", NOW + timedelta(hours=1))
    await conn.execute("update schedule_due set next_due_at = $1 where account_id < 'a00010'", NOW)
    await conn.execute("analyze")
    sql = _DUE_ACCOUNTS_SQL.text.replace(":now", "'2026-11-28T10:07:30Z'").replace(":limit", "500")
    plan = "\n".join(row[0] for row in await conn.fetch("explain " + sql))
    assert "ix_schedule_due_next_due_at" in plan, plan
    assert "Seq Scan on schedule_due" not in plan and "Seq Scan on crm_connections" not in plan, plan
    assert (await _emit(jobs, NOW)).accounts == 10


@pytest.mark.parametrize(
    "change",
    [
        "update sync_schedules set interval_minutes = 30 where account_id = $1",
        "update sync_schedules set mode = 'manual' where account_id = $1",
        "delete from sync_schedules where account_id = $1",
        "update sync_schedules set full_sync_requested_at = now() where account_id = $1",
        "update crm_connections set api_limit = 1000 where account_id = $1",
        "update crm_connections set api_allocation_calls = 500 where account_id = $1",
        "delete from scheduled_jobs where account_id = $1",
    ],
    ids=["interval", "manual", "schedule-deleted", "new-field", "api-limit", "allocation", "jobs-forgotten"],
)
async def test_r14_r15_what_decides_an_account_s_jobs_changing_makes_it_due_at_once(scratch, change) -> None:
    conn, jobs = scratch
    await _accounts(conn, 3)
    await _emit(jobs, NOW)
    await conn.execute(change, "a00001")
    later = NOW + timedelta(seconds=5)
    assert (await _emit(jobs, later)).accounts == 1
    # Unrelated writes to the same rows leave it where it was.
    await conn.execute("update crm_connections set api_usage = 7, status = 'connected', updated_at = now()")
    await conn.execute("update sync_schedules set updated_at = now()")
    assert (await _emit(jobs, later)).accounts == 0


async def test_r15_a_new_connection_is_due_at_once_whatever_the_scheduler_s_clock_and_gets_its_first_sync(
    scratch,
) -> None:
    conn, jobs = scratch
    (account,) = await _accounts(conn, 1, schedule=False)
    await conn.execute("delete from sync_runs")
    emitted = await _emit(jobs, datetime(2001, 1, 1, tzinfo=UTC))  # a clock far behind the database's
    assert [(j.kind, j.reason) for j in emitted.jobs] == [
        ("full", "first_sync"),
        ("scores_optouts", "scores_optouts"),
    ]
    automatic = Schedule(ScheduleMode.AUTOMATIC)
    assert await _next_due(conn, account) == next_tick_after(
        schedule=automatic, moment=datetime(2001, 1, 1, tzinfo=UTC), account_id=account
    )


async def test_r18_a_change_made_while_the_scheduler_decides_is_not_overwritten_by_its_next_tick(
    scratch,
) -> None:
    conn, jobs = scratch
    (account,) = await _accounts(conn, 1)
    async with jobs.begin() as store:
        (read,) = await store.due_accounts(now=NOW, limit=10)
        # The mapping-api saves another schedule and commits before the scheduler writes.
        await conn.execute("update sync_schedules set interval_minutes = 60 where account_id = $1", account)
        await store.set_next_looks([next_look(read, now=NOW, open_run_recheck=RECHECK)])
    assert await conn.fetchval(
        "select next_due_at = '-infinity' from schedule_due where account_id = $1", account
    )
    (again,) = (await _emit(jobs, NOW)).jobs[:1]
    assert again.slot_at == tick_at_or_before(
        schedule=Schedule(ScheduleMode.INTERVAL, interval_minutes=60), moment=NOW, account_id=account
    )


async def test_r15_an_open_run_has_its_account_looked_at_again_soon_and_the_tick_s_incremental_follows_it(
    scratch,
) -> None:
    conn, jobs = scratch
    (account,) = await _accounts(conn, 1)
    slot = tick_at_or_before(schedule=FIFTEEN, moment=NOW, account_id=account)
    await conn.execute(
        "insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at) "
        "values (gen_random_uuid(), $1, 'open', 'incremental', 'sync_now', 'running', $2)",
        account,
        slot - timedelta(minutes=1),
    )
    held = await _emit(jobs, NOW)
    assert [j.kind for j in held.jobs] == ["scores_optouts"]
    assert await _next_due(conn, account) == min(
        NOW + RECHECK, next_tick_after(schedule=FIFTEEN, moment=NOW, account_id=account)
    )
    await conn.execute("update sync_runs set status = 'succeeded', finished_at = now() where job_id = 'open'")
    followed = await _emit(jobs, NOW + RECHECK)
    assert [j.job_id for j in followed.jobs] == [
        job_id_for(account_id=account, kind="incremental", slot=slot)
    ]


async def test_r14_an_automatic_schedule_plans_with_the_account_s_api_allocation(scratch) -> None:
    conn, jobs = scratch
    ids = await _accounts(conn, 2, schedule=False)
    await conn.execute(
        "update crm_connections set api_limit = 100000, api_allocation_calls = 2000 where account_id = $1",
        ids[0],
    )
    await conn.execute("update crm_connections set api_limit = 100000 where account_id = $1", ids[1])
    await _emit(jobs, NOW)
    gaps = {}
    for account in ids:
        due = await _next_due(conn, account)
        gaps[account] = due - tick_at_or_before(
            schedule=Schedule(ScheduleMode.AUTOMATIC),
            moment=due - timedelta(microseconds=1),
            record_count=100,
            daily_api_limit=100_000,
            allocated_calls=2000 if account == ids[0] else None,
            account_id=account,
        )
    allocated = automatic_interval_minutes(record_count=100, daily_api_limit=100_000, allocated_calls=2000)
    assert allocated > 15
    assert gaps == {ids[0]: timedelta(minutes=allocated), ids[1]: timedelta(minutes=15)}
