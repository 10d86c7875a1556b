"""History at scale: the puller's dispatcher poll over a growing sync_runs, and the scheduler's housekeeping.

    .venv/bin/python -m bench.history_bench [--accounts 1000] [--runs 10000,100000,1000000]
                                            [--push-log 1000000]

In a scratch database beside CRMSYNC_DATABASE_URL's:

1. *Dispatcher poll.* `sync_runs` grows to each size in `--runs` (finished
   runs spread over `--accounts` accounts, plus one open run for every tenth
   account, half of them failed and due for their retry). At each size the
   puller's `accounts_with_work` query runs through the index it has now
   (`ix_sync_runs_open`) and, as the baseline, through the partial index it had
   before migration 0004, which left out failed runs waiting for a retry.
2. *Housekeeping.* `--push-log` push log entries, half past the retention,
   and the runs above, most of them past it. The scheduler's housekeeping
   deletes the expired ones in its bounded batches; the baseline deletes the
   same push log rows with one plain `delete … where created_at < cutoff`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.machine import machine
from crmsync.common.db.schema import OPEN_SYNC_RUN
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.settings import CommonSettings
from crmsync.puller.adapters.runs import WAITING_ACCOUNTS
from crmsync.scheduler.adapters.history import PostgresHistory
from crmsync.scheduler.adapters.transactions import InTransaction
from crmsync.scheduler.handlers.purge_history import Housekeeping, Retention
from crmsync.scheduler.settings import Settings as SchedulerSettings
from tests.support.databases import asyncpg_dsn, scratch_database

RETENTION = Retention(
    sync_runs=timedelta(days=30),
    push_log=timedelta(days=30),
    scheduled_jobs=timedelta(days=30),
    outbox=timedelta(hours=24),
)
DEFAULTS = SchedulerSettings.model_fields  # the scheduler's own batch settings
_OLD_INDEX = (
    "create index ix_sync_runs_unfinished on sync_runs (status, next_attempt_at) "
    "where status in ('queued', 'running', 'paused')"
)
_NEW_INDEX = f"create index ix_sync_runs_open on sync_runs (account_id, requested_at, created_at) where {OPEN_SYNC_RUN}"


async def _poll_ms(conn: asyncpg.Connection, calls: int = 40) -> tuple[float, float]:
    """Returns the median and slowest time (ms) of the dispatcher's poll."""
    sql = WAITING_ACCOUNTS.text.replace(":limit", "$1")
    statement = await conn.prepare(sql)
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await statement.fetch(8)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), max(times)


async def _grow_runs(
    conn: asyncpg.Connection, *, accounts: int, start: int, stop: int, now: datetime
) -> None:
    """Adds finished runs start..stop-1, spread over the accounts and over the last 90 days."""
    await conn.execute(
        """
        insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at, started_at,
                               finished_at, created_at, pulled)
        select gen_random_uuid(), 'acct-' || (n % $3), 'done-' || n,
               case when n % 97 = 0 then 'full' else 'incremental' end, 'schedule',
               case when n % 50 = 0 then 'failed' else 'succeeded' end,
               at, at, at + interval '1 minute', at, 100
        from (select n, $4::timestamptz - ((n::bigint * 7919) % 129600) * interval '1 minute' as at
              from generate_series($1::int, $2::int - 1) as n) s
        """,
        start,
        stop,
        accounts,
        now,
    )
    await conn.execute("analyze sync_runs")


async def _poll_section(conn: asyncpg.Connection, *, accounts: int, sizes: list[int], now: datetime) -> None:
    print("\ndispatcher poll (waiting_accounts, limit 8 per lane), 40 calls each")
    print(
        f"{'finished runs':>14} {'open runs':>10} {'ix_sync_runs_open ms':>21} {'old partial index ms':>21}"
    )
    open_runs = 0
    for account in range(0, accounts, 10):
        failed = account % 20 == 0
        await conn.execute(
            "insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at, "
            "next_attempt_at, finished_at) values (gen_random_uuid(), $1, 'open', 'incremental', "
            "'schedule', $2, $3, $4, $5)",
            f"acct-{account}",
            "failed" if failed else "queued",
            now - timedelta(minutes=10),
            now - timedelta(minutes=1) if failed else None,
            now - timedelta(minutes=5) if failed else None,
        )
        open_runs += 1
    grown = 0
    for size in sizes:
        await _grow_runs(conn, accounts=accounts, start=grown, stop=size, now=now)
        grown = size
        new_median, new_max = await _poll_ms(conn)
        await conn.execute("drop index ix_sync_runs_open")
        await conn.execute(_OLD_INDEX)
        await conn.execute("analyze sync_runs")
        old_median, old_max = await _poll_ms(conn)
        await conn.execute("drop index ix_sync_runs_unfinished")
        await conn.execute(_NEW_INDEX)
        await conn.execute("analyze sync_runs")
        print(
            f"{size:>14,} {open_runs:>10,} {new_median:>10.2f} (max {new_max:>6.1f}) "
            f"{old_median:>10.2f} (max {old_max:>6.1f})"
        )


async def _add_push_log(conn: asyncpg.Connection, *, accounts: int, rows: int, now: datetime) -> None:
    """Adds push log rows in the order they would have been written: the older half first."""
    await conn.execute(
        """
        insert into push_log (account_id, event_id, operation, status, sent_fields, created_at, updated_at)
        select 'acct-' || (n % $2), 'event-' || n || '-' || $4, 'update', 'succeeded',
               '{"job_title": "Engineer"}'::jsonb, at, at
        from (select n, $3::timestamptz - interval '60 days' + n * (interval '60 days' / $1) as at
              from generate_series(0, $1 - 1) as n) s
        """,
        rows,
        accounts,
        now,
        str(time.time_ns()),
    )
    await conn.execute("analyze push_log")


async def _pass(url: str, now: datetime) -> tuple[float, int, float, dict[str, int], Housekeeping]:
    """Runs one housekeeping pass to its end, tick after tick; returns seconds, ticks, slowest tick, deletions."""
    engine = create_engine(CommonSettings(database_url=url, log_json=False), pool_size=2)
    housekeeping = Housekeeping(
        history=InTransaction(UnitOfWork(create_sessionmaker(engine)), PostgresHistory),
        retention=RETENTION,
        interval_s=3600,
        batch_rows=DEFAULTS["housekeeping_batch_rows"].default,
        batches_per_tick=DEFAULTS["housekeeping_batches_per_tick"].default,
    )
    ticks, slowest, deleted = 0, 0.0, None
    began = time.perf_counter()
    while deleted is None:
        tick_began = time.perf_counter()
        deleted = await housekeeping.tick(now)
        slowest = max(slowest, time.perf_counter() - tick_began)
        ticks += 1
    elapsed = time.perf_counter() - began
    await engine.dispose()
    return elapsed, ticks, slowest, deleted, housekeeping


def _report(label: str, elapsed: float, ticks: int, slowest: float, deleted: dict[str, int]) -> None:
    rows = sum(deleted.values())
    print(
        f"{label:<28} {elapsed:7.2f} s {rows / elapsed:9,.0f} rows/s  {ticks:4} ticks, "
        f"slowest tick {slowest * 1000:5.0f} ms  deleted {deleted}"
    )


async def _housekeeping_section(
    url: str, conn: asyncpg.Connection, *, accounts: int, push_log: int, now: datetime
) -> None:
    await _add_push_log(conn, accounts=accounts, rows=push_log, now=now)
    runs_before = await conn.fetchval("select count(*) from sync_runs")
    elapsed, ticks, slowest, deleted, housekeeping = await _pass(url, now)
    print(
        f"\nhousekeeping (retention 30 days; {housekeeping.batches_per_tick} batches of "
        f"{housekeeping.batch_rows:,} rows per tick), first pass over {runs_before:,} runs and "
        f"{push_log:,} push log entries, half of them expired"
    )
    _report("runs and push log", elapsed, ticks, slowest, deleted)
    left = await conn.fetchval(
        "select count(*) from push_log where created_at < $1", now - RETENTION.push_log
    )
    assert left == 0, f"{left} expired push log rows left"

    # The push log alone, through housekeeping and (baseline) through one plain statement.
    await conn.execute("truncate push_log")
    await _add_push_log(conn, accounts=accounts, rows=push_log, now=now)
    elapsed, ticks, slowest, deleted, _ = await _pass(url, now)
    _report("push log", elapsed, ticks, slowest, deleted)
    await conn.execute("truncate push_log")
    await _add_push_log(conn, accounts=accounts, rows=push_log, now=now)
    began = time.perf_counter()
    status = await conn.execute("delete from push_log where created_at < $1", now - RETENTION.push_log)
    baseline = time.perf_counter() - began
    baseline_rows = int(status.split()[-1])
    print(
        f"{'baseline: one delete':<28} {baseline:7.2f} s {baseline_rows / baseline:9,.0f} rows/s  "
        f"(the same push log rows, one statement, one transaction)"
    )
    print(
        f"push log: housekeeping / one delete: {(sum(deleted.values()) / elapsed) / (baseline_rows / baseline):.2f}x"
    )


async def bench(*, accounts: int, sizes: list[int], push_log: int) -> None:
    async with scratch_database(
        CommonSettings().database_url, label="history", prefix="crmsync_bench"
    ) as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            print(f"machine: {machine(with_load=True)}")
            print(f"accounts: {accounts:,}")
            now = datetime.now(UTC)
            await conn.execute(
                "insert into accounts (id, name) select 'acct-' || n, 'acct-' || n from generate_series(0, $1 - 1) n",
                accounts,
            )
            await _poll_section(conn, accounts=accounts, sizes=sizes, now=now)
            await _housekeeping_section(url, conn, accounts=accounts, push_log=push_log, now=now)
            after_median, after_max = await _poll_ms(conn)
            remaining = await conn.fetchval("select count(*) from sync_runs")
            print(
                f"dispatcher poll after housekeeping ({remaining:,} runs left): {after_median:.2f} ms (max {after_max:.1f})"
            )
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_bench", description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--runs", default="10000,100000,1000000")
    parser.add_argument("--push-log", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(
        bench(accounts=args.accounts, sizes=[int(s) for s in args.runs.split(",")], push_log=args.push_log)
    )


if __name__ == "__main__":
    main()
