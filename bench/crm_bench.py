"""Both CRMs in one run: a full sync of N records and a push of M events, Salesforce beside Dynamics 365.

    .venv/bin/python -m bench.crm_bench [--records 1000000] [--events 100000] [--leads 20000]
        [--crms salesforce,dynamics] [--phases read,sync,push,write]

For each CRM in turn its emulator is started with N/2 leads and N/2 contacts
(the same seed, the same shapes) and four things are measured against it:

- read: the connector alone reads every lead and contact (`changes(kind, fields, None)`,
  the full read the puller makes, with the fields of the provider's default mapping and
  its role fields) in a fresh process: records/s, CPU, peak memory, API calls. This is the
  CRM side's own limit for a full sync.
- sync: the puller, as its own process, runs a full sync of a new account connected to
  that emulator, from the sync job on Kafka to the succeeded run (its own start and end
  times), into PostgreSQL; CPU of the puller, the emulator and PostgreSQL.
- push: the pusher, as its own process, pushes M events (each changes one lead's job title,
  over `--leads` leads stored as contacts of another account) at full speed; throughput,
  latency, CPU per event, API calls and records written per call.
- write: the connector alone writes M job-title changes (`update`, 1,000 records a call;
  Salesforce sends composite calls of 200, Dataverse `$batch` of up to 1,000) in a fresh
  process: records/s, CPU, API calls. The CRM side's own limit for pushes.

The emulators count the API calls they serve; their control API is not counted.
A scratch database and topic prefix are made for the run and removed after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from sqlalchemy import text

from bench.cpu import CpuMeter
from bench.crms import LABELS, PROVIDERS, BenchCrm, attach_crm, start_crm
from bench.machine import machine
from bench.pusher_bench import HEADER, PushRig, show
from crmsync.common.crm.providers import provider_named
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Account, CrmConnection
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.producer import create_producer
from crmsync.common.kafka.topics import DESIGN_TOPICS, delete_topics_with_prefixes, ensure_topics
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.common.messages.topics import SYNC_JOBS
from crmsync.common.settings import CommonSettings
from tests.support.databases import scratch_database
from tests.support.processes import Process, service_env, start_service, wait_for

PHASES = ("read", "sync", "push", "write")
SEED = 7
WRITE_CHUNK = 1000
KINDS = ("Lead", "Contact")
SYNC_GROUPS = ("puller", "emulator", "postgres", "kafka", "producer", "all")
LOGS = Path(tempfile.mkdtemp(prefix="crm-bench-"))  # the services' logs, kept for a look after the run


# ------------------------------------------------------------------ child side: the connector alone


def read_fields(provider: str, connector: Any, kind: str) -> list[str]:
    """Returns what the puller reads of a lead or contact: the default mapping's sources and the roles."""
    mapped = provider_named(provider).default_mapping().source_fields(kind)
    return list(dict.fromkeys([*mapped, *connector.roles.person_fields(kind)]))


async def _read_all(provider: str, base_url: str) -> int:
    records = 0
    async with attach_crm(provider, base_url).connector() as crm:
        for kind in KINDS:
            async for batch in crm.changes(kind, read_fields(provider, crm, kind), None):
                records += len(batch.records)
    return records


async def _write_all(provider: str, base_url: str, count: int) -> int:
    bench_crm = attach_crm(provider, base_url)
    written = 0
    async with bench_crm.connector() as crm:
        ids = [lead.id for lead in await bench_crm.leads(count)]
        for start in range(0, count, WRITE_CHUNK):
            chunk = [
                {"Id": ids[n % len(ids)], bench_crm.title_field: f"direct {n}"}
                for n in range(start, min(start + WRITE_CHUNK, count))
            ]
            results = await crm.update("Lead", chunk)
            written += sum(1 for r in results if r.success)
    return written


def child(mode: str, provider: str, base_url: str, count: int) -> None:
    cpu0, t0 = time.process_time(), time.perf_counter()
    if mode == "read":
        records = asyncio.run(_read_all(provider, base_url))
    else:
        records = asyncio.run(_write_all(provider, base_url, count))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"records": records, "seconds": seconds, "cpu": cpu, "peak_rss": peak}).decode())


# ----------------------------------------------------------------- parent side


async def _direct(mode: str, crm: BenchCrm, base_url: str, count: int) -> dict[str, Any]:
    """Runs the connector alone in a fresh process; returns its figures with the emulator's CPU and calls."""
    assert crm.process is not None
    emulator = psutil.Process(crm.process.pid)
    before_cpu, before_calls = sum(emulator.cpu_times()[:2]), await crm.api_calls()
    await crm.forget_writes()
    command = [sys.executable, "-m", "bench.crm_bench", "--child", mode, "--crms", crm.provider,
               "--base-url", base_url, "--events", str(count)]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the connector's {mode} failed:\n{done.stderr.decode()[-3000:]}")
    result = orjson.loads(done.stdout.splitlines()[-1])
    result["emulator_cpu"] = sum(emulator.cpu_times()[:2]) - before_cpu
    result["api_calls"] = await crm.api_calls() - before_calls
    if mode == "write":
        result["records_written"] = await crm.records_written()
    return result


async def _full_sync(settings: CommonSettings, sessions, crm: BenchCrm, records: int) -> dict[str, Any]:
    """Runs one full sync of a new account through a puller process; returns its figures."""
    account_id = f"sync-{uuid.uuid4().hex[:8]}"
    box = SecretBox(settings.secret_key.get_secret_value())
    async with sessions.begin() as session:
        session.add(Account(id=account_id, name=f"bench {crm.provider}"))
        await session.flush()
        session.add(CrmConnection(**crm.connection_row(account_id, box)))
    env = service_env(settings, CRMSYNC_LOG_LEVEL="WARNING", CRMSYNC_PULLER_GROUP_ID=f"puller-{account_id}")
    log = LOGS / f"puller-{crm.provider}.log"
    puller = start_service("crmsync.puller", env=env, log=log)
    meter = CpuMeter({puller.pid: "puller", crm.process.pid: "emulator"}, groups=SYNC_GROUPS)
    try:
        before, calls = meter.read(), await crm.api_calls()
        job = RunSync(job_id=f"{account_id}:full:bench", account_id=account_id, kind=SyncKind.FULL,
                      reason=SyncReason.SYNC_NOW, requested_at=datetime.now(UTC))  # fmt: skip
        await _publish(settings, job)
        run = await _finished_run(sessions, job.job_id, puller, timeout=max(600.0, records / 500))
        spent = meter.spent_since(before)
        run["api_calls"] = await crm.api_calls() - calls
        run["cpu"] = spent
        run["log"] = str(log)
        return run
    finally:
        puller.stop(timeout=60)


async def _publish(settings: CommonSettings, job: RunSync) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(SYNC_JOBS), value=job.model_dump_json().encode(), key=job.account_id.encode()
        )
    finally:
        await producer.stop()


async def _finished_run(sessions, job_id: str, puller: Process, *, timeout: float) -> dict[str, Any]:
    row: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal row
        async with sessions() as session:
            found = (
                (
                    await session.execute(
                        text(
                            "select status, pulled, created, updated, skipped, errors, error, started_at, "
                            "finished_at from sync_runs where job_id = :job order by created_at desc limit 1"
                        ),
                        {"job": job_id},
                    )
                )
                .mappings()
                .first()
            )
        row = dict(found) if found else {}
        return row.get("status") in ("succeeded", "failed") or bool(row.get("error"))

    await wait_for(finished, timeout=timeout, what=lambda: f"the full sync to finish ({row})",
                   process=puller, interval=1.0)  # fmt: skip
    if row["started_at"] and row["finished_at"]:
        row["seconds"] = (row["finished_at"] - row["started_at"]).total_seconds()
    return row


async def _push(settings: CommonSettings, sessions, crm: BenchCrm, args: argparse.Namespace) -> tuple:
    rig = PushRig(settings, sessions, crm)
    try:
        await rig.start(args.leads)
        return await rig.measured(args.events, None)
    finally:
        rig.stop()


def _line(provider: str, what: str, detail: str) -> None:
    print(f"{LABELS[provider]:<13} {what:<34} {detail}", flush=True)


async def _one_crm(provider: str, args: argparse.Namespace, settings: CommonSettings, sessions) -> None:
    per_kind = args.records // 2
    crm = start_crm(provider, leads=per_kind, contacts=per_kind, seed=SEED)
    base_url = crm.base_url
    try:
        if "read" in args.phases:
            r = await _direct("read", crm, base_url, 0)
            _line(provider, f"connector full read, {r['records']:,}",
                  f"{r['records'] / r['seconds']:>9,.0f} records/s  {r['seconds']:7.1f} s  connector CPU "
                  f"{r['cpu']:6.1f} s  emulator CPU {r['emulator_cpu']:6.1f} s  peak RSS {r['peak_rss']:.0f} MiB  "
                  f"{r['api_calls']} API calls")  # fmt: skip
        if "sync" in args.phases:
            await _sync_phase(provider, args, settings, sessions, crm)
        if "push" in args.phases:
            print(f"{'':<13} {HEADER}")
            result, spent = await _push(settings, sessions, crm, args)
            print(f"{LABELS[provider]:<13} ", end="")
            show("pusher, full speed", args.events, result, spent)
        if "write" in args.phases:
            w = await _direct("write", crm, base_url, args.events)
            _line(provider, f"connector writes, {w['records']:,}",
                  f"{w['records'] / w['seconds']:>9,.0f} records/s  {w['seconds']:7.1f} s  connector CPU "
                  f"{w['cpu']:6.1f} s  emulator CPU {w['emulator_cpu']:6.1f} s  {w['api_calls']} API calls, "
                  f"{w['records_written']:,} records written, "
                  f"{w['records_written'] / max(w['api_calls'], 1):.0f} per call")  # fmt: skip
    finally:
        crm.stop()


async def _sync_phase(provider: str, args, settings: CommonSettings, sessions, crm: BenchCrm) -> None:
    try:
        run = await _full_sync(settings, sessions, crm, args.records)
    except AssertionError as exc:  # the puller exited or the run never finished: say so, go on
        _line(provider, "puller full sync", f"NOT MEASURED: {str(exc)[:1500]}")
        return
    if run["status"] != "succeeded":
        _line(
            provider,
            "puller full sync",
            f"NOT MEASURED: run {run['status']}: {run['error']} (log {run['log']})",
        )
        return
    cpu = run["cpu"]
    _line(provider, f"puller full sync, {run['pulled']:,}",
          f"{run['pulled'] / run['seconds']:>9,.0f} records/s  {run['seconds']:7.1f} s  puller CPU "
          f"{cpu['puller']:6.1f} s  emulator CPU {cpu['emulator']:6.1f} s  PostgreSQL CPU {cpu['postgres']:6.1f} s  "
          f"created {run['created']:,}  {run['api_calls']} API calls")  # fmt: skip


async def bench(args: argparse.Namespace) -> None:
    base = CommonSettings(log_json=False)
    async with scratch_database(base.database_url, label="crm", prefix="crmsync_bench") as url:
        settings = base.model_copy(
            update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.crmsync.", "database_url": url}
        )
        await ensure_topics(settings, DESIGN_TOPICS)
        engine = create_engine(settings, pool_size=4)
        sessions = create_sessionmaker(engine)
        print(f"machine: {machine()}")
        print(f"records: {args.records:,} per CRM ({args.records // 2:,} leads + {args.records // 2:,} contacts, "
              f"seed {SEED}); events: {args.events:,} over {args.leads:,} leads; phases: {','.join(args.phases)}; "
              "Kafka, PostgreSQL, the emulator and the service measured on this machine")  # fmt: skip
        print("load average at start: " + " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
        try:
            for provider in args.crms:
                await _one_crm(provider, args, settings, sessions)
        finally:
            print("load average at end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
            await engine.dispose()
            await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crm_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records per CRM, half leads")
    parser.add_argument("--events", type=int, default=100_000, help="events pushed, and direct writes")
    parser.add_argument("--leads", type=int, default=20_000, help="leads the events change")
    parser.add_argument("--crms", default=",".join(PROVIDERS))
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.crms = args.crms.split(",")
    args.phases = args.phases.split(",")
    if unknown := (set(args.crms) - set(PROVIDERS)) | (set(args.phases) - set(PHASES)):
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.child:
        child(args.child, args.crms[0], args.base_url, args.events)
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
