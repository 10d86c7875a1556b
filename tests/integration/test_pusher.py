"""The pusher through the real broker, PostgreSQL and the emulated CRM: R8-R13, R18, R22, R24."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from crmsync.common.db.allowance import calls_used
from crmsync.common.db.schema import Account
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS
from crmsync.common.domain.push_log import PushLogEntry
from crmsync.common.settings import CommonSettings
from crmsync.pusher.adapters.push_log import PgPushLog
from tests.support.emulator import CrmOrg
from tests.support.pusher import (
    connect_account,
    contact_row,
    event,
    outbound_job,
    publish,
    push_log,
    running_pusher,
    save_mapping,
    seed_from_crm,
    set_default_allow_push,
    wait_logged,
    with_allow_push,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def org(settings: CommonSettings, sessions, account_id: str, crm_org: CrmOrg) -> CrmOrg:
    """The test's org, connected to the test's account with the default mapping, writes cleared."""
    await connect_account(sessions, settings, account_id=account_id, org=crm_org)
    crm_org.clear_writes()
    return crm_org


def _lead(org: CrmOrg, n: int = 0) -> dict[str, Any]:
    return org.records("Lead", limit=n + 1)[n]


def _api_writes(org: CrmOrg, record_id: str | None = None) -> list[dict[str, Any]]:
    """Returns the API's writes (of one record), their fields without the Id they name."""
    writes = [w for w in org.writes() if record_id is None or w["id"] == record_id]
    return [dict(w, fields={k: v for k, v in w["fields"].items() if k != "Id"}) for w in writes]


async def _push(settings, sessions, account_id: str, events) -> dict:
    async with running_pusher(settings):
        await publish(settings, events)
        return await wait_logged(
            sessions, account_id=account_id, event_ids=[e.event_id for e in events if hasattr(e, "event_id")]
        )


# ------------------------------------------------------------------ R8 push policy


async def test_r8_allow_push_per_field_and_the_global_default(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    rows = with_allow_push(DEFAULT_SALESFORCE_ROWS, first_name=False, city=True)
    await save_mapping(sessions, account_id=account_id, rows=rows)
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])

    first = event(account_id, external_id=lead["Id"], changes={"first_name": "Ada", "last_name": "Lovelace"})
    logged = await _push(settings, sessions, account_id, [first])
    assert logged[first.event_id].decisions == {"first_name": "allow_push_off", "last_name": "sent"}
    (write,) = _api_writes(org, lead["Id"])
    assert write["fields"] == {"LastName": "Lovelace"}
    assert org.get("Lead", lead["Id"])["FirstName"] == lead["FirstName"]

    org.clear_writes()
    await set_default_allow_push(sessions, account_id=account_id, allow=False)
    second = event(account_id, external_id=lead["Id"], changes={"last_name": "Byron", "city": "London"})
    logged = await _push(settings, sessions, account_id, [second])
    assert logged[second.event_id].decisions == {"last_name": "allow_push_off", "city": "sent"}
    (write,) = _api_writes(org, lead["Id"])
    assert write["fields"] == {"City": "London"}


async def test_r8_a_score_cannot_be_turned_off_it_goes_out_with_the_outbound_job(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    await set_default_allow_push(sessions, account_id=account_id, allow=False)
    await save_mapping(
        sessions, account_id=account_id, rows=with_allow_push(DEFAULT_SALESFORCE_ROWS, score=False)
    )
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    change = event(account_id, external_id=lead["Id"], changes={"score": 87})
    job = outbound_job(account_id)
    async with running_pusher(settings):
        await publish(settings, [change])
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
        assert logged[change.event_id].decisions == {"score": "deferred"}
        assert _api_writes(org) == []
        await publish(settings, [job])
        await wait_logged(sessions, account_id=account_id, event_ids=[f"outbound:{job.job_id}"])
    (write,) = _api_writes(org, lead["Id"])
    assert write["fields"] == {"Marketing_Score__c": 87}
    assert org.get("Lead", lead["Id"])["Marketing_Score__c"] == 87


# ------------------------------------------------------------------ R9 creation


async def test_r9_a_record_is_created_only_with_crm_create_and_gets_every_mapped_field(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    rows = with_allow_push(DEFAULT_SALESFORCE_ROWS, job_title=False)
    await save_mapping(sessions, account_id=account_id, rows=rows)
    await set_default_allow_push(sessions, account_id=account_id, allow=False)
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    plain = event(account_id, email=email, changes={"first_name": "Ada", "job_title": "Countess"})
    create = event(
        account_id,
        email=email,
        changes={"last_name": "Lovelace", "company": "Analytical Engines", "score": 12},
        crm_create="Lead",
    )
    logged = await _push(settings, sessions, account_id, [plain])
    assert logged[plain.event_id].operation == "none"
    assert logged[plain.event_id].decisions == {"first_name": "no_crm_record", "job_title": "no_crm_record"}
    assert _api_writes(org) == []

    logged = await _push(settings, sessions, account_id, [create])
    entry = logged[create.event_id]
    assert (entry.operation, entry.status) == ("create", "succeeded")
    (write,) = _api_writes(org)
    assert write["fields"] == {
        "Email": email,
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Company": "Analytical Engines",
        "Title": "Countess",
        "Marketing_Score__c": 12,
    }
    contact = await contact_row(sessions, account_id=account_id, email=email)
    assert contact is not None
    assert (contact.crm_object, contact.external_id) == ("Lead", entry.crm_id)
    assert org.get("Lead", entry.crm_id)["Email"] == email


async def test_r9_events_after_a_create_in_the_same_batch_go_to_the_created_record(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    email = f"grace-{uuid.uuid4().hex[:6]}@example.com"
    events = [
        event(
            account_id, email=email, changes={"last_name": "Hopper", "company": "Navy"}, crm_create="Contact"
        ),
        event(account_id, email=email, changes={"first_name": "Grace"}),
    ]
    # Both are on the topic before the pusher starts, so its first poll takes them together.
    await publish(settings, events)
    async with running_pusher(settings):
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[e.event_id for e in events])
    ids = {logged[e.event_id].crm_id for e in events}
    assert len(ids) == 1 and None not in ids
    (crm_id,) = ids
    record = org.get("Contact", crm_id)
    assert (record["FirstName"], record["LastName"]) == ("Grace", "Hopper")
    assert [w["method"] for w in _api_writes(org)] == ["POST"]


async def test_r9_an_event_in_the_batch_after_a_create_waits_for_the_record_and_updates_it(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    email = f"mary-{uuid.uuid4().hex[:6]}@example.com"
    create = event(
        account_id, email=email, changes={"last_name": "Somerville", "company": "Oxford"}, crm_create="Lead"
    )
    later = event(account_id, email=email, changes={"job_title": "Astronomer"})
    # The create takes a while in the CRM, so the next batch arrives while it is in flight;
    # every batch overlaps the next, however small.
    org.faults("latency", latency_ms=1500, count=1, path="/composite/sobjects", method="POST")
    async with running_pusher(settings, push_overlap_from=0):
        await publish(settings, [create])
        await wait_logged(sessions, account_id=account_id, event_ids=[create.event_id], status="pending")
        await publish(settings, [later])
        logged = await wait_logged(
            sessions, account_id=account_id, event_ids=[create.event_id, later.event_id]
        )
    crm_id = logged[create.event_id].crm_id
    assert crm_id is not None and logged[later.event_id].crm_id == crm_id
    assert (logged[later.event_id].operation, logged[later.event_id].status) == ("update", "succeeded")
    assert org.get("Lead", crm_id)["Title"] == "Astronomer"
    assert [w["method"] for w in _api_writes(org)] == ["POST", "PATCH"]


# ------------------------------------------------------------------ R10, R12, R13


async def test_r10_nothing_is_ever_deleted_in_the_crm(settings, sessions, account_id, org: CrmOrg) -> None:
    before = {r["Id"] for r in org.records("Lead")}
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    events = [
        event(account_id, external_id=lead["Id"], changes={"first_name": None, "last_name": "Gone?"}),
        event(account_id, external_id=lead["Id"], changes={"email": None}),
    ]
    await _push(settings, sessions, account_id, events)
    writes = org.writes()
    assert writes, "the events made no CRM write to check"
    assert all(w["method"] in {"POST", "PATCH"} for w in writes)
    assert {r["Id"] for r in org.records("Lead")} == before


async def test_r12_a_value_that_came_from_the_crm_is_not_pushed_back(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    echo = event(
        account_id,
        external_id=lead["Id"],
        source="list_maintenance",
        changes={"first_name": lead["FirstName"], "last_name": lead["LastName"]},
    )
    logged = await _push(settings, sessions, account_id, [echo])
    assert logged[echo.event_id].decisions == {"first_name": "from_crm", "last_name": "from_crm"}
    assert logged[echo.event_id].operation == "none"
    assert _api_writes(org) == []


async def test_r13_a_newer_crm_value_is_kept(settings, sessions, account_id, org: CrmOrg) -> None:
    lead = _lead(org)
    crm_time = datetime.now(UTC)
    await seed_from_crm(
        sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"], at=crm_time
    )
    older = event(
        account_id,
        external_id=lead["Id"],
        changes={"first_name": "Stale", "city": "Paris"},
        occurred_at=crm_time - timedelta(minutes=1),
    )
    logged = await _push(settings, sessions, account_id, [older])
    decisions = logged[older.event_id].decisions
    assert decisions["first_name"] == "crm_newer"
    assert org.get("Lead", lead["Id"])["FirstName"] == lead["FirstName"]
    if decisions["city"] == "sent":  # the city was empty locally, so the event's value stands
        assert org.get("Lead", lead["Id"])["City"] == "Paris"


# ------------------------------------------------------------------ R11 outbound


async def test_r11_scores_and_opt_outs_go_only_with_the_outbound_job(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    change = event(
        account_id, external_id=lead["Id"], source="scoring", changes={"score": 55, "opted_out": True}
    )
    job, again = outbound_job(account_id), outbound_job(account_id)
    async with running_pusher(settings):
        await publish(settings, [change])
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
        assert logged[change.event_id].decisions == {"score": "deferred", "opted_out": "deferred"}
        assert _api_writes(org) == []
        await publish(settings, [job])
        await wait_logged(sessions, account_id=account_id, event_ids=[f"outbound:{job.job_id}"])
        assert [w["fields"] for w in _api_writes(org)] == [
            {"HasOptedOutOfEmail": True, "Marketing_Score__c": 55}
        ]
        # Sent once: the next run finds nothing changed since.
        await publish(settings, [again])
        runs = await wait_logged(sessions, account_id=account_id, event_ids=[f"outbound:{again.job_id}"])
    assert runs[f"outbound:{again.job_id}"].decisions["sent"] == 0
    assert len(_api_writes(org)) == 1


# ------------------------------------------------------------------ R18, R22


async def test_r18_a_redelivered_event_has_no_second_effect(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    once = event(account_id, external_id=lead["Id"], changes={"job_title": "Analyst"})
    await _push(settings, sessions, account_id, [once, once])
    await _push(settings, sessions, account_id, [once])
    assert len(_api_writes(org, lead["Id"])) == 1
    assert (await push_log(sessions, account_id=account_id))[once.event_id].status == "succeeded"


async def test_r24_every_call_the_pusher_makes_is_taken_from_the_accounts_api_allowance(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    before = org.api_usage()["used"]
    logged = await _push(
        settings,
        sessions,
        account_id,
        [event(account_id, external_id=lead["Id"], changes={"job_title": "CFO"})],
    )
    assert {e.status for e in logged.values()} == {"succeeded"}
    async with sessions() as session:
        # The pusher has stopped: its gates gave back what they held, so the count is the calls made.
        taken = await calls_used(session, account_id=account_id, day=datetime.now(UTC).date())
    assert taken == org.api_usage()["used"] - before >= 1


async def _dead_letters(settings: CommonSettings, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topic("contact-changes.dlq"),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        for _ in range(30):
            batch = await consumer.getmany(timeout_ms=1000)
            letters += [orjson.loads(r.value) for records in batch.values() for r in records]
            if len(letters) >= count:
                break
    finally:
        await consumer.stop()
    return letters


async def test_r22_invalid_events_go_to_the_dlq_with_their_reason_and_the_rest_goes_on(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    lead = _lead(org)
    await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    unknown_field = event(account_id, external_id=lead["Id"], changes={"shoe_size": 42})
    unknown_contact = event(account_id, contact_id=uuid.uuid4(), changes={"first_name": "Nobody"})
    unknown_record = event(account_id, external_id="00Q000000000000XYZ", changes={"first_name": "Nobody"})
    unknown_account = event("no-such-account", email="a@example.com", changes={"first_name": "A"})
    good = event(account_id, external_id=lead["Id"], changes={"job_title": "Engineer"})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        topic = settings.topic("contact-changes")
        key = f"{account_id}:x".encode()
        await producer.send_and_wait(topic, b"{not json", key=key)
        await producer.send_and_wait(
            topic, orjson.dumps({"event_id": "e", "account_id": account_id}), key=key
        )
    finally:
        await producer.stop()
    events = [unknown_field, unknown_contact, unknown_record, unknown_account, good]
    async with running_pusher(settings):
        await publish(settings, events)
        logged = await wait_logged(
            sessions,
            account_id=account_id,
            event_ids=[e.event_id for e in events if e.account_id == account_id],
        )
        letters = await _dead_letters(settings, 6)
    assert logged[good.event_id].status == "succeeded"
    assert org.get("Lead", lead["Id"])["Title"] == "Engineer"
    reasons = [letter["error"] for letter in letters]
    assert len(reasons) == 6
    # Letters keep their key, hence their partition: their order across partitions is not fixed.
    assert sum("not valid UTF-8 JSON" in r for r in reasons) == 1
    assert sum(r.startswith("occurred_at: Field required") for r in reasons) == 1
    by_event = {
        orjson.loads(letter["original"]).get("event_id"): letter["error"]
        for letter in letters
        if letter["original"].startswith('{"event_id":"') and "Field required" not in letter["error"]
    }
    assert by_event[unknown_field.event_id].startswith("changes.shoe_size: unknown field")
    assert by_event[unknown_contact.event_id] == "contact.id: unknown contact"
    assert by_event[unknown_record.event_id] == "contact.external_id: unknown CRM record"
    assert by_event[unknown_account.event_id] == "account_id: unknown account"
    assert logged[unknown_field.event_id].status == "skipped"
    assert logged[unknown_field.event_id].error_code == "INVALID_EVENT"


async def test_r22_transient_faults_are_retried_to_success(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    leads = org.records("Lead", limit=3)
    for lead in leads:
        await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    org.faults("503", count=2, path="composite")
    org.faults("429", count=1, path="composite")
    org.faults("lock", count=2)
    events = [
        event(account_id, external_id=lead["Id"], changes={"job_title": f"T{i}"})
        for i, lead in enumerate(leads)
    ]
    logged = await _push(settings, sessions, account_id, events)
    assert {e.status for e in logged.values()} == {"succeeded"}
    for i, lead in enumerate(leads):
        assert org.get("Lead", lead["Id"])["Title"] == f"T{i}"


async def test_r22_permanent_failures_are_logged_with_the_crms_message_and_the_offset_moves_on(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    deleted, invalid, fine = org.records("Lead", limit=3)
    for lead in (deleted, invalid, fine):
        await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    org.delete("Lead", deleted["Id"])  # deleted in the CRM while its event is in flight
    events = [
        event(account_id, external_id=deleted["Id"], changes={"job_title": "Ghost"}),
        # Shaped like an address, so it passes the edge (R22), yet the CRM refuses it.
        event(account_id, external_id=invalid["Id"], changes={"email": "ada@@example.com"}),
        event(account_id, external_id=fine["Id"], changes={"job_title": "Fine"}),
    ]
    logged = await _push(settings, sessions, account_id, events)
    gone, bad, ok = (logged[e.event_id] for e in events)
    assert (gone.status, gone.error_code) == ("failed", "ENTITY_IS_DELETED")
    assert (bad.status, bad.error_code) == ("failed", "INVALID_EMAIL_ADDRESS")
    assert "invalid email address" in (bad.error_message or "")
    assert ok.status == "succeeded"
    assert org.get("Lead", fine["Id"])["Title"] == "Fine"
    # Nothing was retried: one attempt each.
    assert (gone.attempts, bad.attempts) == (1, 1)


async def test_r18_connections_the_database_dropped_are_replaced_and_each_event_has_one_effect(
    settings, sessions, account_id, org: CrmOrg
) -> None:
    # The pusher does not ping pooled connections before use; a batch that meets a
    # dropped one is handled again on fresh connections, without a second CRM write.
    first, second = _lead(org, 0), _lead(org, 1)
    for lead in (first, second):
        await seed_from_crm(sessions, account_id=account_id, org=org, crm_object="Lead", record_id=lead["Id"])
    client_id = f"pusher-{uuid.uuid4().hex[:8]}"
    before = event(account_id, external_id=first["Id"], changes={"job_title": "Before"})
    after = event(account_id, external_id=second["Id"], changes={"job_title": "After"})
    async with running_pusher(settings, kafka_client_id=client_id):
        await publish(settings, [before])
        await wait_logged(sessions, account_id=account_id, event_ids=[before.event_id])
        async with sessions() as session:
            dropped = await session.scalar(
                text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where application_name = :name"
                ),
                {"name": client_id},
            )
        assert dropped, "the pusher held no pooled connection to drop"
        await publish(settings, [after])
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[after.event_id])
    assert logged[after.event_id].status == "succeeded"
    assert [w["fields"] for w in _api_writes(org, second["Id"])] == [{"Title": "After"}]
    assert [w["fields"] for w in _api_writes(org, first["Id"])] == [{"Title": "Before"}]


async def test_r18_an_event_is_recognised_as_seen_only_in_its_own_account(sessions, account_id) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        session.add(Account(id=other, name="Other"))
    async with sessions.begin() as session:
        await PgPushLog(session).add(
            [
                PushLogEntry(
                    account_id=account_id, event_id="e1", source="form", operation="none", status="skipped"
                )
            ]
        )
    async with sessions() as session:
        logged = await PgPushLog(session).logged_events(
            {account_id: ["e1", "e2"], other: ["e1"], "t-no-such-account": ["e3"]}
        )
    assert set(logged) == {account_id, other}  # an account missing from the answer does not exist
    assert set(logged[account_id]) == {"e1"}
    assert logged[account_id]["e1"].status == "skipped"
    assert logged[other] == {}


async def test_r11_an_outbound_run_keeps_the_time_it_finished_in_the_push_log(sessions, account_id) -> None:
    # The run's entry is written with the time the run finished; every field of an
    # entry is a column of the insert, none is dropped.
    finished = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entry = PushLogEntry(
        account_id=account_id,
        event_id="outbound:job-1",
        source="outbound",
        operation="outbound",
        status="succeeded",
        decisions={"sent": 1},
        attempts=1,
        updated_at=finished,
    )
    async with sessions.begin() as session:
        await PgPushLog(session).add([entry])
    (row,) = (await push_log(sessions, account_id=account_id, event_ids=["outbound:job-1"])).values()
    assert row.updated_at == finished
    assert (row.attempts, row.decisions, row.source) == (1, {"sent": 1}, "outbound")
