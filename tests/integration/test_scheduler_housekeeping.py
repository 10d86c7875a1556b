"""The scheduler's housekeeping against the real Postgres: expired history goes, nothing else does.

Also what the scheduler reads of that history (its last runs). Housekeeping deletes
across every account, and the scheduler reads every due account, so these tests run in a
database of their own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.settings import CommonSettings
from crmsync.puller.adapters.runs import CLAIM_NEXT_RUN, WAITING_ACCOUNTS
from crmsync.scheduler.adapters.history import PostgresHistory
from crmsync.scheduler.adapters.repository import PostgresJobStore
from crmsync.scheduler.adapters.transactions import InTransaction
from crmsync.scheduler.handlers.purge_history import Housekeeping, Retention
from tests.support.databases import asyncpg_dsn, scratch_database

pytestmark = pytest.mark.integration

RETENTION = Retention(
    sync_runs=timedelta(days=30),
    push_log=timedelta(days=30),
    scheduled_jobs=timedelta(days=30),
    outbox=timedelta(hours=24),
)
NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)


@pytest_asyncio.fixture
async def scratch(
    base_settings: CommonSettings,
) -> AsyncIterator[tuple[asyncpg.Connection, async_sessionmaker]]:
    async with scratch_database(base_settings.database_url, label="housekeeping") as url:
        engine = create_engine(base_settings.model_copy(update={"database_url": url}), pool_size=2)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            yield conn, create_sessionmaker(engine)
        finally:
            await conn.close()
            await engine.dispose()


async def _account(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute("insert into accounts (id, name) values ($1, $1)", account_id)
    await conn.execute(
        "insert into crm_connections (account_id, login_url, auth_method, client_id, secrets_encrypted) "
        "values ($1, 'http://crm.invalid', 'client_credentials', 'c', '\\x00')",
        account_id,
    )
    await conn.execute(
        "insert into sync_schedules (account_id, mode, interval_minutes) values ($1, 'interval', 15)",
        account_id,
    )


async def _run(
    conn: asyncpg.Connection,
    account_id: str,
    kind: str,
    status: str,
    *,
    finished_at: datetime | None,
    next_attempt_at: datetime | None = None,
) -> uuid.UUID:
    at = (finished_at or NOW) - timedelta(minutes=5)
    return await conn.fetchval(
        "insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at, started_at, "
        "finished_at, next_attempt_at, created_at, pulled) "
        "values (gen_random_uuid(), $1, $2, $3, 'schedule', $4, $5, $5, $6, $7, $5, 10) returning id",
        account_id,
        uuid.uuid4().hex,
        kind,
        status,
        at,
        finished_at,
        next_attempt_at,
    )


async def _sightings(conn: asyncpg.Connection, run_id: uuid.UUID, count: int) -> None:
    for _ in range(count):
        await conn.execute(
            "insert into sync_run_sightings (run_id, contact_id) values ($1, $2)", run_id, uuid.uuid4()
        )


async def _push_log(conn: asyncpg.Connection, account_id: str, created_at: datetime) -> None:
    await conn.execute(
        "insert into push_log (account_id, event_id, operation, status, created_at, updated_at) "
        "values ($1, $2, 'update', 'succeeded', $3, $3)",
        account_id,
        uuid.uuid4().hex,
        created_at,
    )


async def _scheduled_job(conn: asyncpg.Connection, account_id: str, slot_at: datetime) -> None:
    await conn.execute(
        "insert into scheduled_jobs (account_id, job_id, topic, kind, reason, slot_at) "
        "values ($1, $2, 'crmsync.sync-jobs', 'incremental', 'schedule', $3)",
        account_id,
        uuid.uuid4().hex,
        slot_at,
    )


async def _outbox(conn: asyncpg.Connection, account_id: str, *, created_at: datetime, published_at) -> int:
    return await conn.fetchval(
        "insert into outbox (account_id, topic, key, value, created_at, published_at) "
        "values ($1, 't', 'k', 'v', $2, $3) returning id",
        account_id,
        created_at,
        published_at,
    )


def _housekeeping(sessions: async_sessionmaker[AsyncSession], **overrides) -> Housekeeping:
    options = {"interval_s": 3600.0, "batch_rows": 2, "batches_per_tick": 3, **overrides}
    history = InTransaction(UnitOfWork(sessions), PostgresHistory)
    return Housekeeping(history=history, retention=RETENTION, **options)


async def _schedules(sessions: async_sessionmaker[AsyncSession]) -> list:
    """What the scheduler decides from, for every account (all due: none was looked at yet)."""
    async with UnitOfWork(sessions).read() as session:
        due = await PostgresJobStore(session).due_accounts(now=NOW, limit=10_000)
    # The generation moves when an emitted job's record is deleted: the account is looked at again.
    return [dataclasses.replace(account, generation=0) for account in due]


async def test_r15_r16_housekeeping_deletes_history_past_its_retention_and_keeps_what_the_schedule_and_sweep_use(
    scratch,
) -> None:
    conn, sessions = scratch
    await _account(conn, "a")
    await _account(conn, "b")
    # Runs: finished before the cutoff go, unless they are the account's latest success of their kind.
    superseded_full = await _run(conn, "a", "full", "succeeded", finished_at=NOW - timedelta(days=60))
    latest_full = await _run(conn, "a", "full", "succeeded", finished_at=NOW - timedelta(days=50))
    superseded_incremental = await _run(conn, "a", "incremental", "succeeded", finished_at=OLD)
    latest_incremental = await _run(
        conn, "a", "incremental", "succeeded", finished_at=NOW - timedelta(days=1)
    )
    failed_for_good = await _run(conn, "a", "incremental", "failed", finished_at=OLD)
    failed_to_retry = await _run(
        conn, "a", "incremental", "failed", finished_at=OLD, next_attempt_at=NOW + timedelta(minutes=5)
    )
    running_full = await _run(conn, "a", "full", "running", finished_at=None)
    only_full_of_b = await _run(conn, "b", "full", "succeeded", finished_at=NOW - timedelta(days=90))
    # Sightings: only an open run's stay (R16).
    await _sightings(conn, superseded_full, 3)
    await _sightings(conn, running_full, 2)
    await _sightings(conn, uuid.uuid4(), 2)  # a run that no longer exists
    for _ in range(3):
        await _scheduled_job(conn, "a", OLD)
    await _scheduled_job(conn, "a", NOW - timedelta(minutes=15))
    published_old = [
        await _outbox(conn, "a", created_at=NOW - timedelta(days=2), published_at=NOW - timedelta(days=2))
        for _ in range(4)
    ]
    unpublished = await _outbox(conn, "a", created_at=NOW - timedelta(days=2), published_at=None)
    published_recent = await _outbox(
        conn, "a", created_at=NOW - timedelta(hours=1), published_at=NOW - timedelta(hours=1)
    )
    for _ in range(5):
        await _push_log(conn, "a", OLD)
    for _ in range(2):
        await _push_log(conn, "b", NOW - timedelta(days=1))
    # API calls per day: a month and more back goes, the allowance's days stay.
    for days_ago in (40, 36, 1, 0):
        await conn.execute(
            "insert into crm_api_usage (account_id, day, calls) values ('a', $1, 7)",
            (NOW - timedelta(days=days_ago)).date(),
        )
    schedules_before = await _schedules(sessions)

    housekeeping = _housekeeping(sessions)
    ticks, deleted = 0, None
    while deleted is None:
        ticks += 1
        assert ticks < 50, "the pass never finished"
        deleted = await housekeeping.tick(NOW)

    assert deleted == {
        "outbox": 4,
        "sync_runs": 3,
        "sync_run_sightings": 5,
        "scheduled_jobs": 3,
        "push_log": 5,
        "crm_api_usage": 2,
    }
    assert ticks > 1, "3 batches of 2 rows per tick cannot delete 20 rows in one tick"
    runs = {row[0] for row in await conn.fetch("select id from sync_runs")}
    assert runs == {latest_full, latest_incremental, failed_to_retry, running_full, only_full_of_b}
    assert not runs & {superseded_full, superseded_incremental, failed_for_good}
    sightings = await conn.fetch("select run_id from sync_run_sightings")
    assert [row[0] for row in sightings] == [running_full, running_full]
    slots = await conn.fetch("select slot_at from scheduled_jobs")
    assert [row[0] for row in slots] == [NOW - timedelta(minutes=15)]
    outbox = {row[0] for row in await conn.fetch("select id from outbox")}
    assert outbox == {unpublished, published_recent}
    assert not outbox & set(published_old)
    push_log = await conn.fetch("select account_id, created_at from push_log")
    assert sorted(row[0] for row in push_log) == ["b", "b"]
    usage_days = sorted(row[0] for row in await conn.fetch("select day from crm_api_usage"))
    assert usage_days == [(NOW - timedelta(days=1)).date(), NOW.date()]
    # What the scheduler decides from is the same before and after (R15).
    assert await _schedules(sessions) == schedules_before


async def test_housekeeping_starts_a_new_pass_only_when_its_interval_has_passed(scratch) -> None:
    conn, sessions = scratch
    await _account(conn, "a")
    clock = [1000.0]
    housekeeping = _housekeeping(
        sessions, interval_s=60.0, batch_rows=100, batches_per_tick=10, monotonic=lambda: clock[0]
    )
    await _push_log(conn, "a", OLD)
    assert await housekeeping.tick(NOW) == {"push_log": 1}

    await _push_log(conn, "a", OLD)
    clock[0] += 59
    assert await housekeeping.tick(NOW) is None
    assert await conn.fetchval("select count(*) from push_log") == 1

    clock[0] += 1
    assert await housekeeping.tick(NOW) == {"push_log": 1}
    assert await conn.fetchval("select count(*) from push_log") == 0


async def test_housekeeping_a_new_leader_starts_its_own_pass_after_the_lead_was_lost(scratch) -> None:
    conn, sessions = scratch
    await _account(conn, "a")
    housekeeping = _housekeeping(sessions, batch_rows=1, batches_per_tick=1)
    for _ in range(3):
        await _push_log(conn, "a", OLD)
    assert await housekeeping.tick(NOW) is None  # one outbox probe; the pass goes on next tick
    housekeeping.abandon()
    deleted = None
    for _ in range(20):
        deleted = await housekeeping.tick(NOW)
        if deleted is not None:
            break
    assert deleted == {"push_log": 3}


async def test_the_dispatchers_poll_reads_open_runs_through_their_own_index(scratch) -> None:
    # A failed run waiting for its retry is open too; the old partial index left it
    # out, so the poll read every run the table had ever held.
    conn, _ = scratch
    for account in ("a", "b", "c"):
        await _account(conn, account)
    await conn.execute(
        "insert into sync_runs (id, account_id, job_id, kind, reason, status, finished_at) "
        "select gen_random_uuid(), (array['a', 'b', 'c'])[1 + n % 3], 'done-' || n, 'incremental', 'schedule', 'succeeded', now() "
        "from generate_series(1, 20000) as n"
    )
    await _run(conn, "a", "incremental", "failed", finished_at=NOW, next_attempt_at=NOW)
    await _run(conn, "b", "full", "queued", finished_at=None)
    await conn.execute("analyze sync_runs")

    poll = await conn.fetch("explain " + WAITING_ACCOUNTS.text.replace(":limit", "10"))
    claim = await conn.fetch(
        "explain "
        + CLAIM_NEXT_RUN.text.replace(":account_id", "'a'").replace(":lanes", "array['full', 'incremental']")
    )

    for plan in (poll, claim):
        lines = "\n".join(row[0] for row in plan)
        assert "ix_sync_runs_open" in lines, lines
        assert "Seq Scan on sync_runs" not in lines, lines


async def test_r15_a_sync_is_in_progress_exactly_while_a_run_of_its_kind_will_still_start_or_resume(
    scratch,
) -> None:
    # The scheduler holds back the next full while a full is open, and the next scheduled
    # incremental while any sync is open; a run that failed for good must hold back nothing.
    conn, sessions = scratch
    later = NOW + timedelta(hours=1)
    runs = {
        "queued-full": ("full", "queued", None, None),
        "running-full": ("full", "running", None, None),
        "paused-full": ("full", "paused", NOW, later),
        "failed-full-to-retry": ("full", "failed", NOW, later),
        "failed-full-for-good": ("full", "failed", NOW, None),
        "succeeded-full": ("full", "succeeded", NOW, None),
        "queued-incremental": ("incremental", "queued", None, None),
    }
    for account_id, (kind, status, finished_at, next_attempt_at) in runs.items():
        await _account(conn, account_id)
        await _run(conn, account_id, kind, status, finished_at=finished_at, next_attempt_at=next_attempt_at)
    read = {
        s.account_id: (s.last_runs.full_in_progress, s.last_runs.sync_in_progress)
        for s in await _schedules(sessions)
    }
    assert read == {  # (a full in progress, a sync in progress)
        "queued-full": (True, True),
        "running-full": (True, True),
        "paused-full": (True, True),
        "failed-full-to-retry": (True, True),
        "failed-full-for-good": (False, False),
        "succeeded-full": (False, False),
        "queued-incremental": (False, True),
    }
