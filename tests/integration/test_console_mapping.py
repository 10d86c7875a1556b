"""The console's forms through the ASGI app on the real PostgreSQL, Kafka and emulator: adding,
filling and deleting mapping rows (R1, R6), the default push setting (R8), a CRM that cannot be
reached keeping the edits, the schedule (R14) and Sync Now."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from crmsync.common.settings import CommonSettings
from tests.integration.test_console_pages import CSRF, _key, sign_in
from tests.support.connections import add_connection
from tests.support.emulator import CrmOrg
from tests.support.mapping_api import Tenant, new_tenant, running_api

pytestmark = pytest.mark.integration


async def _tenant(sessions, settings: CommonSettings, org: CrmOrg) -> Tenant:
    tenant = await new_tenant(sessions)
    async with sessions.begin() as session:
        add_connection(session, settings=settings, account_id=tenant.account_id, org=org, status="connected")
    return tenant


@pytest.fixture
async def tenant(sessions, settings: CommonSettings, crm_org: CrmOrg) -> Tenant:
    return await _tenant(sessions, settings, crm_org)


async def _form(client: httpx.AsyncClient, tenant: Tenant, token: str, **extra: str) -> dict[str, Any]:
    """Returns the mapping form as the page holds the saved rows, plus `extra`."""
    mapping = (await client.get("/v1/mapping", headers=tenant.admin)).json()
    data: dict[str, Any] = {"csrf_token": token}
    for i, row in enumerate(mapping["rows"]):
        push = {None: "default", True: "on", False: "off"}[row["allow_push"]]
        data |= {
            f"rows-{i}-destination": row["destination"],
            f"rows-{i}-kind": row["kind"],
            f"rows-{i}-lead_source": row["lead_source"] or "",
            f"rows-{i}-contact_source": row["contact_source"] or "",
            f"rows-{i}-data_type": row["data_type"],
            f"rows-{i}-allow_push": push,
        }
    return data | extra


async def test_add_a_custom_field_fill_it_and_save(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        data = await _form(client, tenant, token, action="add_custom")
        count = sum(1 for k in data if k.endswith("-destination"))
        page = await client.post("/console/mapping", data=data)
        assert page.status_code == 200
        assert 'aria-label="Name of the custom field"' in page.text
        assert f'name="rows-{count}-data_type"' in page.text

        unnamed = data | {
            f"rows-{count}-kind": "custom",
            f"rows-{count}-destination": "bad name",
            "action": "check",
        }
        refused = await client.post("/console/mapping", data=unnamed)
        assert "R6" in refused.text and "custom field name" in refused.text

        named = unnamed | {
            f"rows-{count}-destination": "Shoe_Size",
            f"rows-{count}-data_type": "number",
            f"rows-{count}-lead_source": "Marketing_Score__c",
            "action": "save",
            "note": "a custom field",
        }
        saved = await client.post("/console/mapping", data=named)
        assert saved.status_code == 303 and saved.headers["location"] == "/console/mapping?saved=2"
        mapping = (await client.get("/v1/mapping", headers=tenant.admin)).json()
        assert mapping["version"] == 2 and mapping["note"] == "a custom field"
        (custom,) = [r for r in mapping["rows"] if r["kind"] == "custom"]
        assert (custom["destination"], custom["data_type"], custom["lead_source"]) == (
            "Shoe_Size",
            "number",
            "Marketing_Score__c",
        )


async def test_a_deleted_row_is_gone_from_the_page_and_nothing_is_saved(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        data = await _form(client, tenant, token)
        index = next(k for k, v in data.items() if v == "job_title").split("-")[1]
        page = await client.post("/console/mapping", data=data | {"action": f"delete-{index}"})
        assert 'data-destination="job_title"' not in page.text
        assert 'data-destination="first_name"' in page.text
        assert (await client.get("/v1/mapping", headers=tenant.admin)).json()["version"] == 1


async def test_the_default_push_setting_is_saved(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        done = await client.post(
            "/console/mapping/default-push", data={"csrf_token": token, "default_allow_push": "forbid"}
        )
        assert done.status_code == 303
        assert (await client.get("/v1/mapping", headers=tenant.admin)).json()["default_allow_push"] is False


async def test_a_crm_refusing_the_credentials_keeps_the_edits(settings, engine, sessions, crm_org) -> None:
    tenant = await _tenant(sessions, settings, replace(crm_org, client_secret="wrong"))
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        data = await _form(client, tenant, token, action="save")
        data["rows-4-lead_source"] = "Industry"
        page = await client.post("/console/mapping", data=data)
        assert page.status_code == 502
        assert "nothing saved" in page.text and "Your edits are kept" in page.text
        assert 'value="Industry" selected' in page.text
        assert (await client.get("/v1/mapping", headers=tenant.admin)).json()["version"] == 1


async def test_the_schedule_names_what_a_mode_lacks_and_sync_now_enqueues(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        lacking = await client.post("/console/schedule", data={"csrf_token": token, "mode": "daily"})
        assert lacking.status_code == 422 and "needs time_of_day" in lacking.text
        saved = await client.post(
            "/console/schedule",
            data={"csrf_token": token, "mode": "daily", "time_of_day": "02:30", "timezone": "Europe/Berlin"},
        )
        assert saved.status_code == 303
        schedule = (await client.get("/v1/schedule", headers=tenant.admin)).json()
        assert (schedule["mode"], schedule["time_of_day"], schedule["timezone"]) == (
            "daily",
            "02:30:00",
            "Europe/Berlin",
        )
        queued = await client.post("/console/schedule/sync-now", data={"csrf_token": token})
        assert queued.status_code == 303 and "job=" in queued.headers["location"]
        job = queued.headers["location"].split("job=")[1]
        fragment = await client.get(f"/console/schedule/progress?job={job}")
        assert 'data-live="yes"' in fragment.text and "waiting for the puller" in fragment.text
        assert CSRF.search((await client.get("/console/schedule")).text)
