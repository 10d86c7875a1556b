"""SOQL over REST: /query and /queryAll, paged through nextRecordsUrl."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.errors import ApiError
from crmsync.emulator.state import OrgState
from crmsync.emulator.web import data_route, json_response

DEFAULT_PAGE = 2000


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if not match:
        return DEFAULT_PAGE
    # Salesforce keeps a page between 200 and 2,000 records whatever is asked.
    return max(200, min(2000, int(match.group(1))))


def _page(state: OrgState, version: str, kind: str, cursor_id: str, start: int, size: int) -> dict[str, Any]:
    cursor = state.org.cursors[cursor_id]
    rows = cursor.rows[start : start + size]
    end = start + len(rows)
    done = end >= len(cursor.rows)
    body: dict[str, Any] = {
        "totalSize": len(cursor.rows),
        "done": done,
        "records": cursor.render_page(rows),
    }
    if done:
        state.org.cursors.pop(cursor_id, None)
    else:
        body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{cursor_id}-{end}"
    return body


async def _query(request: Request, state: OrgState, version: str, kind: str) -> Response:
    text = request.query_params.get("q")
    if text is None:
        raise ApiError(400, "MALFORMED_QUERY", "A query string parameter 'q' is required")
    cursor, count = state.org.run_query(text, include_deleted=kind == "queryAll", version=version)
    if count is not None:
        return json_response({"totalSize": count, "done": True, "records": []})
    locator = state.org.save_cursor(cursor)
    return json_response(_page(state, version, kind, locator, 0, _batch_size(request)))


async def _more(request: Request, state: OrgState, version: str, kind: str, locator: str) -> Response:
    cursor_id, _, start = locator.rpartition("-")
    if cursor_id not in state.org.cursors:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return json_response(_page(state, version, kind, cursor_id, int(start), _batch_size(request)))


async def query(request: Request, state: OrgState, version: str) -> Response:
    return await _query(request, state, version, "query")


async def query_all(request: Request, state: OrgState, version: str) -> Response:
    return await _query(request, state, version, "queryAll")


async def query_more(request: Request, state: OrgState, version: str, locator: str) -> Response:
    return await _more(request, state, version, "query", locator)


async def query_all_more(request: Request, state: OrgState, version: str, locator: str) -> Response:
    return await _more(request, state, version, "queryAll", locator)


routes = [
    data_route("/query", query, "GET"),
    data_route("/queryAll", query_all, "GET"),
    data_route("/query/{locator:locator}", query_more, "GET"),
    data_route("/queryAll/{locator:locator}", query_all_more, "GET"),
]
