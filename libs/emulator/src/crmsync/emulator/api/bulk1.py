"""Bulk API 1.0 query jobs under /services/async/{version}/job, in XML or JSON, with PK chunking.

A job is created, a query batch added (PK chunking splits it into one batch per
range of ids), batches are read until Completed, each batch's result list gives
the result ids, each result is CSV, JSON or XML, and the job is closed. The
session id comes in X-SFDC-Session; errors are Bulk's {exceptionCode, exceptionMessage}.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.emulator import bulk1_format as fmt
from crmsync.emulator import ids, soql
from crmsync.emulator.api.bulk import CSV_TYPE, bulk_cursor, write_csv
from crmsync.emulator.api.limits import DAILY_BULK_API_BATCHES
from crmsync.emulator.clock import format_datetime, now_ms
from crmsync.emulator.errors import ApiError
from crmsync.emulator.schema import find_object
from crmsync.emulator.state import OrgState
from crmsync.emulator.store import Org
from crmsync.emulator.table import Cursor
from crmsync.emulator.web import authenticated, charge, guarded, limit_info

ASYNC = "/services/async/{version:version}"
CONTENT_TYPES = ("CSV", "JSON", "XML")
PK_CHUNK_DEFAULT, PK_CHUNK_MAX = 100_000, 250_000
NO_RECORDS = b"Records not found for this query"


class AsyncError(Exception):
    """A Bulk API 1.0 refusal: {exceptionCode, exceptionMessage} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Batch:
    id: str
    job_id: str
    query: str
    created: str
    state: str = "Queued"
    message: str | None = None
    cursor: Cursor | None = None
    result_id: str | None = None

    def info(self) -> dict[str, Any]:
        processed = len(self.cursor.rows) if self.cursor is not None and self.state == "Completed" else 0
        return {
            "id": self.id,
            "jobId": self.job_id,
            "state": self.state,
            "stateMessage": self.message,
            "createdDate": self.created,
            "systemModstamp": self.created,
            "numberRecordsProcessed": processed,
            "numberRecordsFailed": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }


@dataclass
class Job:
    id: str
    operation: str
    object: str
    content_type: str
    created: str
    created_by: str
    api_version: str
    concurrency: str = "Parallel"
    state: str = "Open"
    pk_chunking: tuple[int, int] | None = None  # (chunk size, first row)
    batches: dict[str, Batch] = field(default_factory=dict)

    def settle(self) -> None:
        # Queries run when their batch is added; a later read finds them done, as a fast job would be.
        for batch in self.batches.values():
            if batch.state == "Queued":
                batch.state = "Completed"

    def info(self) -> dict[str, Any]:
        states = [b.state for b in self.batches.values()]
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": self.concurrency,
            "contentType": self.content_type,
            "numberBatchesQueued": states.count("Queued"),
            "numberBatchesInProgress": 0,
            "numberBatchesCompleted": states.count("Completed"),
            "numberBatchesFailed": states.count("Failed"),
            "numberBatchesTotal": len(states),
            "numberRecordsProcessed": sum(b.info()["numberRecordsProcessed"] for b in self.batches.values()),
            "numberRetries": 0,
            "apiVersion": float(self.api_version),
            "numberRecordsFailed": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }


def _stamp() -> str:
    return format_datetime(now_ms())[:-5] + "Z"


def _wants_json(request: Request, org: Org | None) -> bool:
    if "json" in request.headers.get("content-type", ""):
        return True
    job = org.bulk1_jobs.get(request.path_params.get("job", "")) if org is not None else None
    return job is not None and job.content_type == "JSON"


def _doc(root: str, values: dict[str, Any], *, as_json: bool, status: int = 200) -> Response:
    if as_json:
        present = {k: v for k, v in values.items() if v is not None}
        return Response(orjson.dumps(present), status, media_type=fmt.JSON_TYPE)
    return Response(fmt.document(root, values), status, media_type=fmt.XML_TYPE)


AsyncHandler = Callable[..., Awaitable[Response]]


def async_route(path: str, handler: AsyncHandler, method: str) -> Route:
    """Returns the route of a Bulk API 1.0 call: the X-SFDC-Session checked, the call counted."""

    async def endpoint(request: Request) -> Response:
        state = authenticated(request, request.headers.get("x-sfdc-session", "").strip())
        org = state.org if state is not None else None
        try:
            if state is None:
                raise AsyncError(400, "InvalidSessionId", "Invalid session id")
            if not charge(state, request):
                raise AsyncError(403, "ExceededQuota", "TotalRequests Limit exceeded.")
            response = await handler(request, state, **request.path_params)
        except AsyncError as exc:
            body, media = fmt.error(exc.code, exc.message, as_json=_wants_json(request, org))
            response = Response(body, exc.status, media_type=media)
        if org is not None:
            response.headers.update(limit_info(org))
        return response

    return Route(ASYNC + path, guarded(endpoint), methods=[method])


def _pk_chunking(header: str | None) -> tuple[int, str | None] | None:
    """Returns (chunk size, start id) asked by Sforce-Enable-PKChunking, or None when it is off."""
    if header is None or header.strip().lower() in ("", "false"):
        return None
    if header.strip().lower() == "true":
        return PK_CHUNK_DEFAULT, None
    options = {}
    for part in header.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            options[key.strip().lower()] = value.strip()
    try:
        size = int(options.get("chunksize", PK_CHUNK_DEFAULT))
    except ValueError as exc:
        raise AsyncError(400, "InvalidJob", f"Invalid chunkSize: {options.get('chunksize')}") from exc
    if not 1 <= size <= PK_CHUNK_MAX:
        raise AsyncError(400, "InvalidJob", f"chunkSize must be between 1 and {PK_CHUNK_MAX}")
    return size, options.get("startrow") or None


async def create_job(request: Request, state: OrgState, version: str) -> Response:
    as_json = _wants_json(request, None)
    try:
        spec = fmt.read_job_request(await request.body(), as_json=as_json)
    except ValueError as exc:  # ET.ParseError and orjson's errors are ValueErrors
        raise AsyncError(400, "InvalidJob", f"Unable to parse job: {exc}") from exc
    operation = spec.get("operation", "")
    if operation not in ("query", "queryAll"):
        raise AsyncError(400, "InvalidJob", f"InvalidJob : this emulator runs query jobs, not {operation!r}")
    obj = find_object(spec.get("object", ""))
    if obj is None:
        raise AsyncError(
            400, "InvalidEntity", f"Entity '{spec.get('object', '')}' is not supported by the Bulk API."
        )
    content_type = spec.get("contentType", "CSV").upper()
    if content_type not in CONTENT_TYPES:
        raise AsyncError(400, "InvalidJob", f"Invalid contentType: {content_type}")
    org = state.org
    chunking = _pk_chunking(request.headers.get("sforce-enable-pkchunking"))
    first_row = 0
    if chunking is not None and chunking[1] is not None:
        row = org.tables[obj.name].row_of(chunking[1])
        if row is None:
            raise AsyncError(400, "InvalidJob", f"Invalid startRow: {chunking[1]}")
        first_row = row
    job = Job(
        id=org.next_id("750"),
        operation=operation,
        object=obj.name,
        content_type=content_type,
        created=_stamp(),
        created_by=org.user_id,
        api_version=version,
        concurrency=spec.get("concurrencyMode") or "Parallel",
        pk_chunking=(chunking[0], first_row) if chunking is not None else None,
    )
    org.bulk1_jobs[job.id] = job
    return _doc("jobInfo", job.info(), as_json=as_json, status=201)


def _job(state: OrgState, job: str) -> Job:
    found = state.org.bulk1_jobs.get(ids.normalize(job) or job)
    if found is None:
        raise AsyncError(400, "InvalidJob", f"Unable to find object: {job}")
    return found


async def job_info(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    found.settle()
    return _doc("jobInfo", found.info(), as_json=found.content_type == "JSON")


async def update_job(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    as_json = found.content_type == "JSON" or _wants_json(request, None)
    try:
        wanted = fmt.read_job_request(await request.body(), as_json=as_json).get("state")
    except ValueError as exc:
        raise AsyncError(400, "InvalidJob", f"Unable to parse job: {exc}") from exc
    if wanted not in ("Closed", "Aborted"):
        raise AsyncError(400, "InvalidJob", f"InvalidJob : a job can be Closed or Aborted, not {wanted!r}")
    found.settle()
    found.state = wanted
    return _doc("jobInfo", found.info(), as_json=found.content_type == "JSON")


def _new_batch(org: Org, job: Job, query: str) -> Batch:
    if org.bulk_batches >= DAILY_BULK_API_BATCHES:
        raise AsyncError(400, "ExceededQuota", "Daily Bulk API batch limit exceeded")
    org.bulk_batches += 1
    batch = Batch(id=org.next_id("751"), job_id=job.id, query=query, created=_stamp())
    job.batches[batch.id] = batch
    return batch


def _chunks(org: Org, job: Job, original: Batch, cursor: Cursor) -> None:
    """Splits a query over ranges of `chunk size` ids, one batch each; the original is NotProcessed."""
    size, first = job.pk_chunking or (PK_CHUNK_DEFAULT, 0)
    table = cursor.table
    rows = cursor.rows
    original.state = "NotProcessed"
    joiner = " AND " if " where " in original.query.lower() else " WHERE "
    for low in range(first, max(table.n, first + 1), size):
        high = low + size
        sliced = rows[bisect.bisect_left(rows, low) : bisect.bisect_left(rows, high)]
        text = f"{original.query}{joiner}Id >= '{table.id_of(low)[:15]}' AND Id < '{table.id_of(high)[:15]}'"
        chunk = _new_batch(org, job, text)
        chunk.cursor = Cursor(table, sliced, cursor.render_page, cursor.columns)
        chunk.result_id = org.next_id("752")


async def add_batch(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    if found.state != "Open":
        raise AsyncError(400, "InvalidJobState", f"Job {found.id} is not open: {found.state}")
    org = state.org
    text = (await request.body()).decode().strip()
    batch = _new_batch(org, found, text)
    try:
        cursor = bulk_cursor(
            org, text, include_deleted=found.operation == "queryAll", version=found.api_version
        )
        if find_object(cursor.table.obj.name) is not find_object(found.object):
            raise ApiError(400, "API_ERROR", f"the query is not on the job's object {found.object}")
    except ApiError as exc:
        batch.state, batch.message = "Failed", f"InvalidBatch : Failed to process query: {exc.message}"
        return _doc("batchInfo", batch.info(), as_json=found.content_type == "JSON", status=201)
    if found.pk_chunking is not None:
        query = soql.parse(text)
        if query.order_by or query.limit is not None:
            batch.state = "Failed"
            batch.message = "InvalidBatch : PK chunking works only with queries whose one condition is WHERE"
        else:
            _chunks(org, found, batch, cursor)
    else:
        batch.cursor, batch.result_id = cursor, org.next_id("752")
    return _doc("batchInfo", batch.info(), as_json=found.content_type == "JSON", status=201)


async def list_batches(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    found.settle()
    infos = [b.info() for b in found.batches.values()]
    if found.content_type == "JSON":
        present = [{k: v for k, v in info.items() if v is not None} for info in infos]
        return Response(orjson.dumps({"batchInfo": present}), media_type=fmt.JSON_TYPE)
    return Response(fmt.batch_list(infos), media_type=fmt.XML_TYPE)


def _batch(state: OrgState, job: str, batch: str) -> tuple[Job, Batch]:
    found = _job(state, job)
    found.settle()
    item = found.batches.get(ids.normalize(batch) or batch)
    if item is None:
        raise AsyncError(400, "InvalidBatch", f"Unable to find object: {batch}")
    return found, item


async def batch_info(request: Request, state: OrgState, version: str, job: str, batch: str) -> Response:
    found, item = _batch(state, job, batch)
    return _doc("batchInfo", item.info(), as_json=found.content_type == "JSON")


async def batch_request(request: Request, state: OrgState, version: str, job: str, batch: str) -> Response:
    _, item = _batch(state, job, batch)
    return Response(item.query.encode(), media_type="text/plain")


def _completed(item: Batch) -> Cursor:
    if item.state != "Completed" or item.cursor is None:
        raise AsyncError(400, "InvalidBatch", f"Batch not completed: {item.state}")
    return item.cursor


async def result_ids(request: Request, state: OrgState, version: str, job: str, batch: str) -> Response:
    found, item = _batch(state, job, batch)
    _completed(item)
    results = [item.result_id] if item.result_id else []
    if found.content_type == "JSON":
        return Response(orjson.dumps(results), media_type=fmt.JSON_TYPE)
    return Response(fmt.result_list(results), media_type=fmt.XML_TYPE)


async def result(
    request: Request, state: OrgState, version: str, job: str, batch: str, result: str
) -> Response:
    found, item = _batch(state, job, batch)
    cursor = _completed(item)
    if result != item.result_id:
        raise AsyncError(400, "InvalidBatch", f"Unable to find object: {result}")
    rows = cursor.rows
    if found.content_type == "CSV":
        body = write_csv(cursor, rows, delimiter=",", line_ending="LF") if len(rows) else NO_RECORDS
        return Response(body, headers=CSV_TYPE)
    records = cursor.render_page(list(rows))
    if found.content_type == "JSON":
        return Response(orjson.dumps([fmt.json_record(r) for r in records]), media_type=fmt.JSON_TYPE)
    return Response(fmt.xml_records(records), media_type=fmt.XML_TYPE)


_JOB = "/job/{job:job}"
_BATCH = _JOB + "/batch/{batch:batch}"
routes = [
    async_route("/job", create_job, "POST"),
    async_route(_JOB, job_info, "GET"),
    async_route(_JOB, update_job, "POST"),
    async_route(_JOB + "/batch", add_batch, "POST"),
    async_route(_JOB + "/batch", list_batches, "GET"),
    async_route(_BATCH, batch_info, "GET"),
    async_route(_BATCH + "/request", batch_request, "GET"),
    async_route(_BATCH + "/result", result_ids, "GET"),
    async_route(_BATCH + "/result/{result:result}", result, "GET"),
]
