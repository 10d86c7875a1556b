"""The mapping API with a CRM connection to the Salesforce emulator over HTTP:
the connection test and budget, CRM entities (R20), and the checks against the live describe (R4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.common.crypto import SecretBox
from crmsync.common.db.allowance import calls_used
from crmsync.common.db.schema import CrmConnection
from tests.support.mapping_api import new_tenant, running_api

pytestmark = pytest.mark.integration


@pytest.fixture
async def tenant(sessions):
    return await new_tenant(sessions)


@pytest.fixture
async def client(settings, engine):
    async with running_api(settings, engine=engine) as client:
        yield client


def connection_for(org, **overrides) -> dict:
    return {
        "login_url": org.login_url,
        "auth_method": "client_credentials",
        "client_id": org.client_id,
        "client_secret": org.client_secret,
        **overrides,
    }


@pytest.fixture
async def connected(client, tenant, crm_org):
    response = await client.put("/v1/connection", json=connection_for(crm_org), headers=tenant.admin)
    assert response.status_code == 200, response.text
    return tenant


async def rows_of(client, tenant) -> list[dict]:
    body = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    keys = ("destination", "kind", "lead_source", "contact_source", "data_type", "allow_push")
    return [{k: r[k] for k in keys} for r in body["rows"]]


async def save(client, tenant, rows):
    return await client.put("/v1/mapping", json={"rows": rows}, headers=tenant.admin)


def refused(response) -> list[tuple[int | None, str, str]]:
    assert response.status_code == 422, response.text
    return [(d["row"], d["rule"], d["message"]) for d in response.json()["details"]]


async def test_the_connection_test_records_status_and_the_api_budget_left(client, connected, crm_org) -> None:
    crm_org.set_budget(used=1200, limit=15000)
    response = await client.post("/v1/connection/test", headers=connected.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "connected" and body["status_message"] is None
    assert body["last_checked_at"] is not None
    budget = body["api_budget"]
    assert budget["limit"] == 15000 and 1200 <= budget["used"] < 1300
    assert budget["remaining"] == budget["limit"] - budget["used"]
    assert (await client.get("/v1/connection", headers=connected.reader)).json()["status"] == "connected"


async def test_refused_credentials_show_as_a_failed_connection(client, tenant, crm_org) -> None:
    bad = connection_for(crm_org, client_secret="wrong-secret")
    await client.put("/v1/connection", json=bad, headers=tenant.admin)
    body = (await client.post("/v1/connection/test", headers=tenant.admin)).json()
    assert body["status"] == "failed"
    assert body["status_message"]
    assert "wrong-secret" not in str(body)


async def test_r20_crm_entities_show_their_record_counts(client, connected) -> None:
    response = await client.get("/v1/crm/entities", headers=connected.reader)
    assert response.status_code == 200, response.text
    assert response.json() == [{"name": "Lead", "record_count": 50}, {"name": "Contact", "record_count": 50}]


async def test_r20_sample_values_of_a_field_on_request(client, connected, crm_org) -> None:
    crm_org.create(
        "Lead", {"LastName": "Lovelace", "Company": "Analytical Engines", "Industry": "Technology"}
    )
    response = await client.get(
        "/v1/crm/entities/Lead/fields/Company/samples", params={"limit": 100}, headers=connected.reader
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["entity"], body["field"]) == ("Lead", "Company")
    assert "Analytical Engines" in body["values"]
    assert len(body["values"]) == len(set(body["values"])) <= 100
    few = await client.get("/v1/crm/entities/Lead/fields/Company/samples?limit=3", headers=connected.reader)
    assert len(few.json()["values"]) <= 3
    missing = await client.get("/v1/crm/entities/Lead/fields/Nope__c/samples", headers=connected.reader)
    assert missing.status_code == 404 and missing.json()["field"] == "field"


async def test_r20_an_entity_describe_says_what_each_field_may_fill(client, connected) -> None:
    fields = {
        f["name"]: f
        for f in (await client.get("/v1/crm/entities/Contact/fields", headers=connected.reader)).json()
    }
    assert fields["Email"]["type"] == "email" and "email" in fields["Email"]["fills"]
    assert fields["Marketing_Score__c"]["fills"] == ["number", "score"]
    assert fields["Id"]["updateable"] is False
    assert (
        await client.get("/v1/crm/entities/Opportunity/fields", headers=connected.reader)
    ).status_code == 422


async def test_r7_the_default_mapping_passes_against_the_live_describe(client, connected) -> None:
    response = await save(client, connected, await rows_of(client, connected))
    assert response.status_code == 200, response.text
    assert response.json()["checked_against_crm"] is True


async def test_r4_a_source_missing_in_the_crm_is_refused(client, connected) -> None:
    rows = await rows_of(client, connected)
    rows.append({"destination": "Shoe", "kind": "custom", "data_type": "text", "contact_source": "Shoe__c"})
    assert refused(await save(client, connected, rows)) == [
        (len(rows) - 1, "R4", "Contact.Shoe__c does not exist in the CRM")
    ]


async def test_r4_lead_address_fields_are_not_contact_fields(client, connected) -> None:
    rows = await rows_of(client, connected)
    street = next(i for i, r in enumerate(rows) if r["destination"] == "street")
    rows[street]["contact_source"] = "Street"
    assert [(r, rule) for r, rule, _ in refused(await save(client, connected, rows))] == [(street, "R4")]


async def test_r4_the_data_type_must_be_compatible_with_the_crm_type(client, connected) -> None:
    rows = await rows_of(client, connected)
    rows.append(
        {"destination": "Name_Number", "kind": "custom", "data_type": "number", "lead_source": "FirstName"}
    )
    rows.append(
        {
            "destination": "Score_Text",
            "kind": "custom",
            "data_type": "text",
            "lead_source": "Marketing_Score__c",
        }
    )
    violations = refused(await save(client, connected, rows))
    assert [(r, rule) for r, rule, _ in violations] == [(len(rows) - 2, "R4"), (len(rows) - 1, "R4")]
    assert "CRM type string" in violations[0][2] and "CRM type double" in violations[1][2]


async def test_r4_a_field_that_may_push_must_be_updateable_in_the_crm(client, connected) -> None:
    rows = await rows_of(client, connected)
    converted = {
        "destination": "Converted_On",
        "kind": "custom",
        "data_type": "date",
        "lead_source": "ConvertedDate",
    }
    violations = refused(await save(client, connected, [*rows, converted]))
    assert [(r, rule) for r, rule, _ in violations] == [(len(rows), "R4")]
    assert "not updateable" in violations[0][2]
    response = await save(client, connected, [*rows, {**converted, "allow_push": False}])
    assert response.status_code == 200, response.text


async def test_r4_turning_the_default_on_is_refused_while_a_read_only_field_would_push(
    client, connected
) -> None:
    assert (
        await client.put("/v1/push-policy", json={"default_allow_push": False}, headers=connected.admin)
    ).status_code == 200
    rows = await rows_of(client, connected)
    converted = {
        "destination": "Converted_On",
        "kind": "custom",
        "data_type": "date",
        "lead_source": "ConvertedDate",
    }
    assert (await save(client, connected, [*rows, converted])).status_code == 200
    response = await client.put("/v1/push-policy", json={"default_allow_push": True}, headers=connected.admin)
    assert [(r, rule) for r, rule, _ in refused(response)] == [(len(rows), "R4")]
    policy = (await client.get("/v1/push-policy", headers=connected.reader)).json()
    assert policy["default_allow_push"] is False


async def test_a_crm_that_refuses_calls_answers_502_and_nothing_is_saved(client, connected, crm_org) -> None:
    crm_org.faults("budget")
    response = await client.get("/v1/crm/entities", headers=connected.reader)
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "crm_unavailable"
    saved = await save(client, connected, await rows_of(client, connected))
    assert saved.status_code == 502
    assert (await client.get("/v1/mapping", headers=connected.reader)).json()["version"] == 1


async def test_an_unavailable_crm_answers_502_rather_than_keeping_the_caller_waiting(
    client, connected, crm_org
) -> None:
    crm_org.faults("503", count=20)
    response = await client.get("/v1/crm/entities", headers=connected.reader)
    assert response.status_code == 502, response.text
    assert response.json()["field"] == "connection"
    crm_org.clear_faults()
    assert (await client.get("/v1/crm/entities", headers=connected.reader)).status_code == 200


async def test_credentials_sealed_under_another_key_are_a_409_not_a_crash(
    client, sessions, tenant, crm_org
) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=tenant.account_id,
                login_url=crm_org.login_url,
                auth_method="client_credentials",
                client_id=crm_org.client_id,
                secrets_encrypted=SecretBox("some-other-deployment-key").seal({"client_secret": "x"}),
            )
        )
    rows = await rows_of(client, tenant)
    response = await save(client, tenant, rows)
    assert response.status_code == 409 and response.json()["field"] == "connection"
    entities = await client.get("/v1/crm/entities", headers=tenant.reader)
    assert entities.status_code == 409
    tested = (await client.post("/v1/connection/test", headers=tenant.admin)).json()
    assert tested["status"] == "failed" and "CRMSYNC_SECRET_KEY" in tested["status_message"]
    assert tested["secrets_set"] == []


async def test_r24_the_apis_calls_to_the_crm_are_taken_from_the_accounts_api_allowance(
    settings, engine, sessions, tenant, crm_org
) -> None:
    async with running_api(settings, engine=engine) as api:
        put = await api.put("/v1/connection", json=connection_for(crm_org), headers=tenant.admin)
        assert put.status_code == 200, put.text
        before = crm_org.api_usage()["used"]
        assert (await api.get("/v1/crm/entities", headers=tenant.reader)).status_code == 200
    async with sessions() as session:
        # The API has stopped: its gates gave back what they held, so the count is the calls made.
        taken = await calls_used(session, account_id=tenant.account_id, day=datetime.now(UTC).date())
    assert taken == crm_org.api_usage()["used"] - before >= 1
