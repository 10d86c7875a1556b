"""The design's topics, and `crmsync-topics`, the admin step that creates them.

Topics are created explicitly (the local broker has auto-creation off) with
partitions and replication from settings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from crmsync.common.messages.topics import (
    CONTACT_CHANGES,
    CONTACT_CHANGES_DLQ,
    DESIGN_TOPICS,
    OUTBOUND_JOBS,
    SYNC_JOBS,
)
from crmsync.common.settings import CommonSettings

__all__ = [
    "CONTACT_CHANGES",
    "CONTACT_CHANGES_DLQ",
    "DESIGN_TOPICS",
    "OUTBOUND_JOBS",
    "SYNC_JOBS",
    "TopicSpec",
    "delete_topics_with_prefixes",
    "ensure_topics",
    "main",
    "topic_specs",
]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int


def topic_specs(settings: CommonSettings, names: tuple[str, ...] = DESIGN_TOPICS) -> list[TopicSpec]:
    """Returns the full names and sizes of the design's topics."""
    return [
        TopicSpec(settings.topic(name), settings.topic_partitions, settings.topic_replication_factor)
        for name in names
    ]


async def ensure_topics(settings: CommonSettings, names: tuple[str, ...] = DESIGN_TOPICS) -> list[str]:
    """Creates the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id="crmsync-topics"
    )
    # A broker that has just opened its port may not serve metadata yet.
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(KafkaConnectionError),
        stop=stop_after_delay(60),
        wait=wait_fixed(1),
        reraise=True,
    ):
        with attempt:
            await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [spec for spec in topic_specs(settings, names) if spec.name not in existing]
        created: list[str] = []
        for spec in wanted:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            num_partitions=spec.partitions,
                            replication_factor=spec.replication_factor,
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def delete_topics_with_prefixes(bootstrap_servers: str, prefixes: list[str]) -> list[str]:
    """Deletes every topic whose name starts with one of `prefixes`; returns their names.

    For the throwaway prefixes of test runs and benchmarks, which would otherwise
    pile up on a developer's broker and slow its start.
    """
    if not prefixes:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="crmsync-topics")
    try:
        await asyncio.wait_for(admin.start(), 30)
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        for start in range(0, len(doomed), 500):
            await admin.delete_topics(doomed[start : start + 500])
        return doomed
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crmsync-topics", description=__doc__)
    parser.parse_args(argv)
    settings = CommonSettings()
    created = asyncio.run(ensure_topics(settings))
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "already exists"
        print(
            f"[topics] {spec.name}: {state} ({spec.partitions} partitions, replication {spec.replication_factor})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
