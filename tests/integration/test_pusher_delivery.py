"""Durable re-delivery and values at the edge through the real broker, PostgreSQL and the emulated
CRM (R13, R22, R24): a CRM refusing writes for a while, a pusher restarted while pushes wait, an API
budget at its reserve, a CRM change newer than a waiting value, a locked record's bounded tries."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select, text

from crmsync.common.crm.factory import connector_factory
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.db.schema import PushDelivery
from crmsync.common.settings import CommonSettings
from crmsync.pusher.bootstrap import bootstrap
from crmsync.pusher.settings import Settings
from tests.support.emulator import CrmOrg
from tests.support.pusher import connect_account, event, publish, pusher_settings, seed_from_crm, wait_logged

pytestmark = pytest.mark.integration

# The connector's round, short: three tries of a transient failure, milliseconds apart.
OPTIONS = ConnectorOptions(max_retries=2, backoff_initial_s=0.02, backoff_max_s=0.05)
TRIES_PER_ATTEMPT = OPTIONS.max_retries + 1
# Re-delivery in fractions of a second instead of minutes.
FAST = {
    "push_redelivery_base_s": 0.2,
    "push_redelivery_cap_s": 0.5,
    "push_redelivery_min_wait_s": 0.0,
    "push_redelivery_interval_s": 0.1,
    "push_budget_recheck_s": 0.5,
}


@pytest.fixture
async def org(settings: CommonSettings, sessions, account_id: str, crm_org: CrmOrg) -> CrmOrg:
    await connect_account(sessions, settings, account_id=account_id, org=crm_org)
    crm_org.clear_writes()
    return crm_org


def _settings(settings: CommonSettings, **overrides: Any) -> Settings:
    return pusher_settings(settings).model_copy(update={**FAST, **overrides})


@contextlib.asynccontextmanager
async def _running(pusher: Settings) -> AsyncIterator[None]:
    """Runs the pusher with these settings (the short connector round; one try per re-delivery, as in
    production) until the block ends."""
    secret = pusher.secret_key.get_secret_value()
    app = bootstrap(
        pusher,
        crm_factory=connector_factory(secret, options=OPTIONS),
        resend_factory=connector_factory(secret, options=ConnectorOptions(max_retries=0)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _pushes(sessions, account_id: str) -> list[PushDelivery]:
    async with sessions() as session:
        return list(
            (await session.scalars(select(PushDelivery).where(PushDelivery.account_id == account_id))).all()
        )


async def _seeded_lead(sessions, account_id: str, org: CrmOrg, n: int = 0) -> dict[str, Any]:
    lead = org.records("Lead", limit=n + 1)[n]
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    return lead


async def test_r24_a_crm_refusing_writes_for_a_while_gets_the_value_without_a_new_event(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = await _seeded_lead(sessions, account_id, org)
    org.faults("503", rate=1.0, path="composite")
    change = event(account_id, external_id=lead["Id"], changes={"job_title": "Countess"})
    async with _running(_settings(settings)):
        await publish(settings, [change])
        waiting = await wait_logged(
            sessions, account_id=account_id, event_ids=[change.event_id], status="waiting"
        )
        assert waiting[change.event_id].error_code == "SERVER_UNAVAILABLE"
        (push,) = await _pushes(sessions, account_id)
        assert (push.state, push.event_ids, push.fields["Title"]["value"]) == (
            "waiting",
            [change.event_id],
            "Countess",
        )
        await asyncio.sleep(1)  # a few re-deliveries fail meanwhile
        assert (await _pushes(sessions, account_id))[0].failures >= 2
        org.clear_faults()
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
    assert logged[change.event_id].status == "succeeded"
    assert org.get("Lead", lead["Id"])["Title"] == "Countess"
    assert await _pushes(sessions, account_id) == []


async def test_r24_pushes_waiting_when_the_pusher_restarts_are_sent_after_the_restart(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    leads = [await _seeded_lead(sessions, account_id, org, n) for n in range(3)]
    org.faults("503", rate=1.0, path="composite")
    changes = [
        event(account_id, external_id=lead["Id"], changes={"city": f"City {i}"})
        for i, lead in enumerate(leads)
    ]
    ids = [c.event_id for c in changes]
    pusher = _settings(settings)
    async with _running(pusher):
        await publish(settings, changes)
        await wait_logged(sessions, account_id=account_id, event_ids=ids, status="waiting")
    assert len(await _pushes(sessions, account_id)) == 3
    org.clear_faults()
    # The same consumer group: the events' offsets are committed, only the store holds what waits.
    async with _running(pusher):
        logged = await wait_logged(sessions, account_id=account_id, event_ids=ids)
    assert {e.status for e in logged.values()} == {"succeeded"}
    for i, lead in enumerate(leads):
        assert org.get("Lead", lead["Id"])["City"] == f"City {i}"
    assert await _pushes(sessions, account_id) == []


async def test_r24_a_budget_at_the_reserve_parks_pushes_not_failing_them_and_they_go_after_the_reset(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = await _seeded_lead(sessions, account_id, org)
    usage = org.api_usage()
    org.set_budget(used=usage["limit"] - 1)  # inside the reserve kept for the customer's other tools
    change = event(account_id, external_id=lead["Id"], changes={"job_title": "Parked"})
    async with _running(_settings(settings, push_redelivery_horizon_s=0.5)):
        await publish(settings, [change])
        waiting = await wait_logged(
            sessions, account_id=account_id, event_ids=[change.event_id], status="waiting"
        )
        assert waiting[change.event_id].error_code == "REQUEST_LIMIT_EXCEEDED"
        await asyncio.sleep(1.5)  # past the horizon and a few budget rechecks: parked, never failed
        (push,) = await _pushes(sessions, account_id)
        assert (push.state, push.failures, push.last_error_code) == ("waiting", 0, "REQUEST_LIMIT_EXCEEDED")
        org.set_budget(used=0)  # the budget's reset
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
    assert logged[change.event_id].status == "succeeded"
    assert org.get("Lead", lead["Id"])["Title"] == "Parked"


async def test_r13_a_crm_change_newer_than_the_waiting_value_stays_in_the_crm(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = await _seeded_lead(sessions, account_id, org)
    org.faults("503", rate=1.0, path="composite")
    change = event(
        account_id,
        external_id=lead["Id"],
        changes={"job_title": "Local title", "city": "Local city"},
        occurred_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    async with _running(_settings(settings)):
        await publish(settings, [change])
        await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], status="waiting")
        # A CRM user changes the Title later; the next pull stores it as the CRM's, at its modstamp.
        org.edit("Lead", lead["Id"], {"Title": "CRM title"})
        await _pulled(sessions, account_id, org, lead["Id"], job_title="CRM title")
        org.clear_faults()
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
    entry = logged[change.event_id]
    assert entry.status == "succeeded"
    assert entry.decisions["job_title"] == "superseded_by_crm"
    record = org.get("Lead", lead["Id"])
    assert (record["Title"], record["City"]) == ("CRM title", "Local city")


async def test_r13_a_crm_edit_made_while_the_value_waited_stays_even_before_the_next_pull(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = await _seeded_lead(sessions, account_id, org)
    org.faults("503", rate=1.0, path="composite")
    change = event(
        account_id,
        external_id=lead["Id"],
        changes={"job_title": "Local title", "city": "Local city"},
        occurred_at=datetime.now(UTC) - timedelta(seconds=30),
    )
    async with _running(_settings(settings)):
        await publish(settings, [change])
        await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], status="waiting")
        org.edit("Lead", lead["Id"], {"Title": "CRM title"})  # no pull yet: the store does not know
        org.clear_faults()
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
    assert logged[change.event_id].decisions["job_title"] == "superseded_by_crm"
    record = org.get("Lead", lead["Id"])
    assert (record["Title"], record["City"]) == ("CRM title", "Local city")


async def _pulled(sessions, account_id: str, org: CrmOrg, record_id: str, **fields: Any) -> None:
    """Stores the record's newer values as the puller does: the CRM's, as of its SystemModstamp."""
    stamp = datetime.fromisoformat(org.get("Lead", record_id)["SystemModstamp"].replace("Z", "+00:00"))
    async with sessions.begin() as session:
        await session.execute(
            text(
                "update contacts set fields = fields || cast(:fields as jsonb), "
                "field_meta = field_meta - cast(:names as text[]), crm_modstamp = :stamp "
                "where account_id = :account and external_id = :rid"
            ),
            {
                "fields": orjson.dumps(fields).decode(),
                "names": list(fields),
                "stamp": stamp,
                "account": account_id,
                "rid": record_id,
            },
        )


async def test_r22_a_record_refused_with_unable_to_lock_row_is_sent_a_bounded_number_of_times(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    warm, locked = [await _seeded_lead(sessions, account_id, org, n) for n in range(2)]
    first = event(account_id, external_id=warm["Id"], changes={"city": "Warm"})
    change = event(account_id, external_id=locked["Id"], changes={"job_title": "Locked"})
    async with _running(_settings(settings, push_redelivery_enabled=False)):
        # A first push reads the describes and the token, so the calls counted next are writes only.
        await publish(settings, [first])
        await wait_logged(sessions, account_id=account_id, event_ids=[first.event_id])
        before = org.api_usage()["used"]
        org.faults("lock", count=1000)
        await publish(settings, [change])
        logged = await wait_logged(
            sessions, account_id=account_id, event_ids=[change.event_id], status="waiting"
        )
        calls = org.api_usage()["used"] - before
    assert logged[change.event_id].error_code == "UNABLE_TO_LOCK_ROW"
    # One round per delivery attempt: the connector's tries, never multiplied by the pusher's.
    assert 1 <= calls <= TRIES_PER_ATTEMPT
    (push,) = await _pushes(sessions, account_id)
    assert (push.state, push.failures) == ("waiting", 1)


async def test_r22_a_score_of_ninety_and_a_title_of_100000_characters_are_refused_at_the_edge(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = await _seeded_lead(sessions, account_id, org)
    score = event(account_id, external_id=lead["Id"], changes={"score": "ninety"})
    title = event(account_id, external_id=lead["Id"], changes={"job_title": "x" * 100_000})
    async with _running(_settings(settings)):
        await publish(settings, [score, title])
        logged = await wait_logged(
            sessions, account_id=account_id, event_ids=[score.event_id, title.event_id]
        )
        letters = await _dead_letters(settings)
    assert (logged[score.event_id].status, logged[score.event_id].error_code) == ("skipped", "INVALID_EVENT")
    (letter,) = [x for x in letters if orjson.loads(x["original"]).get("event_id") == score.event_id]
    assert letter["error"].startswith("changes.score: expected a number, got 'ninety'")
    assert "score" in letter["error"].split(":", 1)[1]
    entry = logged[title.event_id]
    assert (entry.status, entry.error_code) == ("failed", "VALUE_TOO_LONG")
    assert "Title" in (entry.error_message or "") and "128" in (entry.error_message or "")
    assert org.writes() == []  # no CRM call for either
    assert org.get("Lead", lead["Id"])["Title"] == lead["Title"]


async def _dead_letters(settings: CommonSettings) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topic("contact-changes.dlq"),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            letters = [orjson.loads(r.value) for records in batch.values() for r in records]
            if letters:
                return letters
    finally:
        await consumer.stop()
    return []
