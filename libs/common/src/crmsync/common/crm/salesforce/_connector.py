"""The Salesforce implementation of CrmConnector over the REST and Bulk 2.0 APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
import orjson
import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import (
    ApiBudget,
    ChangeBatch,
    CrmRecord,
    DeletedRecord,
    ObjectDescribe,
    WriteResult,
)
from crmsync.common.crm.roles import RecordRoles
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._bulk import BulkExport, bulk_can_export
from crmsync.common.crm.salesforce._changes import (
    ChangeCursor,
    cursor_from_watermarks,
    full_read,
    incremental_read,
)
from crmsync.common.crm.salesforce._config import ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce._describe import Describes
from crmsync.common.crm.salesforce._query import RestQueries
from crmsync.common.crm.salesforce._roles import SALESFORCE_ROLES
from crmsync.common.crm.salesforce._transport import Transport
from crmsync.common.crm.salesforce._writes import CompositeWriter

log = structlog.get_logger(__name__)


class SalesforceConnector:
    """One org over HTTP: a long-lived keep-alive client, token cache, retries and API budget.

    Values come back typed from the object's describe, identically for REST and
    Bulk: booleans, ints, floats, `datetime.date`, UTC-aware `datetime`, else str.
    """

    def __init__(
        self,
        credentials: SalesforceCredentials,
        *,
        options: ConnectorOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        account_id: str | None = None,
    ) -> None:
        self._options = options or ConnectorOptions()
        self._http = Transport(credentials, self._options, transport=transport, account_id=account_id)
        self._describes = Describes(self._http)
        self._rest = RestQueries(self._http, self._describes)
        self._bulk = BulkExport(self._http)
        self._writer = CompositeWriter(self._http)

    @property
    def options(self) -> ConnectorOptions:
        return self._options

    @property
    def roles(self) -> RecordRoles:
        """Returns the Salesforce fields carrying the id, SystemModstamp, owner, account, conversion."""
        return SALESFORCE_ROLES

    @staticmethod
    def cursor_from_watermarks(watermark: datetime, deleted_watermark: datetime | None = None) -> str:
        """Returns the change cursor continuing from a modified-since and a deleted-feed watermark
        (the shape is in crmsync.common.crm.salesforce._changes)."""
        return cursor_from_watermarks(watermark, deleted_watermark)

    async def __aenter__(self) -> SalesforceConnector:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----------------------------------------------------------------- metadata

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the object's fields (cached for `describe_ttl_s`, as admins add fields)."""
        return await self._describes.describe(object_name)

    async def count(self, object_name: str) -> int:
        """Returns how many (not deleted) records the object has."""
        return await self._rest.count(object_name)

    async def budget(self) -> ApiBudget:
        """Returns the daily API budget from the last Sforce-Limit-Info, or from /limits."""
        usage = self._http.usage
        if usage.limit is None or usage.used is None:
            response = await self._http.call(
                "GET", f"{self._http.api}/limits", operation="limits", budgeted=False
            )
            daily = orjson.loads(response.content)["DailyApiRequests"]
            usage.record(used=int(daily["Max"]) - int(daily["Remaining"]), limit=int(daily["Max"]))
        assert usage.used is not None and usage.limit is not None
        return ApiBudget(used=usage.used, limit=usage.limit)

    # ------------------------------------------------------------------ reading

    async def changed_since(
        self, object_name: str, fields: Sequence[str], since: datetime, *, page_size: int = 2000
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields records with SystemModstamp >= since, ordered by (SystemModstamp, Id)."""
        names, plan = await self._describes.prepare(object_name, fields, first=("Id", "SystemModstamp"))
        where = f"SystemModstamp >= {soql.datetime_literal(since)}"
        async for batch in self._rest.stream(
            object_name, names, plan, where=where, order_by="SystemModstamp, Id", page_size=page_size
        ):
            yield batch

    async def export_all(self, object_name: str, fields: Sequence[str]) -> AsyncIterator[list[CrmRecord]]:
        """Yields every record: Bulk API 2.0 above `bulk_threshold` records, REST query below.

        Fields Bulk cannot export (compound address/location, base64) send the
        whole export through REST.
        """
        names, plan = await self._describes.prepare(object_name, fields, first=("Id",))
        described = await self.describe(object_name)
        bulk_capable = bulk_can_export(described, names)
        use_bulk = bulk_capable and await self.count(object_name) > self._options.bulk_threshold
        log.info("crm.export", object=object_name, road="bulk" if use_bulk else "rest", fields=len(names))
        stream = (
            self._bulk.stream(object_name, names, plan)
            if use_bulk
            else self._rest.stream(object_name, names, plan, page_size=self._options.page_size)
        )
        async for batch in stream:
            yield batch

    async def changes(
        self, object_name: str, fields: Sequence[str], cursor: str | None, *, page_size: int = 2000
    ) -> AsyncIterator[ChangeBatch]:
        """Yields what changed since the cursor, deletions included; every record when it is None.

        cursor None: a full read (`export_all`: Bulk above `bulk_threshold`), the last batch's
        cursor following changes from the moment it began. Else: records modified since the
        cursor's watermark less `change_lookback_s`, ordered by (SystemModstamp, Id), each batch
        with the cursor resuming after it, then the deleted feed since its own watermark less
        the lookback. Raises DeletedFeedWindowExceeded (a ChangeCursorExpired) when the deleted
        feed no longer reaches back that far: read again with None.
        """
        if cursor is None:
            async for batch in full_read(self.export_all(object_name, fields), began=utc_now()):
                yield batch
            return
        since = ChangeCursor.parse(cursor)
        lookback = timedelta(seconds=self._options.change_lookback_s)
        self._rest.check_deleted_feed_reaches(since.deleted_since - lookback)

        def changed(start: datetime) -> AsyncIterator[list[CrmRecord]]:
            return self.changed_since(object_name, fields, start, page_size=page_size)

        async def deleted(start: datetime, end: datetime) -> list[DeletedRecord]:
            return await self.deleted_since(object_name, start, end)

        async for batch in incremental_read(changed, deleted, since, lookback=lookback):
            yield batch

    async def deleted_since(self, object_name: str, start: datetime, end: datetime) -> list[DeletedRecord]:
        """Returns records deleted in [start, end].

        Raises DeletedFeedWindowExceeded (a ChangeCursorExpired) when start is further back
        than the feed reaches (15 days): the caller must run a full sync instead,
        since silently clamping would lose deletions.
        """
        return await self._rest.deleted_since(object_name, start, end)

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones are left out), in chunks under the URI limit."""
        return await self._rest.by_ids(object_name, ids, fields)

    async def sample_values(self, object_name: str, field_name: str, *, limit: int = 10) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a field, in the order found."""
        return await self._rest.sample_values(object_name, field_name, limit=limit)

    # ------------------------------------------------------------------ writing

    async def create(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Creates records (200 a call, allOrNone false); one result per record, in order."""
        return await self._writer.write("POST", object_name, records, operation="create")

    async def update(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Updates records, each with its Id (200 a call); one result per record, in order."""
        for index, record in enumerate(records):
            if not record.get("Id"):
                raise ValueError(f"record {index} has no Id to update")
        return await self._writer.write("PATCH", object_name, records, operation="update")
