"""The foundation against the real broker and database: the consumer loop, the DLQ,
the migrations, and what a SIGKILL or a SIGTERM does to offsets (R18, R22)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.db.migrate import alembic_config, upgrade
from crmsync.common.db.schema import Base, Contact
from crmsync.common.kafka.consumer import ConsumerLoop, DeadLetters, Delivery, consumer_group, create_consumer
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.kafka.topics import (
    CONTACT_CHANGES,
    DESIGN_TOPICS,
    SYNC_JOBS,
    delete_topics_with_prefixes,
    ensure_topics,
)
from crmsync.common.messages import ContactChanged, RunSync, SyncKind, SyncReason
from crmsync.common.settings import CommonSettings
from tests.support.broker import publish
from tests.support.databases import asyncpg_dsn, scratch_database
from tests.support.processes import Process, service_env, start_service, wait_for

pytestmark = pytest.mark.integration


def _job(account_id: str, n: int = 0) -> RunSync:
    return RunSync(
        job_id=f"{account_id}:probe:{n}:{uuid.uuid4().hex[:6]}",
        account_id=account_id,
        kind=SyncKind.INCREMENTAL,
        reason=SyncReason.SYNC_NOW,
        requested_at=datetime.now(UTC),
    )


async def test_migrations_match_the_models(engine) -> None:
    def diff(connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_downgrading_below_the_sightings_keeps_a_running_full_syncs_seen_contacts(
    base_settings: CommonSettings,
) -> None:
    # The older sweep reads only contacts.last_seen_run_id: without the copy, a full
    # sync resumed after the downgrade would delete every contact it had found unchanged.
    async with scratch_database(base_settings.database_url, label="downgrade") as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            run_id, seen, unseen = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            await conn.execute("insert into accounts (id, name) values ('a', 'a')")
            for contact in (seen, unseen):
                await conn.execute(
                    "insert into contacts (id, account_id, crm_object, external_id) values ($1, 'a', 'Lead', $2)",
                    contact,
                    str(contact),
                )
            await conn.execute(
                "insert into sync_run_sightings (run_id, contact_id) values ($1, $2)", run_id, seen
            )

            await asyncio.to_thread(command.downgrade, alembic_config(url), "0002")

            rows = dict(await conn.fetch("select id, last_seen_run_id from contacts"))
            assert rows == {seen: run_id, unseen: None}
            assert await conn.fetchval("select to_regclass('sync_run_sightings')") is None
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)  # and back up again


async def test_migrations_give_the_tables_the_models_storage_parameters(engine) -> None:
    # compare_metadata does not look at storage parameters; the fill factor is what
    # lets the pusher's and puller's updates stay heap-only.
    expected = {
        table.name: sorted(f"{k}={v}" for k, v in table.dialect_options["postgresql"]["with"].items())
        for table in Base.metadata.sorted_tables
        if table.dialect_options["postgresql"]["with"]
    }
    assert set(expected) == {"contacts", "push_log"}
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select relname, reloptions from pg_class where relname = any(:names)"),
            {"names": list(expected)},
        )
        actual = {name: sorted(options or []) for name, options in rows}
    assert actual == expected


async def test_rows_store_and_read_back_through_the_migrated_schema(sessions, account_id) -> None:
    async with sessions.begin() as session:
        session.add(
            Contact(
                account_id=account_id,
                email="Ada@Example.com",
                fields={"first_name": "Ada"},
                field_meta={"first_name": {"origin": "form", "at": "2026-11-28T10:00:00+00:00"}},
            )
        )
    async with sessions() as session:
        contact = await session.scalar(select(Contact).where(Contact.account_id == account_id))
    assert contact is not None
    assert contact.email_lower == "ada@example.com"
    assert contact.fields == {"first_name": "Ada"}
    assert "ada" in (contact.search_text or "")


async def test_topics_are_created_once_and_a_throwaway_prefix_deletes_only_its_own(
    base_settings: CommonSettings,
) -> None:
    mine, other = (
        base_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."}) for _ in "ab"
    )
    assert await ensure_topics(mine) == [mine.topic(t) for t in DESIGN_TOPICS]
    assert await ensure_topics(mine) == []
    await ensure_topics(other)
    try:
        deleted = await delete_topics_with_prefixes(
            base_settings.kafka_bootstrap_servers, [mine.topic_prefix]
        )
        assert sorted(deleted) == sorted(mine.topic(t) for t in DESIGN_TOPICS)
        admin = AIOKafkaAdminClient(bootstrap_servers=base_settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            left = set(await admin.list_topics())
        finally:
            await admin.close()
        assert not {mine.topic(t) for t in DESIGN_TOPICS} & left
        assert {other.topic(t) for t in DESIGN_TOPICS} <= left
    finally:
        await delete_topics_with_prefixes(base_settings.kafka_bootstrap_servers, [other.topic_prefix])


@asynccontextmanager
async def _producer_and_consumer(
    settings: CommonSettings, topic: str
) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer]]:
    """A started producer, and a started consumer of `topic` in a group of its own."""
    producer = create_producer(settings)
    await producer.start()
    consumer = create_consumer(settings, topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        yield producer, consumer
    finally:
        await consumer.stop()
        await producer.stop()


async def _one_batch(producer, consumer, topic: str, model: type) -> list[Delivery[Any]]:
    """Runs a consumer loop over `topic` (dead letters through `producer`) until it has
    handled one batch; returns that batch."""
    handled: list[Delivery[Any]] = []
    stop = asyncio.Event()

    async def handle(batch: Sequence[Delivery[Any]]) -> None:
        handled.extend(batch)
        stop.set()

    loop = ConsumerLoop(
        consumer=consumer, models={topic: model}, handler=handle, dead_letters=DeadLetters.via(producer)
    )
    await asyncio.wait_for(loop.run(stop), 30)
    return handled


async def test_an_event_goes_through_the_broker_and_the_consumer_loop(
    settings: CommonSettings, account_id
) -> None:
    async with _producer_and_consumer(settings, SYNC_JOBS) as (producer, consumer):
        sent = _job(account_id)
        await Publisher(producer, settings).publish(SYNC_JOBS, key=account_id, message=sent)
        handled = await _one_batch(producer, consumer, settings.topic(SYNC_JOBS), RunSync)
        assert [d.message for d in handled] == [sent]
        (partition,) = {d.partition for d in handled}
        assert await consumer.committed(TopicPartition(settings.topic(SYNC_JOBS), partition)) == 1


async def test_r22_an_invalid_event_goes_to_the_dlq_with_its_reason_and_the_loop_goes_on(
    settings: CommonSettings, account_id
) -> None:
    dlq = AIOKafkaConsumer(
        settings.topic("contact-changes.dlq"),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:8]}",
    )
    good = {
        "event_id": "e-good",
        "account_id": account_id,
        "occurred_at": "2026-11-28T10:00:00Z",
        "source": "form",
        "contact": {"email": "ada@example.com"},
        "changes": {"first_name": "Ada"},
    }
    bad_type = dict(good, event_id="e-bad", source="carrier_pigeon")
    async with _producer_and_consumer(settings, CONTACT_CHANGES) as (producer, consumer):
        await dlq.start()
        try:
            topic = settings.topic(CONTACT_CHANGES)
            key = f"{account_id}:ada@example.com".encode()
            await producer.send_and_wait(topic, b"\xff not json", key=key)
            await producer.send_and_wait(topic, orjson.dumps(bad_type), key=key)
            await producer.send_and_wait(topic, orjson.dumps(good), key=key)
            handled = await _one_batch(producer, consumer, topic, ContactChanged)
            assert [d.message.event_id for d in handled] == ["e-good"]
            letters = []
            while len(letters) < 2:
                batch = await asyncio.wait_for(dlq.getmany(timeout_ms=1000), 10)
                letters += [orjson.loads(r.value) for records in batch.values() for r in records]
            assert letters[0]["original_encoding"] == "base64"
            assert "JSON" in letters[0]["error"]
            assert letters[1]["original"] == orjson.dumps(bad_type).decode()
            assert letters[1]["error"].startswith("source:")
            assert {letter["attempts"] for letter in letters} == {1}
        finally:
            await dlq.stop()


# ----------------------------------------------------------------- crash safety


async def _committed(settings: CommonSettings, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=consumer_group(settings, group)
    )
    await consumer.start()
    try:
        topic = settings.topic(SYNC_JOBS)
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # first contact with this topic
            partitions = consumer.partitions_for_topic(topic) or set()
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
    finally:
        await consumer.stop()


@dataclass
class _Probe:
    """The probe consumer (tests.support.probe_consumer) of one test: its consumer group,
    its marker file, and the job published for it."""

    settings: CommonSettings
    engine: AsyncEngine
    workdir: Path
    job: RunSync
    group: str = field(default_factory=lambda: f"probe-{uuid.uuid4().hex[:8]}")

    @property
    def marker(self) -> Path:
        return self.workdir / "marker"

    def start(self, *, delay: float) -> Process:
        """Starts a probe process whose handler takes `delay` seconds over each job."""
        env = service_env(
            self.settings, PROBE_GROUP=self.group, PROBE_MARKER=str(self.marker), PROBE_DELAY_S=str(delay)
        )
        return start_service("tests.support.probe_consumer", env=env, log=self.workdir / "probe.log")

    async def handling(self, process: Process) -> None:
        """Returns once the process's handler has started on the job."""
        await wait_for(
            lambda: self.marker.exists() and "started" in self.marker.read_text(),
            timeout=60,
            what="the handler to start",
            process=process,
        )

    async def deliveries(self) -> int:
        """How many times the handler finished the job."""
        async with self.engine.connect() as conn:
            query = text("select count(*) from probe_deliveries where job_id = :j")
            return (await conn.execute(query, {"j": self.job.job_id})).scalar_one()

    async def committed(self) -> dict[int, int | None]:
        return await _committed(self.settings, self.group)


@pytest.fixture
async def probe(settings: CommonSettings, engine: AsyncEngine, account_id: str, tmp_path: Path) -> _Probe:
    """A probe with its job already published."""
    async with engine.begin() as conn:
        await conn.execute(text("create table if not exists probe_deliveries (job_id text not null)"))
    job = _job(account_id)
    await publish(settings, [job])
    return _Probe(settings, engine, tmp_path, job)


async def test_r18_sigkill_mid_message_leaves_the_offset_uncommitted_and_the_restart_processes_it(
    probe: _Probe,
) -> None:
    with probe.start(delay=60) as first:
        await probe.handling(first)
        first.kill()
    assert await probe.deliveries() == 0
    assert all(offset is None for offset in (await probe.committed()).values())

    async def delivered() -> bool:
        return await probe.deliveries() > 0

    with probe.start(delay=0) as second:
        await wait_for(delivered, timeout=60, what="the restarted consumer to process", process=second)
        assert second.stop(timeout=10) == 0
    assert await probe.deliveries() == 1
    assert sum(o or 0 for o in (await probe.committed()).values()) == 1


async def test_sigterm_finishes_the_message_in_hand_commits_and_exits_within_10s(probe: _Probe) -> None:
    with probe.start(delay=3) as process:
        await probe.handling(process)
        started = time.monotonic()
        assert process.stop(timeout=10) == 0
        assert time.monotonic() - started < 10
    assert await probe.deliveries() == 1
    assert sum(o or 0 for o in (await probe.committed()).values()) == 1
