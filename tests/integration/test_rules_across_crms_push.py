"""The pusher's rules against each emulated CRM, one test body for both (R8-R13, R18, R22, R23):
one pusher for the module over the real Kafka and PostgreSQL, a fresh account and CRM per test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from crmsync.common.db.schema import Contact, PushPolicy
from tests.integration.test_puller_sync import give_local_value, puller_settings, store_of, sync
from tests.support.crm_backends import (
    LEAD,
    Crm,
    connect,
    crm_backend,
    make_crm,
    module_settings,
    seed_person,
)
from tests.support.mappings import store_mapping
from tests.support.pusher import (
    contact_row,
    event,
    outbound_job,
    publish,
    push_log,
    running_pusher,
    set_default_allow_push,
    wait_logged,
    with_allow_push,
)

__all__ = ["crm_backend", "make_crm", "module_settings"]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pusher(module_settings):
    """One pusher for the module's tests, reading each account's mapping afresh at every batch."""
    async with running_pusher(module_settings, push_config_ttl_s=0.0) as running:
        yield running


@pytest.fixture
async def crm(sessions, module_settings, account_id: str, make_crm, pusher) -> Crm:
    """The test's CRM, connected to the test's account with its default mapping, writes cleared."""
    crm = make_crm(leads=6, contacts=4, seed=5)
    await connect(sessions, module_settings, account_id, crm)
    async with sessions.begin() as session:
        session.add(PushPolicy(account_id=account_id, default_allow_push=True))
    await store_mapping(sessions, account_id=account_id, rows=crm.mapping.rows)
    crm.clear_writes()
    return crm


async def _push(settings, sessions, account_id: str, events) -> dict:
    await publish(settings, events)
    return await wait_logged(sessions, account_id=account_id, event_ids=[e.event_id for e in events])


async def _outbound(settings, sessions, account_id: str):
    job = outbound_job(account_id)
    await publish(settings, [job])
    logged = await wait_logged(sessions, account_id=account_id, event_ids=[f"outbound:{job.job_id}"])
    return logged[f"outbound:{job.job_id}"]


def _written(crm: Crm, record_id: str | None = None) -> list[dict[str, Any]]:
    return [w.values for w in crm.writes() if record_id is None or w.id == record_id]


async def _seeded(sessions, account_id: str, crm: Crm, n: int = 0, *, at: datetime | None = None):
    person = crm.first(LEAD, n)
    await seed_person(sessions, account_id=account_id, person=person, at=at)
    return person


# ------------------------------------------------------------------ R8 - R13


async def test_r8_allow_push_per_field_overrides_the_global_default(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    rows = with_allow_push(crm.mapping.rows, first_name=False, city=True)
    await store_mapping(sessions, account_id=account_id, rows=rows)
    lead = await _seeded(sessions, account_id, crm)

    first = event(account_id, external_id=lead.id, changes={"first_name": "Ada", "last_name": "Lovelace"})
    logged = await _push(module_settings, sessions, account_id, [first])
    assert logged[first.event_id].decisions == {"first_name": "allow_push_off", "last_name": "sent"}
    assert _written(crm, lead.id) == [{"last_name": "Lovelace"}]
    assert crm.get(LEAD, lead.id).values["first_name"] == lead.values["first_name"]

    crm.clear_writes()
    await set_default_allow_push(sessions, account_id=account_id, allow=False)
    second = event(account_id, external_id=lead.id, changes={"last_name": "Byron", "city": "London"})
    logged = await _push(module_settings, sessions, account_id, [second])
    assert logged[second.event_id].decisions == {"last_name": "allow_push_off", "city": "sent"}
    assert _written(crm, lead.id) == [{"city": "London"}]


async def test_r9_a_record_is_created_only_with_crm_create_and_gets_every_mapped_field(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    await store_mapping(
        sessions, account_id=account_id, rows=with_allow_push(crm.mapping.rows, job_title=False)
    )
    await set_default_allow_push(sessions, account_id=account_id, allow=False)
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    plain = event(account_id, email=email, changes={"first_name": "Ada", "job_title": "Countess"})
    logged = await _push(module_settings, sessions, account_id, [plain])
    assert logged[plain.event_id].operation == "none"
    assert logged[plain.event_id].decisions == {"first_name": "no_crm_record", "job_title": "no_crm_record"}
    assert _written(crm) == []

    create = event(
        account_id, email=email, crm_create="Lead",
        changes={"last_name": "Lovelace", "company": "Analytical Engines", "score": 12},
    )  # fmt: skip
    logged = await _push(module_settings, sessions, account_id, [create])
    entry = logged[create.event_id]
    assert (entry.operation, entry.status) == ("create", "succeeded"), entry.error_message
    assert [(w.op, w.values) for w in crm.writes()] == [("create", {
        "email": email, "first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines",
        "job_title": "Countess", "score": 12,
    })]  # fmt: skip
    contact = await contact_row(sessions, account_id=account_id, email=email)
    assert (contact.crm_object, contact.external_id) == (LEAD, entry.crm_id)
    assert crm.get(LEAD, entry.crm_id).values["email"] == email


async def test_r10_nothing_is_ever_deleted_in_the_crm(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    before = set(crm.ids(LEAD))
    lead = await _seeded(sessions, account_id, crm)
    events = [
        event(account_id, external_id=lead.id, changes={"first_name": None, "last_name": "Gone?"}),
        event(account_id, external_id=lead.id, changes={"email": None}),
    ]
    await _push(module_settings, sessions, account_id, events)
    writes = crm.writes()
    assert writes, "the events made no CRM write to check"
    assert {w.op for w in writes} <= {"create", "update"}
    assert set(crm.ids(LEAD)) == before


async def test_r11_scores_and_opt_outs_go_only_with_the_outbound_job(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    lead = await _seeded(sessions, account_id, crm)
    change = event(
        account_id, external_id=lead.id, source="scoring", changes={"score": 55, "opted_out": True}
    )
    logged = await _push(module_settings, sessions, account_id, [change])
    assert logged[change.event_id].decisions == {"score": "deferred", "opted_out": "deferred"}
    assert _written(crm) == []

    await _outbound(module_settings, sessions, account_id)
    assert _written(crm) == [{"opted_out": True, "score": 55}]
    assert (await _outbound(module_settings, sessions, account_id)).decisions["sent"] == 0  # sent once
    assert len(_written(crm)) == 1


async def test_r12_a_value_that_came_from_the_crm_is_not_pushed_back(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    lead = await _seeded(sessions, account_id, crm)
    echo = event(
        account_id, external_id=lead.id, source="list_maintenance",
        changes={"first_name": lead.values["first_name"], "last_name": lead.values["last_name"]},
    )  # fmt: skip
    logged = await _push(module_settings, sessions, account_id, [echo])
    assert logged[echo.event_id].decisions == {"first_name": "from_crm", "last_name": "from_crm"}
    assert logged[echo.event_id].operation == "none"
    assert _written(crm) == []


async def test_r13_a_newer_crm_value_wins_over_an_older_event(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    crm_time = datetime.now(UTC)
    lead = await _seeded(sessions, account_id, crm, at=crm_time)
    older = event(
        account_id,
        external_id=lead.id,
        changes={"job_title": "Stale"},
        occurred_at=crm_time - timedelta(minutes=1),
    )
    newer = event(
        account_id,
        external_id=lead.id,
        changes={"city": "Paris"},
        occurred_at=crm_time + timedelta(seconds=1),
    )
    logged = await _push(module_settings, sessions, account_id, [older, newer])
    assert logged[older.event_id].decisions == {"job_title": "crm_newer"}
    assert logged[newer.event_id].decisions == {"city": "sent"}
    now = crm.get(LEAD, lead.id).values
    assert (now["job_title"], now["city"]) == (lead.values["job_title"], "Paris")


# ------------------------------------------------------------------ R18, R22, R23


async def test_r18_a_redelivered_event_has_no_second_effect(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    lead = await _seeded(sessions, account_id, crm)
    once = event(account_id, external_id=lead.id, changes={"job_title": "Analyst"})
    await _push(module_settings, sessions, account_id, [once, once])
    await _push(module_settings, sessions, account_id, [once])
    assert _written(crm, lead.id) == [{"job_title": "Analyst"}]
    assert (await push_log(sessions, account_id=account_id))[once.event_id].status == "succeeded"


async def test_r22_crm_refusals_are_retried_when_transient_and_recorded_when_not(
    module_settings, sessions, account_id, crm: Crm
) -> None:
    leads = [await _seeded(sessions, account_id, crm, n) for n in range(4)]
    gone = leads.pop()
    crm.delete(LEAD, gone.id)  # deleted in the CRM while its event is in flight
    crm.refuse("503")
    crm.refuse("429")
    crm.refuse("lock")
    events = [
        event(account_id, external_id=p.id, changes={"job_title": f"T{i}"}) for i, p in enumerate(leads)
    ]
    ghost = event(account_id, external_id=gone.id, changes={"job_title": "Ghost"})
    logged = await _push(module_settings, sessions, account_id, [*events, ghost])
    assert crm.refusals_left() == 0, "a refusal met no request"
    assert {logged[e.event_id].status for e in events} == {"succeeded"}
    assert [crm.get(LEAD, p.id).values["job_title"] for p in leads] == ["T0", "T1", "T2"]
    failed = logged[ghost.event_id]
    assert failed.status == "failed" and failed.error_code and failed.error_message
    assert failed.attempts == 1  # a permanent refusal is not retried


async def test_r23_opt_outs_are_one_way_safe(module_settings, sessions, account_id, crm: Crm) -> None:
    config = puller_settings(module_settings)
    assert (await sync(sessions, config, account_id, "full")).status == "succeeded"
    opting_out, opting_in = [p for p in crm.people(LEAD) if not p.values["opted_out"] and p.values["email"]][
        :2
    ]
    contact_id = await give_local_value(sessions, account_id, opting_in.id, "opted_out", True)
    async with sessions.begin() as session:  # a local opt-out waits for the outbound job
        await session.execute(
            update(Contact).where(Contact.id == contact_id).values(outbound_pending_at=datetime.now(UTC))
        )
    crm.set_opted_out(LEAD, opting_out.id, True)
    crm.set_opted_out(LEAD, opting_in.id, False)  # newer than the local opt-out

    assert (await sync(sessions, config, account_id, "incremental")).status == "succeeded"

    store = await store_of(sessions, account_id)
    assert store[opting_out.id]["values"]["opted_out"] is True  # a CRM opt-out sets the local one
    assert store[opting_in.id]["values"]["opted_out"] is True  # a CRM opt-in never clears it
    crm.clear_writes()
    await _outbound(module_settings, sessions, account_id)
    assert crm.get(LEAD, opting_in.id).values["opted_out"] is True  # the outbound job sent it
    assert _written(crm, opting_out.id) == []
