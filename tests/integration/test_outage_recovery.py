"""The puller and the scheduler ride out a PostgreSQL restart, and the puller a Kafka broker
restart (R18, R22): readiness goes false, work pauses, and it resumes once the server is
back, nothing lost or done twice.

The server killed is a private one (`tests.support.private_infra`), started again on its
port; the machine's shared PostgreSQL and Kafka are never touched. The other server is
the shared one, under this test's database and topic prefix.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crmsync.common.db.schema import Account, Contact, CrmConnection, ScheduledJob, SyncRun, SyncSchedule
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.topics import CONTACT_CHANGES, ensure_topics
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.common.service import check_readiness
from crmsync.common.settings import CommonSettings
from crmsync.puller.adapters.runs import record_job
from crmsync.puller.bootstrap import bootstrap as puller_bootstrap
from crmsync.scheduler.bootstrap import bootstrap as scheduler_bootstrap
from crmsync.scheduler.settings import Settings as SchedulerSettings
from tests.integration.test_puller_sync import connect, expected_store, puller_settings, store_of
from tests.support.broker import publish
from tests.support.private_infra import PrivateKafka, PrivatePostgres
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

DOWN_S = 8


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="crmsync-outage-"))
    root.chmod(0o755)
    pg = PrivatePostgres(root / "pg")
    pg.init()
    try:
        yield pg
    finally:
        pg.kill()


@pytest.fixture
def pg_settings(settings: CommonSettings, private_pg: PrivatePostgres) -> CommonSettings:
    """This test's settings and topics, on the private database."""
    return settings.model_copy(update={"database_url": private_pg.url, "database_pool_size": 4})


@pytest_asyncio.fixture
async def pg_engine(pg_settings: CommonSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_settings)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def pg_sessions(pg_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(pg_engine)


@pytest_asyncio.fixture
async def pg_account(pg_sessions: async_sessionmaker[AsyncSession]) -> str:
    account = f"t-{uuid.uuid4().hex[:12]}"
    async with pg_sessions.begin() as session:
        session.add(Account(id=account, name=f"Test {account}"))
    return account


def _alive(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        if task.done():
            task.result()  # a service that died says why
            raise AssertionError(f"{task.get_name()} stopped by itself")


async def _outage(private_pg: PrivatePostgres, app, task: asyncio.Task[None]) -> None:
    """Kills the database for DOWN_S seconds; the service must stay up and say it is not ready."""
    await asyncio.to_thread(private_pg.kill)
    await asyncio.sleep(DOWN_S)
    ready, report = await check_readiness(app.checks())
    assert not ready and report["postgres"] != "ok"
    _alive(task)
    await asyncio.to_thread(private_pg.start)


def _job(account_id: str, kind: SyncKind) -> RunSync:
    return RunSync(
        job_id=f"{account_id}:{kind}:{uuid.uuid4().hex[:8]}",
        account_id=account_id,
        kind=kind,
        reason=SyncReason.SYNC_NOW,
        requested_at=datetime.now(UTC),
    )


async def test_r18_r22_the_puller_rides_out_a_postgres_restart_mid_sync_and_loses_nothing(
    private_pg, pg_settings, pg_engine, pg_sessions, pg_account, make_crm_org
) -> None:
    org = make_crm_org(leads=300, contacts=300, seed=41)
    await connect(pg_sessions, pg_settings, pg_account, org)
    settings = puller_settings(
        pg_settings,
        puller_group_id=f"puller-{uuid.uuid4().hex[:8]}",
        puller_poll_s=0.2,
        puller_batch_size=20,
        puller_read_ahead=1,
        puller_retry_base_s=1.0,
        puller_retry_max_s=2.0,
    )
    app = puller_bootstrap(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop), name="puller")
    full = _job(pg_account, SyncKind.FULL)
    try:
        await publish(settings, [full])

        async def pulling() -> bool:
            _alive(task)
            async with pg_sessions() as session:
                run = await session.scalar(select(SyncRun).where(SyncRun.job_id == full.job_id))
            return run is not None and run.status == "running" and run.pulled > 0

        await wait_for(pulling, timeout=60, what="the full sync under way")
        await _outage(private_pg, app, task)
        # A job sent while the database was away is recorded once it is back.
        incremental = _job(pg_account, SyncKind.INCREMENTAL)
        await publish(settings, [incremental])

        async def both_done() -> bool:
            _alive(task)
            async with pg_sessions() as session:
                runs = (await session.scalars(select(SyncRun).where(SyncRun.account_id == pg_account))).all()
            return {r.job_id: r.status for r in runs} == {
                full.job_id: "succeeded",
                incremental.job_id: "succeeded",
            }

        await wait_for(both_done, timeout=120, what="both runs done after the restart")
        ready, report = await check_readiness(app.checks())
        assert ready, report
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert await store_of(pg_sessions, pg_account) == expected_store(org)


async def test_r18_r22_the_scheduler_rides_out_a_postgres_restart_and_emits_after_it(
    private_pg, pg_settings, pg_engine, pg_sessions, pg_account
) -> None:
    settings = SchedulerSettings(
        **pg_settings.model_dump(), scheduler_tick_s=0.3, scheduler_lock_key=random.randint(1, 2**62)
    )
    app = scheduler_bootstrap(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop), name="scheduler")

    async def emitted(reason: str) -> int:
        _alive(task)
        async with pg_sessions() as session:
            return await session.scalar(
                select(func.count())
                .select_from(ScheduledJob)
                .where(ScheduledJob.account_id == pg_account, ScheduledJob.reason == reason)
            )

    try:
        async with pg_sessions.begin() as session:
            session.add(
                CrmConnection(
                    account_id=pg_account,
                    login_url="https://login.invalid",
                    auth_method="client_credentials",
                    client_id="unused",
                    secrets_encrypted=b"",
                )
            )
            session.add(SyncSchedule(account_id=pg_account, mode="interval", interval_minutes=60))
        await wait_for(lambda: emitted("first_sync"), timeout=30, what="the first sync emitted")
        await _outage(private_pg, app, task)
        # The tick's record forgotten, the leader emits its jobs again: the emitting resumed.
        async with pg_sessions.begin() as session:
            await session.execute(delete(ScheduledJob).where(ScheduledJob.account_id == pg_account))
        await wait_for(lambda: emitted("first_sync"), timeout=60, what="the jobs emitted after the restart")
        assert app.leader.is_leader
        ready, report = await check_readiness(app.checks())
        assert ready, report
        assert await emitted("first_sync") == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


# ------------------------------------------------------------------ Kafka

KAFKA_DOWN_S = 60


@pytest.fixture(scope="module")
def private_kafka() -> Iterator[PrivateKafka]:
    root = Path(tempfile.mkdtemp(prefix="crmsync-outage-kafka-"))
    kafka = PrivateKafka(root)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.kill()
        shutil.rmtree(root, ignore_errors=True)


async def _contact_changes(settings: CommonSettings) -> list[str]:
    """Returns the event ids on the contact-changes topic, from its start."""
    consumer = AIOKafkaConsumer(
        settings.topic(CONTACT_CHANGES),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [orjson.loads(r.value)["event_id"] for records in batches.values() for r in records]
    finally:
        await consumer.stop()


async def test_r18_r22_the_puller_rides_out_a_kafka_broker_restart_and_publishes_what_waited(
    private_kafka, settings, engine, sessions, account_id, make_crm_org
) -> None:
    kafka_settings = settings.model_copy(update={"kafka_bootstrap_servers": private_kafka.bootstrap})
    await ensure_topics(kafka_settings)
    org = make_crm_org(leads=5, contacts=3, seed=43)
    await connect(sessions, kafka_settings, account_id, org)
    config = puller_settings(
        kafka_settings, puller_group_id=f"puller-{uuid.uuid4().hex[:8]}", puller_poll_s=0.2
    )
    app = puller_bootstrap(config, engine=engine)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop), name="puller")

    async def succeeded(job_id: str) -> bool:
        _alive(task)
        async with sessions() as session:
            run = await session.scalar(select(SyncRun).where(SyncRun.job_id == job_id))
        return run is not None and run.status == "succeeded"

    try:
        first = _job(account_id, SyncKind.FULL)
        await publish(kafka_settings, [first])
        await wait_for(lambda: succeeded(first.job_id), timeout=60, what="the first sync")
        lead = next(r for r in org.records("Lead") if r.get("Email") and not r.get("IsConverted"))
        async with sessions.begin() as session:
            row = await session.scalar(
                select(Contact).where(Contact.account_id == account_id, Contact.external_id == lead["Id"])
            )
            row.fields = {**row.fields, "job_title": "Written while Kafka was away"}
            row.field_meta = {
                **row.field_meta,
                "job_title": {"origin": "user_edit", "at": datetime.now(UTC).isoformat()},
            }

        await asyncio.to_thread(private_kafka.kill)
        down_at = asyncio.get_running_loop().time()
        # A sync that runs while the broker is away hands its repair to the outbox (R25).
        repair = _job(account_id, SyncKind.FULL)
        async with sessions.begin() as session:
            assert await record_job(session, job=repair)
        await wait_for(lambda: succeeded(repair.job_id), timeout=60, what="a sync while Kafka is away")
        await asyncio.sleep(max(0.0, KAFKA_DOWN_S - (asyncio.get_running_loop().time() - down_at)))
        ready, report = await check_readiness(app.checks())
        assert not ready and report["kafka"] != "ok"
        _alive(task)
        await asyncio.to_thread(private_kafka.start)

        after = _job(account_id, SyncKind.INCREMENTAL)
        await publish(kafka_settings, [after])
        await wait_for(lambda: succeeded(after.job_id), timeout=90, what="a job sent after the restart")
        ready, report = await check_readiness(app.checks())
        assert ready, report
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    async with sessions() as session:
        repaired = await session.scalar(select(SyncRun).where(SyncRun.job_id == repair.job_id))
    assert repaired.drift_found == 1
    events = await _contact_changes(kafka_settings)
    assert len(events) == 1 and events[0].startswith("repair-")  # published once, after the restart


async def test_r22_a_puller_started_while_the_broker_is_away_waits_for_it_and_then_works(
    private_kafka, settings, engine, sessions, account_id, make_crm_org
) -> None:
    kafka_settings = settings.model_copy(update={"kafka_bootstrap_servers": private_kafka.bootstrap})
    await ensure_topics(kafka_settings)
    org = make_crm_org(leads=3, contacts=2, seed=44)
    await connect(sessions, kafka_settings, account_id, org)
    config = puller_settings(
        kafka_settings, puller_group_id=f"puller-{uuid.uuid4().hex[:8]}", puller_poll_s=0.2
    )
    await asyncio.to_thread(private_kafka.kill)
    app = puller_bootstrap(config, engine=engine)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop), name="puller")
    try:
        await asyncio.sleep(5)
        _alive(task)
        ready, report = await check_readiness(app.checks())
        assert not ready and report["kafka"] != "ok"
        await asyncio.to_thread(private_kafka.start)
        job = _job(account_id, SyncKind.FULL)
        await publish(kafka_settings, [job])

        async def succeeded() -> bool:
            _alive(task)
            async with sessions() as session:
                run = await session.scalar(select(SyncRun).where(SyncRun.job_id == job.job_id))
            return run is not None and run.status == "succeeded"

        await wait_for(succeeded, timeout=90, what="a job once the broker is up")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
