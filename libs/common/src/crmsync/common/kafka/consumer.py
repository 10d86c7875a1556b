"""The consumer loop: decode, hand over, and commit only after the work is stored.

Offsets are committed after the handler returns, so a process killed in the
middle of a batch gets that batch again after a restart: handlers must make
redelivery harmless (R18). A message that cannot be decoded or validated goes to
the topic's dead-letter topic with the reason, and the loop goes on (R22). When
Postgres or Kafka is away (`transient`, by default `DEPENDENCY_ERRORS`), the
poll or the batch in hand is tried again with backoff until it goes through or
the loop is stopped (then uncommitted: it comes again after a restart). Any
other exception from a handler is a bug: the loop stops without committing and
the exception propagates, so the process restarts and retries.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import BaseModel, ValidationError

from crmsync.common.kafka.codec import decode, encode
from crmsync.common.messages import DeadLetter
from crmsync.common.observability.metrics import CONSUMER_LAG, MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED
from crmsync.common.service import DEPENDENCY_ERRORS, Outage, ride_out
from crmsync.common.settings import DEFAULT_TOPIC_PREFIX, CommonSettings

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """One decoded message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    message: M
    timestamp_ms: int


BatchHandler = Callable[[Sequence[Delivery[Any]]], Awaitable[None]]


def consumer_group(settings: CommonSettings, group_id: str) -> str:
    """Returns the group id to join: scoped by the topic prefix unless it is the default.

    Deployments (or test runs) that share a cluster under different topic
    prefixes must not share consumer groups: a member subscribed to other
    topics would make every rebalance of the group theirs too.
    """
    if settings.topic_prefix == DEFAULT_TOPIC_PREFIX:
        return group_id
    return f"{settings.topic_prefix}{group_id}"


def create_consumer(
    settings: CommonSettings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """Returns an unstarted consumer of the given short topic names, auto-commit off."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "group_id": consumer_group(settings, group_id),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*(settings.topic(t) for t in topics), **options)


def describe_validation_error(exc: ValidationError) -> str:
    """Returns a one-line reason that names each offending field."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class DeadLetters:
    """Publishes undecodable or invalid messages to `<topic>.dlq` with the reason."""

    def __init__(self, send: Callable[[str, bytes | None, bytes], Awaitable[None]]) -> None:
        self._send = send

    @classmethod
    def via(cls, producer: AIOKafkaProducer) -> DeadLetters:
        """Returns dead letters sent through `producer`, each acknowledged before the offset moves."""

        async def send(topic: str, key: bytes | None, value: bytes) -> None:
            await producer.send_and_wait(topic, value=value, key=key)

        return cls(send)

    async def publish(self, record: ConsumerRecord, *, error: str, attempts: int = 1) -> None:
        raw = record.value or b""
        try:
            original, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            original, encoding = base64.b64encode(raw).decode(), "base64"
        letter = DeadLetter(
            original=original,
            original_encoding=encoding,  # type: ignore[arg-type]
            error=error,
            failed_at=datetime.now(UTC),
            attempts=attempts,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            headers={k: v.decode("utf-8", "replace") for k, v in (record.headers or ())},
        )
        await self._send(f"{record.topic}.dlq", record.key, encode(letter))
        MESSAGES_DEAD_LETTERED.labels(record.topic).inc()
        log.warning("message_dead_lettered", topic=record.topic, offset=record.offset, error=error)


class ConsumerLoop:
    """Polls batches, validates them against each topic's model, calls the handler, commits."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        models: Mapping[str, type[BaseModel]],  # full topic name -> message model
        handler: BatchHandler | None,  # None for a subclass that handles batches its own way
        dead_letters: DeadLetters,
        max_batch: int = 500,
        poll_timeout_ms: int = 200,
        transient: tuple[type[BaseException], ...] = DEPENDENCY_ERRORS,
    ) -> None:
        self._consumer = consumer
        self._models = dict(models)
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._transient = transient
        self._outage = Outage("kafka consumer")

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; the batch in hand is finished and committed first."""
        while not stop.is_set():
            polled, batches = await ride_out(
                lambda: self._consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=self._max_batch),
                stop=stop,
                outage=self._outage,
            )
            if not polled or not batches:
                continue
            if not await self.handle(batches, stop):
                return
            await self._report_lag(batches.keys())

    async def handle(
        self, batches: Mapping[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> bool:
        """Processes a batch, again and again while a dependency is away; returns False if stopped first.

        A batch tried again is handled again from its start: handlers make that
        harmless (R18), as they do for a redelivery.
        """
        done, _ = await ride_out(
            lambda: self.process(batches), stop=stop, outage=self._outage, transient=self._transient
        )
        return done

    async def process(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self._handler is not None
        deliveries = await self.decode(batches)
        if deliveries:
            try:
                await self._handler(deliveries)
            except BaseException:
                for d in deliveries:
                    MESSAGES_CONSUMED.labels(d.topic, "error").inc()
                raise
            for d in deliveries:
                MESSAGES_CONSUMED.labels(d.topic, "ok").inc()
        await self.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commits the offsets; partitions this member lost meanwhile (a rebalance) are left to their new owner.

        The new owner gets the batch again, which handlers make harmless (R18).
        """
        try:
            await self._consumer.commit(dict(offsets))
        except (CommitFailedError, IllegalStateError) as error:
            log.warning("offsets_left_to_new_owner", error=str(error)[:300])

    async def decode(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> list[Delivery[Any]]:
        """Returns the batches' valid messages; invalid ones go to the dead-letter topic (R22)."""
        deliveries: list[Delivery[Any]] = []
        for records in batches.values():
            for record in records:
                delivery = await self._decode(record)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    async def _decode(self, record: ConsumerRecord) -> Delivery[Any] | None:
        model = self._models.get(record.topic)
        if model is None:
            raise LookupError(f"no model registered for topic {record.topic}")
        try:
            message = model.model_validate(decode(record.value))
        except ValidationError as exc:
            await self._dead_letters.publish(record, error=describe_validation_error(exc))
            MESSAGES_CONSUMED.labels(record.topic, "invalid").inc()
            return None
        except ValueError as exc:
            await self._dead_letters.publish(record, error=str(exc))
            MESSAGES_CONSUMED.labels(record.topic, "invalid").inc()
            return None
        return Delivery(record.topic, record.partition, record.offset, record.key, message, record.timestamp)

    async def _report_lag(self, partitions: Any) -> None:
        assigned = self._consumer.assignment()
        for tp in partitions:
            if tp not in assigned:
                continue  # lost in a rebalance since the poll: its lag is the new owner's to report
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:
                continue  # lost in a rebalance since the poll: its position is the new owner's
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
