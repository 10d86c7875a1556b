"""What the use cases need from the outside world, as Protocols (adapters implement them)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from crmsync.common.crm.interface import CrmConnector
from crmsync.common.db.schema import CrmConnection


class CrmPort(Protocol):
    """Opens a connector to the CRM of one stored connection; closed when the block ends."""

    def connect(self, connection: CrmConnection) -> AbstractAsyncContextManager[CrmConnector]: ...
