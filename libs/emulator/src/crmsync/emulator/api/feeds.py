"""The replication feeds: ids updated, and records deleted, within a time window."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.clock import format_datetime, now_ms, parse_datetime
from crmsync.emulator.errors import ApiError
from crmsync.emulator.soql import SoqlError
from crmsync.emulator.state import OrgState
from crmsync.emulator.table import DELETED_REACH_MS
from crmsync.emulator.web import data_route, json_response

UPDATED_REACH_MS = 30 * 86_400_000


def _window(request: Request) -> tuple[int, int]:
    try:
        start = parse_datetime(request.query_params["start"])
        end = parse_datetime(request.query_params["end"])
    except (KeyError, SoqlError) as exc:
        raise ApiError(400, "MALFORMED_QUERY", "start and end are required date-times (ISO 8601)") from exc
    if start >= end:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
    return start, end


async def updated(request: Request, state: OrgState, version: str, obj: str) -> Response:
    table = state.org.table(obj)
    start, end = _window(request)
    if start < now_ms() - UPDATED_REACH_MS:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
    stamps = table.cols["SystemModstamp"]
    deleted = table.deleted_at
    everything = range(table.n)
    found = [
        table.id_of(row)
        for row, stamp in zip(everything, stamps.take(everything), strict=True)
        if start <= stamp < end and row not in deleted
    ]
    latest = min(end, now_ms())
    return json_response({"ids": found, "latestDateCovered": format_datetime(latest)})


async def deleted(request: Request, state: OrgState, version: str, obj: str) -> Response:
    table = state.org.table(obj)
    start, end = _window(request)
    earliest = now_ms() - DELETED_REACH_MS
    if start < earliest:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 15 days ago")
    records = [
        {"id": table.id_of(row), "deletedDate": format_datetime(at)}
        for row, at in sorted(table.deleted_at.items(), key=lambda item: item[1])
        if start <= at < end
    ]
    return json_response(
        {
            "deletedRecords": records,
            "earliestDateAvailable": format_datetime(earliest),
            "latestDateCovered": format_datetime(min(end, now_ms())),
        }
    )


routes = [
    data_route("/sobjects/{obj:name}/updated", updated, "GET"),
    data_route("/sobjects/{obj:name}/deleted", deleted, "GET"),
]
