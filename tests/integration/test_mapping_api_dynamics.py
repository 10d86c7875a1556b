"""The mapping API with a Dynamics 365 connection made through it, against the Dataverse emulator
over HTTPS: the provider chosen on PUT /v1/connection, the connection test, CRM entities and
their fields (R20), the provider's default mapping for the account (R7), the segments named
after the CRM (R19), and what a Dynamics connection needs refused with the field named (R22)."""

from __future__ import annotations

import pytest

from crmsync.common.crm.providers import provider_named
from tests.support.dynamics_emulator import DynamicsEmulator, dynamics_emulator
from tests.support.mapping_api import new_tenant, running_api

__all__ = ["dynamics_emulator"]
pytestmark = pytest.mark.integration

DYNAMICS = provider_named("dynamics")


@pytest.fixture
async def tenant(sessions):
    return await new_tenant(sessions)


@pytest.fixture
async def client(settings, engine, dynamics_emulator: DynamicsEmulator, monkeypatch):
    # The connectors the API builds trust the emulator's certificate, as one trusts a CA bundle.
    monkeypatch.setenv("SSL_CERT_FILE", str(dynamics_emulator.cert))
    async with running_api(settings, engine=engine) as api:
        yield api


def dynamics_connection(emulator: DynamicsEmulator, **overrides) -> dict:
    body = {
        "provider": "dynamics",
        "login_url": f"{emulator.base_url}/{emulator.tenant}",
        "instance_url": emulator.base_url,
        "auth_method": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        **overrides,
    }
    return {k: v for k, v in body.items() if v is not None}


def rows_of(body: dict) -> list[tuple]:
    return [(r["destination"], r["lead_source"], r["contact_source"], r["data_type"]) for r in body["rows"]]


async def test_r7_a_dynamics_account_connected_through_the_api_reads_its_entities_and_gets_the_dynamics_mapping(
    client, tenant, dynamics_emulator: DynamicsEmulator
) -> None:
    put = await client.put(
        "/v1/connection", json=dynamics_connection(dynamics_emulator), headers=tenant.admin
    )
    assert put.status_code == 200, put.text
    shown = (await client.get("/v1/connection", headers=tenant.reader)).json()
    assert (shown["provider"], shown["provider_label"]) == ("dynamics", "Dynamics 365")
    assert shown["api_version"] == DYNAMICS.default_api_version
    assert shown["instance_url"] == dynamics_emulator.base_url and shown["secrets_set"] == ["client_secret"]

    tested = (await client.post("/v1/connection/test", headers=tenant.admin)).json()
    assert tested["status"] == "connected", tested

    entities = await client.get("/v1/crm/entities", headers=tenant.reader)
    assert entities.status_code == 200, entities.text
    assert entities.json() == [
        {"name": "Lead", "record_count": 300},
        {"name": "Contact", "record_count": 300},
    ]
    fields = {
        f["name"]: f for f in (await client.get("/v1/crm/entities/Lead/fields", headers=tenant.reader)).json()
    }
    assert "email" in fields["Email"]["fills"] and "score" in fields["crmsync_marketingscore"]["fills"]
    assert fields["firstname"]["fills"] == ["text"]

    mapping = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    assert rows_of(mapping) == [
        (r.destination, r.lead_source, r.contact_source, r.data_type.value)
        for r in DYNAMICS.default_mapping().rows
    ]
    assert mapping["note"] == "default Dynamics 365 mapping"
    rows = [
        {k: r[k] for k in ("destination", "kind", "lead_source", "contact_source", "data_type")}
        for r in mapping["rows"]
    ]
    saved = await client.put("/v1/mapping", json={"rows": rows}, headers=tenant.admin)
    assert saved.status_code == 200, saved.text
    assert (
        saved.json()["checked_against_crm"] is True
    )  # the default passes the rules against the live describe

    names = {s["id"]: s["name"] for s in (await client.get("/v1/segments", headers=tenant.reader)).json()}
    assert names == {
        "all-contacts": "All Contacts",
        "crm-leads": "All Dynamics 365 Leads",
        "crm-contacts": "All Dynamics 365 Contacts",
    }


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"provider": "sugarcrm"}, "provider", "salesforce, dynamics"),
        ({"auth_method": "refresh_token", "refresh_token": "r"}, "auth_method", "client_credentials"),
        ({"login_url": "https://login.microsoftonline.com"}, "login_url", "tenant"),
        ({"instance_url": None}, "instance_url", "environment"),
        ({"client_secret": None}, "client_secret", "client_secret"),
    ],
)
async def test_r22_a_dynamics_connection_lacking_what_it_needs_is_refused_naming_the_field_and_nothing_is_stored(
    client, tenant, dynamics_emulator: DynamicsEmulator, overrides: dict, field: str, says: str
) -> None:
    before = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    body = dynamics_connection(dynamics_emulator, **overrides)
    refused = await client.put("/v1/connection", json=body, headers=tenant.admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field and says in refused.json()["message"]
    stored = await client.get("/v1/connection", headers=tenant.reader)
    assert stored.status_code == 409 and stored.json()["error"] == "no_crm_connection"
    assert (await client.get("/v1/mapping", headers=tenant.reader)).json() == before


async def test_r7_a_mapping_an_admin_saved_is_kept_when_the_account_connects_another_crm(
    client, tenant, dynamics_emulator: DynamicsEmulator
) -> None:
    mapping = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    rows = [
        {k: r[k] for k in ("destination", "kind", "lead_source", "contact_source", "data_type")}
        for r in mapping["rows"]
    ]
    rows = [r for r in rows if r["destination"] != "website"]
    assert (await client.put("/v1/mapping", json={"rows": rows}, headers=tenant.admin)).status_code == 200
    put = await client.put(
        "/v1/connection", json=dynamics_connection(dynamics_emulator), headers=tenant.admin
    )
    assert put.status_code == 200, put.text
    kept = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    assert kept["version"] == 2 and [r["destination"] for r in kept["rows"]] == [
        r["destination"] for r in rows
    ]


async def test_r7_an_untouched_default_mapping_follows_the_account_to_another_crm_and_back(
    client, tenant, dynamics_emulator: DynamicsEmulator
) -> None:
    salesforce = provider_named("salesforce")
    to_dynamics = await client.put(
        "/v1/connection", json=dynamics_connection(dynamics_emulator), headers=tenant.admin
    )
    assert to_dynamics.status_code == 200, to_dynamics.text
    back = {
        "login_url": "https://login.salesforce.com",
        "auth_method": "client_credentials",
        "client_id": "3MVG9-demo-client",
        "client_secret": "s3cr3t",
    }
    assert (await client.put("/v1/connection", json=back, headers=tenant.admin)).status_code == 200
    shown = (await client.get("/v1/connection", headers=tenant.reader)).json()
    assert (shown["provider"], shown["instance_url"], shown["api_version"]) == (
        "salesforce",
        None,
        salesforce.default_api_version,
    )
    mapping = (await client.get("/v1/mapping", headers=tenant.reader)).json()
    assert (mapping["version"], mapping["note"]) == (3, "default Salesforce mapping")
    assert rows_of(mapping) == [
        (r.destination, r.lead_source, r.contact_source, r.data_type.value)
        for r in salesforce.default_mapping().rows
    ]
