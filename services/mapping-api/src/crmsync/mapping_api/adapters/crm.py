"""The CRM port, backed by the shared connector factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection


class ConnectorPort:
    """Builds a connector per use (the connection row may have changed since the last one)."""

    def __init__(self, *, secret_box: SecretBox) -> None:
        self._secret_box = secret_box

    @asynccontextmanager
    async def connect(self, connection: CrmConnection) -> AsyncIterator[CrmConnector]:
        from crmsync.common.crm.factory import connector_for

        connector = connector_for(connection, secret_box=self._secret_box)
        try:
            yield connector
        finally:
            await connector.aclose()
