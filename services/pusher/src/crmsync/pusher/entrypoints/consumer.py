"""The pusher's consumer loops: contact-change events and outbound jobs, each in its own group.

A poll that returns fewer events than a full batch waits up to
`push_linger_ms` for more, so a burst goes to the CRM in few composite
requests while a lone event is delayed by a few milliseconds at most.
Offsets are committed only after the handler has stored its results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from crmsync.common.kafka.consumer import ConsumerLoop, Delivery

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_ms / 1000
        while (size := sum(len(r) for r in batches.values())) < self._batch_limit:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                return
            more = await self._poller.getmany(timeout_ms=left_ms, max_records=self._batch_limit - size)
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
