"""The cost of thousands of accounts: scheduler ticks, incremental cycles, API calls, waits, memory.

`python -m bench.accounts_bench [--accounts 2000] [--scale 1.0] [--max-seconds 3600] [--ticks-only]`

Accounts have 500..20,000 records each (times `--scale`), all in one emulator
process (`crmsync-emulator --orgs N --org-records MIN:MAX`), each with an
automatic schedule (none saved), against the real PostgreSQL (a scratch
database) and Kafka (a topic prefix of its own).

1. *Scheduler ticks*: the scheduler's own composition root, in this process
   on a database of its own, times whole leader-loop ticks with 0 %, 10 %, 50 %
   and 100 % of the accounts due, at a quarter of `--accounts` and at all of
   them; beside them, in the same run, the path before (every account read at
   every tick; the messages sent one at a time); then the scheduler as a
   process on that database, its memory through a tick of every account and
   30 s of ticks after it.
2. *Cycles*: the scheduler and the puller run as processes. The scheduler's
   clock is this module's (`--serve-scheduler`: the service's bootstrap with
   a clock moved by a file), so that the bench can bring a tick of every
   account at once: it moves the clock on by 30 minutes, past one tick of each
   (whatever its phase: in production the ticks of one interval are spread
   over it). Each cycle ends when every account has an incremental run asked
   for after the move that succeeded. Cycles: 1 account alone (the baseline), then all
   accounts with no change, with 1 % of the records changed (through the
   emulator's control API), and with one large first full sync (1,000,000
   records times `--scale`) running meanwhile.

"due → started" is a run's `started_at` minus the moment its tick came; the
tick's jobs reach the puller within one scheduler tick (`CRMSYNC_SCHEDULER_TICK_S`).
API calls are the emulator's per-org count (`DailyApiRequests`; logins are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import httpx
import psutil
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.machine import machine
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Account, CrmConnection, SyncRun
from crmsync.common.db.session import create_engine
from crmsync.common.kafka.topics import DESIGN_TOPICS, delete_topics_with_prefixes, ensure_topics
from crmsync.common.settings import CommonSettings
from tests.support.databases import scratch_database
from tests.support.processes import (
    Process,
    service_env,
    start_emulator,
    start_process,
    start_service,
    stop_all,
    wait_for,
)

CLIENT, SECRET = "bench", "bench-secret"
SLOT = timedelta(minutes=30)  # automatic intervals here are 15 or 30 minutes: a 30-minute tick is both
DUE_SHARES = (0.0, 0.1, 0.5, 1.0)


class OutOfTime(Exception):
    """The run reached --max-seconds."""


@dataclass
class Bench:
    args: argparse.Namespace
    deadline: float

    def left(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise OutOfTime
        return remaining


def _sizes(scale: float) -> tuple[int, int, int]:
    low = max(2, round(500 * scale))
    return low, max(low, round(20_000 * scale)), max(2, round(1_000_000 * scale))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _slot_id(slot: datetime) -> str:
    return f"{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _account_rows(settings: CommonSettings, ids: list[str], clients: list[str], login_url: str):
    box = SecretBox(settings.secret_key.get_secret_value())
    sealed = box.seal({"client_secret": SECRET})  # one secret for every org of the bench
    accounts = [{"id": a, "name": a} for a in ids]
    connections = [
        {"account_id": a, "login_url": login_url, "instance_url": login_url, "client_id": c,
         "auth_method": "client_credentials", "secrets_encrypted": sealed, "status": "connected"}
        for a, c in zip(ids, clients, strict=True)
    ]  # fmt: skip
    return accounts, connections


async def _add_accounts(engine: AsyncEngine, settings, ids, clients, login_url: str) -> None:
    accounts, connections = _account_rows(settings, ids, clients, login_url)
    async with engine.begin() as conn:
        for start in range(0, len(ids), 1000):
            await conn.execute(insert(Account), accounts[start : start + 1000])
            await conn.execute(insert(CrmConnection), connections[start : start + 1000])


# -- 1. scheduler ticks ------------------------------------------------------------------


async def _seed_tick_history(engine: AsyncEngine, ids: list[str], records: list[int], slot: datetime) -> None:
    """Every account had its first full a day ago and an incremental since (moved by `_set_due`)."""
    day = slot - timedelta(days=1)
    runs = []
    for account, pulled in zip(ids, records, strict=True):
        for kind, at in (("full", day), ("incremental", slot - SLOT)):
            runs.append({"id": uuid.uuid4(), "account_id": account, "job_id": f"{account}:{kind}:{_slot_id(at)}",
                         "kind": kind, "reason": "first_sync" if kind == "full" else "schedule",
                         "status": "succeeded", "pulled": pulled, "requested_at": at, "started_at": at,
                         "finished_at": at + timedelta(seconds=1)})  # fmt: skip
    async with engine.begin() as conn:
        for start in range(0, len(runs), 2000):
            await conn.execute(insert(SyncRun), runs[start : start + 2000])


async def _set_due(engine: AsyncEngine, ids: list[str], share: float, now: datetime) -> None:
    """The first `share` of the accounts are due at `now` (their tick's incremental not yet asked
    for); the others are next due in an hour, as after their own tick."""
    due = sorted(ids[: round(len(ids) * share)])
    async with engine.begin() as conn:
        await conn.execute(text("delete from scheduled_jobs"))
        await conn.execute(text("delete from outbox"))
        await conn.execute(
            text("update sync_runs set requested_at = :before where kind = 'incremental' and account_id = any(:due)"),
            {"due": due, "before": now - timedelta(hours=2)},
        )  # fmt: skip
        await conn.execute(
            text(
                "update schedule_due set next_due_at = case when account_id = any(:due) "
                "then cast('-infinity' as timestamptz) else cast(:later as timestamptz) end"
            ),
            {"due": due, "later": now + timedelta(hours=1)},
        )


class TimedOutbox:
    """The scheduler's outbox relay, timed: what a tick spends publishing."""

    def __init__(self, relay) -> None:
        self.relay = relay
        self.seconds = 0.0

    async def publish_pending(self) -> int:
        started = time.perf_counter()
        try:
            return await self.relay.publish_pending()
        finally:
            self.seconds += time.perf_counter() - started


async def _tick(app, engine: AsyncEngine, ids: list[str], share: float, now: datetime):
    """Returns the median (tick ms, publish ms) of 3 ticks (9 at 0 %, one above 10 %) with `share` of the accounts
    due, and the jobs each emitted: the leader loop's own tick (the due accounts read and decided a
    batch at a time, each batch's jobs published through the outbox relay)."""
    ticks, publishes, jobs = [], [], 0
    timed = TimedOutbox(app.loop.outbox)
    app.loop.outbox = timed
    try:
        for _ in range(9 if share == 0 else 3 if share <= 0.1 else 1):  # the short ones: more, for the noise
            await _set_due(engine, ids, share, now)
            timed.seconds = 0.0
            started = time.perf_counter()
            assert await app.loop.tick()
            ticks.append((time.perf_counter() - started) * 1000)
            publishes.append(timed.seconds * 1000)
            async with engine.connect() as conn:
                jobs = await conn.scalar(text("select count(*) from scheduled_jobs"))
    finally:
        app.loop.outbox = timed.relay
    return median(ticks), median(publishes), jobs


async def _spread(engine: AsyncEngine, tick_s: float) -> str:
    """Where the accounts' next ticks fall after a tick of all: how many come due in one tick at most."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select sum(n), count(*), max(n), min(first), max(last) from ("
                    "select floor(extract(epoch from next_due_at) / :tick) as slot, count(*) as n, "
                    "min(next_due_at) as first, max(next_due_at) as last from schedule_due group by 1) s"
                ),
                {"tick": tick_s},
            )
        ).one()
    accounts, ticks, most, first, last = row
    return (
        f"next ticks after the 100 % tick: {accounts:,} accounts over {(last - first).total_seconds() / 60:.1f} "
        f"min, in {ticks:,} scheduler ticks of {tick_s:g} s, at most {most} due in one (ticks aligned to the "
        f"epoch, as before: every account of one interval in the same one)"
    )


async def _old_read_ms(app, engine: AsyncEngine, ids: list[str], now: datetime) -> float:
    """The read the scheduler made before it kept each account's next look: every account at every
    tick. Measured as the same query with every account due, read and decided, nothing written."""
    from crmsync.scheduler.handlers.emit_due_jobs import jobs_due

    await _set_due(engine, ids, 1.0, now)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        async with app.loop.jobs.begin() as store:  # writes nothing
            accounts = await store.due_accounts(now=now, limit=len(ids))
            assert len(accounts) == len(ids)
            for account in accounts:
                jobs_due(account, now)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


async def _one_at_a_time_ms(app, engine: AsyncEngine) -> tuple[float, int]:
    """The relay before it sent a batch at once: the same messages, each sent and waited for in turn."""
    from crmsync.common.kafka.producer import Publisher

    async with engine.begin() as conn:
        rows = (await conn.execute(text("select topic, key, value from outbox order by id"))).all()
    publisher = Publisher(app.producer, app.settings)
    started = time.perf_counter()
    for topic, key, value in rows:
        await publisher.publish_raw(topic, key=key, value=value)
    return (time.perf_counter() - started) * 1000, len(rows)


async def _scheduler_memory(bench: Bench, settings, url: str, logs: Path) -> str:
    """Runs the scheduler service on the tick database (every account due at its first tick, then
    its ticks at their phases) and returns its RSS: after the herd tick and at its peak."""
    clock = SchedulerClock()
    variables = service_env(
        settings.model_copy(update={"database_url": url}),
        CRMSYNC_LOG_LEVEL="WARNING",
        CRMSYNC_LOG_JSON="false",
    )
    command = [sys.executable, "-m", "bench.accounts_bench", "--serve-scheduler", str(clock.path)]
    process = start_process(command, env=variables, log=logs / "scheduler-ticks.log")
    memory = Memory({"scheduler": process})
    sampler = asyncio.create_task(memory.sample())
    try:
        await asyncio.sleep(min(30.0, bench.left()))
        return memory.show()
    finally:
        sampler.cancel()
        stop_all([process], timeout=30)
        clock.path.unlink(missing_ok=True)


async def ticks(bench: Bench, base: CommonSettings, records: list[int]) -> None:
    from crmsync.common.observability.logging import configure_logging
    from crmsync.scheduler.bootstrap import bootstrap
    from crmsync.scheduler.settings import Settings

    configure_logging(service="bench", level="WARNING", json=False)  # no line per emitted job
    slot = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    now = slot + timedelta(seconds=2)
    counts = sorted({max(1, bench.args.tick_accounts // 4), bench.args.tick_accounts})
    logs = Path(tempfile.mkdtemp(prefix="crmsync-accounts-ticks-"))
    async with scratch_database(base.database_url, label="ticks", prefix="crmsync_bench") as url:
        settings = Settings(
            database_url=url, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.crmsync.", log_json=False
        )
        await ensure_topics(settings, DESIGN_TOPICS)
        engine = create_engine(settings, pool_size=4)
        app = bootstrap(settings, engine=engine, clock=lambda: now)
        await app.producer.start()
        print(
            f"\nscheduler tick (median of 3 ticks, 9 at 0 %, one at 50 and 100 %; tick interval {settings.scheduler_tick_s:g} s, "
            f"{settings.scheduler_accounts_per_batch} accounts a batch)"
        )
        print(f"{'accounts':>9} {'due':>6} {'jobs':>6} {'tick ms':>9} {'read+emit':>9} {'publish ms':>10}")
        try:
            found: dict[tuple[int, float], float] = {}
            have = 0
            for count in counts:
                ids = [f"t{i:06d}" for i in range(have, count)]
                await _add_accounts(engine, settings, ids, ["x"] * len(ids), "http://127.0.0.1:9")
                await _seed_tick_history(engine, ids, records[have:count], slot)
                have = count
                every = [f"t{i:06d}" for i in range(count)]
                await app.loop.tick()  # warm-up: the lead, the first housekeeping pass
                for share in DUE_SHARES:
                    bench.left()
                    ms, publish, jobs = await _tick(app, engine, every, share, now)
                    found[(count, share)] = ms
                    print(
                        f"{count:>9,} {share:>6.0%} {jobs:>6,} {ms:>9.1f} {ms - publish:>9.1f} {publish:>10.1f}",
                        flush=True,
                    )
                print(f"{count:>9,} {await _spread(engine, settings.scheduler_tick_s)}", flush=True)
                sequential, messages = await _one_at_a_time_ms(app, engine)
                old_read = await _old_read_ms(app, engine, every, now)
                print(
                    f"{count:>9,} baseline, the path before: every account read at every tick {old_read:.1f} ms "
                    f"(a tick with 0 % due now: {found[(count, 0.0)]:.1f} ms); the 100 % tick's {messages:,} "
                    f"messages sent one at a time {sequential:.1f} ms (in the tick now: "
                    f"{found[(count, 1.0)]:.1f} ms, all included)",
                    flush=True,
                )
            small, big = counts[0], counts[-1]
            print(
                f"ratio at {big:,} accounts, 100 % due / 10 % due: "
                f"{found[(big, 1.0)] / found[(big, 0.1)]:.2f}x (due accounts 10x)"
            )
            print(
                f"ratio 0 % due, {big:,} / {small:,} accounts: {found[(big, 0.0)] / found[(small, 0.0)]:.2f}x "
                f"(accounts {big / small:.0f}x; due 0 at both)"
            )
            await _set_due(engine, every, 1.0, now)
            await app.leader.release()
            print(
                f"scheduler process at {big:,} accounts, all due at its first tick, then 30 s of ticks: "
                f"RSS {await _scheduler_memory(bench, settings, url, logs)}",
                flush=True,
            )
        finally:
            await app.leader.release()
            await app.producer.stop()
            await engine.dispose()
            await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])


# -- 2. cycles ---------------------------------------------------------------------------


class SchedulerClock:
    """The bench's scheduler process reads its offset from real time in this file at every tick."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="crmsync-bench-clock-")
        os.close(handle)
        self.path = Path(name)
        self.offset = 0.0
        self._write()

    def _write(self) -> None:
        partial = self.path.with_suffix(".new")
        partial.write_text(repr(self.offset))
        os.replace(partial, self.path)

    def next_tick(self) -> tuple[datetime, float]:
        """Moves the clock on by 30 minutes, past one tick of every account (whatever its phase, its
        interval being 15 or 30 minutes); returns the moment it moved to and the real moment it came."""
        now = time.time()
        self.offset += SLOT.total_seconds()
        self._write()
        return datetime.fromtimestamp(now + self.offset, UTC), now


def serve_scheduler(clock_file: str) -> None:
    """The scheduler service with its clock moved by `clock_file` (run as a process by the bench)."""
    from crmsync.common.clock import utc_now
    from crmsync.common.service import run_app
    from crmsync.scheduler.bootstrap import bootstrap

    path = Path(clock_file)

    def clock() -> datetime:
        return utc_now() + timedelta(seconds=float(path.read_text()))

    raise SystemExit(run_app("scheduler", lambda: bootstrap(clock=clock)))


class Memory:
    """Peak and last RSS of each service process, sampled twice a second."""

    def __init__(self, processes: dict[str, Process]) -> None:
        self.handles = {name: psutil.Process(p.pid) for name, p in processes.items()}
        self.peak = dict.fromkeys(processes, 0)
        self.last = dict.fromkeys(processes, 0)

    async def sample(self) -> None:
        while True:
            for name, handle in self.handles.items():
                try:
                    self.last[name] = handle.memory_info().rss
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], self.last[name])
            await asyncio.sleep(0.5)

    def show(self) -> str:
        return ", ".join(
            f"{n} {self.last[n] / 2**20:.0f} MiB (peak {self.peak[n] / 2**20:.0f})" for n in self.handles
        )


async def _api_used(http: httpx.AsyncClient) -> dict[str, int]:
    return {o["client_id"]: o["api_used"] for o in (await http.get("/__emulator/orgs")).json()}


async def _runs(engine: AsyncEngine, where: str, **params) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select account_id, kind, status, pulled, updated, requested_at, started_at, finished_at "
                f"from sync_runs where {where}"
            ),
            params,
        )
        return [dict(r) for r in rows.mappings()]


async def _wait_runs(bench: Bench, engine: AsyncEngine, where: str, expected: int, what: str, **params):
    """Waits until `expected` accounts have a succeeded run of those `where` selects; returns them."""
    state: dict[str, int] = {}

    async def done() -> bool:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(f"select status, count(distinct account_id) from sync_runs where {where} group by 1"),
                params,
            )
            state.clear()
            state.update({s: n for s, n in rows.all()})
        return state.get("succeeded", 0) >= expected

    try:
        await wait_for(done, timeout=bench.left(), what=lambda: f"{what} ({state})", interval=0.25)
    except AssertionError as error:
        raise OutOfTime(str(error)) from error
    return await _runs(engine, where, **params)


async def cycle(
    bench: Bench, env: dict, name: str, expected: int, *, accounts: set[str] | None = None
) -> dict:
    """Brings the next tick; returns what the incremental runs of it cost once `expected` succeeded."""
    engine, http, clock = env["engine"], env["http"], env["clock"]
    before = await _api_used(http)
    moved_to, due = clock.next_tick()
    offset = clock.offset
    runs = await _wait_runs(
        bench, engine, "kind = 'incremental' and requested_at >= :moved and account_id <> 'a-large'", expected,
        f"{name}: {expected} incrementals", moved=moved_to,
    )  # fmt: skip
    after = await _api_used(http)
    # Each account's first run asked for after the move: its tick's (a later tick of its phase may follow).
    first: dict[str, dict] = {}
    for r in sorted(runs, key=lambda r: r["requested_at"]):
        if r["status"] == "succeeded" and (accounts is None or r["account_id"] in accounts):
            first.setdefault(r["account_id"], r)
    runs = list(first.values())
    waits = [r["started_at"].timestamp() - due for r in runs]
    # The scheduler stamps requested_at with its own clock, `offset` ahead of the puller's.
    queued = [r["started_at"].timestamp() - (r["requested_at"].timestamp() - offset) for r in runs]
    took = [(r["finished_at"] - r["started_at"]).total_seconds() for r in runs]
    calls = [after[c] - before.get(c, 0) for c in env["clients_of"](runs)]
    end = max(r["finished_at"].timestamp() for r in runs)
    result = {
        "name": name, "accounts": len(runs), "cycle_s": end - due, "updated": sum(r["updated"] for r in runs),
        "pulled": sum(r["pulled"] for r in runs),
        "wait_p50": _pct(waits, 0.5), "wait_p99": _pct(waits, 0.99), "wait_max": max(waits),
        "queue_p50": _pct(queued, 0.5), "queue_p99": _pct(queued, 0.99),
        "run_p50": _pct(took, 0.5), "run_p99": _pct(took, 0.99),
        "calls_mean": sum(calls) / len(calls), "calls_max": max(calls), "end": end, "due": due, "runs": runs,
    }  # fmt: skip
    print(
        f"{name:<34} {result['accounts']:>8,} {result['cycle_s']:>8.1f} {result['run_p50']:>7.2f} "
        f"{result['run_p99']:>7.2f} {result['wait_p50']:>8.1f} {result['wait_p99']:>8.1f} {result['wait_max']:>8.1f} "
        f"{result['queue_p50']:>8.1f} {result['queue_p99']:>8.1f} "
        f"{result['calls_mean']:>7.1f} {result['calls_max']:>6} {result['pulled']:>7,} {result['updated']:>8,} "
        f"{os.getloadavg()[0]:>5.1f}",
        flush=True,
    )
    return result


async def change_one_percent(http: httpx.AsyncClient, orgs: list[dict]) -> int:
    """Edits 1 % of each org's Leads and Contacts (at least one of each) as a CRM user would."""
    gate = asyncio.Semaphore(8)
    stamp = uuid.uuid4().hex[:6]

    async def edit(org: dict, obj: str) -> int:
        async with gate:
            limit = max(1, org["counts"][obj] // 100)
            base = f"/__emulator/orgs/{org['org_id']}/sobjects/{obj}"
            records = (await http.get(base, params={"limit": str(limit)})).json()
            for record in records:
                answer = await http.patch(f"{base}/{record['Id']}", json={"fields": {"Title": f"t {stamp}"}})
                answer.raise_for_status()
            return len(records)

    return sum(await asyncio.gather(*(edit(o, obj) for o in orgs for obj in ("Lead", "Contact"))))


HEADER = (
    f"{'cycle':<34} {'accounts':>8} {'cycle s':>8} {'run p50':>7} {'run p99':>7} {'wait p50':>8} "
    f"{'wait p99':>8} {'wait max':>8} {'queue50':>8} {'queue99':>8} {'calls':>7} {'max':>6} {'pulled':>7} "
    f"{'updated':>8} {'load':>5}"
)


LEGEND = (
    "cycle s: from the tick to the last run's end; run: started → finished of each run (s); "
    "wait: the tick → started (s), queue: the job emitted → started (s); calls: CRM API calls per "
    "account in the cycle (mean, max); pulled, updated: records the runs read, and changed in the store; "
    "load: 1-minute load average at the cycle's end"
)


async def _first_fulls(bench: Bench, env: dict, ids: list[str], clients: list[str], base_url: str) -> None:
    started = time.time()
    await _add_accounts(env["engine"], env["settings"], ids, clients, base_url)
    env["clients"].update(zip(ids, clients, strict=True))
    runs = await _wait_runs(
        bench, env["engine"], "kind = 'full' and account_id = any(:ids)", len(ids),
        f"first full syncs of {len(ids)} accounts", ids=ids,
    )  # fmt: skip
    took = time.time() - started
    pulled = sum(r["pulled"] for r in runs)
    print(
        f"first full sync of {len(ids):,} accounts: {pulled:,} records in {took:.1f} s "
        f"({pulled / took:,.0f} records/s), from the connections' insert to the last run's end",
        flush=True,
    )


async def _large_running(bench: Bench, env: dict, large: int, base_url: str) -> None:
    """Adds an account of `large` records and returns once its first full sync is under way."""
    client = f"{CLIENT}-large"
    made = await env["http"].post(
        "/__emulator/orgs",
        json={"leads": large // 2, "contacts": large - large // 2, "seed": 99, "client_id": client,
              "client_secret": SECRET, "api_limit": 10**9},
    )  # fmt: skip
    made.raise_for_status()
    await _add_accounts(env["engine"], env["settings"], ["a-large"], [client], base_url)
    env["clients"]["a-large"] = client

    async def pulling() -> bool:
        runs = await _runs(env["engine"], "account_id = 'a-large' and kind = 'full'")
        return bool(runs) and runs[0]["pulled"] > 0

    try:
        await wait_for(pulling, timeout=bench.left(), what="the large full sync to pull", interval=0.25)
    except AssertionError as error:
        raise OutOfTime(str(error)) from error


async def cycles(bench: Bench, base: CommonSettings) -> None:
    n = bench.args.accounts
    low, high, large = _sizes(bench.args.scale)
    mid = (low + high) // 2
    logs = Path(tempfile.mkdtemp(prefix="crmsync-accounts-bench-"))
    async with scratch_database(base.database_url, label="accounts", prefix="crmsync_bench") as url:
        settings = base.model_copy(
            update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.crmsync.", "database_url": url}
        )
        await ensure_topics(settings, DESIGN_TOPICS)
        engine = create_engine(settings, pool_size=4)
        clock = SchedulerClock()
        variables = service_env(settings, CRMSYNC_LOG_LEVEL="WARNING", CRMSYNC_LOG_JSON="false")
        processes: dict[str, Process] = {}
        sampler = None
        try:
            processes["emulator"] = start_emulator(
                leads=mid // 2, contacts=mid - mid // 2, seed=SEED, client_id=CLIENT, client_secret=SECRET,
                extra_args=(*EMULATOR_LOG, "--orgs", str(n), "--org-records", f"{low}:{high}", "--api-limit", str(10**9)),
                timeout=min(300.0, bench.left()), log=logs / "emulator.log",
            )  # fmt: skip
            command = [sys.executable, "-m", "bench.accounts_bench", "--serve-scheduler", str(clock.path)]
            processes["scheduler"] = start_process(command, env=variables, log=logs / "scheduler.log")
            processes["puller"] = start_service("crmsync.puller", env=variables, log=logs / "puller.log")
            memory = Memory(processes)
            sampler = asyncio.create_task(memory.sample())
            base_url = processes["emulator"].base_url  # type: ignore[attr-defined]
            async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
                env = {"engine": engine, "http": http, "clock": clock, "settings": settings, "clients": {}}
                env["clients_of"] = lambda runs: [env["clients"][r["account_id"]] for r in runs]
                print(f"\ncycles: puller and scheduler as processes, logs in {logs}")
                print(LEGEND)
                await _first_fulls(bench, env, ["a-base"], [CLIENT], base_url)
                print(HEADER, flush=True)
                alone = await cycle(bench, env, "1 account alone (baseline)", 1)
                ids = [f"a{i:05d}" for i in range(1, n + 1)]
                await _first_fulls(bench, env, ids, [f"{CLIENT}-{i}" for i in range(1, n + 1)], base_url)
                print(HEADER, flush=True)
                await cycle(bench, env, f"{n + 1:,} accounts, no change", n + 1)
                orgs = [o for o in (await http.get("/__emulator/orgs")).json() if o["client_id"] != CLIENT]
                changed = await change_one_percent(http, orgs)
                await cycle(bench, env, f"{n + 1:,} accounts, 1 % ({changed:,}) changed", n + 1)
                calm = await cycle(bench, env, f"{n + 1:,} accounts, no change again", n + 1)
                await _large_running(bench, env, large, base_url)
                fair = await cycle(bench, env, f"{n + 1:,} accounts, a {large:,} full running", n + 1)
                big = (await _runs(engine, "account_id = 'a-large' and kind = 'full'"))[0]
                _summary(alone, calm, fair, big, large)
                print(f"RSS: {memory.show()}")
        finally:
            if sampler is not None:
                sampler.cancel()
            stop_all([p for name, p in processes.items() if name != "emulator"], timeout=30)
            if "emulator" in processes:
                processes["emulator"].stop(timeout=20)
            await engine.dispose()
            await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])
            clock.path.unlink(missing_ok=True)


def _summary(alone: dict, calm: dict, fair: dict, big: dict, large: int) -> None:
    finished = big["finished_at"]
    state = (
        f"finished {finished.timestamp() - fair['due']:.1f} s after the tick"
        if finished is not None
        else "still running"
    )
    print(
        f"the {large:,}-record full sync: {big['pulled']:,} pulled by the cycle's end, {state}; "
        f"the cycle ended {fair['end'] - fair['due']:.1f} s after the tick"
    )
    print(
        f"cycle time, all accounts / 1 account: {calm['cycle_s'] / alone['cycle_s']:.1f}x; "
        f"per account: {calm['cycle_s'] / calm['accounts'] * 1000:.0f} ms "
        f"against {alone['cycle_s'] * 1000:.0f} ms alone (of which the wait for the scheduler's tick "
        f"{alone['wait_p50'] * 1000:.0f} ms); one run p50 {calm['run_p50'] * 1000:.0f} ms against "
        f"{alone['run_p50'] * 1000:.0f} ms alone"
    )
    if finished is not None:
        # Incremental runs started per second while the large full held a worker, and after it.
        during = [r for r in fair["runs"] if r["started_at"] < finished]
        later = [r for r in fair["runs"] if r["started_at"] >= finished]
        first = min(r["started_at"] for r in fair["runs"])
        if during and later:
            print(
                f"incremental runs started per second while the large full ran: "
                f"{len(during) / (finished - first).total_seconds():.1f} ({len(during)} runs), after it: "
                f"{len(later) / (fair['end'] - finished.timestamp()):.1f} ({len(later)} runs)"
            )
    print(
        f"with the large full running, against the no-change cycle before it: cycle "
        f"{fair['cycle_s'] / calm['cycle_s']:.2f}x, "
        f"due → started p99 {fair['wait_p99'] / calm['wait_p99']:.2f}x "
        f"({fair['wait_p99']:.1f} s against {calm['wait_p99']:.1f} s)"
    )


SEED = 7
EMULATOR_LOG = (
    "--log-level",
    os.environ.get("ACCOUNTS_BENCH_EMULATOR_LOG", "warning"),
)  # info: every request


def _records(count: int, scale: float) -> list[int]:
    """The sizes the emulator draws for `--orgs` (the same generator and seed)."""
    low, high, _ = _sizes(scale)
    draw = random.Random(SEED)
    return [draw.randint(low, high) for _ in range(count)]


async def amain(args: argparse.Namespace) -> int:
    bench = Bench(args, deadline=time.monotonic() + args.max_seconds)
    low, high, large = _sizes(args.scale)
    print(f"machine: {machine(with_load=True)}")
    print(
        f"accounts: {args.accounts:,} of {low:,}..{high:,} records (scale {args.scale:g}), automatic "
        f"schedules, one emulator process; the large full sync: {large:,} records; "
        f"cap {args.max_seconds:g} s"
    )
    started = time.monotonic()
    base = CommonSettings(log_json=False)
    records = _records(args.tick_accounts, args.scale)
    try:
        await ticks(bench, base, records)
        if not args.ticks_only:
            await cycles(bench, base)
    except OutOfTime as error:
        print(f"stopped at the cap of {args.max_seconds:g} s: {error}", flush=True)
        return 1
    finally:
        print(
            f"took {time.monotonic() - started:.0f} s; load average at end: "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
        )
    return 0


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-scheduler":
        serve_scheduler(sys.argv[2])
    parser = argparse.ArgumentParser(prog="bench.accounts_bench", description=__doc__)
    parser.add_argument("--accounts", type=int, default=2000, help="accounts beside the baseline one")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies every size (500..20,000 records; the large 1,000,000)",
    )
    parser.add_argument(
        "--tick-accounts",
        type=int,
        help="accounts of the tick measurement (default: --accounts); and a quarter",
    )
    parser.add_argument("--max-seconds", type=float, default=3600, help="wall-clock cap of the whole run")
    parser.add_argument("--ticks-only", action="store_true", help="the scheduler ticks (part 1) alone")
    args = parser.parse_args()
    args.tick_accounts = args.tick_accounts or args.accounts
    raise SystemExit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
