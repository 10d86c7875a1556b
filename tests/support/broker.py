"""Messages through the real broker, each to the topic its kind goes to."""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.kafka.topics import CONTACT_CHANGES, OUTBOUND_JOBS, SYNC_JOBS
from crmsync.common.messages import ContactChanged, RunOutbound, RunSync, contact_change_key
from crmsync.common.settings import CommonSettings


async def publish(
    settings: CommonSettings, messages: Sequence[ContactChanged | RunOutbound | RunSync]
) -> None:
    """Sends events to contact-changes, outbound jobs to outbound-jobs and sync jobs to sync-jobs."""
    producer = create_producer(settings)
    await producer.start()
    try:
        publisher = Publisher(producer, settings)
        for message in messages:
            if isinstance(message, RunOutbound):
                await publisher.publish(OUTBOUND_JOBS, key=message.account_id, message=message)
            elif isinstance(message, RunSync):
                await publisher.publish(SYNC_JOBS, key=message.account_id, message=message)
            else:
                await publisher.publish(CONTACT_CHANGES, key=contact_change_key(message), message=message)
    finally:
        await producer.stop()
