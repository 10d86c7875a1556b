"""The Dynamics 365 implementation of CrmConnector over the Dataverse Web API (OData v4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from crmsync.common.crm.dynamics._config import DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.dynamics._entities import entity_named
from crmsync.common.crm.dynamics._metadata import Describes
from crmsync.common.crm.dynamics._reads import Reads, odata_datetime
from crmsync.common.crm.dynamics._roles import DYNAMICS_ROLES
from crmsync.common.crm.dynamics._transport import Transport
from crmsync.common.crm.dynamics._writes import BatchWriter
from crmsync.common.crm.interface import ApiBudget, ChangeBatch, CrmRecord, ObjectDescribe, WriteResult
from crmsync.common.crm.roles import RecordRoles


class DynamicsConnector:
    """One Dataverse environment over HTTP: a long-lived keep-alive client, token cache, retries and
    service protection.

    Objects are named by role (`Lead`, `Contact`, `Account`, `User`, `Opportunity`) or by their
    Dataverse names; records carry the attributes asked for plus the role fields `roles` names
    (`Id`, `modifiedon`, `OwnerId`, `Owner`, `AccountId`, `Account`, `Qualified`,
    `QualifiedContactId`) and `OptedOut`. Date-times come back UTC-aware, date-only columns as dates.
    """

    def __init__(
        self,
        credentials: DynamicsCredentials,
        *,
        options: DynamicsOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        account_id: str | None = None,
    ) -> None:
        self._options = options or DynamicsOptions()
        self._http = Transport(credentials, self._options, transport=transport, account_id=account_id)
        self._describes = Describes(self._http)
        self._reads = Reads(self._http, self._describes)
        self._writer = BatchWriter(self._http, self._describes)

    @property
    def roles(self) -> RecordRoles:
        """Returns the fields carrying the id, modifiedon, owner, parent account and qualification."""
        return DYNAMICS_ROLES

    # ----------------------------------------------------------------- metadata

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the table's columns under the interface's types, role fields included."""
        return await self._describes.describe(object_name)

    async def count(self, object_name: str) -> int:
        """Returns how many records the table has."""
        return await self._reads.count(object_name)

    async def budget(self) -> ApiBudget:
        """Returns the service-protection window's requests used and allowed, as last reported."""
        return self._http.budget.budget()

    # ------------------------------------------------------------------ reading

    async def changed_since(
        self, object_name: str, fields: Sequence[str], since: datetime, *, page_size: int = 2000
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields records with modifiedon >= since, ordered by (modifiedon, id)."""
        selection = await self._reads.selection(object_name, fields)
        entity = selection.entity
        where = f"modifiedon ge {odata_datetime(since)}"
        order = f"modifiedon asc,{entity.primary_id} asc"
        async for batch in self._reads.stream(
            selection, where=where, order_by=order, page_size=min(page_size, 5000)
        ):
            yield batch

    async def export_all(self, object_name: str, fields: Sequence[str]) -> AsyncIterator[list[CrmRecord]]:
        """Yields every record of the table, `page_size` a page."""
        selection = await self._reads.selection(object_name, fields)
        async for batch in self._reads.stream(selection, page_size=self._options.page_size):
            yield batch

    async def changes(
        self, object_name: str, fields: Sequence[str], cursor: str | None, *, page_size: int | None = None
    ) -> AsyncIterator[ChangeBatch]:
        """Yields what changed since the opaque `cursor` (every record when None), deletions included.

        The last batch carries the cursor (Dataverse's delta token) to start from next time.
        Raises ChangeTokenExpired (a ChangeCursorExpired) when Dataverse no longer follows the
        cursor: read again with None (a full sync; whatever it no longer returns was deleted).
        """
        selection = await self._reads.selection(object_name, fields)
        async for batch in self._reads.changes(
            selection, cursor, page_size=page_size or self._options.page_size
        ):
            yield batch

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones are left out)."""
        selection = await self._reads.selection(object_name, fields)
        return await self._reads.by_ids(selection, ids)

    async def sample_values(self, object_name: str, field_name: str, *, limit: int = 10) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a column, in the order found."""
        return await self._reads.sample_values(object_name, field_name, limit=limit)

    # ------------------------------------------------------------------ writing

    async def create(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Creates records ($batch, each on its own); one result per record, in order."""
        return await self._writer.write(entity_named(object_name), records, creating=True)

    async def update(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Updates records, each with its Id ($batch, `If-Match: *`: never a create); one result each, in order."""
        entity = entity_named(object_name)
        for index, record in enumerate(records):
            if not (record.get("Id") or record.get(entity.primary_id)):
                raise ValueError(f"record {index} has no Id to update")
        return await self._writer.write(entity, records, creating=False)

    # ---------------------------------------------------------------- lifecycle

    @property
    def options(self) -> DynamicsOptions:
        return self._options

    async def aclose(self) -> None:
        """Closes the keep-alive client."""
        await self._http.aclose()

    async def __aenter__(self) -> DynamicsConnector:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
