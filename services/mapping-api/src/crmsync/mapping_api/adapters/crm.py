"""The CRM port, backed by the shared connector factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.factory import connector_for
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.crypto import SecretBox

# Someone is waiting on the answer: fail within seconds rather than retry for minutes.
INTERACTIVE = ConnectorOptions(timeout_s=15.0, connect_timeout_s=5.0, max_retries=1, backoff_max_s=2.0)


class ConnectorPort:
    """Builds a connector per use (the stored connection may have changed since the last one)."""

    def __init__(self, *, secret_box: SecretBox, options: ConnectorOptions = INTERACTIVE) -> None:
        self._secret_box = secret_box
        self._options = options

    @asynccontextmanager
    async def connect(self, connection: CrmConnectionInfo) -> AsyncIterator[CrmConnector]:
        connector = connector_for(connection, secret_box=self._secret_box, options=self._options)
        try:
            yield connector
        finally:
            await connector.aclose()
