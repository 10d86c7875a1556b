"""The Salesforce implementation of CrmConnector over the REST and Bulk 2.0 APIs."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import httpx
import orjson
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from crmsync.common.crm.interface import (
    TRANSIENT_ERROR_CODES,
    ApiBudget,
    CrmAuthError,
    CrmBudgetExhausted,
    CrmError,
    CrmField,
    CrmRecord,
    CrmRejected,
    CrmTransientError,
    DeletedRecord,
    ObjectDescribe,
    WriteError,
    WriteResult,
)
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._auth import Session, obtain_session
from crmsync.common.crm.salesforce._config import ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce._values import (
    CsvRows,
    CsvShaper,
    Plan,
    converter_for,
    shape_rest,
    to_salesforce,
)
from crmsync.common.observability.metrics import CRM_API_BUDGET_LEFT, CRM_CALLS

log = structlog.get_logger(__name__)

T = TypeVar("T")

COLLECTION_LIMIT = 200  # records per composite sObject collection call
# Bulk API 2.0 cannot export compound fields (nor binary ones); such exports go through REST.
BULK_UNSUPPORTED_TYPES = frozenset({"address", "location", "base64"})
# Types SOQL cannot filter on, so sample_values filters them here instead.
UNFILTERABLE_TYPES = frozenset({"textarea", "base64", "address", "location", "encryptedstring"})
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


class DeletedFeedWindowExceeded(CrmRejected):
    """The deleted-records feed does not reach back to the requested start.

    Salesforce keeps deletions for 15 days; deletions older than that can only be
    found by a full sync (whatever a full export no longer returns was deleted).
    """


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
        self._credentials = credentials
        self._options = options or ConnectorOptions()
        opts = self._options
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=opts.max_connections, max_keepalive_connections=opts.max_connections
            ),
            headers={"User-Agent": "crmsync-connector"},
        )
        self._account = account_id or "-"
        self._session: Session | None = None
        self._session_lock = asyncio.Lock()
        # Failed attempts at a session, each with its retries; calls that waited for one share its failure.
        self._session_failures = 0
        self._last_session_failure: CrmError | None = None
        self._describes: dict[str, tuple[float, ObjectDescribe]] = {}
        self._used: int | None = None
        self._limit: int | None = None

    @property
    def options(self) -> ConnectorOptions:
        return self._options

    @property
    def _api(self) -> str:
        return f"/services/data/v{self._credentials.api_version}"

    async def __aenter__(self) -> SalesforceConnector:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ----------------------------------------------------------------- metadata

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the object's fields (cached for `describe_ttl_s`, as admins add fields)."""
        key = soql.check_name(object_name).lower()
        cached = self._describes.get(key)
        if cached and time.monotonic() - cached[0] < self._options.describe_ttl_s:
            return cached[1]
        response = await self._call(
            "GET", f"{self._api}/sobjects/{object_name}/describe", operation="describe"
        )
        body = orjson.loads(response.content)
        fields = {
            f["name"]: CrmField(
                name=f["name"],
                label=f.get("label") or f["name"],
                type=f.get("type") or "string",
                updateable=bool(f.get("updateable", False)),
                createable=bool(f.get("createable", False)),
                nillable=bool(f.get("nillable", True)),
                length=int(f.get("length") or 0),
                reference_to=tuple(f.get("referenceTo") or ()),
                relationship_name=f.get("relationshipName"),
            )
            for f in body.get("fields", [])
        }
        described = ObjectDescribe(
            name=body.get("name", object_name),
            label=body.get("label", object_name),
            fields=fields,
            queryable=bool(body.get("queryable", True)),
            createable=bool(body.get("createable", True)),
            updateable=bool(body.get("updateable", True)),
        )
        self._describes[key] = (time.monotonic(), described)
        return described

    async def count(self, object_name: str) -> int:
        """Returns how many (not deleted) records the object has."""
        statement = f"SELECT COUNT() FROM {soql.check_name(object_name)}"
        response = await self._call("GET", f"{self._api}/query", params={"q": statement}, operation="count")
        return int(orjson.loads(response.content)["totalSize"])

    async def budget(self) -> ApiBudget:
        """Returns the daily API budget from the last Sforce-Limit-Info, or from /limits."""
        if self._limit is None or self._used is None:
            response = await self._call("GET", f"{self._api}/limits", operation="limits", budgeted=False)
            daily = orjson.loads(response.content)["DailyApiRequests"]
            self._record_usage(used=int(daily["Max"]) - int(daily["Remaining"]), limit=int(daily["Max"]))
        assert self._used is not None and self._limit is not None
        return ApiBudget(used=self._used, limit=self._limit)

    # ------------------------------------------------------------------ reading

    async def changed_since(
        self, object_name: str, fields: Sequence[str], since: datetime, *, page_size: int = 2000
    ) -> AsyncIterator[list[CrmRecord]]:
        """Yields records with SystemModstamp >= since, ordered by (SystemModstamp, Id)."""
        names, plan = await self._prepare(object_name, fields, first=("Id", "SystemModstamp"))
        where = f"SystemModstamp >= {soql.datetime_literal(since)}"
        async for batch in self._rest_stream(
            object_name, names, plan, where=where, order_by="SystemModstamp, Id", page_size=page_size
        ):
            yield batch

    async def export_all(self, object_name: str, fields: Sequence[str]) -> AsyncIterator[list[CrmRecord]]:
        """Yields every record: Bulk API 2.0 above `bulk_threshold` records, REST query below.

        Fields Bulk cannot export (compound address/location, base64) send the
        whole export through REST.
        """
        names, plan = await self._prepare(object_name, fields, first=("Id",))
        described = await self.describe(object_name)
        bulk_capable = not any(
            described.fields[name].type in BULK_UNSUPPORTED_TYPES
            for name in names
            if name in described.fields
        )
        use_bulk = bulk_capable and await self.count(object_name) > self._options.bulk_threshold
        log.info("crm.export", object=object_name, road="bulk" if use_bulk else "rest", fields=len(names))
        stream = (
            self._bulk_stream(object_name, names, plan)
            if use_bulk
            else self._rest_stream(object_name, names, plan, page_size=self._options.page_size)
        )
        async for batch in stream:
            yield batch

    async def deleted_since(self, object_name: str, start: datetime, end: datetime) -> list[DeletedRecord]:
        """Returns records deleted in [start, end].

        Raises DeletedFeedWindowExceeded (a CrmRejected) when start is further back
        than the feed reaches (15 days): the caller must run a full sync instead,
        since silently clamping would lose deletions.
        """
        start, end = _aware(start), _aware(end)
        now = datetime.now(UTC)
        earliest = now - timedelta(days=self._options.deleted_feed_days)
        if start < earliest:
            raise DeletedFeedWindowExceeded(
                f"the deleted feed reaches back to {earliest.isoformat()}, not to {start.isoformat()}; "
                "run a full sync to find older deletions",
                error_code="INVALID_REPLICATION_DATE",
            )
        if end <= start:
            return []
        # Whole seconds, widened outwards: a deletion at 10:00:00.157 must not fall
        # outside an end of 10:00:00.900 truncated to 10:00:00. Overlaps are harmless.
        params = {"start": _feed_time(start), "end": _feed_time(_ceil_second(end))}
        response = await self._call(
            "GET",
            f"{self._api}/sobjects/{soql.check_name(object_name)}/deleted/",
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

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[CrmRecord]:
        """Returns the records with these ids (missing ones are left out), in chunks under the URI limit."""
        unique_ids = list(dict.fromkeys(ids))
        if not unique_ids:
            return []
        names, plan = await self._prepare(object_name, fields, first=("Id",))
        groups = await self._field_groups(object_name, names, where="Id IN ()", order_by=None, for_ids=True)
        out: list[CrmRecord] = []
        window = self._options.page_size
        for offset in range(0, len(unique_ids), window):
            part = unique_ids[offset : offset + window]
            records = await self._fetch_ids(object_name, part, groups[0], plan)
            await self._join(object_name, records, groups[1:], plan)
            out.extend(records)
        return out

    async def sample_values(self, object_name: str, field_name: str, *, limit: int = 10) -> list[Any]:
        """Returns up to `limit` distinct non-empty values of a field, in the order found."""
        names, plan = await self._prepare(object_name, [field_name], first=("Id",))
        name = names[-1] if len(names) > 1 else names[0]
        described = await self.describe(object_name)
        field = described.fields.get(name)
        where = None if field is None or field.type in UNFILTERABLE_TYPES else f"{name} != null"
        statement = soql.select(names, object_name, where=where, limit=max(limit * 20, 200))
        values: list[Any] = []
        seen: set[str] = set()
        async for page in self._pages(f"{self._api}/query", {"q": statement}, page_size=2000):
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

    # ------------------------------------------------------------------ writing

    async def create(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Creates records (200 a call, allOrNone false); one result per record, in order."""
        return await self._write("POST", object_name, records, operation="create")

    async def update(self, object_name: str, records: Sequence[CrmRecord]) -> list[WriteResult]:
        """Updates records, each with its Id (200 a call); one result per record, in order."""
        for index, record in enumerate(records):
            if not record.get("Id"):
                raise ValueError(f"record {index} has no Id to update")
        return await self._write("PATCH", object_name, records, operation="update")

    async def _write(
        self, method: str, object_name: str, records: Sequence[CrmRecord], *, operation: str
    ) -> list[WriteResult]:
        soql.check_name(object_name)
        results: list[WriteResult | None] = [None] * len(records)
        pending = list(range(len(records)))
        for attempt in range(self._options.max_retries + 1):
            for offset in range(0, len(pending), COLLECTION_LIMIT):
                chunk = pending[offset : offset + COLLECTION_LIMIT]
                body = {
                    "allOrNone": False,
                    "records": [_outgoing(object_name, records[i]) for i in chunk],
                }
                try:
                    response = await self._call(
                        method,
                        f"{self._api}/composite/sobjects",
                        json=body,
                        operation=operation,
                        idempotent=method != "POST",
                    )
                except CrmTransientError as exc:
                    if not getattr(exc, "maybe_applied", False) or method != "POST":
                        raise
                    raise CrmTransientError(
                        f"{operation} may have been applied ({exc.message}); not repeated, "
                        "to avoid creating the records twice",
                        error_code=exc.error_code,
                        status=exc.status,
                    ) from exc
                answers = orjson.loads(response.content)
                if not isinstance(answers, list) or len(answers) != len(chunk):
                    raise CrmRejected(
                        f"{operation} answered {len(answers) if isinstance(answers, list) else 'no'} "
                        f"results for {len(chunk)} records",
                        status=response.status_code,
                    )
                for index, answer in zip(chunk, answers, strict=True):
                    results[index] = _write_result(answer)
            # Records refused for a passing reason (a locked row) are sent again, alone.
            pending = [i for i in pending if _only_transient(results[i])]
            if not pending or attempt == self._options.max_retries:
                break
            log.info("crm.write.retry", operation=operation, records=len(pending), attempt=attempt + 1)
            await asyncio.sleep(self._backoff(attempt + 1))
        return [r for r in results if r is not None]

    # ------------------------------------------------------------ REST streams

    async def _prepare(
        self, object_name: str, fields: Sequence[str], *, first: Sequence[str]
    ) -> tuple[list[str], Plan]:
        """Returns the fields under their describe spelling, and the plan converting their values."""
        described = await self.describe(object_name)
        plan: Plan = {}
        names = [await self._plan_path(described, name.split("."), plan) for name in first]
        names += [await self._plan_path(described, name.split("."), plan) for name in fields]
        return soql.unique_fields(names), plan

    async def _plan_path(self, described: ObjectDescribe, parts: list[str], plan: Plan) -> str:
        for part in parts:
            soql.check_name(part)
        head = parts[0].lower()
        if len(parts) == 1:
            for field in described.fields.values():
                if field.name.lower() == head:
                    plan[field.name] = converter_for(field.type)
                    return field.name
            return parts[0]  # unknown: Salesforce itself will answer INVALID_FIELD
        for field in described.fields.values():
            if field.relationship_name and field.relationship_name.lower() == head:
                sub = plan.setdefault(field.relationship_name, {})
                assert isinstance(sub, dict)
                for target in field.reference_to:
                    try:
                        parent = await self.describe(target)
                    except CrmRejected:
                        continue
                    rest = await self._plan_path(parent, parts[1:], sub)
                    return f"{field.relationship_name}.{rest}"
                sub.setdefault(parts[-1], None)
                return ".".join([field.relationship_name, *parts[1:]])
        # Unknown to the describe: still planned, so its nested record is cleaned like the others.
        plan.setdefault(parts[0], {})
        return ".".join(parts)

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
        session = await self._session_now()
        base = session.instance_url + self._api + "/query"
        limit = self._options.max_uri_bytes

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

    async def _rest_stream(
        self,
        object_name: str,
        names: list[str],
        plan: Plan,
        *,
        where: str | None = None,
        order_by: str | None = None,
        page_size: int,
    ) -> AsyncIterator[list[CrmRecord]]:
        groups = await self._field_groups(object_name, names, where=where, order_by=order_by)
        if len(groups) > 1:
            log.info("crm.query.split", object=object_name, queries=len(groups))
        statement = soql.select(groups[0], object_name, where=where, order_by=order_by)
        async for page in self._pages(f"{self._api}/query", {"q": statement}, page_size=page_size):
            records = [shape_rest(r, plan) for r in page.get("records", [])]
            if records and len(groups) > 1:
                await self._join(object_name, records, groups[1:], plan)
            if records:
                yield records

    async def _pages(
        self, path: str, params: dict[str, str] | None, *, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields query result pages, following nextRecordsUrl."""
        batch = min(2000, max(200, page_size))
        headers = {"Sforce-Query-Options": f"batchSize={batch}"}
        next_path: str | None = path
        while next_path:
            response = await self._call("GET", next_path, params=params, headers=headers, operation="query")
            page = orjson.loads(response.content)
            yield page
            params = None
            next_path = None if page.get("done", True) else page.get("nextRecordsUrl")

    async def _fetch_ids(
        self, object_name: str, ids: list[str], group: list[str], plan: Plan
    ) -> list[CrmRecord]:
        session = await self._session_now()
        base = session.instance_url + self._api + "/query"
        empty = soql.select(group, object_name, where="Id IN ()")
        chunks = soql.chunk_ids(
            ids,
            base_bytes=soql.url_bytes(soql.query_url(base, empty)),
            limit=self._options.max_uri_bytes,
        )
        out: list[CrmRecord] = []
        for chunk in chunks:
            statement = soql.select(group, object_name, where=soql.id_in(chunk))
            async for page in self._pages(f"{self._api}/query", {"q": statement}, page_size=2000):
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

    # ------------------------------------------------------------- Bulk API 2.0

    async def _bulk_stream(
        self, object_name: str, names: list[str], plan: Plan
    ) -> AsyncIterator[list[CrmRecord]]:
        statement = soql.select(names, object_name)
        response = await self._call(
            "POST",
            f"{self._api}/jobs/query",
            json={
                "operation": "query",
                "query": statement,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
            operation="bulk_create",
        )
        job_id = orjson.loads(response.content)["id"]
        complete = False
        try:
            await self._await_bulk_job(job_id)
            complete = True
            async for batch in self._bulk_results(job_id, plan):
                yield batch
        finally:
            await self._delete_bulk_job(job_id, running=not complete)

    async def _delete_bulk_job(self, job_id: str, *, running: bool) -> None:
        """Deletes a query job and its results (Salesforce keeps them for 7 days otherwise).

        A job that may still be running is aborted first: it cannot be deleted.
        Best effort: a job left behind costs the org storage, not correctness.
        """
        url = f"{self._api}/jobs/query/{job_id}"
        try:
            if running:
                with contextlib.suppress(CrmRejected):  # it completed (or failed) meanwhile
                    await self._call("PATCH", url, json={"state": "Aborted"}, operation="bulk_abort")
            await self._call("DELETE", url, operation="bulk_delete")
        except (CrmError, httpx.HTTPError) as exc:
            log.warning("bulk_job_not_deleted", job_id=job_id, error=str(exc))

    async def _await_bulk_job(self, job_id: str) -> None:
        opts = self._options
        interval = opts.bulk_poll_interval_s
        deadline = asyncio.get_running_loop().time() + opts.bulk_timeout_s
        while True:
            response = await self._call("GET", f"{self._api}/jobs/query/{job_id}", operation="bulk_status")
            job = orjson.loads(response.content)
            state = job.get("state")
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                raise CrmRejected(
                    f"Bulk query job {job_id} {state.lower()}: {job.get('errorMessage') or ''}".strip(),
                    error_code=f"BULK_JOB_{state.upper()}",
                )
            if asyncio.get_running_loop().time() > deadline:
                raise CrmTransientError(f"Bulk query job {job_id} still {state} after {opts.bulk_timeout_s}s")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, opts.bulk_poll_max_interval_s)

    async def _bulk_results(self, job_id: str, plan: Plan) -> AsyncIterator[list[CrmRecord]]:
        """Yields the job's CSV rows as batches, parsed while they arrive, locator by locator.

        A connection lost mid-body asks for the same locator again and skips the
        rows already yielded, so nothing is duplicated or lost.
        """
        opts = self._options
        path = f"{self._api}/jobs/query/{job_id}/results"
        locator: str | None = None
        while True:
            params = {"maxRecords": str(opts.bulk_max_records)}
            if locator:
                params["locator"] = locator
            emitted = 0
            failures = 0
            next_locator: str | None = None
            while True:
                response = await self._call("GET", path, params=params, operation="bulk_results", stream=True)
                skip = emitted
                try:
                    rows = CsvRows()
                    shaper: CsvShaper | None = None
                    batch: list[CrmRecord] = []
                    async for text in response.aiter_text():
                        for row in rows.feed(text):
                            if shaper is None:
                                shaper = CsvShaper(row, plan)
                            elif skip:
                                skip -= 1
                            else:
                                batch.append(shaper.shape(row))
                                if len(batch) == opts.page_size:
                                    emitted += len(batch)
                                    yield batch
                                    batch = []
                    for row in rows.close():
                        if shaper is None:
                            shaper = CsvShaper(row, plan)
                        elif skip:
                            skip -= 1
                        else:
                            batch.append(shaper.shape(row))
                    # The last rows of each locator page; batches never span two pages.
                    if batch:
                        emitted += len(batch)
                        yield batch
                    next_locator = response.headers.get("Sforce-Locator")
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    failures += 1
                    if failures > opts.max_retries:
                        raise CrmTransientError(f"Bulk results of {job_id} kept failing: {exc!r}") from exc
                    log.warning("crm.bulk.resume", job=job_id, rows_done=emitted, error=repr(exc))
                    await asyncio.sleep(self._backoff(failures))
                    continue
                finally:
                    await response.aclose()
                break
            if not next_locator or next_locator == "null":
                return
            locator = next_locator

    # ------------------------------------------------------------ HTTP and auth

    async def _session_now(self) -> Session:
        if self._session is None:
            failures_before = self._session_failures
            async with self._session_lock:
                if self._session is None:
                    if self._session_failures != failures_before and self._last_session_failure:
                        # The attempt this call waited behind failed, retries and all: the
                        # org is unreachable or refuses the grant now; trying again at once
                        # would only repeat that, once per waiting call.
                        failure = self._last_session_failure
                        raise copy.copy(failure) from failure
                    try:
                        self._session = await self._retrying(
                            lambda: obtain_session(self._client, self._credentials)
                        )
                    except CrmError as exc:
                        self._session_failures += 1
                        self._last_session_failure = exc
                        raise
        return self._session

    async def _renew(self, stale: Session) -> Session:
        async with self._session_lock:
            # Another call may have renewed it while this one waited.
            if self._session is None or self._session is stale:
                self._session = None
                self._session = await self._retrying(lambda: obtain_session(self._client, self._credentials))
                log.info("crm.token.renewed")
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        budgeted: bool = True,
        stream: bool = False,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Returns a successful response; transient failures are retried with backoff.

        A call that is not idempotent (a create) is repeated only when Salesforce
        surely did not act on it (429, 503, a lock, no connection), never after a
        timeout or a 500, when it may have.
        """

        async def once() -> httpx.Response:
            session = await self._session_now()
            if budgeted:
                await self._pace()
            response = await self._send(session, method, path, params, json, headers, stream, operation)
            if response.status_code == 401:
                # An expired or revoked token: renew once and repeat the call.
                session = await self._renew(session)
                response = await self._send(session, method, path, params, json, headers, stream, operation)
            self._raise_for(response)
            return response

        return await self._retrying(once, idempotent=idempotent)

    async def _send(
        self,
        session: Session,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json: Any,
        headers: dict[str, str] | None,
        stream: bool,
        operation: str,
    ) -> httpx.Response:
        url = path if path.startswith("http") else session.instance_url + path
        all_headers = {"Authorization": f"Bearer {session.access_token}", "Accept": "application/json"}
        content = None
        if json is not None:
            content = orjson.dumps(json)
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        if self._used is not None:
            self._used += 1  # pessimistic until the next Sforce-Limit-Info corrects it
        request = self._client.build_request(method, url, params=params, content=content, headers=all_headers)
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            CRM_CALLS.labels(operation, "timeout").inc()
            error = CrmTransientError(f"{operation}: Salesforce did not answer in time ({exc!r})")
            error.maybe_applied = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))  # type: ignore[attr-defined]
            raise error from exc
        except httpx.TransportError as exc:
            CRM_CALLS.labels(operation, "connection_error").inc()
            error = CrmTransientError(f"{operation}: connection to Salesforce failed ({exc!r})")
            error.maybe_applied = not isinstance(exc, httpx.ConnectError)  # type: ignore[attr-defined]
            raise error from exc
        CRM_CALLS.labels(operation, str(response.status_code)).inc()
        self._read_limit_info(response)
        if stream and response.status_code >= 300:
            try:
                await response.aread()
            except httpx.TransportError as exc:
                raise CrmTransientError(f"{operation}: error body lost ({exc!r})") from exc
            finally:
                await response.aclose()
        return response

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        code, message, fields = _first_error(response)
        # A 403 REQUEST_LIMIT_EXCEEDED names its limit: "TotalRequests" is the day's
        # allowance, gone; "ConcurrentPerOrgLongTxn" is too many long calls at once,
        # which clears as they finish.
        concurrent = code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower()
        if status == 429 or status >= 500 or code in TRANSIENT_ERROR_CODES or concurrent:
            error = CrmTransientError(message, error_code=code, status=status)
            error.retry_after = _retry_after(response)  # type: ignore[attr-defined]
            # Refusals before any work (rate limit, unavailable, a lock) are safe to repeat.
            error.maybe_applied = status >= 500 and status != 503  # type: ignore[attr-defined]
            raise error
        if code == "REQUEST_LIMIT_EXCEEDED":
            # 403: the org's daily allowance is gone (a 429 with this code is a rate limit, above).
            raise CrmBudgetExhausted(
                f"Salesforce refused the call: {message}", used=self._used or 0, limit=self._limit or 0
            )
        if code == "INVALID_REPLICATION_DATE":
            raise DeletedFeedWindowExceeded(message, error_code=code, status=status, fields=fields)
        if status == 401:
            raise CrmAuthError(message, error_code=code or "INVALID_SESSION_ID", status=status)
        raise CrmRejected(message, error_code=code, status=status, fields=fields)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        def worth_retrying(error: BaseException) -> bool:
            if not isinstance(error, CrmTransientError) or getattr(error, "retried", False):
                return False
            return idempotent or not getattr(error, "maybe_applied", False)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._options.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(worth_retrying),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for state in retrying:
                with state:
                    return await attempt()
        except CrmTransientError as error:
            # Retried here as far as it goes: a call around this one (a token request
            # inside a query) must not retry it again, which would multiply the tries.
            error.retried = True  # type: ignore[attr-defined]
            raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wait(self, state: RetryCallState) -> float:
        delay = self._backoff(state.attempt_number)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            delay = max(delay, min(retry_after, self._options.backoff_max_s))
        return delay

    def _backoff(self, attempt: int) -> float:
        """Returns a full-jitter exponential delay for the n-th retry."""
        opts = self._options
        ceiling = min(opts.backoff_max_s, opts.backoff_initial_s * 2 ** max(0, attempt - 1))
        return random.uniform(0, ceiling)

    # --------------------------------------------------------------- API budget

    def _read_limit_info(self, response: httpx.Response) -> None:
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            match = _LIMIT_INFO.search(header)
            if match:
                self._record_usage(used=int(match.group(1)), limit=int(match.group(2)))

    def _record_usage(self, *, used: int, limit: int) -> None:
        self._used, self._limit = used, limit
        CRM_API_BUDGET_LEFT.labels(self._account).set(max(0, limit - used))

    async def _pace(self) -> None:
        """Slows calls down as the budget nears the reserve; refuses to eat into the reserve."""
        if self._limit is None or self._used is None:
            return
        opts = self._options
        reserve = opts.reserve_for(self._limit)
        left = self._limit - reserve - self._used
        if left <= 0:
            raise CrmBudgetExhausted(
                f"API budget down to the reserve of {reserve} calls kept for other tools "
                f"({self._used}/{self._limit} used)",
                used=self._used,
                limit=self._limit,
            )
        window = self._limit * opts.budget_slowdown_fraction
        if left < window:
            delay = opts.budget_slowdown_max_delay_s * (1 - left / window)
            log.info("crm.budget.slowdown", left=left, delay_s=round(delay, 3))
            await asyncio.sleep(delay)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ceil_second(value: datetime) -> datetime:
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def _feed_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_error(response: httpx.Response) -> tuple[str | None, str, tuple[str, ...]]:
    """Returns (errorCode, message, fields) of a Salesforce error body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None, f"HTTP {response.status_code}: {response.text[:300]}", ()
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]
    elif isinstance(body, dict):
        first = body
    else:
        return None, f"HTTP {response.status_code}", ()
    code = first.get("errorCode") or first.get("error")
    message = first.get("message") or first.get("error_description") or f"HTTP {response.status_code}"
    return code, str(message), tuple(first.get("fields") or ())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _outgoing(object_name: str, record: CrmRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": object_name}}
    for key, value in record.items():
        if key != "attributes":
            out[key] = to_salesforce(value)
    return out


def _write_result(answer: dict[str, Any]) -> WriteResult:
    errors = tuple(
        WriteError(
            status_code=str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
            message=str(e.get("message") or ""),
            fields=tuple(e.get("fields") or ()),
        )
        for e in answer.get("errors") or ()
    )
    return WriteResult(id=answer.get("id"), success=bool(answer.get("success")), errors=errors)


def _only_transient(result: WriteResult | None) -> bool:
    return (
        result is not None
        and not result.success
        and bool(result.errors)
        and all(e.transient for e in result.errors)
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "crm.retry",
        attempt=state.attempt_number,
        error=type(error).__name__,
        error_code=getattr(error, "error_code", None),
        status=getattr(error, "status", None),
    )
