"""An idempotent producer (acks=all) and a thin publisher of pydantic messages."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from crmsync.common.kafka.codec import encode
from crmsync.common.settings import CommonSettings


def create_producer(settings: CommonSettings, *, linger_ms: int = 5) -> AIOKafkaProducer:
    """Returns an unstarted producer that never duplicates or reorders on retry."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=settings.kafka_client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=30_000,
    )


class Publisher:
    """Publishes messages to the design's topics by their short names ('sync-jobs')."""

    def __init__(self, producer: AIOKafkaProducer, settings: CommonSettings) -> None:
        self._producer = producer
        self._settings = settings

    @property
    def producer(self) -> AIOKafkaProducer:
        return self._producer

    async def publish(self, topic: str, *, key: bytes | str, message: BaseModel) -> None:
        """Sends and waits for the broker's acknowledgement."""
        await self.publish_raw(topic, key=key, value=encode(message))

    async def publish_raw(
        self,
        topic: str,
        *,
        key: bytes | str | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        raw_key = key.encode() if isinstance(key, str) else key
        await self._producer.send_and_wait(
            self._settings.topic(topic), value=value, key=raw_key, headers=headers
        )

    async def ping(self) -> None:
        """Raises unless the cluster answers a metadata request."""
        await self._producer.client.fetch_all_metadata()
