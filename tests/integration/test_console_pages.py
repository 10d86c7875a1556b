"""The admin console over the real PostgreSQL, Kafka and emulator, through the ASGI app: sign-in,
the session and CSRF, each screen rendered, tenancy (R21) and reader keys."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from crmsync.common.db.schema import Contact
from crmsync.common.settings import CommonSettings
from crmsync.mapping_api.bootstrap import transactions
from crmsync.mapping_api.handlers.admin import revoke_api_key
from tests.support.connections import add_connection
from tests.support.emulator import CrmOrg
from tests.support.mapping_api import Tenant, new_tenant, running_api

pytestmark = pytest.mark.integration
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _key(tenant: Tenant, role: str = "admin") -> str:
    return getattr(tenant, role)["Authorization"].removeprefix("Bearer ")


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Signs in with `key`; returns the session's CSRF token."""
    page = await client.get("/console/sign-in")
    token = CSRF.search(page.text).group(1)
    done = await client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": token, "next": "/console/mapping"}
    )
    assert done.status_code == 303, done.text
    mapping = await client.get("/console/mapping")
    assert mapping.status_code == 200, mapping.text
    return CSRF.search(mapping.text).group(1)


@pytest.fixture
async def tenant(sessions, settings: CommonSettings, crm_org: CrmOrg) -> Tenant:
    tenant = await new_tenant(sessions)
    async with sessions.begin() as session:
        add_connection(
            session, settings=settings, account_id=tenant.account_id, org=crm_org, status="connected"
        )
    return tenant


async def test_sign_in_sets_a_secure_session_cookie_and_every_screen_renders(
    settings, engine, tenant
) -> None:
    async with running_api(settings, engine=engine) as client:
        assert (await client.get("/console/mapping")).status_code == 303
        page = await client.get("/console/sign-in")
        token = CSRF.search(page.text).group(1)
        done = await client.post("/console/sign-in", data={"api_key": _key(tenant), "csrf_token": token})
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
        for path in (
            "/console/mapping",
            "/console/schedule",
            "/console/contacts",
            "/console/connection",
            "/console/entities",
            "/console/entities/Lead?field=Industry",
            "/console/health",
        ):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[-2000:])
            assert "Content-Security-Policy" in response.headers


async def test_a_wrong_key_is_refused_at_sign_in(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        page = await client.get("/console/sign-in")
        token = CSRF.search(page.text).group(1)
        done = await client.post("/console/sign-in", data={"api_key": "crmsync_nope", "csrf_token": token})
        assert done.status_code == 401
        assert "unknown or revoked" in done.text


async def test_a_post_without_the_session_csrf_token_is_refused(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        await sign_in(client, _key(tenant))
        for data in ({}, {"csrf_token": "forged"}):
            response = await client.post("/console/schedule/sync-now", data=data)
            assert response.status_code == 403
        client.cookies.clear()
        assert (await client.post("/console/schedule/sync-now", data={"csrf_token": "x"})).status_code == 403


async def test_a_reader_sees_disabled_forms_and_its_posts_are_refused(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant, "reader"))
        page = await client.get("/console/mapping")
        assert "Read-only" in page.text and "<fieldset disabled" in page.text
        response = await client.post("/console/mapping", data={"csrf_token": token, "action": "save"})
        assert response.status_code == 403


async def test_another_accounts_contact_answers_404(settings, engine, sessions, tenant) -> None:
    other = await new_tenant(sessions, name="Other")
    theirs = Contact(account_id=other.account_id, email="theirs@example.com", fields={"first_name": "Theirs"})
    async with sessions.begin() as session:
        session.add(theirs)
    async with running_api(settings, engine=engine) as client:
        await sign_in(client, _key(other))
        assert (await client.get(f"/console/contacts/{theirs.id}")).status_code == 200
        client.cookies.clear()
        await sign_in(client, _key(tenant))
        page = await client.get(f"/console/contacts/{theirs.id}")
        assert page.status_code == 404 and "Theirs" not in page.text
        assert (await client.get(f"/console/contacts/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/console/contacts/not-an-id")).status_code == 404
        listing = await client.get("/console/contacts?q=theirs")
        assert "theirs@example.com" not in listing.text


async def test_a_revoked_key_ends_its_console_sessions(settings, engine, sessions, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        await sign_in(client, _key(tenant))
        await revoke_api_key(transactions(sessions), account_id=tenant.account_id, prefix=_key(tenant)[:16])
        response = await client.get("/console/mapping")
        assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")


async def test_the_json_preview_names_the_rules_a_save_would_break(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        body = {"rows": [{"destination": "email", "lead_source": "Email", "contact_source": "Email"}]}
        response = await client.post("/v1/mapping/preview", json=body, headers=tenant.reader)
        assert response.status_code == 200, response.text
        preview = response.json()
        assert preview["valid"] is False
        assert any(v["rule"] == "R3" for v in preview["violations"])
        assert preview["removed"] and not preview["full_sync"]


async def test_over_https_the_session_cookie_is_secure(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        page = await client.get("https://api.test/console/sign-in")
        assert "Secure" in page.headers["set-cookie"]
        token = CSRF.search(page.text).group(1)
        done = await client.post(
            "https://api.test/console/sign-in", data={"api_key": _key(tenant), "csrf_token": token}
        )
        session_cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("crmsync_console=")
        )
        assert (
            "Secure" in session_cookie and "HttpOnly" in session_cookie and "Path=/console" in session_cookie
        )


async def test_signing_out_ends_the_session(settings, engine, tenant) -> None:
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        done = await client.post("/console/sign-out", data={"csrf_token": token})
        assert done.status_code == 303
        assert (await client.get("/console/mapping")).status_code == 303


async def test_r7_the_connection_form_chooses_dynamics_365_and_what_it_lacks_is_refused_unsaved(
    settings, engine, tenant
) -> None:
    dynamics = {
        "provider": "dynamics",
        "login_url": "https://login.microsoftonline.com/5f0c1e2d-7a3b-4c5d-9e8f-0a1b2c3d4e5f",
        "instance_url": "https://contoso.crm.dynamics.com",
        "auth_method": "client_credentials",
        "client_id": "9a8b7c6d-1111-2222-3333-444455556666",
        "client_secret": "s3cr3t",
    }
    async with running_api(settings, engine=engine) as client:
        token = await sign_in(client, _key(tenant))
        page = await client.get("/console/connection")
        assert '<option value="dynamics">Dynamics 365</option>' in page.text
        lacking = await client.post(
            "/console/connection", data={**dynamics, "instance_url": "", "csrf_token": token}
        )
        assert lacking.status_code == 422 and "instance_url" in lacking.text
        assert (await client.get("/v1/connection", headers=tenant.reader)).json()["provider"] == "salesforce"
        saved = await client.post("/console/connection", data={**dynamics, "csrf_token": token})
        assert saved.status_code == 303, saved.text
        shown = await client.get("/console/connection")
        assert '<dd id="connection-provider">Dynamics 365</dd>' in shown.text
        mapping = (await client.get("/v1/mapping", headers=tenant.reader)).json()
        assert mapping["note"] == "default Dynamics 365 mapping"
