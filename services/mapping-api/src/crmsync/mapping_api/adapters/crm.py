"""The CRM port, backed by the shared connector factory (whichever CRM the connection names)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.factory import CallGates, connector_for
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.crypto import SecretBox

# Someone is waiting on the answer: fail within seconds rather than retry for minutes.
INTERACTIVE = ConnectorSettings(timeout_s=15.0, connect_timeout_s=5.0, max_retries=1, backoff_max_s=2.0)


class ConnectorPort:
    """Builds a connector per use (the stored connection may have changed since the last one)."""

    def __init__(
        self,
        *,
        secret_box: SecretBox,
        settings: ConnectorSettings = INTERACTIVE,
        call_gates: CallGates | None = None,
    ) -> None:
        self._secret_box = secret_box
        self._settings = settings
        self._call_gates = call_gates

    @asynccontextmanager
    async def connect(self, connection: CrmConnectionInfo) -> AsyncIterator[CrmConnector]:
        # Each request spends the account's API allowance, as the workers' requests do.
        gate = self._call_gates(connection) if self._call_gates is not None else None
        connector = connector_for(
            connection, secret_box=self._secret_box, settings=self._settings, call_gate=gate
        )
        try:
            yield connector
        finally:
            await connector.aclose()

    async def check(self, connection: CrmConnectionInfo) -> None:
        # Building a connector reads the credentials the way every use will, and sends nothing.
        async with self.connect(connection):
            pass
