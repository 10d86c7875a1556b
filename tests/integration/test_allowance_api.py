"""GET/PUT /v1/api-allowance against the real PostgreSQL and Kafka (R21, R22, R26)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.common.db.allowance import PgCallGate
from crmsync.common.db.schema import CrmConnection
from tests.support.mapping_api import new_tenant, running_api

pytestmark = pytest.mark.integration

CHECKED_AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def _connect(sessions, account_id: str, *, api_limit: int | None = 15_000) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=account_id,
                login_url="https://login.example.test",
                auth_method="client_credentials",
                client_id="client-1",
                secrets_encrypted=b"sealed",
                api_limit=api_limit,
                api_usage=100,
                last_checked_at=CHECKED_AT,
            )
        )


@pytest.fixture
async def tenant(sessions):
    tenant = await new_tenant(sessions)
    await _connect(sessions, tenant.account_id)
    return tenant


@pytest.fixture
async def client(settings, engine):
    async with running_api(settings, engine=engine) as client:
        yield client


async def test_r26_a_reader_sees_no_allocation_the_limit_last_seen_and_nothing_used(client, tenant) -> None:
    response = await client.get("/v1/api-allowance", headers=tenant.reader)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("share", "calls", "api_limit", "allocated_calls", "used_today")} == {
        "share": None,
        "calls": None,
        "api_limit": 15_000,
        "allocated_calls": None,
        "used_today": 0,
    }
    assert body["remaining_today"] is None
    assert body["day"] == datetime.now(UTC).date().isoformat()
    assert datetime.fromisoformat(body["api_limit_checked_at"]) == CHECKED_AT


async def test_r26_an_admin_allocates_a_share_and_sees_what_every_service_took_today(
    client, tenant, sessions
) -> None:
    response = await client.put("/v1/api-allowance", json={"share": 0.25}, headers=tenant.admin)
    assert response.status_code == 200, response.text
    assert (response.json()["allocated_calls"], response.json()["remaining_today"]) == (3750, 3750)

    gate = PgCallGate(sessions, account_id=tenant.account_id, lease_calls=10)
    for _ in range(3):
        await gate.spend()
    await gate.aclose()

    body = (await client.get("/v1/api-allowance", headers=tenant.reader)).json()
    assert (body["share"], body["calls"], body["used_today"], body["remaining_today"]) == (
        0.25,
        None,
        3,
        3747,
    )


async def test_r26_a_number_of_calls_replaces_a_share_and_an_empty_body_clears_the_allocation(
    client, tenant
) -> None:
    await client.put("/v1/api-allowance", json={"share": 0.5}, headers=tenant.admin)
    response = await client.put("/v1/api-allowance", json={"calls": 5000}, headers=tenant.admin)
    assert response.status_code == 200, response.text
    assert (response.json()["share"], response.json()["calls"], response.json()["allocated_calls"]) == (
        None,
        5000,
        5000,
    )
    # More calls than the daily limit: stored as given, allowed up to the limit.
    response = await client.put("/v1/api-allowance", json={"calls": 20_000}, headers=tenant.admin)
    assert (response.json()["calls"], response.json()["allocated_calls"]) == (20_000, 15_000)

    response = await client.put("/v1/api-allowance", json={}, headers=tenant.admin)
    assert response.status_code == 200, response.text
    assert (response.json()["share"], response.json()["calls"], response.json()["allocated_calls"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share": 0.2, "calls": 100}, "calls"),
        ({"share": 0}, "share"),
        ({"share": 1.5}, "share"),
        ({"share": -0.1}, "share"),
        ({"share": True}, "share"),
        ({"share": "0.5"}, "share"),
        ({"calls": 0}, "calls"),
        ({"calls": 2.5}, "calls"),
        ({"calls": "5"}, "calls"),
        ({"calls": 2**31}, "calls"),
        ({"allocation": 5}, "allocation"),
    ],
)
async def test_r22_an_allocation_in_both_forms_or_out_of_range_is_refused_naming_the_field(
    client, tenant, body, field
) -> None:
    response = await client.put("/v1/api-allowance", json=body, headers=tenant.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (await client.get("/v1/api-allowance", headers=tenant.reader)).json()["share"] is None


async def test_r22_a_share_of_one_the_whole_limit_is_taken_as_a_number(client, tenant) -> None:
    response = await client.put("/v1/api-allowance", json={"share": 1}, headers=tenant.admin)
    assert response.status_code == 200, response.text
    assert response.json()["allocated_calls"] == 15_000


async def test_r21_a_reader_cannot_change_the_allocation(client, tenant) -> None:
    response = await client.put("/v1/api-allowance", json={"share": 0.5}, headers=tenant.reader)
    assert response.status_code == 403, response.text
    assert (await client.get("/v1/api-allowance", headers=tenant.reader)).json()["share"] is None


async def test_r21_an_account_without_a_connection_is_told_so_and_never_sees_another_accounts_allowance(
    client, tenant, sessions
) -> None:
    await client.put("/v1/api-allowance", json={"calls": 700}, headers=tenant.admin)
    other = await new_tenant(sessions, name="Globex")

    for method, body in (("GET", None), ("PUT", {"calls": 5})):
        response = await client.request(method, "/v1/api-allowance", json=body, headers=other.admin)
        assert response.status_code == 409, response.text  # as GET /v1/connection answers
        assert response.json()["error"] == "no_crm_connection"

    await _connect(sessions, other.account_id, api_limit=None)
    response = await client.put("/v1/api-allowance", json={"share": 0.1}, headers=other.admin)
    assert response.status_code == 200, response.text
    assert response.json()["allocated_calls"] is None  # a share of a limit not seen yet
    mine = (await client.get("/v1/api-allowance", headers=tenant.reader)).json()
    assert (mine["share"], mine["calls"]) == (None, 700)


async def test_r21_the_allowance_needs_an_api_key(client, tenant) -> None:
    assert (await client.get("/v1/api-allowance")).status_code == 401
