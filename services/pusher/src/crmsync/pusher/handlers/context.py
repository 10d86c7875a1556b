"""What every pusher handler is given: its ports and how wide a batch is spread."""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.pusher.handlers.ports import CrmPort, DeadLetterQueue, Store


@dataclass(frozen=True)
class PushContext:
    store: Store
    crm: CrmPort
    dead_letters: DeadLetterQueue
    lanes: int = 1
