"""Reads of a table: pages (`odata.maxpagesize`, `@odata.nextLink`), change tracking
(`odata.track-changes`, `@odata.deltaLink`, `$deletedEntity`), reads by id, counts and samples."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from crmsync.common.crm.dynamics._entities import QUALIFIED, QUALIFIED_CONTACT_ID, Entity, entity_named
from crmsync.common.crm.dynamics._metadata import Describes
from crmsync.common.crm.dynamics._records import Selection
from crmsync.common.crm.dynamics._transport import Transport
from crmsync.common.crm.interface import ChangeBatch, CrmRecord, CrmRejected

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
COUNT_LIMIT = 5000  # @odata.count counts at most this many


def odata_datetime(value: datetime) -> str:
    """Returns a `$filter` literal of an aware datetime, in UTC to the second (rounded down: `ge` keeps all)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def delta_token(link: str | None) -> str | None:
    """Returns the `$deltatoken` of a delta link (the cursor crmsync keeps)."""
    if not link:
        return None
    tokens = parse_qs(urlsplit(link).query).get("$deltatoken")
    return tokens[0] if tokens else None


def _deleted_entry(item: dict[str, Any]) -> bool:
    return "$deletedEntity" in str(item.get("@odata.context") or "")


class Reads:
    """Reads of the environment's tables, typed and shaped by each table's describe."""

    def __init__(self, http: Transport, describes: Describes) -> None:
        self._http = http
        self._describes = describes

    async def selection(self, object_name: str, fields: Sequence[str]) -> Selection:
        entity = entity_named(object_name)
        return Selection.of(entity, fields, await self._describes.describe(entity.role))

    async def _pages(
        self, path: str, *, params: dict[str, str], prefer: str, operation: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields each page's answer, following `@odata.nextLink` (with the same preferences)."""
        url: str | None = path
        query: dict[str, str] | None = params
        while url:
            response = await self._http.call(
                "GET", url, params=query, headers={"Prefer": prefer}, operation=operation
            )
            body = orjson.loads(response.content)
            yield body
            url, query = body.get("@odata.nextLink"), None

    async def stream(
        self, selection: Selection, *, where: str | None = None, order_by: str | None = None, page_size: int
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields the matching records, a page at a time."""
        params = {"$select": ",".join(selection.attributes)}
        if where:
            params["$filter"] = where
        if order_by:
            params["$orderby"] = order_by
        prefer = f"odata.maxpagesize={page_size}"
        async for body in self._pages(
            selection.entity.entity_set, params=params, prefer=prefer, operation="query"
        ):
            records = await self._finish(selection, body.get("value") or [])
            if records:
                yield records

    async def changes(
        self, selection: Selection, cursor: str | None, *, page_size: int
    ) -> AsyncIterator[ChangeBatch]:
        """Yields what changed since `cursor` (everything, when None); the last batch carries the next cursor.

        Raises ChangeTokenExpired when Dataverse can no longer follow the cursor.
        """
        params = {"$select": ",".join(selection.attributes)}
        prefer = f"odata.track-changes,odata.maxpagesize={page_size}"
        if cursor is not None:
            params["$deltatoken"] = cursor
            prefer = f"odata.maxpagesize={page_size}"
        async for body in self._pages(
            selection.entity.entity_set, params=params, prefer=prefer, operation="changes"
        ):
            items = body.get("value") or []
            deleted = [str(i["id"]) for i in items if _deleted_entry(i)]
            records = await self._finish(selection, [i for i in items if not _deleted_entry(i)])
            next_cursor = delta_token(body.get("@odata.deltaLink"))
            if "@odata.nextLink" not in body and next_cursor is None:
                raise CrmRejected("change tracking answered without a delta link", error_code="NO_DELTA_LINK")
            # Only the last page's delta link is a resume point (R18).
            yield ChangeBatch(records=records, deleted_ids=deleted, cursor=next_cursor)

    async def by_ids(self, selection: Selection, ids: Sequence[str]) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones, and ids that are no GUID, left out)."""
        found = await self._raw_by_ids(selection.entity, ids, selection.attributes)
        return await self._finish(selection, list(found.values()))

    async def _raw_by_ids(
        self, entity: Entity, ids: Sequence[str], attributes: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        wanted = [i for i in ids if i and GUID.match(i)]
        select = ",".join(dict.fromkeys([entity.primary_id, *attributes]))
        return {
            str(item[entity.primary_id]).lower(): item
            async for item in self._where_in(entity.entity_set, entity.primary_id, wanted, select)
        }

    async def _where_in(
        self, entity_set: str, attribute: str, ids: Sequence[str], select: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields the records whose `attribute` is one of `ids` (GUIDs), a few ids a query."""
        wanted = list(dict.fromkeys(i.lower() for i in ids))
        step = self._http.options.ids_per_query
        prefer = f"odata.maxpagesize={self._http.options.page_size}"
        for start in range(0, len(wanted), step):
            where = " or ".join(f"{attribute} eq {guid}" for guid in wanted[start : start + step])
            params = {"$select": select, "$filter": where}
            async for body in self._pages(entity_set, params=params, prefer=prefer, operation="by_ids"):
                for item in body.get("value") or []:
                    yield item

    async def _finish(self, selection: Selection, items: list[dict[str, Any]]) -> list[CrmRecord]:
        """Returns the page's records, shaped, their parents (owner, account) filled in."""
        records = [selection.shape(item) for item in items]
        for related in selection.entity.related:
            if related.name not in selection.parents:
                continue
            ids = [str(r[related.lookup]) for r in records if r.get(related.lookup)]
            parent = entity_named(related.target)
            parents = await self._raw_by_ids(parent, ids, selection.parent_attributes(related)) if ids else {}
            for record in records:
                selection.fill_parent(record, related, parents)
        if selection.entity.role == "Lead":
            await self._qualified_as(records)
        return records

    async def _qualified_as(self, records: list[CrmRecord]) -> None:
        """Fills the contact a qualified lead became from the contact's originating lead, when the lead
        itself does not name it (qualifying with a new contact links the contact to the lead, R17)."""
        unnamed = {
            str(r["Id"]).lower(): r for r in records if r.get(QUALIFIED) and not r.get(QUALIFIED_CONTACT_ID)
        }
        if not unnamed:
            return
        select = "contactid,_originatingleadid_value"
        async for contact in self._where_in("contacts", "_originatingleadid_value", list(unnamed), select):
            lead = unnamed.get(str(contact.get("_originatingleadid_value")).lower())
            if lead is not None and not lead.get(QUALIFIED_CONTACT_ID):
                lead[QUALIFIED_CONTACT_ID] = contact["contactid"]

    async def count(self, object_name: str) -> int:
        """Returns how many records the table has (paging through ids beyond what `$count` counts)."""
        entity = entity_named(object_name)
        params = {"$select": entity.primary_id, "$count": "true"}
        response = await self._http.call(
            "GET",
            entity.entity_set,
            params=params,
            headers={"Prefer": "odata.maxpagesize=1"},
            operation="count",
        )
        counted = int(orjson.loads(response.content).get("@odata.count") or 0)
        if counted < COUNT_LIMIT:
            return counted
        total = 0
        params = {"$select": entity.primary_id}
        async for body in self._pages(
            entity.entity_set, params=params, prefer="odata.maxpagesize=5000", operation="count"
        ):
            total += len(body.get("value") or [])
        return total

    async def sample_values(self, object_name: str, field_name: str, *, limit: int) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a column, in the order found."""
        selection = await self.selection(object_name, [field_name])
        attribute = selection.entity.attribute_of(field_name)
        if attribute not in selection.attributes:
            attribute = attribute.lower()
        seen: dict[Any, None] = {}
        params = {"$select": attribute, "$filter": f"{attribute} ne null"}
        prefer = f"odata.maxpagesize={min(self._http.options.page_size, max(limit * 10, 50))}"
        async for body in self._pages(
            selection.entity.entity_set, params=params, prefer=prefer, operation="sample"
        ):
            for item in body.get("value") or []:
                value = selection.shape(item).get(attribute)
                if value not in (None, "") and len(seen) < limit:
                    seen.setdefault(value, None)
            if len(seen) >= limit:
                break
        return list(seen)
