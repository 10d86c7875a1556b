"""Riding out a dependency's outage (R18, R22): loops wait with backoff while PostgreSQL or
Kafka is away, pick up where they were once it is back, and still crash on a bug."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.kafka.codec import encode
from crmsync.common.kafka.consumer import ConsumerLoop, DeadLetters, Delivery
from crmsync.common.kafka.startup import start_when_reachable
from crmsync.common.messages import RunSync, SyncKind
from crmsync.common.service import Outage, refused_statement, ride_out
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.lanes import Lane, WaitingAccount
from crmsync.puller.domain.runs import SUCCEEDED, SyncRun
from crmsync.puller.entrypoints.workers import Workers
from crmsync.puller.handlers.run_sync import SyncRunner
from crmsync.puller.settings import Settings
from tests.unit.puller_fakes import NOW, FakeCrm, FakeStore, claimed, lead

TOPIC = "t.sync-jobs"
TP = TopicPartition(TOPIC, 0)
FAST = {"base_s": 0.001, "cap_s": 0.002}


def _job(n: int) -> bytes:
    return encode(
        RunSync(
            job_id=f"acme:incremental:{n}",
            account_id="acme",
            kind="incremental",
            reason="schedule",
            requested_at="2026-11-28T10:00:00Z",
        )
    )


def _record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"acme", _job(offset), None, 0, 0, ())


class FlakyConsumer:
    """A consumer whose first polls and commits fail as a broker that is away does."""

    def __init__(self, *, poll_failures: int = 0, commit_failures: int = 0, commit_error: Any = None) -> None:
        self.poll_failures = poll_failures
        self.commit_failures = commit_failures
        self.commit_error = commit_error or KafkaConnectionError("broker away")
        self.committed: list[dict[TopicPartition, int]] = []
        self._given = False

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        if self.poll_failures:
            self.poll_failures -= 1
            raise KafkaConnectionError("broker away")
        if self._given:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self._given = True
        return {TP: [_record(0), _record(1)]}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_failures:
            self.commit_failures -= 1
            raise self.commit_error
        self.committed.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


async def _no_letters(topic: str, key: bytes | None, value: bytes) -> None:
    raise AssertionError("nothing is invalid here")


def _loop(consumer: FlakyConsumer, handler: Any) -> ConsumerLoop:
    loop = ConsumerLoop(
        consumer=consumer,  # type: ignore[arg-type]
        models={TOPIC: RunSync},
        handler=handler,
        dead_letters=DeadLetters(_no_letters),
        transient=(KafkaConnectionError, StoreUnavailable),
    )
    loop._outage = Outage("test", **FAST)
    return loop


async def _run_until(loop: ConsumerLoop, done: asyncio.Event) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(done.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_r18_a_batch_whose_store_is_away_is_handled_again_once_it_is_back_then_committed() -> None:
    consumer = FlakyConsumer(poll_failures=2)
    calls: list[list[str]] = []
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        calls.append([d.message.job_id for d in batch])
        if len(calls) < 3:
            raise StoreUnavailable("ConnectionRefusedError: [Errno 111]")
        done.set()

    await _run_until(_loop(consumer, handler), done)
    assert calls == [["acme:incremental:0", "acme:incremental:1"]] * 3
    assert consumer.committed == [{TP: 2}]


async def test_r18_a_commit_the_broker_refuses_for_a_while_is_made_once_it_is_back() -> None:
    consumer = FlakyConsumer(commit_failures=2)
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        if consumer.committed or consumer.commit_failures == 0:
            done.set()

    loop = _loop(consumer, handler)
    await _run_until(loop, done)
    for _ in range(100):
        if consumer.committed:
            break
        await asyncio.sleep(0.01)
    assert consumer.committed == [{TP: 2}]


async def test_r18_offsets_of_partitions_lost_in_a_rebalance_are_left_to_their_new_owner() -> None:
    consumer = FlakyConsumer(commit_failures=1, commit_error=CommitFailedError("rebalanced"))
    done = asyncio.Event()

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        done.set()

    await _run_until(_loop(consumer, handler), done)
    assert consumer.commit_failures == 0
    assert consumer.committed == []


async def test_a_bug_in_a_handler_ends_the_loop_uncommitted() -> None:
    consumer = FlakyConsumer()

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await asyncio.wait_for(_loop(consumer, handler).run(asyncio.Event()), 5)
    assert consumer.committed == []


async def test_a_stop_during_an_outage_leaves_the_batch_uncommitted_for_the_next_process() -> None:
    consumer = FlakyConsumer()
    stop = asyncio.Event()

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        stop.set()
        raise StoreUnavailable("away")

    await asyncio.wait_for(_loop(consumer, handler).run(stop), 5)
    assert consumer.committed == []


async def test_ride_out_retries_only_what_it_is_told_is_transient() -> None:
    attempts = 0

    async def attempt() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("connection refused")
        return "done"

    outage = Outage("test", **FAST)
    assert await ride_out(attempt, stop=asyncio.Event(), outage=outage) == (True, "done")
    assert attempts == 3 and not outage.ongoing

    async def bug() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await ride_out(bug, stop=asyncio.Event(), outage=outage)


def test_an_outage_s_waits_grow_up_to_their_cap_and_start_again_after_a_recovery() -> None:
    outage = Outage("test", base_s=1.0, cap_s=4.0)
    waits = [outage.failed(OSError("away")) for _ in range(6)]
    assert all(0 <= w <= 4.0 for w in waits)
    assert outage.failures == 6 and outage.ongoing
    outage.recovered()
    assert not outage.ongoing and outage.wait_s == 0.0
    assert outage.failed(OSError("away")) <= 1.0


# ----------------------------------------------------------------- workers


class FlakyQueue:
    """A run queue whose database is away for the first `down` looks; a run stays claimable until it ends."""

    def __init__(self, runs: list[SyncRun], *, down: int) -> None:
        self.runs = runs
        self.down = down

    async def waiting_accounts(self, limit: int) -> list[WaitingAccount]:
        if self.down:
            self.down -= 1
            raise StoreUnavailable("ConnectionRefusedError: [Errno 111] Connect call failed")
        accounts = sorted({r.account_id for r in self.runs})[:limit]
        return [WaitingAccount(a, Lane.INCREMENTAL, NOW) for a in accounts]

    async def claim_next_run(self, account_id: str, lanes: frozenset[Lane]) -> SyncRun | None:
        return next((r for r in self.runs if r.account_id == account_id), None)


class Lock:
    async def try_acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class Runner:
    """Runs succeed, but the first one loses its database `lose_store` times first."""

    def __init__(self, queue: FlakyQueue, *, lose_store: int = 0) -> None:
        self.queue = queue
        self.lose_store = lose_store
        self.executed: list[uuid.UUID] = []
        self.done = asyncio.Event()

    async def execute(self, run: SyncRun) -> str:
        if self.lose_store:
            self.lose_store -= 1
            raise StoreUnavailable("InterfaceError: connection is closed")
        self.executed.append(run.id)
        self.queue.runs.remove(run)
        self.done.set()
        return SUCCEEDED


async def _work(runner: Runner) -> None:
    workers = Workers(
        queue=runner.queue,
        lock_for=lambda _: Lock(),
        runner=runner,  # type: ignore[arg-type]
        concurrency=2,
        poll_s=0.01,
    )
    workers._outage = Outage("test", **FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(workers.run(stop))
    await asyncio.wait_for(runner.done.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_r18_workers_wait_for_the_database_and_then_run_what_is_queued() -> None:
    run = claimed(kind=SyncKind.INCREMENTAL)
    runner = Runner(FlakyQueue([run], down=3))
    await _work(runner)
    assert runner.executed == [run.id]


async def test_r18_a_run_cut_off_by_the_database_is_resumed_by_a_later_claim() -> None:
    run = claimed(kind=SyncKind.INCREMENTAL)
    runner = Runner(FlakyQueue([run], down=0), lose_store=2)
    await _work(runner)
    assert runner.executed == [run.id]


# ------------------------------------------------------------------ the sync use case


async def test_r18_a_run_whose_outcome_cannot_be_recorded_ends_with_the_store_away_and_keeps_its_state() -> (
    None
):
    store, crm = FakeStore(), FakeCrm({"Lead": [lead(1)], "Contact": []})
    crm.failures["read"] = CrmTransientError("503")
    store.failures["finish_run"] = StoreUnavailable("InterfaceError: connection is closed")
    run = claimed(SyncKind.FULL)
    runner = SyncRunner(store=store, crm_factory=lambda _: crm, settings=Settings(), clock=lambda: NOW)

    with pytest.raises(StoreUnavailable):
        await runner.execute(run)
    assert store.run(run).end is None  # still 'running': the next claim resumes it
    assert crm.closed


async def test_r18_an_error_the_store_cannot_record_leaves_the_run_to_resume_once_it_is_back() -> None:
    # A connection broken mid-statement by a database restart surfaces as an odd client
    # error; with the database away it cannot be told from a bug, so the run is resumed.
    store, crm = FakeStore(), FakeCrm({"Lead": [lead(1)], "Contact": []})
    crm.failures["read"] = KeyError("a bug, or the database's loss seen from another side")
    store.failures["finish_run"] = StoreUnavailable("InterfaceError: connection is closed")
    runner = SyncRunner(store=store, crm_factory=lambda _: crm, settings=Settings(), clock=lambda: NOW)
    run = claimed(SyncKind.FULL)

    with pytest.raises(StoreUnavailable) as raised:
        await runner.execute(run)
    assert isinstance(raised.value.__cause__, KeyError)
    assert store.run(run).end is None  # still 'running': the next claim resumes it
    assert crm.closed


async def test_a_bug_the_store_can_record_is_recorded_and_raised() -> None:
    store, crm = FakeStore(), FakeCrm({"Lead": [lead(1)], "Contact": []})
    crm.failures["read"] = KeyError("a bug")
    runner = SyncRunner(store=store, crm_factory=lambda _: crm, settings=Settings(), clock=lambda: NOW)
    run = claimed(SyncKind.FULL)

    with pytest.raises(KeyError):
        await runner.execute(run)
    assert store.run(run).end is not None and store.run(run).end.status == "failed"


async def test_r22_a_kafka_client_is_started_once_the_broker_answers() -> None:
    class Client:
        def __init__(self) -> None:
            self.tries = 0

        async def start(self) -> None:
            self.tries += 1
            if self.tries < 3:
                raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]")

    client = Client()
    outage = Outage("test", **FAST)
    assert await ride_out(client.start, stop=asyncio.Event(), outage=outage) == (True, None)
    assert client.tries == 3


async def test_a_stop_while_waiting_for_the_broker_gives_up_the_start() -> None:
    async def start() -> None:
        raise KafkaConnectionError("away")

    stop = asyncio.Event()
    stop.set()
    assert await start_when_reachable(SimpleNamespace(start=start), stop=stop, what="test") is False


class _Deadlock(Exception):
    sqlstate = "40P01"


class _Syntax(Exception):
    sqlstate = "42601"


def _from(cause: BaseException) -> StoreUnavailable:
    try:
        raise StoreUnavailable(str(cause)) from cause
    except StoreUnavailable as error:
        return error


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (ProgrammingError("selct 1", {}, _Syntax("syntax error")), True),
        (IntegrityError("insert", {}, Exception("duplicate key")), True),
        (_from(ProgrammingError("selct 1", {}, _Syntax("syntax error"))), True),
        (DBAPIError("select", {}, _Deadlock("deadlock detected")), False),
        (DBAPIError("select", {}, Exception("closed"), connection_invalidated=True), False),
        (OperationalError("select", {}, OSError("connection refused")), False),
        (_from(OperationalError("select", {}, OSError("connection refused"))), False),
        (StoreUnavailable("ConnectionRefusedError: [Errno 111]"), False),
        (KafkaConnectionError("broker away"), False),
        (OSError("connection refused"), False),
    ],
    ids=repr,
)
def test_a_statement_the_database_refuses_is_a_bug_and_a_lost_connection_an_outage(
    error: BaseException, refused: bool
) -> None:
    assert refused_statement(error) is refused


async def test_a_bug_in_sql_ends_the_consumer_loop_rather_than_being_retried() -> None:
    consumer = FlakyConsumer()
    calls = 0

    async def handler(batch: Sequence[Delivery[Any]]) -> None:
        nonlocal calls
        calls += 1
        raise _from(ProgrammingError("selct", {}, _Syntax("syntax error")))

    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(_loop(consumer, handler).run(asyncio.Event()), 5)
    assert calls == 1 and consumer.committed == []


class RebalancedConsumer(FlakyConsumer):
    """A consumer that lost its partition to a rebalance between the poll and the lag report."""

    def assignment(self) -> set[TopicPartition]:
        return set()

    def highwater(self, tp: TopicPartition) -> int | None:
        raise AssertionError("Partition is not assigned")  # as aiokafka asserts for a lost partition


async def test_r18_a_partition_lost_in_a_rebalance_after_the_poll_does_not_end_the_loop() -> None:
    consumer = RebalancedConsumer()
    loop = _loop(consumer, handler=lambda deliveries: asyncio.sleep(0))
    await loop._report_lag([TP])  # nothing to report, nothing raised
