"""The pusher's consumer loops: contact-change events and outbound jobs, each in its own group.

A poll that returns fewer events than a full batch waits up to
`push_linger_ms` for more, so a burst goes to the CRM in few composite
requests while a lone event is delayed by a few milliseconds at most.
Contact changes go through `PipelinedLoop`: the next batch is applied to the
store while this one's CRM writes are in flight. Offsets are committed only
after a batch's results are stored, in batch order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from crmsync.common.kafka.consumer import ConsumerLoop, Delivery
from crmsync.common.observability.metrics import MESSAGES_CONSUMED

Handler = Callable[[Sequence[Delivery[Any]]], Awaitable[None]]


class LingeringLoop(ConsumerLoop):
    """ConsumerLoop that gathers a small batch for at most `linger_ms` before handling it."""

    def __init__(self, *, linger_ms: int, max_batch: int, **kwargs: Any) -> None:
        super().__init__(max_batch=max_batch, **kwargs)
        self._linger_ms = linger_ms
        self._batch_limit = max_batch
        self._poller: AIOKafkaConsumer = kwargs["consumer"]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self._poller.getmany(timeout_ms=200, max_records=self._batch_limit)
            if not batches:
                continue
            if self._linger_ms:
                await self._gather_more(batches)
            await self.process(batches)
            await self._report_lag(batches.keys())

    async def _gather_more(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Polls again until a poll brings more events, or `linger_ms` is over.

        One more poll is enough: the fetcher holds back its next fetch until what
        it has is consumed, so the first poll after a busy spell returns only
        what arrived first, and the next brings everything that came since.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_ms / 1000
        while (size := sum(len(r) for r in batches.values())) < self._batch_limit:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                return
            more = await self._poller.getmany(timeout_ms=left_ms, max_records=self._batch_limit - size)
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
            if more:
                return


T = TypeVar("T")
Wait = Callable[[], Awaitable[None]]


class PipelinedLoop(LingeringLoop, Generic[T]):
    """LingeringLoop for a handler in two steps, the next batch's first during this one's second.

    `apply(deliveries, wait)` is the first step (for the pusher: the store and
    the push log); `push(applied)` the second (the CRM writes and their
    answers). Batch N+1 is applied while batch N is pushed, so the database
    and the CRM work side by side. Second steps run one after another in
    batch order, and offsets are committed in that order after each one, so a
    contact's writes stay in order and a crash redelivers everything not
    pushed. The first step waits for the second step in flight when
    `must_wait(applied, next deliveries)` says so, and may wait for it itself
    by awaiting `wait()`. A batch of fewer than `overlap_from` events is
    pushed before the next poll: without a backlog, overlapping only cuts the
    stream into smaller batches, each with its own transactions and requests.
    """

    def __init__(
        self,
        *,
        apply: Callable[[Sequence[Delivery[Any]], Wait], Awaitable[T]],
        push: Callable[[T], Awaitable[None]],
        must_wait: Callable[[T, Sequence[Delivery[Any]]], bool],
        overlap_from: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler=None, **kwargs)
        self._apply = apply
        self._push = push
        self._must_wait = must_wait
        self._overlap_from = overlap_from
        self._in_flight: _InFlight[T] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await super().run(stop)
        finally:
            # Stopping or failing: the batch being pushed is finished and committed first.
            await self._finish_in_flight()

    async def process(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        deliveries = await self.decode(batches)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        before = self._in_flight
        if before is not None and before.applied is not None and deliveries:
            if self._must_wait(before.applied, deliveries):
                await self._finish_in_flight()
        applied = await self._apply(deliveries, self._wait_in_flight) if deliveries else None
        await self._finish_in_flight()
        task = asyncio.create_task(self._push(applied)) if applied is not None else None
        self._in_flight = _InFlight(applied, task, deliveries, offsets)
        if len(deliveries) < self._overlap_from:
            # No backlog: overlapping would only cut the stream into smaller batches.
            await self._finish_in_flight()

    async def _wait_in_flight(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None and in_flight.task is not None:
            await asyncio.shield(in_flight.task)

    async def _finish_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        if in_flight.task is not None:
            try:
                await in_flight.task
            except BaseException:
                for d in in_flight.deliveries:
                    MESSAGES_CONSUMED.labels(d.topic, "error").inc()
                raise
        for d in in_flight.deliveries:
            MESSAGES_CONSUMED.labels(d.topic, "ok").inc()
        await self.commit(in_flight.offsets)


@dataclass
class _InFlight(Generic[T]):
    applied: T | None
    task: asyncio.Task[None] | None
    deliveries: list[Delivery[Any]]
    offsets: dict[TopicPartition, int]
