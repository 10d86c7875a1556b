"""Starting Kafka clients while the broker may be away: a service that starts during an
outage waits for the broker (not ready meanwhile) instead of exiting."""

from __future__ import annotations

import asyncio
from typing import Protocol

from crmsync.common.service import Outage, ride_out


class Startable(Protocol):
    """An aiokafka producer or consumer: `start()` connects, and may be called again after it failed."""

    async def start(self) -> None: ...


async def start_when_reachable(client: Startable, *, stop: asyncio.Event, what: str) -> bool:
    """Starts the client once the broker answers; returns False when `stop` came first."""
    started, _ = await ride_out(client.start, stop=stop, outage=Outage(what))
    return started
