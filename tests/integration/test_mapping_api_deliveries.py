"""Operators act on pushes and dead letters through the mapping API (R24, R21, R22), against the
real PostgreSQL, Kafka, the Salesforce emulator and the real pusher: a push the CRM refused until
it failed for good is retried after the fix and lands; an event dead-lettered for an unknown field
is replayed once the field is mapped and lands; a reader lists but does not act, and another
account's push is not found."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from crmsync.common.clock import utc_now
from crmsync.common.db.deliveries import columns_of
from crmsync.common.db.schema import Contact, PushDelivery
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS
from crmsync.common.domain.redelivery import FAILED, WaitingPush, WaitingValue
from crmsync.mapping_api.bootstrap import transactions
from crmsync.mapping_api.handlers.admin import create_api_key
from tests.integration.test_pusher_delivery import _running as run_pusher
from tests.integration.test_pusher_delivery import _settings as pusher_with
from tests.support.emulator import CrmOrg
from tests.support.mapping_api import Tenant, new_tenant, running_api
from tests.support.pusher import (
    connect_account,
    event,
    publish,
    seed_from_crm,
    wait_logged,
)

pytestmark = pytest.mark.integration


def pusher_giving_up_fast(settings) -> contextlib.AbstractAsyncContextManager[None]:
    """Runs the pusher with re-delivery in fractions of a second, given up after two seconds, and
    the mapping read again at every batch."""
    return run_pusher(pusher_with(settings, push_redelivery_horizon_s=2.0, push_config_ttl_s=0.0))


async def keys_of(sessions, account_id: str) -> Tenant:
    tx = transactions(sessions)
    admin = await create_api_key(tx, account_id=account_id, role="admin")
    reader = await create_api_key(tx, account_id=account_id, role="reader")
    return Tenant(account_id, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"})


@pytest.fixture
async def client(settings, engine):
    async with running_api(settings, engine=engine) as client:
        yield client


async def seeded_lead(sessions, account_id: str, org: CrmOrg) -> dict:
    lead = org.records("Lead", limit=1)[0]
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    org.clear_writes()
    return lead


async def test_r24_a_push_failed_for_good_is_retried_after_the_fix_and_reaches_the_crm(
    settings, sessions, account_id, crm_org: CrmOrg, client
) -> None:
    await connect_account(sessions, settings, account_id=account_id, org=crm_org)
    tenant = await keys_of(sessions, account_id)
    lead = await seeded_lead(sessions, account_id, crm_org)
    crm_org.faults("503", rate=1.0, path="composite")
    change = event(account_id, external_id=lead["Id"], changes={"job_title": "Retried Countess"})
    async with pusher_giving_up_fast(settings):
        await publish(settings, [change])
        await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], status="failed")
        listed = (await client.get("/v1/pushes?state=failed", headers=tenant.reader)).json()
        (push,) = listed["items"]
        assert (push["state"], push["event_ids"], push["last_error_code"]) == (
            "failed",
            [change.event_id],
            "SERVER_UNAVAILABLE",
        )
        assert push["values"]["Title"]["value"] == "Retried Countess"
        summary = (await client.get("/v1/pushes/summary", headers=tenant.reader)).json()
        assert summary["pushes"] == {"failed": {"SERVER_UNAVAILABLE": 1}}
        assert summary["push_log"]["failed"] == {"SERVER_UNAVAILABLE": 1}
        other_code = await client.post("/v1/pushes/retry", json={"error_code": "X"}, headers=tenant.admin)
        assert other_code.json() == {"retried": 0}
        crm_org.clear_faults()  # the cause is fixed
        retried = await client.post("/v1/pushes/retry", headers=tenant.admin)
        assert retried.status_code == 200, retried.text
        assert retried.json() == {"retried": 1}
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], timeout=30)
    assert logged[change.event_id].status == "succeeded"
    assert crm_org.get("Lead", lead["Id"])["Title"] == "Retried Countess"
    assert (await client.get("/v1/pushes", headers=tenant.reader)).json()["items"] == []


async def test_r24_an_event_dead_lettered_for_an_unknown_field_is_replayed_once_mapped_and_reaches_the_crm(
    settings, sessions, account_id, crm_org: CrmOrg, client
) -> None:
    # Title is not mapped yet: an event changing a custom field for it is refused (R22).
    rows = [r for r in DEFAULT_SALESFORCE_ROWS if r.destination != "job_title"]
    await connect_account(sessions, settings, account_id=account_id, org=crm_org, rows=rows)
    tenant = await keys_of(sessions, account_id)
    lead = await seeded_lead(sessions, account_id, crm_org)
    change = event(account_id, external_id=lead["Id"], changes={"Position": "Replayed Countess"})
    async with pusher_giving_up_fast(settings):
        await publish(settings, [change])
        await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
        letters = (await client.get("/v1/dead-letters", headers=tenant.reader)).json()["items"]
        assert [d["event_id"] for d in letters] == [change.event_id]
        assert letters[0]["reason"].startswith("changes.Position: unknown field")
        # The admin maps the field.
        current = (await client.get("/v1/mapping", headers=tenant.reader)).json()["rows"]
        keep = ("destination", "kind", "lead_source", "contact_source", "data_type", "allow_push")
        mapped = [{k: r[k] for k in keep} for r in current] + [
            {
                "destination": "Position",
                "kind": "custom",
                "data_type": "text",
                "lead_source": "Title",
                "contact_source": "Title",
            }
        ]
        saved = await client.put("/v1/mapping", json={"rows": mapped}, headers=tenant.admin)
        assert saved.status_code == 200, saved.text
        replayed = await client.post(f"/v1/dead-letters/{change.event_id}/replay", headers=tenant.admin)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json() == {"replayed": [change.event_id], "not_on_topic": []}
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id], timeout=30)
        assert logged[change.event_id].status == "succeeded", logged[change.event_id].error_message
    assert crm_org.get("Lead", lead["Id"])["Title"] == "Replayed Countess"
    assert (await client.get("/v1/dead-letters", headers=tenant.reader)).json()["items"] == []
    again = await client.post(f"/v1/dead-letters/{change.event_id}/replay", headers=tenant.admin)
    assert (again.status_code, again.json()["field"]) == (404, "event_id")


async def _failed_push(sessions, account_id: str) -> int:
    """Stores a contact and its push as the pusher leaves one given up after its horizon."""
    now = utc_now()
    async with sessions.begin() as session:
        contact = Contact(
            account_id=account_id, crm_object="Lead", external_id="00Q000000000001AAA", fields={}
        )
        session.add(contact)
    push = WaitingPush(
        account_id=account_id,
        contact_id=contact.id,
        operation="update",
        crm_object="Lead",
        crm_id="00Q000000000001AAA",
        email_lower=None,
        values={"Title": WaitingValue("Kept", now, "e-1", "job_title")},
        next_attempt_at=now + timedelta(days=1),
        event_ids=("e-1",),
        failures=20,
        first_failed_at=now - timedelta(days=1),
        last_error_code="SERVER_UNAVAILABLE",
        last_error_message="503",
        state=FAILED,
    )
    async with sessions.begin() as session:
        row = PushDelivery(**columns_of(push, now=now))
        session.add(row)
        await session.flush()
        return row.id


async def test_r21_a_reader_lists_but_neither_retries_nor_replays_and_another_accounts_push_is_not_found(
    sessions, client
) -> None:
    acme, globex = await new_tenant(sessions), await new_tenant(sessions, name="Globex")
    push_id = await _failed_push(sessions, acme.account_id)
    listed = await client.get("/v1/pushes?state=failed", headers=acme.reader)
    assert [p["id"] for p in listed.json()["items"]] == [push_id]
    assert (await client.get("/v1/dead-letters", headers=acme.reader)).status_code == 200
    for path in (
        f"/v1/pushes/{push_id}/retry",
        "/v1/pushes/retry",
        "/v1/dead-letters/replay",
        "/v1/dead-letters/e-1/replay",
    ):
        refused = await client.post(path, headers=acme.reader)
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden"), path
    missing = await client.post(f"/v1/pushes/{push_id}/retry", headers=globex.admin)
    assert (missing.status_code, missing.json()["error"], missing.json()["field"]) == (
        404,
        "not_found",
        "push_id",
    )
    assert (await client.get("/v1/pushes", headers=globex.reader)).json()["items"] == []
    bad = await client.get("/v1/pushes?state=lost", headers=acme.reader)
    assert (bad.status_code, bad.json()["field"]) == (422, "state")
    # Still failed after all that; the admin's retry puts it back in line.
    assert (await client.post(f"/v1/pushes/{push_id}/retry", headers=acme.admin)).json() == {"retried": 1}
    (again,) = (await client.get("/v1/pushes?state=waiting", headers=acme.reader)).json()["items"]
    assert (again["id"], again["failures"], again["first_failed_at"]) == (push_id, 0, None)
    conflict = await client.post(f"/v1/pushes/{push_id}/retry", headers=acme.admin)
    assert (conflict.status_code, conflict.json()["field"]) == (409, "push_id")
