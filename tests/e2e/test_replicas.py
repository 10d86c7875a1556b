"""Replicas are safe (R18, R26): three pullers and three pushers as processes on the same Kafka
and PostgreSQL, one of each killed with SIGKILL under load. Every sync job runs once (one
succeeded run per job id, none left running, the store complete) and every contact-change
event has one effect (one push-log entry per event id, the CRM holding each value, no record
created twice).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmsync.common.db.schema import Account, Contact, PushLog, SyncRun
from crmsync.common.messages import ContactChanged, RunSync, SyncKind, SyncReason
from crmsync.common.settings import CommonSettings
from tests.support.broker import publish
from tests.support.emulator import CrmOrg
from tests.support.processes import (
    Process,
    answers,
    free_port,
    service_env,
    start_service,
    stop_all,
    wait_for,
)
from tests.support.pusher import connect_account, event, seed_many_from_crm, wait_logged

pytestmark = pytest.mark.e2e

REPLICAS = 3
SYNCED, PUSHED = 4, 2  # accounts whose CRM is pulled, accounts whose changes are pushed
LEADS, CONTACTS = 1500, 300
UPDATES, CREATES = 150, 25  # per pushed account
FAST = {
    "PYTHONUNBUFFERED": "1",  # each log line on disk at once: the test reads who runs what
    "CRMSYNC_LOG_LEVEL": "INFO",
    "CRMSYNC_LOG_JSON": "true",
    "CRMSYNC_PULLER_POLL_S": "0.2",
    "CRMSYNC_PULLER_BATCH_SIZE": "200",
    "CRMSYNC_PULLER_RETRY_BASE_S": "1",
    "CRMSYNC_PULLER_RETRY_MAX_S": "3",
    "CRMSYNC_PUSH_BACKOFF_S": "0.1",
    "CRMSYNC_PUSH_REDELIVERY_BASE_S": "2",
    "CRMSYNC_PUSH_REDELIVERY_CAP_S": "5",
    "CRMSYNC_PUSH_REDELIVERY_MIN_WAIT_S": "1",
    "CRMSYNC_PUSH_REDELIVERY_INTERVAL_S": "0.5",
    "CRMSYNC_DATABASE_POOL_SIZE": "4",
    "CRMSYNC_SHUTDOWN_TIMEOUT_S": "3",
}


class Replicas:
    """Three pullers and three pushers in one consumer group each, started as the cluster runs them."""

    def __init__(self, settings: CommonSettings, logs: Path) -> None:
        group = uuid.uuid4().hex[:8]
        self.env = service_env(
            settings,
            CRMSYNC_PULLER_GROUP_ID=f"puller-{group}",
            CRMSYNC_PUSHER_GROUP_ID=f"pusher-{group}",
            CRMSYNC_OUTBOUND_GROUP_ID=f"outbound-{group}",
            **FAST,
        )
        self.logs = logs
        self.ports: dict[str, int] = {}
        self.processes: dict[str, Process] = {}

    async def start(self) -> None:
        for service in ("puller", "pusher"):
            for n in range(REPLICAS):
                name = f"{service}-{n}"
                self.ports[name] = free_port()
                env = dict(self.env, CRMSYNC_HTTP_PORT=str(self.ports[name]))
                self.processes[name] = start_service(
                    f"crmsync.{service}", env=env, log=self.logs / f"{name}.log"
                )
        for name, port in self.ports.items():
            await wait_for(
                lambda port=port: answers(f"http://127.0.0.1:{port}/readyz"),
                timeout=90,
                what=f"{name} /readyz",
                process=self.processes[name],
                interval=0.3,
            )

    def of(self, service: str) -> list[Process]:
        return [p for name, p in self.processes.items() if name.startswith(service)]

    def stop(self) -> None:
        stop_all(self.processes.values(), timeout=15)


@pytest.fixture
async def replicas(settings: CommonSettings, tmp_path: Path) -> AsyncIterator[Replicas]:
    running = Replicas(settings, tmp_path)
    try:
        await running.start()
        yield running
    finally:
        running.stop()


def _job(account_id: str, kind: SyncKind, n: int) -> RunSync:
    return RunSync(
        job_id=f"{account_id}:{kind.value}:{n}",
        account_id=account_id,
        kind=kind,
        reason=SyncReason.SYNC_NOW,
        requested_at=datetime.now(UTC),
    )


async def _new_accounts(sessions, settings, make_crm_org, count: int, **org: Any) -> dict[str, CrmOrg]:
    accounts = {}
    for n in range(count):
        account_id = f"r-{uuid.uuid4().hex[:10]}"
        async with sessions.begin() as session:
            session.add(Account(id=account_id, name=account_id))
        accounts[account_id] = make_crm_org(seed=300 + n + 10 * count, **org)
        await connect_account(sessions, settings, account_id=account_id, org=accounts[account_id])
    return accounts


async def _runs(sessions, job_ids: list[str]) -> dict[str, SyncRun]:
    async with sessions() as session:
        rows = await session.scalars(select(SyncRun).where(SyncRun.job_id.in_(job_ids)))
        return {r.job_id: r for r in rows}


def _started_by(puller: Process) -> set[str]:
    """The job ids of the runs this puller has started (from its JSON log)."""
    started = set()
    for line in (puller.log.read_text(errors="replace") if puller.log else "").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "sync_run_started":
            started.add(entry["job_id"])
    return started


async def test_r18_three_pullers_and_three_pushers_one_of_each_killed_every_job_once_every_event_once(
    replicas: Replicas, settings: CommonSettings, sessions, make_crm_org
) -> None:
    synced = await _new_accounts(sessions, settings, make_crm_org, SYNCED, leads=LEADS, contacts=CONTACTS)
    pushed = await _new_accounts(sessions, settings, make_crm_org, PUSHED, leads=UPDATES, contacts=0)
    for org in synced.values():
        # Each page of a pull takes a while, so a kill lands mid-run.
        org.faults("latency", rate=1.0, latency_ms=250, path="query")
    past = datetime.now(UTC) - timedelta(days=1)
    leads = {a: org.records("Lead", limit=UPDATES) for a, org in pushed.items()}
    for account_id, records in leads.items():
        await seed_many_from_crm(sessions, account_id=account_id, records=records, crm_object="Lead", at=past)
        pushed[account_id].clear_writes()
        for method in ("POST", "PATCH"):
            pushed[account_id].faults("latency", rate=1.0, latency_ms=100, path="/sobjects", method=method)

    # --- pullers: a full and an incremental job per account, each delivered twice
    jobs = [_job(a, SyncKind.FULL, 1) for a in synced] + [_job(a, SyncKind.INCREMENTAL, 2) for a in synced]
    await publish(settings, jobs + jobs)
    job_ids = [j.job_id for j in jobs]
    pullers = replicas.of("puller")
    victim: list[tuple[Process, set[str]]] = []

    async def one_is_running_a_sync() -> bool:
        running = {j for j, r in (await _runs(sessions, job_ids)).items() if r.status == "running"}
        victim[:] = [(p, mine) for p in pullers if (mine := _started_by(p) & running)][:1]
        return bool(victim)

    await wait_for(one_is_running_a_sync, timeout=90, what="a puller running a sync", interval=0.1)
    puller, killed_runs = victim[0]
    puller.kill()

    # --- pushers: updates of stored leads and new people, one of the pushers killed midway
    tag = uuid.uuid4().hex[:6]
    events: list[ContactChanged] = []
    for account_id, records in leads.items():
        events += [
            event(account_id, external_id=lead["Id"], changes={"job_title": f"{tag}-{i}"})
            for i, lead in enumerate(records)
        ]
        events += [
            event(
                account_id,
                email=f"new-{tag}-{i}@{account_id}.example",
                changes={"last_name": f"New{i}", "company": "Replicas"},
                crm_create="Lead",
            )
            for i in range(CREATES)
        ]
    await publish(settings, events)

    async def pushes_under_way() -> bool:
        async with sessions() as session:
            done = await session.scalar(
                select(func.count())
                .select_from(PushLog)
                .where(PushLog.account_id.in_(list(pushed)), PushLog.status != "pending")
            )
        return done >= 40

    await wait_for(pushes_under_way, timeout=90, what="pushes to begin", interval=0.05)
    replicas.of("pusher")[0].kill()

    # --- every job ran once
    runs: dict[str, SyncRun] = {}

    async def all_ran() -> bool:
        nonlocal runs
        runs = await _runs(sessions, job_ids)
        return len(runs) == len(job_ids) and all(r.status == "succeeded" for r in runs.values())

    await wait_for(
        all_ran,
        timeout=120,
        what=lambda: f"every job to succeed: {[(j, r.status, r.error) for j, r in runs.items()]}",
        interval=0.3,
    )
    async with sessions() as session:
        per_job = Counter(
            (await session.scalars(select(SyncRun.job_id).where(SyncRun.account_id.in_(list(synced))))).all()
        )
        assert per_job == Counter({j: 1 for j in job_ids})
        left = await session.scalar(
            select(func.count())
            .select_from(SyncRun)
            .where(SyncRun.account_id.in_(list(synced)), SyncRun.status.in_(["queued", "running"]))
        )
        assert left == 0
        stored = dict(
            (
                await session.execute(
                    select(Contact.account_id, func.count())
                    .where(Contact.account_id.in_(list(synced)))
                    .group_by(Contact.account_id)
                )
            ).all()
        )
    # The killed puller's runs were resumed elsewhere, from their last batch, to a complete store.
    assert killed_runs and all(runs[j].attempts >= 2 for j in killed_runs), {
        j: runs[j].attempts for j in killed_runs
    }
    assert stored == {a: LEADS + CONTACTS for a in synced}

    # --- every event had one effect
    logged: dict[str, PushLog] = {}
    for account_id in pushed:
        ids = [e.event_id for e in events if e.account_id == account_id]
        logged |= await wait_logged(sessions, account_id=account_id, event_ids=ids, timeout=120)
    assert Counter(e.status for e in logged.values()) == {"succeeded": len(events)}
    async with sessions() as session:
        entries = Counter(
            (
                await session.scalars(select(PushLog.event_id).where(PushLog.account_id.in_(list(pushed))))
            ).all()
        )
    assert entries == Counter({e.event_id: 1 for e in events})
    for account_id, org in pushed.items():
        records = {r["Id"]: r for r in org.records("Lead", limit=UPDATES + 2 * CREATES)}
        assert all(records[lead["Id"]]["Title"] == f"{tag}-{i}" for i, lead in enumerate(leads[account_id]))
        new = Counter(r.get("Email") for r in records.values())
        assert all(new[f"new-{tag}-{i}@{account_id}.example"] == 1 for i in range(CREATES))
        created = Counter(
            w["fields"].get("Email") for w in org.writes() if w["method"] == "POST" and w["success"]
        )
        assert all(n == 1 for n in created.values()) and len(created) == CREATES

    # The others lived through the kills and the rebalances they caused.
    dead = {name: p.tail() for name, p in replicas.processes.items() if p.popen.poll() is not None}
    assert len(dead) == 2, {name: tail[-1500:] for name, tail in dead.items()}
