"""The PostgreSQL-backed API allowance against the real database (R26: each account has its own budget).

Gates of one account in different processes share one usage row per CRM day:
however they race, crmsync never takes more calls than the account allocated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from alembic import command
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.crm.interface import CrmBudgetExhausted, CrmTransientError
from crmsync.common.db.allowance import PgCallGate, call_gates_for, calls_used
from crmsync.common.db.migrate import alembic_config
from crmsync.common.db.schema import CrmConnection
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.settings import CommonSettings
from tests.support.databases import asyncpg_dsn, scratch_database

pytestmark = pytest.mark.integration

TODAY = datetime(2026, 12, 4, 23, 59, 58, tzinfo=UTC)
DAY = TODAY.date()


async def _connect(
    sessions: async_sessionmaker[AsyncSession],
    account_id: str,
    *,
    share: float | None = None,
    calls: int | None = None,
    api_limit: int | None = None,
) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=account_id,
                login_url="https://login.example.invalid",
                auth_method="client_credentials",
                client_id="client",
                secrets_encrypted=b"sealed",
                api_limit=api_limit,
                api_allocation_share=share,
                api_allocation_calls=calls,
            )
        )


async def _allocate(sessions, account_id: str, **values) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(CrmConnection).where(CrmConnection.account_id == account_id).values(**values)
        )


async def _used(sessions, account_id: str, day: date = DAY) -> int:
    async with sessions() as session:
        return await calls_used(session, account_id=account_id, day=day)


@pytest.fixture
async def other_process(base_settings: CommonSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on an engine of their own, as another process of another service has."""
    engine = create_engine(base_settings, pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _spend_until_refused(gate: PgCallGate) -> int:
    spent = 0
    while True:
        try:
            await gate.spend()
        except CrmBudgetExhausted:
            return spent
        spent += 1
        await asyncio.sleep(0)  # let the other spenders race this one


async def test_r26_two_gates_of_one_account_racing_never_take_more_than_the_allocation(
    sessions, other_process, account_id
) -> None:
    # 53 is no multiple of the lease: the last calls are taken one by one.
    await _connect(sessions, account_id, calls=53)
    gates = [
        PgCallGate(sessions, account_id=account_id, clock=lambda: TODAY),
        PgCallGate(other_process, account_id=account_id, clock=lambda: TODAY),
    ]

    spent = await asyncio.gather(*(_spend_until_refused(gate) for gate in gates for _ in range(4)))

    assert sum(spent) == 53
    assert all(gate.held == 0 for gate in gates)
    assert await _used(sessions, account_id) == 53
    with pytest.raises(CrmBudgetExhausted) as refused:
        await gates[0].spend()
    assert (refused.value.used, refused.value.limit) == (53, 53)


async def test_r26_a_share_of_the_daily_limit_allows_that_share_of_its_calls(sessions, account_id) -> None:
    await _connect(sessions, account_id, share=0.1, api_limit=300)
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=7, clock=lambda: TODAY)

    assert await _spend_until_refused(gate) == 30
    assert await _used(sessions, account_id) == 30


async def test_r26_unused_calls_of_a_lease_go_back_when_the_gate_closes(sessions, account_id) -> None:
    await _connect(sessions, account_id, calls=1000)
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=20, clock=lambda: TODAY)
    for _ in range(3):
        await gate.spend()
    assert await _used(sessions, account_id) == 20  # one lease taken

    await gate.aclose()

    assert await _used(sessions, account_id) == 3
    assert gate.held == 0


async def test_r26_an_account_without_an_allocation_is_counted_and_never_refused(
    sessions, account_id
) -> None:
    await _connect(sessions, account_id, api_limit=10)
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=5, clock=lambda: TODAY)
    for _ in range(12):
        await gate.spend()
    await gate.aclose()
    assert await _used(sessions, account_id) == 12


async def test_r26_an_allocation_changed_in_the_api_holds_from_the_next_lease(sessions, account_id) -> None:
    await _connect(sessions, account_id, calls=1000)
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=10, clock=lambda: TODAY)
    await gate.spend()  # leases 10
    await _allocate(sessions, account_id, api_allocation_calls=14)

    assert await _spend_until_refused(gate) == 13  # 9 of the lease held, then 4 more one by one
    assert await _used(sessions, account_id) == 14


async def test_r26_a_new_crm_day_starts_from_nothing_and_the_old_days_lease_lapses(
    sessions, account_id
) -> None:
    await _connect(sessions, account_id, calls=30)
    now = [TODAY]
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=3, clock=lambda: now[0])
    await gate.spend()
    assert gate.held == 2

    now[0] = TODAY + timedelta(seconds=3)  # past midnight UTC
    await gate.spend()

    assert gate.held == 2  # a lease of the new day; the old day's 2 lapsed, counted on their day
    assert await _used(sessions, account_id, TODAY.date()) == 3
    assert await _used(sessions, account_id, now[0].date()) == 3
    assert await _spend_until_refused(gate) == 29  # the new day's whole allocation, less the one spent


async def test_r26_a_small_allocation_is_leased_in_small_parts_so_idle_gates_hold_back_little(
    sessions, other_process, account_id
) -> None:
    await _connect(sessions, account_id, calls=50)
    idle = PgCallGate(other_process, account_id=account_id, clock=lambda: TODAY)
    await idle.spend()
    assert idle.held == 4  # a lease of 5, a tenth of the 50 left, not a whole lease of 20
    busy = PgCallGate(sessions, account_id=account_id, clock=lambda: TODAY)

    assert await _spend_until_refused(busy) == 45  # all but what the idle gate holds
    assert await _used(sessions, account_id) == 50


async def test_r26_a_spend_bigger_than_a_lease_takes_what_it_needs_at_once(sessions, account_id) -> None:
    await _connect(sessions, account_id, calls=60)
    gate = PgCallGate(sessions, account_id=account_id, lease_calls=20, clock=lambda: TODAY)
    await gate.spend(50)
    assert await _used(sessions, account_id) == 50
    with pytest.raises(CrmBudgetExhausted):
        await gate.spend(11)
    await gate.spend(10)
    assert await _used(sessions, account_id) == 60


async def test_r26_the_registry_gives_every_connector_of_an_account_the_same_gate(
    sessions, account_id
) -> None:
    gates = call_gates_for(sessions)
    connection = CrmConnectionInfo(
        account_id=account_id,
        provider="salesforce",
        login_url="https://login.example.invalid",
        auth_method="client_credentials",
        client_id="client",
        secrets_encrypted=b"sealed",
    )
    other = CrmConnectionInfo(**{**connection.__dict__, "account_id": f"{account_id}-other"})
    assert gates(connection) is gates(connection)
    assert gates(other) is not gates(connection)
    await _connect(sessions, account_id, calls=10)
    await gates(connection).spend()
    await gates.aclose()
    assert await _used(sessions, account_id, datetime.now(UTC).date()) == 1


async def test_r22_a_database_that_does_not_answer_makes_a_spend_transient_not_a_crash(
    base_settings: CommonSettings,
) -> None:
    unreachable = base_settings.model_copy(
        update={"database_url": "postgresql+asyncpg://crmsync:crmsync@127.0.0.1:1/crmsync"}
    )
    engine = create_engine(unreachable, pool_size=1)
    try:
        gate = PgCallGate(create_sessionmaker(engine), account_id="nobody")
        with pytest.raises(CrmTransientError) as failed:
            await gate.spend()
        assert failed.value.maybe_applied is False
    finally:
        await engine.dispose()


async def test_downgrading_below_the_allocation_and_upgrading_again_keeps_the_connections(
    base_settings: CommonSettings,
) -> None:
    async with scratch_database(base_settings.database_url, label="allocation") as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("insert into accounts (id, name) values ('a', 'a')")
            await conn.execute(
                "insert into crm_connections (account_id, login_url, auth_method, client_id, "
                "secrets_encrypted, api_allocation_share) values ('a', 'u', 'client_credentials', 'c', '', 0.5)"
            )
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("update crm_connections set api_allocation_calls = 10")
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0007")
            assert await conn.fetchval("select to_regclass('crm_api_usage')") is None
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
            assert (
                await conn.fetchval("select count(*) from crm_connections where api_allocation_share is null")
                == 1
            )
        finally:
            await conn.close()
