"""The control API under /__emulator: orgs, records as a CRM user changes them, writes, faults, budget.

Nothing here counts against an org's API budget or shows up in its writes log.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from crmsync.emulator.clock import now_ms, parse_datetime
from crmsync.emulator.errors import ApiError, RecordRejected
from crmsync.emulator.faults import Fault
from crmsync.emulator.soql import FieldRef
from crmsync.emulator.state import DuplicateClientId, OrgState
from crmsync.emulator.web import emulator_of, json_response, plain_route, read_object, record_errors_response

VERSION = "60.0"
MAX_GENERATED = 2_000_000
MAX_ORGS_PER_CALL = 100_000


def _org(request: Request, org_id: str) -> OrgState:
    state = emulator_of(request).orgs.get(org_id)
    if state is None:
        raise ApiError(404, "NOT_FOUND", f"no org {org_id}")
    return state


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    # A bare {"Title": ...} would otherwise be read as "no fields" and only touch the stamp.
    unknown = sorted(set(data) - {"fields", "system_modstamp"})
    if unknown or not isinstance(data.get("fields", {}), dict):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            'Expected {"fields": {...}, "system_modstamp": optional}; unexpected: '
            + ", ".join(unknown or ["fields"]),
        )
    return data.get("fields", {})


def _stamp(data: dict[str, Any], key: str = "system_modstamp") -> int | None:
    value = data.get(key)
    return parse_datetime(value) if value else None


def _describe(request: Request, state: OrgState) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    org = state.org
    return {
        "org_id": org.org_id,
        "client_id": org.client_id,
        "client_secret": org.client_secret,
        "refresh_token": org.refresh_token,
        "login_url": base,
        "instance_url": base,
        "user_id": org.user_id,
        "api_limit": org.api_limit,
        "api_used": org.api_used,
        "counts": {name: t.n - len(t.deleted_at) for name, t in org.tables.items()},
    }


async def health(request: Request) -> Response:
    return json_response({"ok": True, "orgs": len(emulator_of(request).orgs)})


async def clock(request: Request) -> Response:
    return json_response({"now": now_ms()})


async def list_orgs(request: Request) -> Response:
    return json_response([_describe(request, s) for s in emulator_of(request).orgs.values()])


async def create_org(request: Request) -> Response:
    emulator = emulator_of(request)
    data = await read_object(request)
    leads, contacts = int(data.get("leads", 10)), int(data.get("contacts", 10))
    if not (0 <= leads <= MAX_GENERATED and 0 <= contacts <= MAX_GENERATED):
        raise ApiError(400, "INVALID_SIZE", "leads and contacts must be between 0 and 2,000,000")
    try:
        org = emulator.create_org(
            leads=leads,
            contacts=contacts,
            seed=int(data.get("seed", 1)),
            client_id=data.get("client_id"),
            client_secret=data.get("client_secret"),
            api_limit=data.get("api_limit"),
            token_ttl=data.get("token_ttl"),
        )
    except ValueError as exc:
        raise ApiError(409, "DUPLICATE_VALUE", str(exc)) from exc
    org.jwt_public_key = data.get("jwt_public_key")
    return json_response(_describe(request, emulator.orgs[org.org_id]), 201)


async def create_orgs(request: Request) -> Response:
    """Many orgs at once, of sizes drawn from a range: `{count, min_records, max_records, seed,
    client_id_prefix?, client_secret?, api_limit?}`; answers each org's ids, credentials and size."""
    emulator = emulator_of(request)
    data = await read_object(request)
    try:
        count, low, high = int(data["count"]), int(data["min_records"]), int(data["max_records"])
        if not (0 <= count <= MAX_ORGS_PER_CALL and high <= 2 * MAX_GENERATED):
            raise ValueError(f"count is at most {MAX_ORGS_PER_CALL:,}, max_records at most 4,000,000")
        orgs = emulator.create_orgs(
            count=count,
            min_records=low,
            max_records=high,
            seed=int(data.get("seed", 1)),
            client_id_prefix=data.get("client_id_prefix"),
            client_secret=data.get("client_secret"),
            api_limit=data.get("api_limit"),
        )
    except (KeyError, TypeError) as exc:
        raise ApiError(400, "INVALID_SIZE", f"count, min_records and max_records are needed: {exc}") from exc
    except DuplicateClientId as exc:
        raise ApiError(409, "DUPLICATE_VALUE", str(exc)) from exc
    except ValueError as exc:
        raise ApiError(400, "INVALID_SIZE", str(exc)) from exc
    return json_response([_describe(request, emulator.orgs[org.org_id]) for org in orgs], 201)


async def get_org(request: Request, org: str) -> Response:
    return json_response(_describe(request, _org(request, org)))


async def delete_org(request: Request, org: str) -> Response:
    _org(request, org)
    emulator_of(request).delete_org(org)
    return Response(status_code=204)


async def create_record(request: Request, org: str, obj: str) -> Response:
    state = _org(request, org)
    data = await read_object(request)
    try:
        table, row = state.org.create(obj, _fields(data), system=True, stamp=_stamp(data))
    except RecordRejected as exc:
        return record_errors_response(exc.errors)
    return json_response({"id": table.id_of(row)}, 201)


async def list_records(request: Request, org: str, obj: str) -> Response:
    state = _org(request, org)
    table = state.org.table(obj)
    limit = int(request.query_params.get("limit", "1000"))
    include_deleted = request.query_params.get("deleted") == "true"
    rows = [r for r in range(table.n) if include_deleted or table.alive(r)][:limit]
    render_page, _ = state.org.page_renderer(table, [FieldRef((name,)) for name in table.obj.fields], VERSION)
    return json_response(render_page(rows))


async def get_record(request: Request, org: str, obj: str, rid: str) -> Response:
    state = _org(request, org)
    table, row = state.org.find(obj, rid, deleted_ok=True)
    return json_response(state.org.full_record(table, row, VERSION))


async def edit_record(request: Request, org: str, obj: str, rid: str) -> Response:
    state = _org(request, org)
    data = await read_object(request)
    try:
        state.org.update(obj, rid, _fields(data), system=True, stamp=_stamp(data))
    except RecordRejected as exc:
        return record_errors_response(exc.errors)
    return Response(status_code=204)


async def delete_record(request: Request, org: str, obj: str, rid: str) -> Response:
    state = _org(request, org)
    data = await read_object(request)
    state.org.delete(obj, rid, stamp=_stamp(data, "deleted_at"))
    return Response(status_code=204)


async def undelete_record(request: Request, org: str, obj: str, rid: str) -> Response:
    state = _org(request, org)
    try:
        state.org.undelete(obj, rid)
    except RecordRejected as exc:
        return record_errors_response(exc.errors)
    return Response(status_code=204)


async def convert(request: Request, org: str, rid: str) -> Response:
    state = _org(request, org)
    data = await read_object(request)
    try:
        contact_id, account_id = state.org.convert_lead(
            rid, account_id=data.get("account_id"), contact_id=data.get("contact_id"), stamp=_stamp(data)
        )
    except RecordRejected as exc:
        return record_errors_response(exc.errors)
    return json_response({"contact_id": contact_id, "account_id": account_id})


async def writes(request: Request, org: str) -> Response:
    return json_response(_org(request, org).org.writes)


async def clear_writes(request: Request, org: str) -> Response:
    _org(request, org).org.writes.clear()
    return Response(status_code=204)


async def list_faults(request: Request, org: str) -> Response:
    return json_response([f.as_json() for f in _org(request, org).faults.faults])


async def add_fault(request: Request, org: str) -> Response:
    state = _org(request, org)
    data = await read_object(request)
    try:
        fault = Fault(
            kind=str(data["kind"]),
            count=data.get("count"),
            rate=data.get("rate"),
            latency_ms=int(data.get("latency_ms", 0)),
            path=data.get("path"),
            method=data.get("method"),
        )
        state.faults.add(fault)
    except (KeyError, ValueError) as exc:
        raise ApiError(400, "INVALID_FAULT", str(exc)) from exc
    return json_response(fault.as_json(), 201)


async def clear_faults(request: Request, org: str) -> Response:
    _org(request, org).faults.clear()
    return Response(status_code=204)


async def get_budget(request: Request, org: str) -> Response:
    o = _org(request, org).org
    return json_response({"used": o.api_used, "limit": o.api_limit})


async def set_budget(request: Request, org: str) -> Response:
    o = _org(request, org).org
    data = await read_object(request)
    if "used" in data:
        o.api_used = int(data["used"])
    if "limit" in data:
        o.api_limit = int(data["limit"])
    return json_response({"used": o.api_used, "limit": o.api_limit})


async def expire_tokens(request: Request, org: str) -> Response:
    state = _org(request, org)
    for token, entry in emulator_of(request).tokens.items():
        if entry.org_id == org:
            state.expired.add(token)
    return Response(status_code=204)


_O = "/orgs/{org:org}"
_REC = _O + "/sobjects/{obj:name}/{rid:sfid}"
routes = [
    Mount(
        "/__emulator",
        routes=[
            plain_route("/health", health, "GET"),
            plain_route("/clock", clock, "GET"),
            plain_route("/orgs", list_orgs, "GET"),
            plain_route("/orgs", create_org, "POST"),
            plain_route("/orgs/many", create_orgs, "POST"),
            plain_route(_O, get_org, "GET"),
            plain_route(_O, delete_org, "DELETE"),
            plain_route(_O + "/sobjects/{obj:name}", create_record, "POST"),
            plain_route(_O + "/sobjects/{obj:name}", list_records, "GET"),
            plain_route(_REC, get_record, "GET"),
            plain_route(_REC, edit_record, "PATCH"),
            plain_route(_REC, delete_record, "DELETE"),
            plain_route(_REC + "/undelete", undelete_record, "POST"),
            plain_route(_O + "/leads/{rid:sfid}/convert", convert, "POST"),
            plain_route(_O + "/writes", writes, "GET"),
            plain_route(_O + "/writes", clear_writes, "DELETE"),
            plain_route(_O + "/faults", list_faults, "GET"),
            plain_route(_O + "/faults", add_fault, "POST"),
            plain_route(_O + "/faults", clear_faults, "DELETE"),
            plain_route(_O + "/budget", get_budget, "GET"),
            plain_route(_O + "/budget", set_budget, "PUT"),
            plain_route(_O + "/expire-tokens", expire_tokens, "POST"),
        ],
    )
]
