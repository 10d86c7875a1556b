"""REST queries: paged streams, field lists split under the URI limit, lookups by Id, the deleted feed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog

from crmsync.common.crm.interface import CrmRecord, DeletedRecord
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._describe import Describes
from crmsync.common.crm.salesforce._errors import DeletedFeedWindowExceeded
from crmsync.common.crm.salesforce._transport import Transport
from crmsync.common.crm.salesforce._values import Plan, shape_rest

log = structlog.get_logger(__name__)

# Types SOQL cannot filter on, so sample_values filters them here instead.
UNFILTERABLE_TYPES = frozenset({"textarea", "base64", "address", "location", "encryptedstring"})


class RestQueries:
    """Reads an org through /query and the deleted feed."""

    def __init__(self, http: Transport, describes: Describes) -> None:
        self._http = http
        self._describes = describes

    async def count(self, object_name: str) -> int:
        """Returns how many (not deleted) records the object has."""
        statement = f"SELECT COUNT() FROM {soql.check_name(object_name)}"
        response = await self._http.call(
            "GET", f"{self._http.api}/query", params={"q": statement}, operation="count"
        )
        return int(orjson.loads(response.content)["totalSize"])

    def check_deleted_feed_reaches(self, start: datetime) -> None:
        """Raises DeletedFeedWindowExceeded when `start` is further back than the deleted feed reaches."""
        earliest = datetime.now(UTC) - timedelta(days=self._http.options.deleted_feed_days)
        if _aware(start) < earliest:
            raise DeletedFeedWindowExceeded(
                f"the deleted feed reaches back to {earliest.isoformat()}, not to {start.isoformat()}; "
                "run a full sync to find older deletions",
                error_code="INVALID_REPLICATION_DATE",
            )

    async def deleted_since(self, object_name: str, start: datetime, end: datetime) -> list[DeletedRecord]:
        """Returns records deleted in [start, end]; a start before the feed's reach is refused."""
        start, end = _aware(start), _aware(end)
        self.check_deleted_feed_reaches(start)
        if end <= start:
            return []
        # Whole seconds, widened outwards: a deletion at 10:00:00.157 must not fall
        # outside an end of 10:00:00.900 truncated to 10:00:00. Overlaps are harmless.
        params = {"start": _feed_time(start), "end": _feed_time(_ceil_second(end))}
        response = await self._http.call(
            "GET",
            f"{self._http.api}/sobjects/{soql.check_name(object_name)}/deleted/",
            params=params,
            operation="deleted",
        )
        body = orjson.loads(response.content)
        return [
            DeletedRecord(
                id=item["id"], deleted_at=datetime.fromisoformat(item["deletedDate"]).astimezone(UTC)
            )
            for item in body.get("deletedRecords", [])
        ]

    async def by_ids(self, object_name: str, ids: Sequence[str], fields: Sequence[str]) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones are left out), in chunks under the URI limit."""
        unique_ids = list(dict.fromkeys(ids))
        if not unique_ids:
            return []
        names, plan = await self._describes.prepare(object_name, fields, first=("Id",))
        groups = await self._field_groups(object_name, names, where="Id IN ()", order_by=None, for_ids=True)
        out: list[CrmRecord] = []
        window = self._http.options.page_size
        for offset in range(0, len(unique_ids), window):
            part = unique_ids[offset : offset + window]
            records = await self._fetch_ids(object_name, part, groups[0], plan)
            await self._join(object_name, records, groups[1:], plan)
            out.extend(records)
        return out

    async def sample_values(self, object_name: str, field_name: str, *, limit: int) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a field, in the order found."""
        names, plan = await self._describes.prepare(object_name, [field_name], first=("Id",))
        name = names[-1] if len(names) > 1 else names[0]
        described = await self._describes.describe(object_name)
        field = described.fields.get(name)
        where = None if field is None or field.type in UNFILTERABLE_TYPES else f"{name} != null"
        statement = soql.select(names, object_name, where=where, limit=max(limit * 20, 200))
        values: list[Any] = []
        seen: set[str] = set()
        async for page in self._pages(f"{self._http.api}/query", {"q": statement}, page_size=2000):
            for record in page.get("records", []):
                value: Any = shape_rest(record, plan)
                for part in name.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if value in (None, ""):
                    continue
                key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
                if key not in seen:
                    seen.add(key)
                    values.append(value)
                if len(values) >= limit:
                    return values
        return values

    async def stream(
        self,
        object_name: str,
        names: list[str],
        plan: Plan,
        *,
        where: str | None = None,
        order_by: str | None = None,
        page_size: int,
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields the records a query selects, page by page, with every field asked for."""
        groups = await self._field_groups(object_name, names, where=where, order_by=order_by)
        if len(groups) > 1:
            log.info("crm.query.split", object=object_name, queries=len(groups))
        statement = soql.select(groups[0], object_name, where=where, order_by=order_by)
        async for page in self._pages(f"{self._http.api}/query", {"q": statement}, page_size=page_size):
            records = [shape_rest(r, plan) for r in page.get("records", [])]
            if records and len(groups) > 1:
                await self._join(object_name, records, groups[1:], plan)
            if records:
                yield records

    async def _field_groups(
        self,
        object_name: str,
        names: list[str],
        *,
        where: str | None,
        order_by: str | None,
        for_ids: bool = False,
    ) -> list[list[str]]:
        """Returns the field list split so every query's URI stays under the limit.

        The first group keeps the leading fields (Id, SystemModstamp); the others
        carry Id so they can be joined back, and leave half the URI for an Id list.
        """
        session = await self._http.session()
        base = session.instance_url + self._http.api + "/query"
        limit = self._http.options.max_uri_bytes

        def length(group: Sequence[str], clause: str | None) -> int:
            statement = soql.select(group, object_name, where=clause, order_by=order_by)
            return soql.url_bytes(soql.query_url(base, statement))

        room = limit // 2 if for_ids else 0
        if length(names, where) <= limit - room:
            return [names]
        keep = names[:2] if names[1:2] == ["SystemModstamp"] else names[:1]
        first = soql.split_fields(names, fits=lambda g: length(g, where) <= limit // 2, keep=keep)
        if len(keep) == 1:
            return first
        # Only the first group needs SystemModstamp; the others are joined by Id.
        rest = [name for group in first[1:] for name in group if name not in keep]
        head = first[0]
        if not rest:
            return [head]
        tail = soql.split_fields(["Id", *rest], fits=lambda g: length(g, "Id IN ()") <= limit // 2)
        return [head, *tail]

    async def _pages(
        self, path: str, params: dict[str, str] | None, *, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields query result pages, following nextRecordsUrl."""
        batch = min(2000, max(200, page_size))
        headers = {"Sforce-Query-Options": f"batchSize={batch}"}
        next_path: str | None = path
        while next_path:
            response = await self._http.call(
                "GET", next_path, params=params, headers=headers, operation="query"
            )
            page = orjson.loads(response.content)
            yield page
            params = None
            next_path = None if page.get("done", True) else page.get("nextRecordsUrl")

    async def _fetch_ids(
        self, object_name: str, ids: list[str], group: list[str], plan: Plan
    ) -> list[CrmRecord]:
        session = await self._http.session()
        base = session.instance_url + self._http.api + "/query"
        empty = soql.select(group, object_name, where="Id IN ()")
        chunks = soql.chunk_ids(
            ids,
            base_bytes=soql.url_bytes(soql.query_url(base, empty)),
            limit=self._http.options.max_uri_bytes,
        )
        out: list[CrmRecord] = []
        for chunk in chunks:
            statement = soql.select(group, object_name, where=soql.id_in(chunk))
            async for page in self._pages(f"{self._http.api}/query", {"q": statement}, page_size=2000):
                out.extend(shape_rest(r, plan) for r in page.get("records", []))
        return out

    async def _join(
        self, object_name: str, records: list[CrmRecord], groups: list[list[str]], plan: Plan
    ) -> None:
        """Completes `records` in place with the fields of the other groups, by Id."""
        by_id = {r["Id"]: r for r in records}
        ids = list(by_id)
        for group in groups:
            keys = {name.split(".")[0] for name in group}
            for extra in await self._fetch_ids(object_name, ids, group, plan):
                target = by_id.get(extra["Id"])
                if target is not None:
                    target.update(extra)
            # A record deleted between the queries still gets every key, empty.
            for record in records:
                for key in keys:
                    record.setdefault(key, None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ceil_second(value: datetime) -> datetime:
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def _feed_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
