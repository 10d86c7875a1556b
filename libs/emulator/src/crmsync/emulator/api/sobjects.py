"""sObjects: the global and per-object describe, and one record's read, create, update and delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.errors import ApiError, RecordRejected
from crmsync.emulator.schema import OBJECTS, describe_global_entry, describe_object
from crmsync.emulator.state import OrgState
from crmsync.emulator.web import (
    data_route,
    json_response,
    lock_fault,
    read_object,
    record_errors_response,
)


async def describe_global(request: Request, state: OrgState, version: str) -> Response:
    return json_response(
        {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [describe_global_entry(obj, version) for obj in OBJECTS.values()],
        }
    )


async def sobject_info(request: Request, state: OrgState, version: str, obj: str) -> Response:
    table = state.org.table(obj)
    return json_response({"objectDescribe": describe_global_entry(table.obj, version), "recentItems": []})


async def describe(request: Request, state: OrgState, version: str, obj: str) -> Response:
    table = state.org.table(obj)
    return json_response(describe_object(table.obj, version))


async def get_record(request: Request, state: OrgState, version: str, obj: str, rid: str) -> Response:
    table, row = state.org.find(obj, rid)
    fields = request.query_params.get("fields")
    names = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    if names:
        canonical = []
        for name in names:
            f = table.obj.field(name)
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{table.obj.name}'.")
            canonical.append(f.name)
        names = canonical
    return json_response(state.org.full_record(table, row, version, names))


def _log(
    state: OrgState, method: str, obj: str, record_id: str | None, body: dict[str, Any], ok: bool
) -> None:
    state.org.log_write(method=method, obj=obj, record_id=record_id, fields=body, api="rest", success=ok)


async def create_record(request: Request, state: OrgState, version: str, obj: str) -> Response:
    body = await read_object(request)
    table = state.org.table(obj)
    if lock := lock_fault(state, request):
        _log(state, "POST", table.obj.name, None, body, False)
        return record_errors_response([lock])
    try:
        table, row = state.org.create(obj, body)
    except RecordRejected as exc:
        _log(state, "POST", table.obj.name, None, body, False)
        return record_errors_response(exc.errors)
    record_id = table.id_of(row)
    _log(state, "POST", table.obj.name, record_id, body, True)
    return json_response({"id": record_id, "success": True, "errors": []}, 201)


async def update_record(request: Request, state: OrgState, version: str, obj: str, rid: str) -> Response:
    body = await read_object(request)
    table, row = state.org.find(obj, rid)
    record_id = table.id_of(row)
    if lock := lock_fault(state, request):
        _log(state, "PATCH", table.obj.name, record_id, body, False)
        return record_errors_response([lock])
    try:
        state.org.update(obj, rid, body)
    except RecordRejected as exc:
        _log(state, "PATCH", table.obj.name, record_id, body, False)
        return record_errors_response(exc.errors)
    _log(state, "PATCH", table.obj.name, record_id, body, True)
    return Response(status_code=204)


async def delete_record(request: Request, state: OrgState, version: str, obj: str, rid: str) -> Response:
    table, row = state.org.find(obj, rid)
    if lock := lock_fault(state, request):
        return record_errors_response([lock])
    state.org.delete(obj, rid)
    _log(state, "DELETE", table.obj.name, table.id_of(row), {}, True)
    return Response(status_code=204)


_RECORD = "/sobjects/{obj:name}/{rid:sfid}"
routes = [
    data_route("/sobjects", describe_global, "GET"),
    data_route("/sobjects/{obj:name}", sobject_info, "GET"),
    data_route("/sobjects/{obj:name}", create_record, "POST"),
    data_route("/sobjects/{obj:name}/describe", describe, "GET"),
    data_route(_RECORD, get_record, "GET"),
    data_route(_RECORD, update_record, "PATCH"),
    data_route(_RECORD, delete_record, "DELETE"),
]
