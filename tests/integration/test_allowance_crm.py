"""The API allowance through real connectors, the puller and the pusher, against the emulated CRMs
and the real PostgreSQL and Kafka (R24, R26): every request is taken from the account's allocation,
retries included, and the CRM sees no more calls than allowed; a pull that meets the end of it pauses
with its progress, a push waits and never fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from crmsync.common.crm.dynamics import DynamicsConnector, DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.factory import connector_factory
from crmsync.common.crm.interface import CrmBudgetExhausted, CrmConnector
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.db.account_config import load_connection
from crmsync.common.db.allowance import PgCallGate, call_gates_for, calls_used
from crmsync.common.db.schema import CrmConnection, PushDelivery, SyncRun
from crmsync.puller.adapters.runs import claim_next_run
from crmsync.puller.bootstrap import sync_runner
from crmsync.pusher.bootstrap import bootstrap
from tests.integration.test_puller_sync import expected_store, puller_settings, queue, run_of, store_of
from tests.support.connections import add_connection
from tests.support.dynamics_emulator import DynamicsEmulator, dynamics, dynamics_emulator
from tests.support.emulator import CrmOrg
from tests.support.pusher import event, publish, pusher_settings, seed_from_crm, wait_logged

__all__ = ["dynamics", "dynamics_emulator"]
pytestmark = pytest.mark.integration


async def _connect(sessions, settings, account_id: str, org: CrmOrg, **allocation: Any) -> None:
    async with sessions.begin() as session:
        add_connection(session, settings=settings, account_id=account_id, org=org)
    await _allocate(sessions, account_id, **allocation)


async def _allocate(sessions, account_id: str, **allocation: Any) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(CrmConnection).where(CrmConnection.account_id == account_id).values(**allocation)
        )


async def _used_today(sessions, account_id: str) -> int:
    async with sessions() as session:
        return await calls_used(session, account_id=account_id, day=datetime.now(UTC).date())


async def _count_until_refused(connector: CrmConnector, object_name: str) -> int:
    answered = 0
    with pytest.raises(CrmBudgetExhausted):
        for _ in range(100):
            await connector.count(object_name)
            answered += 1
    return answered


async def test_r26_a_salesforce_connector_stops_at_the_allocation_and_the_org_sees_no_more_calls(
    sessions, settings, account_id, crm_org: CrmOrg
) -> None:
    await _connect(sessions, settings, account_id, crm_org, api_allocation_calls=6)
    gates = call_gates_for(sessions)
    build = connector_factory(settings.secret_key.get_secret_value(), call_gates=gates)
    async with sessions() as session:
        connection = await load_connection(session, account_id=account_id)
    assert connection is not None
    before = crm_org.api_usage()["used"]
    # Two 503s answered first: the connector's retries are calls like any other.
    crm_org.faults("503", count=2, path="/query")
    connector = build(connection)
    try:
        answered = await _count_until_refused(connector, "Lead")
    finally:
        await connector.aclose()
        await gates.aclose()

    assert answered == 4  # 6 calls: 2 refused with a 503 and retried, 4 answered
    assert crm_org.api_usage()["used"] - before == 6
    assert await _used_today(sessions, account_id) == 6


async def test_r26_a_dynamics_connector_stops_at_the_allocation_and_dataverse_sees_no_more_requests(
    sessions, account_id, dynamics: DynamicsEmulator
) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=account_id,
                provider="dynamics",
                login_url=f"{dynamics.base_url}/{dynamics.tenant}",
                instance_url=dynamics.base_url,
                auth_method="client_credentials",
                client_id=dynamics.client_id,
                secrets_encrypted=b"sealed",
                api_version="9.2",
                api_allocation_calls=3,
            )
        )
    gate = PgCallGate(sessions, account_id=account_id)
    credentials = DynamicsCredentials(
        authority_url=dynamics.base_url, tenant_id=dynamics.tenant, client_id=dynamics.client_id,
        client_secret=dynamics.client_secret, resource_url=dynamics.base_url,
    )  # fmt: skip
    transport = httpx.AsyncHTTPTransport(verify=dynamics.ssl_context())
    connector = DynamicsConnector(
        credentials, options=DynamicsOptions(call_gate=gate), transport=transport, account_id=account_id
    )
    before = _requests_in_window(dynamics)
    try:
        answered = await _count_until_refused(connector, "Lead")
    finally:
        await connector.aclose()
    assert answered == 3
    assert _requests_in_window(dynamics) - before == 3
    assert await _used_today(sessions, account_id) == 3


def _requests_in_window(emulator: DynamicsEmulator) -> int:
    answer = emulator.control("GET", "/faults")
    answer.raise_for_status()
    return int(answer.json()["in_window"])


# ------------------------------------------------------------------ the puller


async def _run_queued(sessions, config, gates, account_id: str) -> list[str]:
    factory = connector_factory(
        config.secret_key.get_secret_value(),
        settings=ConnectorSettings(bulk_threshold=config.puller_bulk_threshold, change_lookback_s=60.0),
        call_gates=gates,
    )
    runner = sync_runner(sessions=sessions, crm_factory=factory, settings=config)
    statuses = []
    while True:
        async with sessions.begin() as session:
            run = await claim_next_run(session, account_id=account_id)
        if run is None or (statuses and statuses[-1] != "succeeded"):
            return statuses
        statuses.append(await runner.execute(run))


async def test_r26_a_full_sync_meeting_the_end_of_the_allocation_pauses_with_its_progress_and_resumes(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5000, contacts=10, seed=15)
    config = puller_settings(settings)
    # Enough for the describes and the first pages of leads, not for the whole read.
    await _connect(sessions, settings, account_id, org, api_allocation_calls=6)
    gates = call_gates_for(sessions)
    before = org.api_usage()["used"]
    job_id = await queue(sessions, account_id, "full")

    assert await _run_queued(sessions, config, gates, account_id) == ["paused"]
    paused = await run_of(sessions, account_id, job_id)
    assert paused.error.startswith("paused: API budget"), paused.error
    # What the allocation read is stored, page by page (2,000 records a page), and no more was read.
    assert 0 < paused.pulled < 5000 and paused.pulled % 2000 == 0, paused.pulled
    assert paused.progress["full_started_at"]
    assert org.api_usage()["used"] - before == 6  # the org saw the allocation, not one call more

    await _allocate(sessions, account_id, api_allocation_calls=1000)
    async with sessions.begin() as session:  # resume now rather than at the budget's recheck
        await session.execute(
            update(SyncRun).where(SyncRun.id == paused.id).values(next_attempt_at=datetime.now(UTC))
        )
    assert await _run_queued(sessions, config, gates, account_id) == ["succeeded"]
    resumed = await run_of(sessions, account_id, job_id)
    assert resumed.progress["full_started_at"] == paused.progress["full_started_at"]
    assert await store_of(sessions, account_id) == expected_store(org)
    await gates.aclose()
    assert await _used_today(sessions, account_id) == org.api_usage()["used"] - before


# ------------------------------------------------------------------ the pusher


@contextlib.asynccontextmanager
async def _running_pusher(settings, sessions) -> AsyncIterator[None]:
    pusher = pusher_settings(settings).model_copy(
        update={
            "push_redelivery_base_s": 0.2,
            "push_redelivery_cap_s": 0.5,
            "push_redelivery_min_wait_s": 0.0,
            "push_redelivery_interval_s": 0.1,
            "push_budget_recheck_s": 0.3,
            "push_redelivery_horizon_s": 0.5,
        }
    )
    secret = pusher.secret_key.get_secret_value()
    gates = call_gates_for(sessions)
    app = bootstrap(
        pusher,
        crm_factory=connector_factory(secret, options=ConnectorOptions(max_retries=1), call_gates=gates),
        resend_factory=connector_factory(secret, options=ConnectorOptions(max_retries=0), call_gates=gates),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await gates.aclose()


async def test_r24_a_push_past_the_allocation_waits_never_failing_and_goes_when_the_allocation_grows(
    settings, sessions, account_id, crm_org: CrmOrg
) -> None:
    await _connect(sessions, settings, account_id, crm_org, api_allocation_calls=1)
    lead = crm_org.records("Lead", limit=1)[0]
    await seed_from_crm(sessions, account_id=account_id, org=crm_org, crm_object="Lead", record_id=lead["Id"])
    await PgCallGate(sessions, account_id=account_id).spend()  # the day's one call is spent already
    crm_org.clear_writes()
    change = event(account_id, external_id=lead["Id"], changes={"job_title": "Within budget"})
    async with _running_pusher(settings, sessions):
        await publish(settings, [change])
        waiting = await wait_logged(
            sessions, account_id=account_id, event_ids=[change.event_id], status="waiting"
        )
        assert waiting[change.event_id].error_code == "REQUEST_LIMIT_EXCEEDED"
        await asyncio.sleep(1.5)  # past the horizon and a few rechecks: parked, never failed
        async with sessions() as session:
            (push,) = (
                await session.scalars(select(PushDelivery).where(PushDelivery.account_id == account_id))
            ).all()
        assert (push.state, push.failures) == ("waiting", 0)
        assert crm_org.writes() == []  # not one write reached the CRM
        await _allocate(sessions, account_id, api_allocation_calls=1000)
        logged = await wait_logged(sessions, account_id=account_id, event_ids=[change.event_id])
    assert logged[change.event_id].status == "succeeded"
    assert crm_org.get("Lead", lead["Id"])["Title"] == "Within budget"
