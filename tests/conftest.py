"""The test harness: a real PostgreSQL and a real Kafka for every integration test.

Where they come from, in order: CRMSYNC_DATABASE_URL / CRMSYNC_KAFKA_BOOTSTRAP_SERVERS
(or the bare names) when set; containers via testcontainers when a Docker engine
answers; otherwise the local servers that `make infra-up` starts.

Isolation: one fresh database per test run (migrated with Alembic, dropped at
the end), a fresh account per test (every row is scoped by account, R21), and
unique topic names per test (a topic prefix per test).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress

import asyncpg
import pytest
import pytest_asyncio
from aiokafka.errors import KafkaError
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crmsync.common.db.migrate import upgrade
from crmsync.common.db.schema import Account
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.topics import delete_topics_with_prefixes, ensure_topics
from crmsync.common.settings import DEFAULT_DATABASE_URL, CommonSettings
from tests.support.databases import asyncpg_dsn

pytest_plugins = ["tests.support.emulator"]

# Property tests check rules, not speed: on a loaded two-core machine one example can take
# longer than hypothesis's default deadline of 200 ms, which would fail a correct rule.
hypothesis_settings.register_profile("crmsync", deadline=None)
hypothesis_settings.load_profile("crmsync")


def _docker_answers() -> bool:
    try:
        import docker  # shipped with testcontainers
    except ImportError:
        return False
    try:
        docker.from_env(timeout=2).ping()
    except (docker.errors.DockerException, OSError):  # no engine, or one that does not answer
        return False
    return True


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[dict[str, str]]:
    """Returns the base database URL and Kafka bootstrap servers for this run."""
    db_url = os.environ.get("CRMSYNC_DATABASE_URL") or os.environ.get("DATABASE_URL")
    kafka = os.environ.get("CRMSYNC_KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    containers = []
    if (
        (db_url is None or kafka is None)
        and os.environ.get("CRMSYNC_TEST_USE_LOCAL") != "1"
        and _docker_answers()
    ):
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        if db_url is None:
            pg = PostgresContainer("postgres:15", driver="asyncpg").start()
            containers.append(pg)
            db_url = pg.get_connection_url()
        if kafka is None:
            kc = KafkaContainer("apache/kafka:4.2.0").with_kraft().start()
            containers.append(kc)
            kafka = kc.get_bootstrap_server()
    try:
        yield {
            "database_url": db_url or DEFAULT_DATABASE_URL,
            "kafka_bootstrap_servers": kafka or "127.0.0.1:9092",
        }
    finally:
        for container in containers:
            container.stop()


@pytest.fixture(scope="session")
def database_url(infrastructure: dict[str, str]) -> Iterator[str]:
    """Creates a fresh database for this run, migrates it to head, drops it afterwards."""
    base = CommonSettings(database_url=infrastructure["database_url"]).database_url
    prefix, _, _ = base.rpartition("/")
    name = f"crmsync_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(base))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"{prefix}/{name}"
    upgrade(url)
    yield url
    if os.environ.get("CRMSYNC_TEST_KEEP_DB") != "1":
        with suppress(asyncpg.PostgresError, OSError):  # tidying only: the tests have passed or failed
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def base_settings(database_url: str, infrastructure: dict[str, str]) -> CommonSettings:
    return CommonSettings(
        environment="test",
        database_url=database_url,
        kafka_bootstrap_servers=infrastructure["kafka_bootstrap_servers"],
        topic_partitions=3,
        log_json=False,
    )


@pytest_asyncio.fixture(scope="session")
async def engine(base_settings: CommonSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(base_settings, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest_asyncio.fixture
async def account_id(sessions: async_sessionmaker[AsyncSession]) -> str:
    """A fresh account (tenant) for one test: isolation by tenancy."""
    account = f"t-{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        session.add(Account(id=account, name=f"Test {account}"))
    return account


@pytest_asyncio.fixture(scope="session")
async def topic_prefixes(base_settings: CommonSettings) -> AsyncIterator[list[str]]:
    """The topic prefixes this run's tests used; their topics are deleted at the end.

    Without that, a developer's broker keeps every test's topics from every run,
    and after enough runs it takes minutes to load their metadata at start.
    """
    prefixes: list[str] = []
    yield prefixes
    if not prefixes:
        return
    try:
        await delete_topics_with_prefixes(base_settings.kafka_bootstrap_servers, prefixes)
    except (KafkaError, OSError, TimeoutError) as exc:  # tidying only: the tests have passed or failed
        print(f"\ntest topics not deleted: {exc!r}")


@pytest_asyncio.fixture
async def settings(base_settings: CommonSettings, topic_prefixes: list[str]) -> CommonSettings:
    """Settings with a topic prefix of this test's own, the design's topics created."""
    prefix = f"t{uuid.uuid4().hex[:10]}.crmsync."
    topic_prefixes.append(prefix)
    test_settings = base_settings.model_copy(update={"topic_prefix": prefix})
    await ensure_topics(test_settings)
    return test_settings
