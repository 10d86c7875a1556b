"""Bulk API 2.0 query jobs under /jobs/query: create, status, abort, delete, CSV results by locator."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator import ids, soql
from crmsync.emulator.clock import format_datetime, now_ms
from crmsync.emulator.errors import ApiError
from crmsync.emulator.schema import find_object
from crmsync.emulator.state import OrgState
from crmsync.emulator.store import Org
from crmsync.emulator.table import Cursor
from crmsync.emulator.web import data_route, json_response, read_json

BULK_DEFAULT_MAX_RECORDS = 100_000
CSV_TYPE = {"Content-Type": "text/csv"}  # as Salesforce sends it: no charset
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}


def job_info(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _refuse_compound(org: Org, parsed: soql.Query) -> None:
    """Bulk queries cannot select an address (compound) field, directly or through a parent."""
    obj = find_object(parsed.sobject)
    if obj is None:
        return
    table = org.tables[obj.name]
    for ref in parsed.fields:
        target = table
        if len(ref.path) == 2:
            link = table.obj.relationship(ref.path[0])
            target = org.tables[link.reference_to[0]] if link else table
        f = target.obj.field(ref.path[-1])
        if f is not None and f.type == "address":
            raise ApiError(400, "API_ERROR", "Selecting compound data not supported in Bulk Query")


def bulk_cursor(org: Org, text: str, *, include_deleted: bool, version: str) -> Cursor:
    """Returns the cursor of a Bulk query, refused as Bulk refuses what it does not support."""
    try:
        parsed = soql.parse(text)
    except soql.SoqlError as exc:
        raise ApiError(400, "API_ERROR", f"{exc.error_code}: {exc.message}") from exc
    if parsed.count or parsed.offset:
        raise ApiError(400, "API_ERROR", "Aggregate queries and OFFSET are not supported in Bulk Query")
    _refuse_compound(org, parsed)
    try:
        cursor, _ = org.run_query(text, include_deleted=include_deleted, version=version, csv=True)
    except ApiError as exc:
        raise ApiError(400, "API_ERROR", f"{exc.error_code}: {exc.message}") from exc
    return cursor


async def bulk_create(request: Request, state: OrgState, version: str) -> Response:
    body = await read_json(request)
    operation = body.get("operation")
    if operation not in ("query", "queryAll"):
        raise ApiError(400, "INVALIDJOB", "InvalidJob : operation must be query or queryAll")
    org = state.org
    cursor = bulk_cursor(
        org, body.get("query") or "", include_deleted=operation == "queryAll", version=version
    )
    org.bulk_query_jobs += 1
    job_id = org.next_id("750")
    stamp = format_datetime(now_ms())
    job = {
        "id": job_id,
        "operation": operation,
        "object": cursor.table.obj.name,
        "createdById": org.user_id,
        "createdDate": stamp,
        "systemModstamp": stamp,
        "state": "UploadComplete",
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": float(version),
        "lineEnding": body.get("lineEnding", "LF"),
        "columnDelimiter": body.get("columnDelimiter", "COMMA"),
        "_cursor": cursor,
    }
    org.bulk_jobs[job_id] = job
    return json_response(job_info(job))


def _job(state: OrgState, job: str) -> dict[str, Any]:
    found = state.org.bulk_jobs.get(ids.normalize(job) or job)
    if found is None:
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
    return found


async def bulk_status(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    if found["state"] == "UploadComplete":
        # The work is done at creation; the first status read shows it complete, as a fast job would.
        found["state"] = "JobComplete"
    info = job_info(found)
    info.update(
        {
            "numberRecordsProcessed": len(found["_cursor"].rows),
            "retries": 0,
            "totalProcessingTime": 1,
            "isPkChunkingSupported": True,
        }
    )
    return json_response(info)


async def bulk_abort(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    body = await read_json(request)
    if body.get("state") != "Aborted":
        raise ApiError(400, "INVALIDJOB", "InvalidJob : only Aborted can be set on a query job")
    if found["state"] != "JobComplete":
        found["state"] = "Aborted"
    return json_response(job_info(found))


async def bulk_delete(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    state.org.bulk_jobs.pop(found["id"], None)
    return Response(status_code=204)


def write_csv(cursor: Cursor, rows: list[int] | range, *, delimiter: str, line_ending: str) -> bytes:
    """Returns rows of a cursor as Bulk's CSV: a header of the selected columns, every value quoted."""
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=delimiter,
        quoting=csv.QUOTE_ALL,
        lineterminator="\r\n" if line_ending == "CRLF" else "\n",
    )
    writer.writerow([name for name, _ in cursor.columns])
    values = [[csv_value(v) for v in fetch(rows)] for _, fetch in cursor.columns]  # type: ignore[arg-type]
    writer.writerows(zip(*values, strict=True))
    return out.getvalue().encode()


async def bulk_results(request: Request, state: OrgState, version: str, job: str) -> Response:
    found = _job(state, job)
    if found["state"] != "JobComplete":
        raise ApiError(400, "INVALIDJOB", f"InvalidJob : Job {found['id']} is not complete: {found['state']}")
    cursor = found["_cursor"]
    locator = request.query_params.get("locator") or ""
    try:
        start = int(base64.b64decode(locator).decode()) if locator else 0
    except ValueError as exc:
        raise ApiError(400, "INVALIDLOCATOR", "InvalidLocator : the locator is not valid") from exc
    size = int(request.query_params.get("maxRecords") or BULK_DEFAULT_MAX_RECORDS)
    rows = cursor.rows[start : start + size]
    body = write_csv(
        cursor, rows, delimiter=DELIMITERS[found["columnDelimiter"]], line_ending=found["lineEnding"]
    )
    end = start + len(rows)
    next_locator = base64.b64encode(str(end).encode()).decode() if end < len(cursor.rows) else "null"
    return Response(
        body,
        200,
        {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(rows)), **CSV_TYPE},
    )


_JOB = "/jobs/query/{job:job}"
routes = [
    data_route("/jobs/query", bulk_create, "POST"),
    data_route(_JOB, bulk_status, "GET"),
    data_route(_JOB, bulk_abort, "PATCH"),
    data_route(_JOB, bulk_delete, "DELETE"),
    data_route(_JOB + "/results", bulk_results, "GET"),
]
