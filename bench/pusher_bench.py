"""Pusher throughput and produce-to-CRM-write latency, beside the broker's own latency.

`python -m bench.pusher_bench [--events 100000] [--steady-events 100000] [--rate 1000] [--leads 20000]`

An emulator process is started with `--leads` Leads, and the same records are
stored as pulled contacts of a fresh account. The pusher runs as its own
process (`python -m crmsync.pusher`). Each event changes one Lead's Title;
its `occurred_at` is the moment it was produced, and its push log entry is
stamped when the CRM answered, so their difference is the produce-to-write
latency.

Two runs: full speed (all events produced at once; throughput = events /
time from the first produce to the last CRM answer) and steady (`--rate`
events a second). The baseline beside each is the broker alone: the same
number of messages of the same size produced the same way and consumed by a
bare consumer in this process, produce-to-consume latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, select

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
from tests.support.processes import Process, service_env, start_emulator, start_service, stop_all, wait_for

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
BASELINE = "bench-baseline"
# PUSHER_BENCH_LOG=/path keeps the pusher's debug log (per-batch timings) there.
LOG_PATH = os.environ.get("PUSHER_BENCH_LOG")


PRODUCE_TICK_S = 0.005

# Where the machine's CPU goes while the pusher runs: "producer" is this process
# (it produces the events and polls the push log).
CPU_GROUPS = ("pusher", "emulator", "postgres", "kafka", "producer", "all")


class CpuMeter:
    """CPU seconds (user + system) spent by each process group between two readings."""

    def __init__(self, *, pushers: list[int], emulator: int) -> None:
        self._groups = {pid: "pusher" for pid in pushers} | {emulator: "emulator", os.getpid(): "producer"}

    def _group(self, process: psutil.Process) -> str | None:
        if process.pid in self._groups:
            return self._groups[process.pid]
        try:
            if process.name() == "postgres":
                return "postgres"
            if process.name() == "java" and any("kafka" in part for part in process.cmdline()):
                return "kafka"
        except psutil.Error:
            return None
        return None

    def read(self) -> dict[int, tuple[str, float]]:
        """Returns pid -> (group, CPU seconds so far) for every process of a group."""
        found: dict[int, tuple[str, float]] = {}
        for process in psutil.process_iter():
            group = self._group(process)
            if group is None:
                continue
            try:
                found[process.pid] = (group, sum(process.cpu_times()[:2]))
            except psutil.Error:
                continue
        return found

    def spent_since(self, before: dict[int, tuple[str, float]]) -> dict[str, float]:
        """Returns CPU seconds per group since `before` (a backend that came and went is missed)."""
        spent = dict.fromkeys(CPU_GROUPS, 0.0)
        for pid, (group, seconds) in self.read().items():
            spent[group] += seconds - before.get(pid, (group, 0.0))[1]
        spent["all"] = sum(v for k, v in spent.items() if k != "all")
        return spent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _start_pusher(settings: CommonSettings, group_id: str, n: int) -> Process:
    env = service_env(
        settings,
        CRMSYNC_LOG_LEVEL="DEBUG" if LOG_PATH else "WARNING",
        CRMSYNC_PUSHER_GROUP_ID=group_id,
    )
    log = Path(f"{LOG_PATH}.{n}" if n else LOG_PATH) if LOG_PATH else None
    return start_service("crmsync.pusher", env=env, log=log)


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


async def _seed(settings: CommonSettings, sessions, base: str, account_id: str, leads: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        org = (await http.get("/__emulator/orgs")).json()[0]
        records = (
            await http.get(f"/__emulator/orgs/{org['org_id']}/sobjects/Lead", params={"limit": str(leads)})
        ).json()
    box = SecretBox(settings.secret_key.get_secret_value())
    stamp = datetime.now(UTC) - timedelta(days=1)
    async with sessions.begin() as session:
        session.add(Account(id=account_id, name="bench"))
        await session.flush()
        session.add(
            CrmConnection(
                account_id=account_id,
                login_url=org["login_url"],
                auth_method="client_credentials",
                client_id=CLIENT_ID,
                secrets_encrypted=box.seal({"client_secret": CLIENT_SECRET}),
            )
        )
        rows = [
            {
                "account_id": account_id,
                "crm_object": "Lead",
                "external_id": r["Id"],
                "email": r.get("Email"),
                "fields": {"job_title": r.get("Title")},
                "field_meta": {},  # as pulled: the row's modstamp implies the origin and time
                "crm_modstamp": stamp,
            }
            for r in records
        ]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Contact), rows[start : start + 5000])
    return [r["Id"] for r in records]


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


async def _bench(args: argparse.Namespace, settings: CommonSettings) -> None:
    await ensure_topics(settings, (*DESIGN_TOPICS, BASELINE))
    engine = create_engine(settings, pool_size=4)
    sessions = create_sessionmaker(engine)
    emulator = start_emulator(
        leads=args.leads,
        contacts=0,
        seed=5,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        extra_args=("--api-limit", "100000000"),
        timeout=120,
    )
    pushers: list[Process] = []
    group_id = f"bench-{uuid.uuid4().hex[:6]}"
    account_id = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        lead_ids = await _seed(settings, sessions, emulator.base_url, account_id, args.leads)
        pushers = [_start_pusher(settings, group_id, n) for n in range(args.pushers)]
        await _wait_for_members(settings, consumer_group(settings, group_id), args.pushers)
        await _pusher_run(settings, sessions, account_id, lead_ids, 200, None)  # warm-up: group join, token
        print(f"machine: {machine()}")
        print(
            f"setup: {args.leads} Leads in the emulator and as contacts; Kafka, PostgreSQL, emulator and "
            f"pusher on this machine; {args.pushers} pusher process(es) in one consumer group"
        )
        print("load average at start: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        print(
            f"{'run':<34} {'events':>8} {'events/s':>10} {'p50 ms':>9} {'p99 ms':>9}   "
            f"CPU ms per event: {'  '.join(f'{g:>8}' for g in CPU_GROUPS)}",
            flush=True,
        )
        meter = CpuMeter(pushers=[p.pid for p in pushers], emulator=emulator.pid)

        def show(name: str, n: int, r: dict, spent: dict[str, float] | None = None) -> None:
            line = f"{name:<34} {n:>8} {r['throughput']:>10.0f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f}"
            if spent is not None:
                per_event = "  ".join(f"{spent[g] * 1000 / n:>8.3f}" for g in CPU_GROUPS)
                line += f"   {'':>18}{per_event}  push log: {r['statuses']}"
            print(line, flush=True)

        async def measured(count: int, rate: float | None) -> tuple[dict, dict[str, float]]:
            before = meter.read()
            result = await _pusher_run(settings, sessions, account_id, lead_ids, count, rate)
            return result, meter.spent_since(before)

        show("pusher, full speed", args.events, *await measured(args.events, None))
        show("broker only, full speed", args.events, await _baseline(settings, args.events, None))
        show(
            f"pusher, steady {args.rate:g}/s",
            args.steady_events,
            *await measured(args.steady_events, args.rate),
        )
        show(
            f"broker only, steady {args.rate:g}/s",
            args.steady_events,
            await _baseline(settings, args.steady_events, args.rate),
        )
        print("load average at end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        stop_all(pushers, timeout=20)
        emulator.stop(timeout=20)
        await engine.dispose()
        await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.pusher_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--steady-events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--pushers", type=int, default=1, help="pusher processes in the consumer group")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
