"""Pusher throughput and produce-to-CRM-write latency, beside the broker's own latency.

`python -m bench.pusher_bench [--events 100000] [--steady-events 100000] [--rate 1000] [--leads 20000]
[--crm salesforce|dynamics] [--profile FILE]`

An emulator process of the CRM (`--crm`, Salesforce by default) is started
with `--leads` Leads, and the same records are stored as pulled contacts of a
fresh account connected to it. The pusher runs as its own
process (`python -m crmsync.pusher`). Each event changes one Lead's Title;
its `occurred_at` is the moment it was produced, and its push log entry is
stamped when the CRM answered, so their difference is the produce-to-write
latency.

Two runs: full speed (all events produced at once; throughput = events /
time from the first produce to the last CRM answer) and steady (`--rate`
events a second). The baseline beside each is the broker alone: the same
number of messages of the same size produced the same way and consumed by a
bare consumer in this process, produce-to-consume latency. The full-speed run
also counts the CRM API calls the emulator served and the records written
through them: records per API call.

`--profile FILE` runs the pusher under a CPU-time profiler (`bench.profiled`)
switched on for the full-speed run only; its statistics go to FILE and the
functions taking the most CPU are printed. The profiler slows the pusher, so
such a run says where the time goes, not how much there is.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import pstats
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, select

from bench.cpu import DEFAULT_GROUPS as CPU_GROUPS
from bench.cpu import CpuMeter
from bench.crms import PROVIDERS, BenchCrm, start_crm
from bench.machine import machine
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Account, Contact, CrmConnection, PushLog
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.consumer import consumer_group
from crmsync.common.kafka.producer import create_producer
from crmsync.common.kafka.topics import (
    CONTACT_CHANGES,
    DESIGN_TOPICS,
    delete_topics_with_prefixes,
    ensure_topics,
)
from crmsync.common.messages import ContactChanged
from crmsync.common.settings import CommonSettings
from tests.support.databases import scratch_database
from tests.support.processes import Process, service_env, start_process, start_service, stop_all, wait_for

BASELINE = "bench-baseline"
# PUSHER_BENCH_LOG=/path keeps the pusher's debug log (per-batch timings) there.
LOG_PATH = os.environ.get("PUSHER_BENCH_LOG")


PRODUCE_TICK_S = 0.005


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _start_pusher(settings: CommonSettings, group_id: str, n: int, profile: Path | None = None) -> Process:
    env = service_env(
        settings,
        CRMSYNC_LOG_LEVEL="DEBUG" if LOG_PATH else "WARNING",
        CRMSYNC_PUSHER_GROUP_ID=group_id,
    )
    log = Path(f"{LOG_PATH}.{n}" if n else LOG_PATH) if LOG_PATH else None
    if profile is None:
        return start_service("crmsync.pusher", env=env, log=log)
    # Profiled only between SIGUSR1 and SIGUSR2 (bench.profiled), around the measured run.
    command = [sys.executable, "-m", "bench.profiled", str(profile), "crmsync.pusher"]
    return start_process(command, env=env, log=log)


def print_profile(path: Path, *, top: int = 15) -> None:
    """Prints the functions of a cProfile file taking the most time of their own, then cumulative."""
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(path), stream=out).strip_dirs().sort_stats(order).print_stats(top)
        table = out.getvalue()
        print(f"\npusher profile, top {top} by {order} ({path}):")
        print(table[table.index("   ncalls") :].rstrip() if "   ncalls" in table else table.rstrip())


async def _wait_for_members(settings: CommonSettings, group_id: str, members: int) -> None:
    """Waits until the pushers' consumer group is stable with all `members`, so no
    rebalance falls inside a measured run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()

    async def joined() -> bool:
        (response,) = await admin.describe_consumer_groups([group_id])
        _error, _group, state, _type, _protocol, found, *_ = response.groups[0]
        return state == "Stable" and len(found) == members

    try:
        await wait_for(joined, timeout=120, what=f"the {members} pushers to join one group", interval=0.5)
    finally:
        await admin.close()


async def seed_contacts(
    settings: CommonSettings, sessions, crm: BenchCrm, account_id: str, leads: int
) -> list[str]:
    """Stores the CRM's first `leads` Leads as pulled contacts of a new account connected to it;
    returns their ids."""
    records = await crm.leads(leads)
    box = SecretBox(settings.secret_key.get_secret_value())
    stamp = datetime.now(UTC) - timedelta(days=1)
    async with sessions.begin() as session:
        session.add(Account(id=account_id, name="bench"))
        await session.flush()
        session.add(CrmConnection(**crm.connection_row(account_id, box)))
        rows = [
            {
                "account_id": account_id,
                "crm_object": "Lead",
                "external_id": r.id,
                "email": r.email,
                "fields": {"job_title": r.title},
                "field_meta": {},  # as pulled: the row's modstamp implies the origin and time
                "crm_modstamp": stamp,
            }
            for r in records
        ]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Contact), rows[start : start + 5000])
    return [r.id for r in records]


def _event_bytes(account_id: str, lead_id: str, n: int) -> bytes:
    """A contact-change event as the JSON on the wire, made without the model: the bench's producer
    shares the machine's two cores with the pusher, so it should cost little."""
    return orjson.dumps(
        {
            "event_id": f"b{n}-{uuid.uuid4().hex[:8]}",
            "account_id": account_id,
            "occurred_at": datetime.now(UTC),
            "source": "program",
            "contact": {"external_id": lead_id},
            "changes": {"job_title": f"title {n}"},
        }
    )


async def _produce(settings, messages: Iterable[tuple[bytes, Callable[[], bytes]]], *, rate, topic) -> float:
    """Sends (key, value-maker) pairs, all at once or at `rate` a second; returns the time taken.

    The messages are made as they are sent and no future is kept, so the producer holds
    nothing per message: a growing heap made its garbage collector stop it for 0.1-0.4 s
    at a time, and the messages waiting in its buffer meanwhile showed up as pusher latency.
    """
    producer = create_producer(settings)
    await producer.start()
    failures: list[BaseException] = []

    def check(future: asyncio.Future) -> None:
        if future.exception() is not None:
            failures.append(future.exception())

    gc.collect()
    gc.freeze()
    started = time.monotonic()
    try:
        for i, (key, make) in enumerate(messages):
            if rate is not None:
                # Wakes every few milliseconds and sends what is due: a steady rate
                # without a timer per message (the producers are other services, whose
                # CPU would otherwise be taken from the pusher on this machine).
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(max(delay, PRODUCE_TICK_S))
            (await producer.send(topic, value=make(), key=key)).add_done_callback(check)
        await producer.flush()
    finally:
        await producer.stop()
    if failures:
        raise RuntimeError(f"{len(failures)} messages were not produced: {failures[0]!r}")
    return time.monotonic() - started


async def _baseline(settings: CommonSettings, count: int, rate: float | None) -> dict[str, float]:
    """Returns the broker's own throughput and produce-to-consume latency for `count` messages."""
    topic = settings.topic(BASELINE)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"baseline-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    for tp in consumer.assignment():
        await consumer.position(tp)  # resolves "latest" now, before anything is produced
    latencies: list[float] = []
    first_sent = time.time()
    payload = _event_bytes("x", "00Q000000000000AAA", 0)

    def make() -> bytes:
        return orjson.dumps({"t": time.time(), "p": payload.decode()})

    async def consume() -> float:
        last = 0.0
        while len(latencies) < count:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.time()
            for records in batch.values():
                for r in records:
                    latencies.append(now - orjson.loads(r.value)["t"])
                    last = now
        return last

    task = asyncio.create_task(consume())
    await _produce(settings, ((str(i % 1000).encode(), make) for i in range(count)), rate=rate, topic=topic)
    last = await asyncio.wait_for(task, 600)
    await consumer.stop()
    return {
        "throughput": count / (last - first_sent),
        "p50_ms": _pct(latencies, 0.5) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
    }


async def _pusher_run(
    settings, sessions, account_id: str, lead_ids: list[str], count: int, rate: float | None
):
    offset = int(time.time() * 1000)

    def messages() -> Iterator[tuple[bytes, Callable[[], bytes]]]:
        for i in range(count):
            lead_id = lead_ids[i % len(lead_ids)]
            yield (
                f"{account_id}:ext:{lead_id}".encode(),
                lambda lead_id=lead_id, n=offset + i: _event_bytes(account_id, lead_id, n),
            )

    started = datetime.now(UTC)
    done = 0

    async def pushed() -> bool:
        nonlocal done
        async with sessions() as session:
            done = await session.scalar(
                select(func.count())
                .select_from(PushLog)
                .where(
                    PushLog.account_id == account_id,
                    PushLog.status != "pending",
                    PushLog.created_at >= started,
                )
            )
        return done >= count

    await _produce(settings, messages(), rate=rate, topic=settings.topic(CONTACT_CHANGES))
    await wait_for(
        pushed, timeout=1800, what=lambda: f"{count} events to be pushed ({done} were)", interval=0.5
    )
    async with sessions() as session:
        rows = (
            await session.execute(
                select(PushLog.occurred_at, PushLog.updated_at, PushLog.status).where(
                    PushLog.account_id == account_id, PushLog.created_at >= started
                )
            )
        ).all()
    latencies = [(u - o).total_seconds() for o, u, _ in rows]
    statuses = {s for _, _, s in rows}
    first = min(o for o, _, _ in rows)
    last = max(u for _, u, _ in rows)
    return {
        "throughput": len(rows) / (last - first).total_seconds(),
        "p50_ms": _pct(latencies, 0.5) * 1000,
        "p99_ms": _pct(latencies, 0.99) * 1000,
        "statuses": ",".join(sorted(statuses)),
    }


async def amain(args: argparse.Namespace) -> None:
    ContactChanged.model_validate_json(_event_bytes("x", "00Q000000000000AAA", 0))  # still the contract
    base_settings = CommonSettings(log_json=False)
    # A database of its own: services running against the shared one (a scheduler and
    # puller syncing every connected account) would otherwise join in.
    async with scratch_database(
        base_settings.database_url, label="pusher", prefix="crmsync_bench"
    ) as database_url:
        settings = base_settings.model_copy(
            update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.crmsync.", "database_url": database_url}
        )
        await _bench(args, settings)


class PushRig:
    """One account's contacts seeded from the CRM and the pushers running on them: measured runs."""

    def __init__(self, settings: CommonSettings, sessions, crm: BenchCrm, *, pushers: int = 1) -> None:
        self.settings, self.sessions, self.crm, self.count = settings, sessions, crm, pushers
        self.profile: Path | None = None
        self.group_id = f"bench-{uuid.uuid4().hex[:6]}"
        self.account_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.pushers: list[Process] = []
        self.lead_ids: list[str] = []
        self.meter: CpuMeter | None = None

    async def start(self, leads: int, *, profile: Path | None = None) -> None:
        """Seeds `leads` contacts, starts the pushers and waits until they take events."""
        self.lead_ids = await seed_contacts(self.settings, self.sessions, self.crm, self.account_id, leads)
        self.profile = profile
        self.pushers = [_start_pusher(self.settings, self.group_id, n, profile) for n in range(self.count)]
        await _wait_for_members(self.settings, consumer_group(self.settings, self.group_id), self.count)
        await self.run(200, None)  # warm-up: group join, token, describe
        named = {p.pid: "pusher" for p in self.pushers} | {self.crm.process.pid: "emulator"}
        self.meter = CpuMeter(named)

    async def run(self, count: int, rate: float | None) -> dict:
        return await _pusher_run(self.settings, self.sessions, self.account_id, self.lead_ids, count, rate)

    async def measured(
        self, count: int, rate: float | None, *, profiled: bool = False
    ) -> tuple[dict, dict[str, float]]:
        """Returns the run's figures (with the CRM's API calls and records written) and CPU per group;
        `profiled`: the (first) pusher's profile of this run is written to the profile file."""
        assert self.meter is not None, "start() first"
        profiled = profiled and self.profile is not None
        await self.crm.forget_writes()
        before, calls = self.meter.read(), await self.crm.api_calls()
        if profiled:
            os.kill(self.pushers[0].pid, signal.SIGUSR1)
        result = await self.run(count, rate)
        if profiled:
            os.kill(self.pushers[0].pid, signal.SIGUSR2)
        spent = self.meter.spent_since(before)
        result["api_calls"] = await self.crm.api_calls() - calls
        result["records_written"] = await self.crm.records_written()
        return result, spent

    def stop(self) -> None:
        stop_all(self.pushers, timeout=60)


HEADER = (
    f"{'run':<34} {'events':>8} {'events/s':>10} {'p50 ms':>9} {'p99 ms':>9}   "
    f"CPU ms per event: {'  '.join(f'{g:>8}' for g in CPU_GROUPS)}"
)


def show(name: str, n: int, r: dict, spent: dict[str, float] | None = None) -> None:
    """Prints one run's line: throughput, latency, and CPU per event of each group when measured."""
    line = f"{name:<34} {n:>8} {r['throughput']:>10.0f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f}"
    if spent is not None:
        per_event = "  ".join(f"{spent[g] * 1000 / n:>8.3f}" for g in CPU_GROUPS)
        line += f"   {'':>18}{per_event}  push log: {r['statuses']}"
    if "api_calls" in r:
        per_call = r["records_written"] / max(r["api_calls"], 1)
        line += (
            f"; {r['api_calls']} API calls, {r['records_written']} records written, {per_call:.1f} per call"
        )
    print(line, flush=True)


async def _bench(args: argparse.Namespace, settings: CommonSettings) -> None:
    await ensure_topics(settings, (*DESIGN_TOPICS, BASELINE))
    engine = create_engine(settings, pool_size=4)
    sessions = create_sessionmaker(engine)
    crm = start_crm(args.crm, leads=args.leads, contacts=0, seed=5)
    rig = PushRig(settings, sessions, crm, pushers=args.pushers)
    try:
        await rig.start(args.leads, profile=args.profile)
        print(f"machine: {machine()}")
        print(
            f"setup: {args.leads} Leads in the {args.crm} emulator and as contacts; Kafka, PostgreSQL, "
            f"emulator and pusher on this machine; {args.pushers} pusher process(es) in one consumer group"
            + ("; the pusher profiled (bench.profiled)" if args.profile else "")
        )
        print("load average at start: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        print(HEADER, flush=True)
        if args.events:
            show("pusher, full speed", args.events, *await rig.measured(args.events, None, profiled=True))
            show("broker only, full speed", args.events, await _baseline(settings, args.events, None))
        if args.steady_events:
            show(
                f"pusher, steady {args.rate:g}/s",
                args.steady_events,
                *await rig.measured(args.steady_events, args.rate),
            )
            show(
                f"broker only, steady {args.rate:g}/s",
                args.steady_events,
                await _baseline(settings, args.steady_events, args.rate),
            )
        print("load average at end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        rig.stop()
        crm.stop()
        await engine.dispose()
        await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])
    if args.profile and args.profile.exists():
        print_profile(args.profile)  # of the full-speed run


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.pusher_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--steady-events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--pushers", type=int, default=1, help="pusher processes in the consumer group")
    parser.add_argument("--crm", choices=PROVIDERS, default="salesforce", help="the emulated CRM pushed to")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the pusher's full-speed run (CPU time), its statistics to this file",
    )
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
