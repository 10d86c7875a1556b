"""What every pusher handler is given: its ports and how wide a batch is spread."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from crmsync.common.domain.redelivery import RedeliveryPolicy
from crmsync.pusher.handlers.ports import CrmPort, DeadLetterQueue, Store


@dataclass(frozen=True)
class PushContext:
    store: Store
    crm: CrmPort
    dead_letters: DeadLetterQueue
    lanes: int = 1
    # How a push that failed for a transient reason is tried again (R24).
    redelivery: RedeliveryPolicy = field(default_factory=RedeliveryPolicy)
    # How long a push waits for an API budget at its reserve before the budget is read again.
    budget_recheck: timedelta = timedelta(minutes=15)
    # The CRM as re-deliveries use it: one try per attempt (None: `crm`). A connector's own
    # retries would stretch the time between the read before a re-send and the write (R13).
    resend: CrmPort | None = None

    @property
    def resend_crm(self) -> CrmPort:
        return self.resend or self.crm
