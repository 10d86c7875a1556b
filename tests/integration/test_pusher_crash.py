"""R18: the pusher process killed (SIGKILL) with 10,000 events in flight, then restarted:
every event has exactly one effect on the CRM, against each emulated CRM."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crmsync.common.db.schema import PushLog, PushPolicy
from crmsync.common.settings import CommonSettings
from tests.support.broker import publish
from tests.support.crm_backends import LEAD, CrmBackend, connect, crm_backend, make_crm, seed_people
from tests.support.mappings import store_mapping
from tests.support.processes import Process, service_env, start_service, wait_for
from tests.support.pusher import event, wait_logged

__all__ = ["crm_backend", "make_crm"]
pytestmark = pytest.mark.integration
UPDATES, CREATES = 9_000, 1_000


def _start_pusher(settings: CommonSettings, backend: CrmBackend, group: str, log: Path) -> Process:
    env = service_env(
        settings,
        CRMSYNC_LOG_LEVEL="WARNING",
        CRMSYNC_PUSHER_GROUP_ID=group,
        CRMSYNC_OUTBOUND_GROUP_ID=f"{group}-outbound",
        **backend.service_env(),
    )
    return start_service("crmsync.pusher", env=env, log=log)


async def _finished(sessions, account_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            select(func.count())
            .select_from(PushLog)
            .where(PushLog.account_id == account_id, PushLog.status != "pending")
        )


async def test_r18_sigkill_with_10000_events_in_flight_then_restart_gives_exactly_one_effect_each(
    settings: CommonSettings, sessions, account_id, crm_backend: CrmBackend, make_crm, tmp_path: Path
) -> None:
    crm = make_crm(leads=UPDATES, contacts=0, seed=11)
    await connect(sessions, settings, account_id, crm)
    async with sessions.begin() as session:
        session.add(PushPolicy(account_id=account_id, default_allow_push=True))
    await store_mapping(sessions, account_id=account_id, rows=crm.mapping.rows)
    leads = crm.people(LEAD)
    assert len(leads) == UPDATES
    past = datetime.now(UTC) - timedelta(days=1)
    await seed_people(sessions, account_id=account_id, people=leads, at=past)
    crm.clear_writes()
    tag = uuid.uuid4().hex[:6]
    updates = [
        event(account_id, external_id=lead.id, changes={"job_title": f"{tag}-{i}"})
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
    log = tmp_path / "pusher.log"

    async def under_way() -> bool:
        return await _finished(sessions, account_id) >= 1_500

    with _start_pusher(settings, crm_backend, group, log) as first:
        await wait_for(under_way, timeout=120, what="the pusher's progress", process=first, interval=0.05)
        first.kill()
    done_at_kill = await _finished(sessions, account_id)
    assert done_at_kill < len(events), "the kill came after everything was done"

    with _start_pusher(settings, crm_backend, group, log) as second:
        logged = await wait_logged(
            sessions, account_id=account_id, event_ids=[e.event_id for e in events], timeout=300
        )
        assert second.stop(timeout=15) == 0

    assert Counter(e.status for e in logged.values()) == {"succeeded": len(events)}
    writes = crm.writes()
    # Each update: its record written exactly once, with its value.
    per_record = Counter(w.id for w in writes if w.op == "update")
    assert all(per_record[lead.id] == 1 for lead in leads)
    titles = {w.id: w.values.get("job_title") for w in writes if w.op == "update"}
    assert all(titles[lead.id] == f"{tag}-{i}" for i, lead in enumerate(leads))
    # Each create: exactly one record in the CRM, created by exactly one write.
    created_emails = Counter(w.values.get("email") for w in writes if w.op == "create")
    assert all(created_emails[f"new-{tag}-{i}@example.com"] == 1 for i in range(CREATES))
    in_crm = Counter(p.values.get("email") for p in crm.people(LEAD))
    assert all(in_crm[f"new-{tag}-{i}@example.com"] == 1 for i in range(CREATES))
    assert len(writes) == len(events)
