"""Drift is repaired (R25): a local value the CRM never got is found by the next full sync and
delivered by the pusher; a value the CRM holds, or one that came from it, is left alone (R12)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from crmsync.common.db.schema import Contact, OutboxMessage, PushLog
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from tests.integration.test_puller_sync import sync, synced
from tests.support.processes import wait_for
from tests.support.pusher import running_pusher

pytestmark = pytest.mark.integration


async def _set_local(sessions, account_id: str, external_id: str, **values: object) -> None:
    """Stores local values as the pusher does when it applies an event whose push then failed."""
    at = datetime.now(UTC).isoformat()
    async with sessions.begin() as session:
        row = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == external_id)
        )
        row.fields = {**row.fields, **values}
        row.field_meta = {**row.field_meta, **{n: {"origin": "user_edit", "at": at} for n in values}}


async def _row(sessions, account_id: str, external_id: str) -> Contact:
    async with sessions() as session:
        return await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == external_id)
        )


async def _relay(sessions, settings) -> int:
    """Publishes what the outbox holds, as the puller's relay does."""
    producer = create_producer(settings)
    await producer.start()
    try:
        relay = OutboxRelay(sessions=sessions, publisher=Publisher(producer, settings))
        published = 0
        while count := await relay.publish_pending():
            published += count
        return published
    finally:
        await producer.stop()


async def test_r25_a_local_value_the_crm_never_got_is_found_by_the_next_full_sync_and_pushed(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5, contacts=3, seed=25)
    config = await synced(sessions, settings, account_id, org)
    lead, other = [r for r in org.records("Lead") if r.get("Email") and not r.get("IsConverted")][:2]
    # Changed while the CRM was unreachable, and never pushed.
    await _set_local(sessions, account_id, lead["Id"], job_title="Chief Repair Officer", city="Drammen")

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    assert run.drift_found == 2
    rewound = await _row(sessions, account_id, lead["Id"])
    assert rewound.fields["job_title"] == lead["Title"]  # the CRM's, until the pusher applies the event
    assert (await _row(sessions, account_id, other["Id"])).fields["job_title"] == other["Title"]
    assert await _relay(sessions, settings) == 1  # one event: one origin, one time

    async with running_pusher(settings):
        await wait_for(
            lambda: org.get("Lead", lead["Id"])["Title"] == "Chief Repair Officer",
            timeout=60,
            what="the repaired value in the CRM",
        )
    crm = org.get("Lead", lead["Id"])
    assert (crm["Title"], crm["City"]) == ("Chief Repair Officer", "Drammen")
    row = await _row(sessions, account_id, lead["Id"])
    assert (row.fields["job_title"], row.field_meta["job_title"]["origin"]) == (
        "Chief Repair Officer",
        "user_edit",
    )
    writes = [w for w in org.writes() if lead["Id"] in str(w)]

    again = await sync(sessions, config, account_id, "full")  # the CRM holds it now: nothing to repair

    assert again.drift_found == 0
    assert await _relay(sessions, settings) == 0
    assert [w for w in org.writes() if lead["Id"] in str(w)] == writes  # pushed once
    async with sessions() as session:
        logged = await session.scalar(
            select(func.count()).select_from(PushLog).where(PushLog.account_id == account_id)
        )
        pending = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
    assert logged == 1 and pending == 0


async def test_r12_r25_values_from_the_crm_and_values_it_holds_are_not_repaired(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=4, contacts=2, seed=26)
    config = await synced(sessions, settings, account_id, org)
    lead = next(r for r in org.records("Lead") if r.get("Email") and not r.get("IsConverted"))
    await _set_local(sessions, account_id, lead["Id"], job_title=lead["Title"])  # the CRM holds it

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    assert run.drift_found == 0
    assert await _relay(sessions, settings) == 0
