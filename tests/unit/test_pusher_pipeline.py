"""The pusher's pipelined consumer loop: overlap, order, waiting and commits (R18).

The loop's own logic over an in-memory consumer; the real broker, database
and CRM are exercised by tests/integration/test_pusher*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from crmsync.common.kafka.consumer import DeadLetters, Delivery
from crmsync.pusher.entrypoints.consumer import LingeringLoop, PipelinedLoop

TOPIC = "crmsync.contact-changes"
TP = TopicPartition(TOPIC, 0)


class Msg(BaseModel):
    event_id: str


class FakeConsumer:
    """Hands out the given batches one at a time, each once the one before is applied; records commits."""

    def __init__(self, batches: list[list[str]]) -> None:
        offset = 0
        self.batches: list[dict[TopicPartition, list[ConsumerRecord]]] = []
        for ids in batches:
            records = []
            for event_id in ids:
                # An id starting with "!" stands for a message that is not a valid event.
                value = orjson.dumps(
                    {"event": event_id} if event_id.startswith("!") else {"event_id": event_id}
                )
                records.append(ConsumerRecord(TOPIC, 0, offset, 0, 0, None, value, None, 0, len(value), ()))
                offset += 1
            self.batches.append({TP: records})
        self.commits: list[int] = []
        self.log: list[tuple[str, Any]] = []
        self.next_batch = asyncio.Event()
        self.next_batch.set()

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        if self.batches:
            try:
                await asyncio.wait_for(self.next_batch.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            batch = self.batches.pop(0)
            if any(b"event_id" in r.value for r in batch[TP]):
                self.next_batch.clear()  # set again when this batch is applied
            return batch
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets[TP])
        self.log.append(("commit", offsets[TP]))

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> None:
        return None


DEAD: list[bytes] = []


async def _dead_letter(topic: str, key: bytes | None, value: bytes) -> None:
    DEAD.append(value)


async def run_loop(
    consumer: FakeConsumer,
    *,
    must_wait: bool = False,
    fail_push: str | None = None,
    wait_in_apply: bool = False,
    overlap_from: int = 0,
) -> None:
    stop = asyncio.Event()
    log = consumer.log
    total = sum(len(b[TP]) for b in consumer.batches)

    async def apply(deliveries: Sequence[Delivery[Any]], wait: Any) -> list[str]:
        ids = [d.message.event_id for d in deliveries]
        if wait_in_apply:
            await wait()
        log.append(("apply", ids[0]))
        consumer.next_batch.set()
        return ids

    async def push(ids: list[str]) -> None:
        log.append(("push-start", ids[0]))
        await asyncio.sleep(0.05)
        if ids[0] == fail_push:
            raise RuntimeError("the CRM write failed")
        log.append(("push-end", ids[0]))
        if consumer.commits and consumer.commits[-1] == total - len(ids):
            stop.set()  # the last batch is pushed: its commit follows, then the loop stops

    loop = PipelinedLoop[list[str]](
        consumer=consumer,  # type: ignore[arg-type]
        models={TOPIC: Msg},
        apply=apply,
        push=push,
        must_wait=lambda applied, deliveries: must_wait and bool(applied[0]),
        overlap_from=overlap_from,
        dead_letters=DeadLetters(_dead_letter),
        max_batch=100,
        linger_ms=0,
        poll_timeout_ms=10,
    )
    await asyncio.wait_for(loop.run(stop), 5)


async def test_r18_the_next_batch_is_applied_while_one_is_pushed_and_offsets_commit_in_order() -> None:
    consumer = FakeConsumer([["a1", "a2"], ["b1"], ["c1", "c2", "c3"]])

    await run_loop(consumer)

    log = consumer.log
    # Batch b is applied before a's push ends: the overlap.
    assert log.index(("apply", "b1")) < log.index(("push-end", "a1"))
    # Pushes run one after another, in order; each batch is committed after its push.
    assert log.index(("push-end", "a1")) < log.index(("push-start", "b1"))
    assert log.index(("push-end", "b1")) < log.index(("push-start", "c1"))
    assert consumer.commits == [2, 3, 6]
    assert log.index(("commit", 2)) > log.index(("push-end", "a1"))
    assert log.index(("commit", 6)) > log.index(("push-end", "c1"))


async def test_r18_a_batch_that_must_wait_is_applied_after_the_one_before_is_pushed() -> None:
    consumer = FakeConsumer([["a1"], ["b1"]])

    await run_loop(consumer, must_wait=True)

    log = consumer.log
    assert log.index(("push-end", "a1")) < log.index(("apply", "b1"))
    assert consumer.commits == [1, 2]


async def test_r18_the_first_step_can_wait_for_the_push_in_flight() -> None:
    consumer = FakeConsumer([["a1"], ["b1"]])

    await run_loop(consumer, wait_in_apply=True)

    log = consumer.log
    assert log.index(("push-end", "a1")) < log.index(("apply", "b1"))


async def test_r18_a_failed_push_stops_the_loop_and_only_the_batches_before_it_are_committed() -> None:
    consumer = FakeConsumer([["a1"], ["b1"], ["c1"]])

    with pytest.raises(RuntimeError, match="the CRM write failed"):
        await run_loop(consumer, fail_push="b1")

    # a is committed; b failed and c, applied meanwhile, was never pushed: both come again.
    assert consumer.commits == [1]
    assert ("push-start", "c1") not in consumer.log


async def test_a_batch_below_the_overlap_size_is_pushed_before_the_next_one_is_applied() -> None:
    consumer = FakeConsumer([["a1", "a2"], ["b1", "b2", "b3"], ["c1"]])

    await run_loop(consumer, overlap_from=3)

    log = consumer.log
    # a (2 events) is pushed and committed first; b (3) overlaps c.
    assert log.index(("commit", 2)) < log.index(("apply", "b1"))
    assert log.index(("apply", "c1")) < log.index(("push-end", "b1"))
    assert consumer.commits == [2, 5, 6]


async def test_r22_a_batch_of_only_invalid_events_is_dead_lettered_and_committed_in_its_turn() -> None:
    consumer = FakeConsumer([["a1"], ["!bad"], ["c1"]])
    DEAD.clear()

    await run_loop(consumer, must_wait=True)

    assert len(DEAD) == 1
    assert consumer.commits == [1, 2, 3]


class ScriptedConsumer:
    """Answers each poll with the next (delay in seconds, event ids) of a script, then nothing.

    Records the timeout of every poll.
    """

    def __init__(self, script: list[tuple[float, list[str]]]) -> None:
        self.script = list(script)
        self.offset = 0
        self.timeouts_ms: list[int] = []

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.timeouts_ms.append(timeout_ms)
        if not self.script or self.script[0][0] > timeout_ms / 1000:
            await asyncio.sleep(timeout_ms / 1000)
            if self.script:
                self.script[0] = (self.script[0][0] - timeout_ms / 1000, self.script[0][1])
            return {}
        delay, ids = self.script.pop(0)
        await asyncio.sleep(delay)
        records = []
        for event_id in ids:
            value = orjson.dumps({"event_id": event_id})
            records.append(ConsumerRecord(TOPIC, 0, self.offset, 0, 0, None, value, None, 0, len(value), ()))
            self.offset += 1
        return {TP: records}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> None:
        return None


async def _batches_handled(
    script: list[tuple[float, list[str]]], *, linger_ms: int
) -> tuple[list[list[str]], list[int]]:
    """Runs a LingeringLoop over the script; returns the batches handled and the timeouts
    of the polls made before the first one was handled."""
    consumer = ScriptedConsumer(script)
    handled: list[list[str]] = []
    polls_before_first: list[int] = []
    total = sum(len(ids) for _, ids in script)
    stop = asyncio.Event()

    async def handle(deliveries: Sequence[Delivery[Any]]) -> None:
        if not handled:
            polls_before_first.extend(consumer.timeouts_ms)
        handled.append([d.message.event_id for d in deliveries])
        if sum(len(ids) for ids in handled) == total:
            stop.set()

    loop = LingeringLoop(
        consumer=consumer,  # type: ignore[arg-type]
        models={TOPIC: Msg},
        handler=handle,
        dead_letters=DeadLetters(_dead_letter),
        max_batch=100,
        linger_ms=linger_ms,
    )
    await asyncio.wait_for(loop.run(stop), 5)
    return handled, polls_before_first


async def test_a_lone_event_is_handled_after_one_linger_of_polling() -> None:
    handled, polls = await _batches_handled([(0, ["a"])], linger_ms=50)
    assert handled == [["a"]]
    _first, *lingering = polls
    assert lingering and 40 <= lingering[0] <= 50 and all(t <= 50 for t in lingering)


async def test_the_linger_ends_as_soon_as_a_poll_brings_more_events() -> None:
    # The first poll after a busy spell brings what the fetcher held; the next one
    # brings the rest of the backlog. What comes later waits for the next batch.
    burst = [f"b{i}" for i in range(40)]
    handled, polls = await _batches_handled([(0, ["a"]), (0.005, burst), (0.1, ["late"])], linger_ms=200)
    assert handled == [["a", *burst], ["late"]]
    assert len(polls) == 2


async def test_a_full_batch_is_handled_without_lingering() -> None:
    full = [f"e{i}" for i in range(100)]
    handled, polls = await _batches_handled([(0, full)], linger_ms=1000)
    assert handled == [full]
    assert len(polls) == 1
