"""R18: the pusher process killed (SIGKILL) with 10,000 events in flight, then restarted:
every event has exactly one effect on the CRM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crmsync.common.db.schema import PushLog
from crmsync.common.settings import CommonSettings
from tests.support.pusher import connect_account, event, publish, seed_many_from_crm, wait_logged

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UPDATES, CREATES = 9_000, 1_000


def _start_pusher(settings: CommonSettings, group: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        CRMSYNC_DATABASE_URL=settings.database_url,
        CRMSYNC_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        CRMSYNC_TOPIC_PREFIX=settings.topic_prefix,
        CRMSYNC_HTTP_PORT="0",
        CRMSYNC_LOG_LEVEL="WARNING",
        CRMSYNC_PUSHER_GROUP_ID=group,
        CRMSYNC_OUTBOUND_GROUP_ID=f"{group}-outbound",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "crmsync.pusher"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _finished(sessions, account_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            select(func.count())
            .select_from(PushLog)
            .where(PushLog.account_id == account_id, PushLog.status != "pending")
        )


async def test_r18_sigkill_with_10000_events_in_flight_then_restart_gives_exactly_one_effect_each(
    settings: CommonSettings, sessions, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=UPDATES, contacts=0, seed=11)
    await connect_account(sessions, settings, account_id=account_id, org=org)
    leads = org.records("Lead", limit=UPDATES)
    assert len(leads) == UPDATES
    past = datetime.now(UTC) - timedelta(days=1)
    await seed_many_from_crm(sessions, account_id=account_id, records=leads, crm_object="Lead", at=past)
    org.clear_writes()
    tag = uuid.uuid4().hex[:6]
    updates = [
        event(account_id, external_id=lead["Id"], changes={"job_title": f"{tag}-{i}"})
        for i, lead in enumerate(leads)
    ]
    creates = [
        event(
            account_id,
            email=f"new-{tag}-{i}@example.com",
            changes={"last_name": f"New{i}", "company": "Crash Test"},
            crm_create="Lead",
        )
        for i in range(CREATES)
    ]
    # Interleaved so the kill lands amid both kinds.
    events = [e for pair in zip(updates[:CREATES], creates, strict=True) for e in pair] + updates[CREATES:]
    await publish(settings, events)

    group = f"pusher-{uuid.uuid4().hex[:8]}"
    first = _start_pusher(settings, group)
    try:
        deadline = time.monotonic() + 120
        while await _finished(sessions, account_id) < 1_500:
            assert first.poll() is None, "the pusher exited early"
            assert time.monotonic() < deadline, "the pusher made no progress"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    done_at_kill = await _finished(sessions, account_id)
    assert done_at_kill < len(events), "the kill came after everything was done"

    second = _start_pusher(settings, group)
    try:
        logged = await wait_logged(
            sessions, account_id=account_id, event_ids=[e.event_id for e in events], timeout=300
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    finally:
        second.kill()

    assert Counter(e.status for e in logged.values()) == {"succeeded": len(events)}
    writes = [w for w in org.writes() if w["success"]]
    # Each update: its record written exactly once, with its value.
    per_record = Counter(w["id"] for w in writes if w["method"] == "PATCH")
    assert all(per_record[lead["Id"]] == 1 for lead in leads)
    titles = {w["id"]: w["fields"].get("Title") for w in writes if w["method"] == "PATCH"}
    assert all(titles[lead["Id"]] == f"{tag}-{i}" for i, lead in enumerate(leads))
    # Each create: exactly one record in the CRM, created by exactly one write.
    created_emails = Counter(w["fields"].get("Email") for w in writes if w["method"] == "POST")
    assert all(created_emails[f"new-{tag}-{i}@example.com"] == 1 for i in range(CREATES))
    in_crm = Counter(r.get("Email") for r in org.records("Lead", limit=UPDATES + 2 * CREATES))
    assert all(in_crm[f"new-{tag}-{i}@example.com"] == 1 for i in range(CREATES))
    assert len(writes) == len(events)
