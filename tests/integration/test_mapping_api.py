"""The mapping API against the real PostgreSQL and Kafka: configuration, rules, tenancy, events."""

from __future__ import annotations

import pytest

from tests.support.mapping_api import new_tenant, running_api

pytestmark = pytest.mark.integration


@pytest.fixture
async def tenant(sessions):
    return await new_tenant(sessions)


@pytest.fixture
async def client(settings, engine):
    async with running_api(settings, engine=engine) as client:
        yield client


async def test_r7_a_new_account_starts_with_the_default_salesforce_mapping(client, tenant) -> None:
    response = await client.get("/v1/mapping", headers=tenant.reader)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1
    rows = {r["destination"]: r for r in body["rows"]}
    assert rows["email"]["lead_source"] == "Email" and rows["email"]["contact_source"] == "Email"
    assert rows["street"]["lead_source"] == "Street" and rows["street"]["contact_source"] == "MailingStreet"
    assert rows["company"]["lead_source"] == "Company" and rows["company"]["contact_source"] is None
