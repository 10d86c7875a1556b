"""The drain after a CRM outage (R24): waiting pushes coalesced per contact, then the CRM restored.

`python -m bench.drain_bench [--contacts 1000] [--changes 10] [--sample 1000] [--max-seconds 900]`

An emulator org holds `--contacts` Leads, stored as pulled contacts of a fresh
account. The CRM refuses every composite write (the emulator's 503 fault,
`rate=1.0` on `composite`) while `--changes` changes per contact are produced
(round by round, each changing the Title and, in turn, the City or the
FirstName), so they join the contacts' waiting pushes in `push_deliveries`.
Then the fault is cleared. Measured: the time from the restore until the CRM
holds every contact's newest value of every field (read through the control
API, which costs no API call), and the API calls the org counted from the
restore to that moment (its `DailyApiRequests` use before and after).

Beside it, in the same run and the same org: a one-write-per-event client,
which needs one call per change (contacts × changes, computed), measured by
sending `--sample` of those updates one composite collection of one record each
and one REST PATCH each, and extrapolated to all the changes.

The pusher runs as its own process, its re-delivery shortened through the
environment (`REDELIVERY_ENV`), on a scratch database and a topic prefix of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from bench.crms import CLIENT_ID, CLIENT_SECRET, start_crm
from bench.machine import machine
from bench.pusher_bench import _produce, seed_contacts
from crmsync.common.db.schema import PushDelivery, PushLog
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.topics import (
    CONTACT_CHANGES,
    DESIGN_TOPICS,
    delete_topics_with_prefixes,
    ensure_topics,
)
from crmsync.common.messages import ContactChanged
from crmsync.common.settings import CommonSettings
from tests.support.databases import scratch_database
from tests.support.processes import Process, service_env, start_service, stop_all, wait_for

API = "/services/data/v60.0"
# DRAIN_BENCH_LOG=/path keeps the pusher's debug log there.
LOG_PATH = os.environ.get("DRAIN_BENCH_LOG")
# Re-delivery in seconds instead of minutes, so the drain starts within a few seconds of the
# restore: the first wait 2 s, doubling to 8 s, never under 0.5 s; the loop looks every 0.5 s.
REDELIVERY_ENV = {
    "CRMSYNC_PUSH_REDELIVERY_BASE_S": "2",
    "CRMSYNC_PUSH_REDELIVERY_CAP_S": "8",
    "CRMSYNC_PUSH_REDELIVERY_MIN_WAIT_S": "0.5",
    "CRMSYNC_PUSH_REDELIVERY_INTERVAL_S": "0.5",
}
# Local field -> its Lead field; every event changes the Title and one of the other two in turn.
FIELDS = {"job_title": "Title", "city": "City", "first_name": "FirstName"}


def _changes(k: int) -> dict[str, str]:
    other = "city" if k % 2 == 0 else "first_name"
    return {"job_title": f"title {k}", other: f"{other} {k}"}


def _newest(changes: int) -> dict[str, str]:
    """Returns the CRM value each field must end with after `changes` changes of a contact."""
    newest: dict[str, str] = {}
    for k in range(changes):
        newest.update({FIELDS[name]: value for name, value in _changes(k).items()})
    return newest


def _event_bytes(account_id: str, lead_id: str, k: int, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"d{k}-{lead_id}-{uuid.uuid4().hex[:6]}",
            "account_id": account_id,
            "occurred_at": at,
            "source": "program",
            "contact": {"external_id": lead_id},
            "changes": _changes(k),
        }
    )


class Org:
    """The emulated org through the control API (no API call counted) and the data API (counted)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=120)
        self.org_id = ""

    async def start(self) -> None:
        self.org_id = (await self.http.get("/__emulator/orgs")).json()[0]["org_id"]

    async def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, f"/__emulator/orgs/{self.org_id}{path}", **kwargs)
        response.raise_for_status()
        return response

    async def api_used(self) -> int:
        return (await self.control("GET", "/budget")).json()["used"]

    async def leads(self, limit: int) -> list[dict[str, Any]]:
        return (await self.control("GET", "/sobjects/Lead", params={"limit": str(limit)})).json()

    async def token(self) -> str:
        data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        response = await self.http.post("/services/oauth2/token", data=data)
        response.raise_for_status()
        return response.json()["access_token"]


async def _held(sessions, account_id: str) -> tuple[dict[str, int], int]:
    """Returns the account's push log entries counted by status, and its waiting pushes."""
    async with sessions() as session:
        rows = await session.execute(
            select(PushLog.status, func.count())
            .where(PushLog.account_id == account_id)
            .group_by(PushLog.status)
        )
        pushes = await session.scalar(
            select(func.count())
            .select_from(PushDelivery)
            .where(PushDelivery.account_id == account_id, PushDelivery.state == "waiting")
        )
    return {status: n for status, n in rows.all()}, pushes or 0


async def _one_per_event(org: Org, lead_ids: list[str], count: int, *, rest: bool) -> tuple[int, float]:
    """Sends `count` updates one call each (REST PATCH or a composite of one); returns (calls, s)."""
    headers = {"Authorization": f"Bearer {await org.token()}"}
    before = await org.api_used()
    started = time.monotonic()
    for i in range(count):
        lead_id = lead_ids[i % len(lead_ids)]
        fields = {"Title": f"plain {i}"}
        if rest:
            response = await org.http.patch(f"{API}/sobjects/Lead/{lead_id}", json=fields, headers=headers)
        else:
            record = {"attributes": {"type": "Lead"}, "id": lead_id, **fields}
            response = await org.http.patch(
                f"{API}/composite/sobjects", json={"allOrNone": False, "records": [record]}, headers=headers
            )
        if response.status_code >= 300:
            raise RuntimeError(f"a plain update was refused: {response.status_code} {response.text[:200]}")
    return await org.api_used() - before, time.monotonic() - started


async def _outage(
    args, settings, sessions, org: Org, account_id: str, lead_ids: list[str]
) -> tuple[float, dict[str, int]]:
    """Produces every change while the CRM refuses composite writes; returns once every event is
    logged and none is pending, each contact has a waiting push, and nothing reached the CRM:
    the time since the first produce and the entries by status."""
    await org.control("POST", "/faults", json={"kind": "503", "rate": 1.0, "path": "composite"})
    start = datetime.now(UTC) - timedelta(seconds=args.changes)

    def messages() -> Iterator[tuple[bytes, Any]]:
        for k in range(args.changes):  # round by round: each contact's changes in order, apart
            at = start + timedelta(seconds=k)
            for lead_id in lead_ids:
                yield (
                    f"{account_id}:ext:{lead_id}".encode(),
                    lambda lead_id=lead_id, k=k, at=at: _event_bytes(account_id, lead_id, k, at),
                )

    total = len(lead_ids) * args.changes
    began = time.monotonic()
    await _produce(settings, messages(), rate=None, topic=settings.topic(CONTACT_CHANGES))
    entries: dict[str, int] = {}
    pushes = 0

    async def all_wait() -> bool:
        nonlocal entries, pushes
        entries, pushes = await _held(sessions, account_id)
        if entries.keys() & {"succeeded", "failed"}:
            raise RuntimeError(f"entries went through or failed during the outage: {entries}")
        held = entries.get("waiting", 0) + entries.get("skipped", 0)
        return held == total and pushes == len(lead_ids)

    await wait_for(
        all_wait,
        timeout=args.max_seconds * 0.7,
        what=lambda: (
            f"{total} entries and {len(lead_ids)} waiting pushes (entries {entries}, pushes {pushes})"
        ),
        interval=1.0,
    )
    return time.monotonic() - began, entries


async def _drain(args, org: Org, newest: dict[str, str], leads: int) -> dict[str, float]:
    """Clears the fault; returns the time and calls until the CRM holds every newest value."""
    await org.control("DELETE", "/writes")
    before = await org.api_used()
    restored = time.monotonic()
    await org.control("DELETE", "/faults")
    behind = leads

    async def converged() -> bool:
        nonlocal behind
        records = await org.leads(leads)
        behind = sum(1 for r in records if any(r.get(f) != v for f, v in newest.items()))
        return behind == 0

    await wait_for(
        converged,
        timeout=args.max_seconds * 0.3,
        what=lambda: f"the CRM to hold every newest value ({behind} records behind)",
        interval=0.25,
    )
    seconds = time.monotonic() - restored
    calls = await org.api_used() - before
    writes = (await org.control("GET", "/writes")).json()
    return {"seconds": seconds, "calls": calls, "records_written": len(writes)}


async def _statuses(sessions, account_id: str) -> str:
    """Returns the account's push log entries counted by status, once none is waiting."""
    found: dict[str, int] = {}

    async def settled() -> bool:
        nonlocal found
        found, _ = await _held(sessions, account_id)
        return not found.get("waiting") and not found.get("pending")

    await wait_for(settled, timeout=60, what=lambda: f"no entry to wait ({found})", interval=0.5)
    return ", ".join(f"{status} {n}" for status, n in sorted(found.items()))


async def _bench(args: argparse.Namespace, settings: CommonSettings) -> None:
    await ensure_topics(settings, DESIGN_TOPICS)
    engine = create_engine(settings, pool_size=2)
    sessions = create_sessionmaker(engine)
    emulator = start_crm("salesforce", leads=args.contacts, contacts=0, seed=11)
    org = Org(emulator.base_url)
    pushers: list[Process] = []
    account_id = f"drain-{uuid.uuid4().hex[:8]}"
    try:
        await org.start()
        lead_ids = await seed_contacts(settings, sessions, emulator, account_id, args.contacts)
        env = service_env(
            settings,
            CRMSYNC_LOG_LEVEL="DEBUG" if LOG_PATH else "WARNING",
            CRMSYNC_PUSHER_GROUP_ID=f"drain-{uuid.uuid4().hex[:6]}",
            **REDELIVERY_ENV,
        )
        pushers.append(start_service("crmsync.pusher", env=env, log=Path(LOG_PATH) if LOG_PATH else None))
        total = len(lead_ids) * args.changes
        print(f"machine: {machine(with_load=True)}")
        print(
            f"setup: {len(lead_ids)} Leads as contacts, {args.changes} changes each ({total} events, "
            f"fields {', '.join(FIELDS.values())}); Kafka, PostgreSQL, emulator and 1 pusher process "
            f"on this machine; re-delivery {' '.join(f'{k}={v}' for k, v in REDELIVERY_ENV.items())}",
            flush=True,
        )
        used_before_outage = await org.api_used()
        outage_s, entries = await _outage(args, settings, sessions, org, account_id, lead_ids)
        outage_calls = await org.api_used() - used_before_outage
        print(
            f"outage: {total} events held in {len(lead_ids)} waiting pushes {outage_s:.1f} s after the first "
            f"produce (push log: {', '.join(f'{s} {n}' for s, n in sorted(entries.items()))}); "
            f"{outage_calls} API calls meanwhile (refused composites, their retries, re-deliveries' reads)",
            flush=True,
        )
        drained = await _drain(args, org, _newest(args.changes), len(lead_ids))
        statuses = await _statuses(sessions, account_id)
        stop_all(pushers, timeout=20)
        pushers.clear()
        composite_calls, composite_s = await _one_per_event(org, lead_ids, args.sample, rest=False)
        rest_calls, rest_s = await _one_per_event(org, lead_ids, args.sample, rest=True)
        scale = total / args.sample
        print(f"{'run':<44} {'API calls':>10} {'seconds':>9} {'calls/event':>12}")
        print(
            f"{'pusher drain after the restore':<44} {drained['calls']:>10.0f} {drained['seconds']:>9.1f} "
            f"{drained['calls'] / total:>12.3f}   records written {drained['records_written']:.0f}"
        )
        print(f"{'one write per event (computed)':<44} {total:>10} {'':>9} {1:>12.3f}")
        for name, calls, seconds in (
            ("composite of 1", composite_calls, composite_s),
            ("REST PATCH", rest_calls, rest_s),
        ):
            label = f"one {name} per event, x{scale:g} of {args.sample}"
            print(
                f"{label:<44} {calls * scale:>10.0f} {seconds * scale:>9.1f} {calls / args.sample:>12.3f}"
                f"   measured: {calls} calls in {seconds:.1f} s"
            )
        print(f"push log after the drain: {statuses}")
        print(f"calls, one write per event / drain: {total / max(drained['calls'], 1):.0f}x")
        print(f"machine after: {machine(with_load=True)}")
    finally:
        stop_all(pushers, timeout=20)
        await org.http.aclose()
        emulator.stop()
        await engine.dispose()
        await delete_topics_with_prefixes(settings.kafka_bootstrap_servers, [settings.topic_prefix])


async def amain(args: argparse.Namespace) -> None:
    ContactChanged.model_validate_json(_event_bytes("x", "00Q000000000000AAA", 0, datetime.now(UTC)))
    base_settings = CommonSettings(log_json=False)
    async with scratch_database(
        base_settings.database_url, label="drain", prefix="crmsync_bench"
    ) as database_url:
        settings = base_settings.model_copy(
            update={"topic_prefix": f"drain{uuid.uuid4().hex[:6]}.crmsync.", "database_url": database_url}
        )
        await asyncio.wait_for(_bench(args, settings), args.max_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.drain_bench", description=__doc__)
    parser.add_argument("--contacts", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=10, help="changes per contact")
    parser.add_argument("--sample", type=int, default=1_000, help="updates the plain client sends")
    parser.add_argument("--max-seconds", type=float, default=900, help="the whole run's bound")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
