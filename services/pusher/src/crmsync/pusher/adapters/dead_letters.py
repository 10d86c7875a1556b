"""Dead letters for events that are valid JSON but cannot be applied (unknown account, field or contact)."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from crmsync.common.kafka.codec import encode
from crmsync.common.kafka.consumer import DeadLetters, Delivery


class KafkaDeadLetters:
    """The dead-letter port over the consumer loop's `DeadLetters`."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    async def send(self, delivery: Delivery[Any], *, error: str) -> None:
        """Publishes the event to `<topic>.dlq` with the reason, acknowledged before returning.

        The consumer loop keeps only the decoded message, so the letter carries its
        canonical JSON rather than the producer's exact bytes.
        """
        value = encode(delivery.message)
        record = ConsumerRecord(
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            timestamp=delivery.timestamp_ms,
            timestamp_type=0,
            key=delivery.key,
            value=value,
            checksum=None,
            serialized_key_size=len(delivery.key or b""),
            serialized_value_size=len(value),
            headers=(),
        )
        await self._dead_letters.publish(record, error=error)
