"""The contact-change dead-letter topic read back for a replay: the events themselves are kept there (R22)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import ValidationError

from crmsync.common.kafka.topics import CONTACT_CHANGES_DLQ
from crmsync.common.messages import ContactChanged, DeadLetter
from crmsync.common.settings import CommonSettings

# Tries (50 ms apart) for the topic's partitions to be known before it counts as empty.
_ASSIGNMENT_WAITS = 100


class KafkaDeadLetterTopic:
    """Reads the whole dead-letter topic, without a consumer group, up to its end when asked."""

    def __init__(self, settings: CommonSettings, *, timeout_s: float = 60.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s

    async def originals(self, account_id: str, event_ids: Collection[str]) -> dict[str, ContactChanged]:
        wanted = set(event_ids)
        if not wanted:
            return {}
        # Subscribed without a group, the consumer is given every partition and commits nothing.
        consumer = AIOKafkaConsumer(
            self._settings.topic(CONTACT_CHANGES_DLQ),
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=self._settings.kafka_client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            return await asyncio.wait_for(self._scan(consumer, account_id, wanted), self._timeout_s)
        finally:
            await consumer.stop()

    async def _scan(
        self, consumer: AIOKafkaConsumer, account_id: str, wanted: set[str]
    ) -> dict[str, ContactChanged]:
        for _ in range(_ASSIGNMENT_WAITS):  # the partitions come with the first metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        partitions = sorted(consumer.assignment())
        if not partitions:
            return {}
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: dict[str, ContactChanged] = {}
        left = {tp for tp in partitions if ends[tp] > 0}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = _event_of(record)
                    if event is not None and event.account_id == account_id and event.event_id in wanted:
                        found[event.event_id] = event  # a later letter of the event is the one that counts
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return found


def _event_of(record: ConsumerRecord) -> ContactChanged | None:
    """Returns the letter's event, or None for a letter whose bytes were not a valid event."""
    try:
        letter = DeadLetter.model_validate_json(record.value or b"")
        if letter.original_encoding != "utf-8":
            return None
        return ContactChanged.model_validate_json(letter.original)
    except ValidationError:
        return None
