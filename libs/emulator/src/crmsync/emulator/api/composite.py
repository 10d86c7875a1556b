"""sObject collections under /composite/sobjects: up to 200 records created, updated or deleted at once."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator import ids
from crmsync.emulator.errors import ApiError, RecordError, RecordRejected
from crmsync.emulator.schema import find_object
from crmsync.emulator.state import OrgState
from crmsync.emulator.web import data_route, json_response, lock_fault, read_json

MAX_COLLECTION = 200
Checked = tuple[str, list[RecordError]]
_ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def record_id(record: Any) -> Any:
    """Returns a collection record's Id, however its name is spelled ("Id", "id", "ID")."""
    if not isinstance(record, dict):
        return None
    for key, value in record.items():
        if key.lower() == "id":
            return value
    return None


def _too_many() -> ApiError:
    return ApiError(
        400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
    )


def _lookup_error(exc: ApiError) -> list[RecordError]:
    """Returns how a collection reports a record it cannot find (or a field it does not know)."""
    if exc.error_code in ("ENTITY_IS_DELETED", "INVALID_FIELD"):
        return [RecordError(exc.error_code, exc.message)]
    return [RecordError("INVALID_ID_FIELD", "invalid cross reference id", ("Id",))]


def _check(request: Request, state: OrgState, record: Any, *, creating: bool) -> Checked:
    """Returns (object name, errors) of one record of the collection, validated without writing."""
    if not isinstance(record, dict):
        return "", [RecordError("JSON_PARSER_ERROR", "Each record must be a JSON object")]
    given = (record.get("attributes") or {}).get("type")
    found = find_object(given) if isinstance(given, str) else None
    if found is None:
        return str(given or ""), [RecordError("INVALID_TYPE", "Must send a concrete entity type.")]
    obj = found.name  # as the describe spells it, whatever the request said
    if creating and record_id(record):
        return obj, [RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",))]
    if not creating and not record_id(record):
        return obj, [RecordError("MISSING_ARGUMENT", "Id not specified in an update call")]
    if lock := lock_fault(state, request):
        return obj, [lock]
    org = state.org
    table = org.table(obj)
    try:
        if not creating:
            rtable, row = org.find(obj, record_id(record))
            if rtable.obj.name == "Lead" and rtable.raw(row, "IsConverted"):
                return obj, [RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")]
        org.prepare(table, record, creating=creating, system=False)
    except RecordRejected as exc:
        return obj, list(exc.errors)
    except ApiError as exc:
        return obj, _lookup_error(exc)
    return obj, []


def _log(state: OrgState, method: str, obj: str, record_id: str | None, record: Any, ok: bool) -> None:
    fields = record if isinstance(record, dict) else {}
    state.org.log_write(
        method=method, obj=obj, record_id=record_id, fields=fields, api="composite", success=ok
    )


def _result(record_id: str | None, errors: list[RecordError]) -> dict[str, Any]:
    return {"id": record_id, "success": not errors, "errors": [e.as_json() for e in errors]}


def _write(state: OrgState, obj: str, record: dict[str, Any], *, creating: bool) -> tuple[str | None, list]:
    try:
        if creating:
            table, row = state.org.create(obj, record)
        else:
            table, row = state.org.update(obj, record_id(record), record)
    except RecordRejected as exc:
        return (None if creating else record_id(record)), list(exc.errors)
    return table.id_of(row), []


async def _collection(request: Request, state: OrgState, *, creating: bool) -> Response:
    body = await read_json(request)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body needs a 'records' list")
    if len(records) > MAX_COLLECTION:
        raise _too_many()
    all_or_none = body.get("allOrNone", False) in (True, "true", "True")
    method = "POST" if creating else "PATCH"
    checks = [_check(request, state, record, creating=creating) for record in records]
    results: list[dict[str, Any]] = []
    if all_or_none and any(errors for _, errors in checks):
        for record, (obj, errors) in zip(records, checks, strict=True):
            rid = None if creating else record_id(record)
            _log(state, method, obj, rid, record, False)
            results.append(_result(rid, errors or [_ROLLED_BACK]))
        return json_response(results)
    for record, (obj, errors) in zip(records, checks, strict=True):
        rid = None if creating else record_id(record)
        if not errors:
            rid, errors = _write(state, obj, record, creating=creating)
        if creating and errors:
            rid = None
        _log(state, method, obj, rid, record, not errors)
        results.append(_result(rid, errors))
    return json_response(results)


async def collection_create(request: Request, state: OrgState, version: str) -> Response:
    return await _collection(request, state, creating=True)


async def collection_update(request: Request, state: OrgState, version: str) -> Response:
    return await _collection(request, state, creating=False)


async def collection_delete(request: Request, state: OrgState, version: str) -> Response:
    given = [i for i in request.query_params.get("ids", "").split(",") if i]
    if len(given) > MAX_COLLECTION:
        raise _too_many()
    results = []
    for rid in given:
        parsed = ids.parse(rid)
        obj = ids.OBJECT_BY_PREFIX.get(parsed[0]) if parsed else None
        try:
            if obj is None:
                raise ApiError(404, "MALFORMED_ID", f"malformed id {rid}")
            table, row = state.org.delete(obj, rid)
        except ApiError as exc:
            results.append(
                {"id": None, "success": False, "errors": [RecordError(exc.error_code, exc.message).as_json()]}
            )
            continue
        _log(state, "DELETE", obj, table.id_of(row), {}, True)
        results.append(_result(table.id_of(row), []))
    return json_response(results)


routes = [
    data_route("/composite/sobjects", collection_create, "POST"),
    data_route("/composite/sobjects", collection_update, "PATCH"),
    data_route("/composite/sobjects", collection_delete, "DELETE"),
]
