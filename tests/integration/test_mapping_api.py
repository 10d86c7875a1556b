"""The mapping API against the real PostgreSQL and Kafka: configuration, rules, tenancy, events.

Rules that need the CRM's live describe or its API (R4, R20, connection test)
are in test_mapping_api_crm.py, against the Salesforce emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crmsync.common.clock import utc_now
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import (
    Account,
    ApiKey,
    Contact,
    CrmConnection,
    CrmOwner,
    MappingVersion,
    OutboxMessage,
    PushLog,
    PushPolicy,
    SyncRun,
    SyncSchedule,
)
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind
from crmsync.common.domain.schedule import (
    LastRuns,
    Schedule,
    ScheduleMode,
    automatic_interval_minutes,
    due_jobs,
)
from crmsync.common.kafka.topics import CONTACT_CHANGES, OUTBOUND_JOBS, SYNC_JOBS
from crmsync.mapping_api.bootstrap import build, transactions
from crmsync.mapping_api.entrypoints.admin_cli import main as admin_main
from crmsync.mapping_api.handlers.admin import create_api_key
from crmsync.mapping_api.handlers.mapping import RowInput, read_mapping, save_mapping
from crmsync.mapping_api.settings import Settings
from tests.support.mapping_api import api_settings, new_tenant, read_messages, running_api

pytestmark = pytest.mark.integration

CONNECTION = {
    "login_url": "https://login.example.test",
    "auth_method": "client_credentials",
    "client_id": "client-1",
    "client_secret": "very-secret-value-123",
}


@pytest.fixture
async def tenant(sessions):
    return await new_tenant(sessions)


@pytest.fixture
async def other(sessions):
    return await new_tenant(sessions, name="Globex")


@pytest.fixture
async def client(settings, engine):
    async with running_api(settings, engine=engine) as client:
        yield client


async def current_rows(client, tenant) -> list[dict]:
    response = await client.get("/v1/mapping", headers=tenant.reader)
    assert response.status_code == 200, response.text
    return [
        {k: r[k] for k in ("destination", "kind", "lead_source", "contact_source", "data_type", "allow_push")}
        for r in response.json()["rows"]
    ]


async def save(client, tenant, rows, note=None):
    return await client.put("/v1/mapping", json={"rows": rows, "note": note}, headers=tenant.admin)


def refused(response) -> set[tuple[int | None, str]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "mapping_refused"
    return {(d["row"], d["rule"]) for d in body["details"]}


async def add_contacts(sessions, account_id: str, n: int, *, crm_object: str | None = "Lead", **fields):
    ids = []
    async with sessions.begin() as session:
        for i in range(n):
            contact = Contact(
                account_id=account_id,
                crm_object=crm_object,
                external_id=f"{(crm_object or 'X')[:2]}{uuid.uuid4().hex[:14]}" if crm_object else None,
                email=f"person{i}-{uuid.uuid4().hex[:6]}@example.com",
                fields={"first_name": f"Person{i}", "last_name": "Smith", "company": "Initech", **fields},
                field_meta={"first_name": {"origin": "crm", "at": "2026-11-20T10:00:00+00:00"}},
            )
            session.add(contact)
            await session.flush()
            ids.append(contact.id)
    return ids


# --- accounts, keys, tenancy (R21) -------------------------------------------------------


async def test_admin_cli_creates_an_account_with_its_defaults_and_prints_a_key_once(
    settings, sessions, capsys
) -> None:
    account_id = f"cli-{uuid.uuid4().hex[:8]}"
    cli_settings = Settings(**settings.model_dump())
    assert (
        await asyncio.to_thread(
            admin_main, ["account", "create", "Acme Corp", "--id", account_id], cli_settings
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == account_id
    assert (
        await asyncio.to_thread(admin_main, ["key", "create", account_id, "--role", "reader"], cli_settings)
        == 0
    )
    key = capsys.readouterr().out.strip()
    async with sessions() as session:
        assert (await session.get(Account, account_id)).name == "Acme Corp"
        assert (await session.get(PushPolicy, account_id)).default_allow_push is True
        assert (await session.get(SyncSchedule, account_id)).mode == "automatic"
        assert (
            await session.scalar(
                select(MappingVersion.version).where(MappingVersion.account_id == account_id)
            )
            == 1
        )
        stored = (await session.scalars(select(ApiKey).where(ApiKey.account_id == account_id))).one()
    assert stored.role == "reader"
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (stored.prefix, stored.key_hash, stored.name)
    # The same id again is refused, naming the option to use.
    assert (
        await asyncio.to_thread(
            admin_main, ["account", "create", "Acme Corp", "--id", account_id], cli_settings
        )
        == 2
    )
    assert "--id" in capsys.readouterr().err
    missing = await asyncio.to_thread(
        admin_main, ["key", "create", "no-such-account", "--role", "admin"], cli_settings
    )
    assert missing == 2 and "does not exist" in capsys.readouterr().err


async def test_r21_a_revoked_key_is_refused_and_keys_are_listed_without_their_secret(
    client, settings, tenant, capsys
) -> None:
    cli_settings = Settings(**settings.model_dump())
    key = tenant.reader["Authorization"].removeprefix("Bearer ")
    assert (await client.get("/v1/account", headers=tenant.reader)).status_code == 200
    assert await asyncio.to_thread(admin_main, ["key", "list", tenant.account_id], cli_settings) == 0
    listed = capsys.readouterr().out
    assert key[:14] in listed and key not in listed
    assert "reader" in listed and "admin" in listed
    assert (
        await asyncio.to_thread(admin_main, ["key", "revoke", tenant.account_id, key[:14]], cli_settings) == 0
    )
    assert capsys.readouterr().out.strip() == f"revoked {key[:14]}"
    assert (await client.get("/v1/account", headers=tenant.reader)).status_code == 401
    assert (await client.get("/v1/account", headers=tenant.admin)).status_code == 200
    # Revoking again finds no active key; too short a prefix is refused, naming it.
    assert (
        await asyncio.to_thread(admin_main, ["key", "revoke", tenant.account_id, key[:14]], cli_settings) == 2
    )
    assert "prefix" in capsys.readouterr().err
    assert await asyncio.to_thread(admin_main, ["key", "revoke", tenant.account_id, "crm"], cli_settings) == 2
    assert "prefix" in capsys.readouterr().err


async def test_a_key_records_when_it_was_last_used_to_the_minute(
    client, sessions, settings, tenant, capsys
) -> None:
    async def last_used() -> dict[str, datetime | None]:
        async with sessions() as session:
            keys = await session.scalars(select(ApiKey).where(ApiKey.account_id == tenant.account_id))
            return {k.role: k.last_used_at for k in keys}

    assert await last_used() == {"admin": None, "reader": None}
    before = datetime.now(UTC)
    assert (await client.get("/v1/account", headers=tenant.reader)).status_code == 200
    first = (await last_used())["reader"]
    assert first is not None and first >= before and (await last_used())["admin"] is None
    # Within the minute a key is not written again on every request.
    assert (await client.get("/v1/account", headers=tenant.reader)).status_code == 200
    assert (await last_used())["reader"] == first
    cli_settings = Settings(**settings.model_dump())
    assert await asyncio.to_thread(admin_main, ["key", "list", tenant.account_id], cli_settings) == 0
    listed = capsys.readouterr().out
    assert f"last used {first:%Y-%m-%d %H:%M}" in listed and "never used" in listed


async def test_admin_cli_derives_the_account_id_from_the_name(settings, sessions, capsys) -> None:
    name = f"Initech {uuid.uuid4().hex[:6]} Ltd."
    cli_settings = Settings(**settings.model_dump())
    assert await asyncio.to_thread(admin_main, ["account", "create", name], cli_settings) == 0
    account_id = capsys.readouterr().out.strip()
    assert account_id == name.lower().replace(" ", "-").rstrip(".")


async def test_r21_a_call_without_a_valid_key_is_401(client) -> None:
    for headers in ({}, {"Authorization": "Bearer crmsync_nope"}, {"Authorization": "Basic abc"}):
        response = await client.get("/v1/mapping", headers=headers)
        assert response.status_code == 401
        assert response.json()["field"] == "Authorization"


async def test_r21_reader_keys_read_but_cannot_write(client, tenant) -> None:
    contact_id = uuid.uuid4()
    writes = [
        ("PUT", "/v1/mapping", {"rows": await current_rows(client, tenant)}),
        ("PUT", "/v1/push-policy", {"default_allow_push": False}),
        ("PUT", "/v1/push-policy/fields/company", {"allow_push": False}),
        ("PUT", "/v1/schedule", {"mode": "manual"}),
        ("POST", "/v1/sync-now", None),
        ("PUT", "/v1/connection", CONNECTION),
        ("POST", "/v1/connection/test", None),
        ("PATCH", f"/v1/contacts/{contact_id}", {"changes": {"first_name": "Ada"}}),
    ]
    for method, path, body in writes:
        response = await client.request(method, path, json=body, headers=tenant.reader)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"] == "forbidden"
    assert (await client.get("/v1/schedule", headers=tenant.reader)).status_code == 200


async def test_r21_a_key_of_one_account_gets_404_for_everything_of_another(
    client, sessions, tenant, other
) -> None:
    (contact_id,) = await add_contacts(sessions, other.account_id, 1)
    async with sessions.begin() as session:
        run = SyncRun(account_id=other.account_id, job_id="j-1", kind="full", reason="sync_now")
        entry = PushLog(account_id=other.account_id, event_id="e-1", operation="update", status="succeeded")
        session.add_all([run, entry])
    rows = await current_rows(client, other)
    rows = [r for r in rows if r["destination"] != "website"]
    assert (await save(client, other, rows, note="v2")).json()["version"] == 2

    as_tenant = tenant.admin
    for path in (
        f"/v1/contacts/{contact_id}",
        f"/v1/sync-runs/{run.id}",
        f"/v1/push-log/{entry.id}",
        "/v1/mapping/versions/2",
        "/v1/mapping/diff?from=1&to=2",
    ):
        response = await client.get(path, headers=as_tenant)
        assert response.status_code == 404, (path, response.text)
    patch = await client.patch(
        f"/v1/contacts/{contact_id}", json={"changes": {"first_name": "Mallory"}}, headers=as_tenant
    )
    assert patch.status_code == 404
    listed = await client.get("/v1/contacts", headers=as_tenant)
    assert listed.json()["items"] == []
    runs = await client.get("/v1/sync-runs", headers=as_tenant)
    assert runs.json()["items"] == []
    log = await client.get("/v1/push-log", headers=as_tenant)
    assert log.json()["items"] == []
    segments = await client.get("/v1/segments", headers=as_tenant)
    assert {s["id"]: s["count"] for s in segments.json()}["all-contacts"] == 0
    account = await client.get("/v1/account", headers=as_tenant)
    assert account.json()["id"] == tenant.account_id
    # The other account's data is untouched and still its own.
    mine = await client.get(f"/v1/contacts/{contact_id}", headers=other.reader)
    assert mine.status_code == 200 and mine.json()["first_name"] == "Person0"


# --- mapping (R1–R3, R5–R8) ---------------------------------------------------------------


async def test_r7_a_new_account_starts_with_the_default_salesforce_mapping(client, tenant) -> None:
    body = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    assert body["version"] == 1
    rows = {r["destination"]: r for r in body["rows"]}
    assert rows["email"]["lead_source"] == "Email" and rows["email"]["contact_source"] == "Email"
    assert rows["street"]["lead_source"] == "Street" and rows["street"]["contact_source"] == "MailingStreet"
    assert rows["company"]["lead_source"] == "Company" and rows["company"]["contact_source"] is None
    assert rows["score"]["data_type"] == "score" and rows["score"]["effective_allow_push"] is True


async def test_the_catalogue_lists_standard_fields_with_their_data_types(client, tenant) -> None:
    body = (await client.get("/v1/fields", headers=tenant.reader)).json()
    fields = {f["key"]: f for f in body["standard_fields"]}
    assert fields["email"]["label"] == "E-mail Address" and fields["email"]["data_type"] == "email"
    assert fields["score"]["data_type"] == "score"
    assert fields["sales_owner_email"]["related_object"] is True
    assert set(body["data_types"]) == {
        "boolean",
        "date",
        "datetime",
        "text",
        "number",
        "score",
        "email",
        "multi_text",
    }


async def test_r7_an_admin_deletes_adds_and_saves_rows_as_a_new_version(client, tenant) -> None:
    rows = [r for r in await current_rows(client, tenant) if r["destination"] != "website"]
    rows.append({"destination": "time_zone"})  # local-only (R1)
    rows.append({"destination": "Shoe_Size", "kind": "custom", "data_type": "number"})
    response = await save(client, tenant, rows, note="tidy")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["note"] == "tidy"
    assert body["checked_against_crm"] is False
    saved = {r["destination"]: r for r in body["rows"]}
    assert "website" not in saved
    assert saved["time_zone"]["local_only"] is True and saved["time_zone"]["data_type"] == "text"
    assert saved["Shoe_Size"]["kind"] == "custom"
    assert (await client.get("/v1/mapping", headers=tenant.reader)).json()["version"] == 2

    versions = (await client.get("/v1/mapping/versions", headers=tenant.reader)).json()
    assert [v["version"] for v in versions] == [2, 1]
    old = (await client.get("/v1/mapping/versions/1", headers=tenant.reader)).json()
    assert "website" in {r["destination"] for r in old["rows"]}
    diff = (await client.get("/v1/mapping/diff?from=1&to=2", headers=tenant.reader)).json()
    assert [r["destination"] for r in diff["added"]] == ["time_zone", "Shoe_Size"]
    assert [r["destination"] for r in diff["removed"]] == ["website"]
    assert diff["changed"] == []


async def test_saving_the_mapping_unchanged_makes_no_new_version(client, tenant) -> None:
    response = await save(client, tenant, await current_rows(client, tenant), note="no change")
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["full_sync_job_id"] is None
    assert len((await client.get("/v1/mapping/versions", headers=tenant.reader)).json()) == 1


async def test_r1_a_destination_twice_is_refused_naming_the_row(client, tenant) -> None:
    rows = await current_rows(client, tenant)
    rows.append({"destination": "first_name", "lead_source": "FirstName"})
    response = await save(client, tenant, rows)
    assert refused(response) == {(len(rows) - 1, "R1")}
    assert response.json()["field"] == f"rows[{len(rows) - 1}]"


async def test_r1_an_unknown_standard_field_is_refused(client, tenant) -> None:
    rows = [*await current_rows(client, tenant), {"destination": "shoe_size"}]
    assert refused(await save(client, tenant, rows)) == {(len(rows) - 1, "R1")}


async def test_r2_email_must_map_to_email_address(client, tenant) -> None:
    rows = await current_rows(client, tenant)
    email = next(i for i, r in enumerate(rows) if r["destination"] == "email")
    rows[email]["contact_source"] = None
    assert refused(await save(client, tenant, rows)) == {(email, "R2")}
    rows.pop(email)
    assert refused(await save(client, tenant, rows)) == {(None, "R2")}


async def test_r3_at_least_one_score_field_must_be_mapped(client, tenant) -> None:
    rows = [r for r in await current_rows(client, tenant) if r["destination"] != "score"]
    response = await save(client, tenant, rows)
    assert refused(response) == {(None, "R3")}
    assert "Score" in response.json()["details"][0]["message"]


async def test_r5_owner_fields_take_no_source(client, tenant) -> None:
    rows = [
        *await current_rows(client, tenant),
        {"destination": "sales_owner_name", "lead_source": "OwnerId"},
    ]
    assert refused(await save(client, tenant, rows)) == {(len(rows) - 1, "R5")}


async def test_r6_custom_fields_take_the_eight_data_types(client, tenant) -> None:
    types = ["boolean", "date", "datetime", "text", "number", "score", "email", "multi_text"]
    rows = await current_rows(client, tenant)
    rows += [{"destination": f"Custom_{t}", "kind": "custom", "data_type": t} for t in types]
    response = await save(client, tenant, rows)
    assert response.status_code == 200, response.text
    bad = [*rows, {"destination": "Custom_x", "kind": "custom", "data_type": "colour"}]
    response = await save(client, tenant, bad)
    assert response.status_code == 422
    assert response.json()["field"] == f"rows[{len(bad) - 1}].data_type"


async def test_r6_a_custom_field_needs_a_data_type_and_a_valid_name(client, tenant) -> None:
    rows = await current_rows(client, tenant)
    response = await save(client, tenant, [*rows, {"destination": "Notes", "kind": "custom"}])
    assert response.status_code == 422
    assert response.json()["field"] == f"rows[{len(rows)}].data_type"
    response = await save(
        client, tenant, [*rows, {"destination": "1 bad", "kind": "custom", "data_type": "text"}]
    )
    assert refused(response) == {(len(rows), "R6")}


async def test_r8_a_score_row_saved_with_allow_push_off_is_refused(client, tenant) -> None:
    rows = await current_rows(client, tenant)
    score = next(i for i, r in enumerate(rows) if r["destination"] == "score")
    rows[score]["allow_push"] = False
    response = await save(client, tenant, rows)
    assert refused(response) == {(score, "R8")}
    assert "remove its mapping" in response.json()["details"][0]["message"]


async def test_every_broken_row_and_rule_is_named_in_one_answer(client, tenant) -> None:
    rows = [r for r in await current_rows(client, tenant) if r["destination"] not in ("email", "score")]
    rows.append(dict(rows[0]))
    assert refused(await save(client, tenant, rows)) == {(None, "R2"), (None, "R3"), (len(rows) - 1, "R1")}
    assert (await client.get("/v1/mapping", headers=tenant.reader)).json()["version"] == 1


async def test_a_refused_save_changes_nothing_and_enqueues_nothing(client, sessions, tenant) -> None:
    rows = [r for r in await current_rows(client, tenant) if r["destination"] != "score"]
    rows.append({"destination": "time_zone", "lead_source": "Time_Zone__c"})  # a new source, but R3 fails
    assert refused(await save(client, tenant, rows)) == {(None, "R3")}
    async with sessions() as session:
        queued = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.account_id == tenant.account_id)
        )
        schedule = await session.get(SyncSchedule, tenant.account_id)
    assert queued == 0 and schedule.full_sync_requested_at is None
    assert [
        v["version"] for v in (await client.get("/v1/mapping/versions", headers=tenant.reader)).json()
    ] == [1]


async def test_r22_a_malformed_mapping_is_422_naming_the_field(client, tenant) -> None:
    response = await client.put(
        "/v1/mapping", json={"rows": [{"destination": "email", "kind": "weird"}]}, headers=tenant.admin
    )
    assert response.status_code == 422
    assert response.json()["field"] == "rows[0].kind"
    response = await client.put("/v1/mapping", content=b"{not json", headers=tenant.admin)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"


# --- full sync on a new field (R15) --------------------------------------------------------


async def test_r15_a_mapping_that_adds_a_crm_field_flags_and_enqueues_a_full_sync(
    client, sessions, settings, tenant
) -> None:
    rows = [*await current_rows(client, tenant), {"destination": "time_zone", "lead_source": "Time_Zone__c"}]
    response = await save(client, tenant, rows)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["new_sources"] == ["Lead.Time_Zone__c"]
    job_id = body["full_sync_job_id"]
    assert job_id.startswith(f"{tenant.account_id}:full:")
    async with sessions() as session:
        schedule = await session.get(SyncSchedule, tenant.account_id)
    assert schedule.full_sync_requested_at is not None
    shown = (await client.get("/v1/schedule", headers=tenant.reader)).json()
    assert shown["full_sync_requested_at"] is not None
    assert shown["next_due"][0]["kind"] == "full"
    (job,) = await read_messages(settings, SYNC_JOBS, key=tenant.account_id.encode())
    assert job["job_id"] == job_id
    assert (job["kind"], job["reason"], job["account_id"]) == ("full", "new_field", tenant.account_id)
    # The scheduler, seeing the flag, computes the very same job, so the full sync runs once (R18).
    due = due_jobs(
        account_id=tenant.account_id,
        schedule=Schedule(mode=ScheduleMode.AUTOMATIC),
        last_runs=LastRuns(
            last_full_success=schedule.full_sync_requested_at - timedelta(days=1),
            full_requested_at=schedule.full_sync_requested_at,
        ),
        now=datetime.now(UTC),
    )
    assert job_id in {d.job_id for d in due}


async def test_r15_removing_fields_or_adding_a_local_only_one_needs_no_full_sync(
    client, sessions, tenant
) -> None:
    rows = [r for r in await current_rows(client, tenant) if r["destination"] != "website"]
    rows.append({"destination": "segment"})
    body = (await save(client, tenant, rows)).json()
    assert body["new_sources"] == [] and body["full_sync_job_id"] is None
    async with sessions() as session:
        assert (await session.get(SyncSchedule, tenant.account_id)).full_sync_requested_at is None


# --- push policy (R8) -----------------------------------------------------------------------


async def test_r8_two_way_by_default_and_a_field_can_be_turned_off(client, tenant) -> None:
    policy = (await client.get("/v1/push-policy", headers=tenant.reader)).json()
    assert policy["default_allow_push"] is True
    assert all(f["effective_allow_push"] for f in policy["fields"])
    response = await client.put(
        "/v1/push-policy/fields/company", json={"allow_push": False}, headers=tenant.admin
    )
    assert response.status_code == 200, response.text
    fields = {f["destination"]: f for f in response.json()["fields"]}
    assert fields["company"]["allow_push"] is False and fields["company"]["effective_allow_push"] is False
    assert response.json()["mapping_version"] == 2


async def test_r8_the_global_default_applies_to_fields_without_their_own_setting(client, tenant) -> None:
    await client.put("/v1/push-policy/fields/first_name", json={"allow_push": True}, headers=tenant.admin)
    response = await client.put("/v1/push-policy", json={"default_allow_push": False}, headers=tenant.admin)
    assert response.status_code == 200, response.text
    fields = {f["destination"]: f for f in response.json()["fields"]}
    assert fields["company"]["effective_allow_push"] is False
    assert fields["first_name"]["effective_allow_push"] is True
    assert fields["score"]["effective_allow_push"] is True and fields["score"]["locked"] is True


async def test_r8_score_fields_cannot_be_toggled_off(client, tenant) -> None:
    response = await client.put(
        "/v1/push-policy/fields/score", json={"allow_push": False}, headers=tenant.admin
    )
    assert response.status_code == 422
    detail = response.json()["details"][0]
    assert (detail["rule"], detail["destination"]) == ("R8", "score")
    assert "remove its mapping" in detail["message"]
    response = await client.put(
        "/v1/push-policy/fields/shoe", json={"allow_push": False}, headers=tenant.admin
    )
    assert response.status_code == 404 and response.json()["field"] == "destination"


# --- schedule and Sync Now (R14) -------------------------------------------------------------


async def test_r14_automatic_is_the_default_and_shows_the_interval_it_chose(client, tenant) -> None:
    body = (await client.get("/v1/schedule", headers=tenant.reader)).json()
    assert body["mode"] == "automatic"
    assert body["automatic_interval_minutes"] == 15
    assert len(body["next_due"]) == 3
    assert body["next_due"][0]["kind"] == "full"  # no full sync has succeeded yet
    times = [datetime.fromisoformat(d["at"]) for d in body["next_due"]]
    assert times == sorted(times)


async def test_r14_automatic_widens_its_interval_for_a_large_account_as_the_scheduler_would(
    client, sessions, tenant
) -> None:
    started = datetime.now(UTC) - timedelta(days=1)
    async with sessions.begin() as session:
        session.add(
            SyncRun(
                account_id=tenant.account_id,
                job_id="big-full",
                kind="full",
                reason="first_sync",
                status="succeeded",
                pulled=250_000,
                requested_at=started,
                started_at=started,
                finished_at=started + timedelta(minutes=20),
            )
        )
        connection = CrmConnection(
            account_id=tenant.account_id,
            login_url="https://login.example.test",
            auth_method="client_credentials",
            client_id="c",
            secrets_encrypted=b"-",
            api_limit=15_000,
        )
        session.add(connection)
    body = (await client.get("/v1/schedule", headers=tenant.reader)).json()
    expected = automatic_interval_minutes(record_count=250_000, daily_api_limit=15_000)
    assert expected > 15
    assert body["automatic_interval_minutes"] == expected
    assert body["last_full_sync_at"] is not None
    assert [d["kind"] for d in body["next_due"]] == ["incremental"] * 3
    times = [datetime.fromisoformat(d["at"]) for d in body["next_due"]]
    assert times[1] - times[0] == timedelta(minutes=expected)


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ({"mode": "interval", "interval_minutes": 30}, timedelta(minutes=30)),
        ({"mode": "hourly"}, timedelta(hours=1)),
        ({"mode": "daily", "time_of_day": "02:30", "timezone": "Europe/Berlin"}, timedelta(days=1)),
        ({"mode": "weekly", "weekday": 0, "time_of_day": "06:00"}, timedelta(days=7)),
    ],
)
async def test_r14_each_mode_is_stored_and_shows_its_next_due_times(client, tenant, schedule, gap) -> None:
    response = await client.put("/v1/schedule", json=schedule, headers=tenant.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == schedule["mode"] and body["automatic_interval_minutes"] is None
    times = [datetime.fromisoformat(d["at"]) for d in body["next_due"]]
    assert len(times) == 3 and times[0] > datetime.now(UTC)
    assert times[2] - times[1] == gap
    assert (await client.get("/v1/schedule", headers=tenant.reader)).json() == body


async def test_r14_manual_has_no_due_times(client, tenant) -> None:
    body = (await client.put("/v1/schedule", json={"mode": "manual"}, headers=tenant.admin)).json()
    assert body["mode"] == "manual" and body["next_due"] == []


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"mode": "interval"}, "interval_minutes"),
        ({"mode": "interval", "interval_minutes": 1}, "interval_minutes"),
        ({"mode": "daily"}, "time_of_day"),
        ({"mode": "weekly", "time_of_day": "06:00"}, "weekday"),
        ({"mode": "weekly", "weekday": 9, "time_of_day": "06:00"}, "weekday"),
        ({"mode": "hourly", "timezone": "Mars/Olympus"}, "timezone"),
        ({"mode": "sometimes"}, "mode"),
    ],
)
async def test_r22_a_schedule_missing_what_its_mode_needs_is_422_naming_the_field(
    client, tenant, schedule, field
) -> None:
    response = await client.put("/v1/schedule", json=schedule, headers=tenant.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_r14_sync_now_needs_a_connection(client, tenant) -> None:
    response = await client.post("/v1/sync-now", headers=tenant.admin)
    assert response.status_code == 409
    assert response.json()["field"] == "connection"


async def test_r14_sync_now_answers_202_with_the_job_id_and_the_job_reaches_kafka(
    client, settings, sessions, tenant
) -> None:
    assert (await client.put("/v1/connection", json=CONNECTION, headers=tenant.admin)).status_code == 200
    response = await client.post("/v1/sync-now", headers=tenant.admin)
    assert response.status_code == 202, response.text
    first = response.json()
    assert (first["kind"], first["reason"]) == ("full", "sync_now")  # nothing synced yet
    async with sessions.begin() as session:
        session.add(
            SyncRun(
                account_id=tenant.account_id,
                job_id=first["job_id"],
                kind="full",
                reason="sync_now",
                status="succeeded",
                started_at=datetime.now(UTC),
                finished_at=datetime.now(UTC),
            )
        )
    second = (await client.post("/v1/sync-now", json={}, headers=tenant.admin)).json()
    assert second["kind"] == "incremental"
    third = (await client.post("/v1/sync-now", json={"kind": "full"}, headers=tenant.admin)).json()
    assert third["kind"] == "full"
    jobs = await read_messages(settings, SYNC_JOBS, key=tenant.account_id.encode(), count=3)
    assert [j["job_id"] for j in jobs] == [first["job_id"], second["job_id"], third["job_id"]]
    assert all(j["reason"] == "sync_now" and j["account_id"] == tenant.account_id for j in jobs)


async def test_r23_under_the_manual_schedule_sync_now_also_sends_the_outbound_job_to_kafka(
    client, settings, tenant
) -> None:
    assert (await client.put("/v1/connection", json=CONNECTION, headers=tenant.admin)).status_code == 200
    assert (await client.put("/v1/schedule", json={"mode": "manual"}, headers=tenant.admin)).status_code == 200
    job = (await client.post("/v1/sync-now", headers=tenant.admin)).json()
    [outbound] = await read_messages(settings, OUTBOUND_JOBS, key=tenant.account_id.encode(), count=1)
    assert outbound["account_id"] == tenant.account_id and outbound["kind"] == "scores_optouts"
    assert outbound["job_id"].startswith(f"{tenant.account_id}:outbound:sync_now:")
    [sync] = await read_messages(settings, SYNC_JOBS, key=tenant.account_id.encode(), count=1)
    assert sync["job_id"] == job["job_id"]


# --- the CRM connection ---------------------------------------------------------------------


async def test_connection_secrets_are_sealed_at_rest_and_never_returned(
    client, sessions, settings, tenant
) -> None:
    response = await client.put("/v1/connection", json=CONNECTION, headers=tenant.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert CONNECTION["client_secret"] not in response.text
    assert body["secrets_set"] == ["client_secret"]
    assert body["status"] == "untested" and body["api_budget"] is None
    shown = await client.get("/v1/connection", headers=tenant.reader)
    assert CONNECTION["client_secret"] not in shown.text
    async with sessions() as session:
        row = await session.get(CrmConnection, tenant.account_id)
    assert CONNECTION["client_secret"].encode() not in row.secrets_encrypted
    box = SecretBox(settings.secret_key.get_secret_value())
    assert box.open(row.secrets_encrypted) == {"client_secret": CONNECTION["client_secret"]}
    # Changing the rest keeps the stored secret.
    update = {k: v for k, v in CONNECTION.items() if k != "client_secret"} | {"client_id": "client-2"}
    assert (await client.put("/v1/connection", json=update, headers=tenant.admin)).json()["secrets_set"] == [
        "client_secret"
    ]
    async with sessions() as session:
        row = await session.get(CrmConnection, tenant.account_id)
    assert row.client_id == "client-2"
    assert box.open(row.secrets_encrypted)["client_secret"] == CONNECTION["client_secret"]


async def test_connection_without_the_secret_its_method_needs_is_422_naming_it(client, tenant) -> None:
    body = {**CONNECTION, "auth_method": "jwt_bearer"}
    response = await client.put("/v1/connection", json=body, headers=tenant.admin)
    assert response.status_code == 422 and response.json()["field"] == "username"
    body["username"] = "ada@example.com"
    response = await client.put("/v1/connection", json=body, headers=tenant.admin)
    assert response.status_code == 422 and response.json()["field"] == "private_key"
    response = await client.put(
        "/v1/connection", json={**CONNECTION, "login_url": "nope"}, headers=tenant.admin
    )
    assert response.status_code == 422 and response.json()["field"] == "login_url"


async def test_without_a_connection_crm_calls_are_409(client, tenant) -> None:
    for path in ("/v1/connection", "/v1/crm/entities", "/v1/crm/entities/Lead/fields"):
        response = await client.get(path, headers=tenant.reader)
        assert response.status_code == 409, path
        assert response.json()["field"] == "connection"


# --- contacts and segments (R19) --------------------------------------------------------------


async def test_contacts_list_in_cursor_pages(client, sessions, tenant) -> None:
    ids = await add_contacts(sessions, tenant.account_id, 5)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/contacts", params=params, headers=tenant.reader)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(i) for i in ids) and len(seen) == 5
    response = await client.get("/v1/contacts", params={"cursor": "not-a-cursor"}, headers=tenant.reader)
    assert response.status_code == 422 and response.json()["field"] == "cursor"


async def test_a_contact_shows_each_field_with_its_origin_and_time(client, sessions, tenant) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmOwner(account_id=tenant.account_id, external_id="005A", name="Sam Sales", email="sam@x.io")
        )
        contact = Contact(
            account_id=tenant.account_id,
            crm_object="Contact",
            external_id="003A",
            email="ada@example.com",
            owner_external_id="005A",
            fields={"first_name": "Ada", "job_title": "Analyst", "phone": "+351 1"},
            # As the puller stores it: a field without an entry is the CRM's as of crm_modstamp.
            crm_modstamp=datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
            field_meta={
                "first_name": {"origin": "crm", "at": "2026-11-20T10:00:00+00:00"},
                "job_title": {"origin": "form", "at": "2026-11-21T09:30:00+00:00"},
            },
        )
        session.add(contact)
    body = (await client.get(f"/v1/contacts/{contact.id}", headers=tenant.reader)).json()
    assert body["type"] == "Contact" and body["external_id"] == "003A"
    assert body["fields"]["first_name"] == {"value": "Ada", "origin": "crm", "at": "2026-11-20T10:00:00Z"}
    assert body["fields"]["job_title"]["origin"] == "form"
    assert body["fields"]["phone"] == {"value": "+351 1", "origin": "crm", "at": "2026-11-22T08:00:00Z"}
    assert (body["owner_name"], body["owner_email"]) == ("Sam Sales", "sam@x.io")
    assert (await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=tenant.reader)).status_code == 404


async def test_r19_segments_count_and_search_their_members(client, sessions, tenant) -> None:
    await add_contacts(sessions, tenant.account_id, 3, crm_object="Lead")
    await add_contacts(sessions, tenant.account_id, 2, crm_object="Contact", company="Umbrella")
    await add_contacts(sessions, tenant.account_id, 1, crm_object=None)
    segments = {s["id"]: s for s in (await client.get("/v1/segments", headers=tenant.reader)).json()}
    assert {k: (s["name"], s["count"]) for k, s in segments.items()} == {
        "all-contacts": ("All Contacts", 6),
        "crm-leads": ("All Salesforce Leads", 3),
        "crm-contacts": ("All Salesforce Contacts", 2),
    }
    members = (await client.get("/v1/segments/crm-leads/contacts", headers=tenant.reader)).json()
    assert len(members["items"]) == 3 and {c["type"] for c in members["items"]} == {"Lead"}
    # The former id still names the segment.
    former = (await client.get("/v1/segments/salesforce-leads/contacts", headers=tenant.reader)).json()
    assert former == members
    by_company = await client.get(
        "/v1/segments/all-contacts/contacts", params={"q": "UMBRELLA"}, headers=tenant.reader
    )
    assert {c["type"] for c in by_company.json()["items"]} == {"Contact"}
    assert len(by_company.json()["items"]) == 2
    by_name = await client.get("/v1/contacts", params={"q": "person2"}, headers=tenant.reader)
    assert {c["first_name"] for c in by_name.json()["items"]} == {"Person2"}
    by_email = await client.get(
        "/v1/segments/salesforce-contacts/contacts", params={"q": "person1-"}, headers=tenant.reader
    )
    assert [c["first_name"] for c in by_email.json()["items"]] == ["Person1"]
    wildcard = await client.get("/v1/contacts", params={"q": "%"}, headers=tenant.reader)
    assert wildcard.json()["items"] == []
    assert (await client.get("/v1/segments/vip/contacts", headers=tenant.reader)).status_code == 422


async def test_a_user_edit_becomes_a_contact_change_event_not_a_direct_write(
    client, sessions, settings, tenant
) -> None:
    (contact_id,) = await add_contacts(sessions, tenant.account_id, 1)
    response = await client.patch(
        f"/v1/contacts/{contact_id}",
        json={"changes": {"first_name": "Ada", "score": 42, "opted_out": True}},
        headers=tenant.admin,
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["topic"] == settings.topic(CONTACT_CHANGES)
    (event,) = await read_messages(
        settings, CONTACT_CHANGES, key=f"{tenant.account_id}:{contact_id}".encode()
    )
    assert event["event_id"] == accepted["event_id"]
    assert event["source"] == "user_edit" and event["contact"] == {
        "id": str(contact_id),
        "email": None,
        "external_id": None,
    }
    assert event["changes"] == {"first_name": "Ada", "score": 42, "opted_out": True}
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
    assert contact.fields["first_name"] == "Person0"  # the store changes when the event is applied


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"shoe_size": 44}, "changes.shoe_size"),
        ({"score": "high"}, "changes.score"),
        ({"opted_out": "yes"}, "changes.opted_out"),
        ({"email": "not-an-email"}, "changes.email"),
        ({"sales_owner_name": "Sam"}, "changes.sales_owner_name"),
        ({}, "changes"),
    ],
)
async def test_r22_an_invalid_user_edit_is_422_naming_the_field(
    client, sessions, tenant, changes, field
) -> None:
    (contact_id,) = await add_contacts(sessions, tenant.account_id, 1)
    response = await client.patch(
        f"/v1/contacts/{contact_id}", json={"changes": changes}, headers=tenant.admin
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


# --- sync runs and push log ----------------------------------------------------------------------


async def test_sync_runs_show_kind_reason_status_counts_errors_and_durations(
    client, sessions, tenant
) -> None:
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    async with sessions.begin() as session:
        for i in range(3):
            session.add(
                SyncRun(
                    account_id=tenant.account_id,
                    job_id=f"job-{i}",
                    kind="incremental" if i else "full",
                    reason="schedule" if i else "first_sync",
                    status="failed" if i == 2 else "succeeded",
                    pulled=10 * i,
                    errors=1 if i == 2 else 0,
                    error="INVALID_SESSION_ID" if i == 2 else None,
                    started_at=start + timedelta(hours=i),
                    finished_at=start + timedelta(hours=i, seconds=90),
                    created_at=start + timedelta(hours=i),
                )
            )
    page = (await client.get("/v1/sync-runs", params={"limit": 2}, headers=tenant.reader)).json()
    assert [r["job_id"] for r in page["items"]] == ["job-2", "job-1"]
    assert page["items"][0]["status"] == "failed" and page["items"][0]["error"] == "INVALID_SESSION_ID"
    assert page["items"][0]["duration_s"] == 90.0
    rest = (
        await client.get("/v1/sync-runs", params={"cursor": page["next_cursor"]}, headers=tenant.reader)
    ).json()
    assert [r["job_id"] for r in rest["items"]] == ["job-0"] and rest["next_cursor"] is None
    assert rest["items"][0]["reason"] == "first_sync"
    full = (await client.get("/v1/sync-runs", params={"kind": "full"}, headers=tenant.reader)).json()
    assert [r["job_id"] for r in full["items"]] == ["job-0"]
    one = await client.get(f"/v1/sync-runs/{page['items'][1]['id']}", headers=tenant.reader)
    assert one.json()["pulled"] == 10


async def test_the_push_log_lists_what_was_sent_and_why(client, sessions, tenant) -> None:
    (contact_id,) = await add_contacts(sessions, tenant.account_id, 1)
    async with sessions.begin() as session:
        for i, status in enumerate(("succeeded", "failed", "skipped")):
            session.add(
                PushLog(
                    account_id=tenant.account_id,
                    event_id=f"e-{i}",
                    contact_id=contact_id if i else None,
                    operation="update",
                    status=status,
                    sent_fields={"Title": "CTO"} if status == "succeeded" else {},
                    decisions={"company": "allow_push off (R8)"},
                    error_code="UNABLE_TO_LOCK_ROW" if status == "failed" else None,
                )
            )
    everything = (await client.get("/v1/push-log", headers=tenant.reader)).json()
    assert [e["event_id"] for e in everything["items"]] == ["e-2", "e-1", "e-0"]
    failed = (await client.get("/v1/push-log", params={"status": "failed"}, headers=tenant.reader)).json()
    assert [e["error_code"] for e in failed["items"]] == ["UNABLE_TO_LOCK_ROW"]
    mine = (
        await client.get("/v1/push-log", params={"contact_id": str(contact_id)}, headers=tenant.reader)
    ).json()
    assert {e["event_id"] for e in mine["items"]} == {"e-1", "e-2"}
    paged = (await client.get("/v1/push-log", params={"limit": 1}, headers=tenant.reader)).json()
    second = (
        await client.get(
            "/v1/push-log", params={"limit": 1, "cursor": paged["next_cursor"]}, headers=tenant.reader
        )
    ).json()
    assert second["items"][0]["event_id"] == "e-1"
    entry = (await client.get(f"/v1/push-log/{paged['items'][0]['id']}", headers=tenant.reader)).json()
    assert entry["decisions"] == {"company": "allow_push off (R8)"}


async def test_health_endpoints_stay_beside_the_api(client) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    await client.get("/v1/account", headers={})
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'crmsync_api_requests_total{method="GET",route="/v1/account",status="401"}' in metrics.text


async def test_an_account_made_without_defaults_saves_its_first_mapping_as_version_1(
    client, sessions, account_id
) -> None:
    key = await create_api_key(transactions(sessions), account_id=account_id, role="admin")
    headers = {"Authorization": f"Bearer {key}"}
    missing = await client.get("/v1/mapping", headers=headers)
    assert missing.status_code == 404 and missing.json()["field"] == "version"
    rows = [
        {"destination": "email", "lead_source": "Email", "contact_source": "Email"},
        {"destination": "score", "lead_source": "Marketing_Score__c"},
    ]
    response = await client.put("/v1/mapping", json={"rows": rows}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1 and body["default_allow_push"] is True
    assert body["new_sources"] == ["Contact.Email", "Lead.Email", "Lead.Marketing_Score__c"]
    schedule = (await client.get("/v1/schedule", headers=headers)).json()
    assert schedule["mode"] == "automatic" and schedule["full_sync_requested_at"] is not None


async def test_the_unit_of_work_wakes_the_outbox_relay_only_after_a_use_case_wrote_to_the_outbox(
    settings, engine, sessions, tenant
) -> None:
    services = build(api_settings(settings), engine=engine)
    woken: list[int] = []

    class Relay:
        def notify(self) -> None:
            woken.append(1)

    services.outbox.relay = Relay()  # type: ignore[assignment]
    current = await read_mapping(services.tx, account_id=tenant.account_id)
    rows = [
        RowInput(r.destination, r.kind, r.lead_source, r.contact_source, r.data_type)
        for r in current.mapping.rows
    ]
    await save_mapping(
        services.tx, account_id=tenant.account_id, rows=rows, note=None, crm=services.crm, now=utc_now()
    )
    assert woken == []  # nothing changed, nothing enqueued
    rows.append(RowInput("Notes", FieldKind.CUSTOM, lead_source="Description", data_type=DataType.TEXT))
    saved = await save_mapping(
        services.tx, account_id=tenant.account_id, rows=rows, note=None, crm=services.crm, now=utc_now()
    )
    assert woken == [1] and saved.full_sync_job_id
    async with sessions() as session:
        queued = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.account_id == tenant.account_id)
        )
    assert queued == 1
