"""The control API under /__emulator: orgs, records as a CRM user changes them, writes, faults, budget.

Nothing here counts against an org's API budget or shows up in its writes log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.faults import Fault
from crmsync.emulator.soql import FieldRef
from crmsync.emulator.store import ApiError, RecordRejected, now_ms, parse_datetime

if TYPE_CHECKING:
    from crmsync.emulator.app import Emulator, OrgState

VERSION = "60.0"


def register(emu: Emulator) -> None:
    """Adds the control routes to an emulator."""
    from crmsync.emulator.app import json_response

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = orjson.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        return data

    def org_of(org_id: str) -> OrgState:
        state = emu.orgs.get(org_id)
        if state is None:
            raise ApiError(404, "NOT_FOUND", f"no org {org_id}")
        return state

    def record_body(data: dict[str, Any]) -> dict[str, Any]:
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

    def stamp_of(data: dict[str, Any], key: str = "system_modstamp") -> int | None:
        value = data.get(key)
        return parse_datetime(value) if value else None

    def rejected(exc: RecordRejected) -> Response:
        return json_response(
            [
                {"message": e.message, "errorCode": e.status_code, "fields": list(e.fields)}
                for e in exc.errors
            ],
            400,
        )

    def describe_org(request: Request, state: OrgState) -> dict[str, Any]:
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
        return json_response({"ok": True, "orgs": len(emu.orgs)})

    async def list_orgs(request: Request) -> Response:
        return json_response([describe_org(request, s) for s in emu.orgs.values()])

    async def create_org(request: Request) -> Response:
        data = await body(request)
        leads, contacts = int(data.get("leads", 10)), int(data.get("contacts", 10))
        if not (0 <= leads <= 2_000_000 and 0 <= contacts <= 2_000_000):
            raise ApiError(400, "INVALID_SIZE", "leads and contacts must be between 0 and 2,000,000")
        try:
            org = emu.create_org(
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
        return json_response(describe_org(request, emu.orgs[org.org_id]), 201)

    async def get_org(request: Request, org: str) -> Response:
        return json_response(describe_org(request, org_of(org)))

    async def delete_org(request: Request, org: str) -> Response:
        state = org_of(org)
        emu.orgs.pop(org)
        emu.by_client.pop(state.org.client_id, None)
        for token in [t for t, entry in emu.tokens.items() if entry.org_id == org]:
            del emu.tokens[token]
        return Response(status_code=204)

    async def create_record(request: Request, org: str, obj: str) -> Response:
        state = org_of(org)
        data = await body(request)
        try:
            table, row = state.org.create(obj, record_body(data), system=True, stamp=stamp_of(data))
        except RecordRejected as exc:
            return rejected(exc)
        return json_response({"id": table.id_of(row)}, 201)

    async def list_records(request: Request, org: str, obj: str) -> Response:
        state = org_of(org)
        table = state.org.table(obj)
        limit = int(request.query_params.get("limit", "1000"))
        include_deleted = request.query_params.get("deleted") == "true"
        rows = [r for r in range(table.n) if include_deleted or table.alive(r)][:limit]
        render_page, _ = state.org.page_renderer(
            table, [FieldRef((name,)) for name in table.obj.fields], VERSION
        )
        return json_response(render_page(rows))

    async def get_record(request: Request, org: str, obj: str, rid: str) -> Response:
        state = org_of(org)
        table, row = state.org.find(obj, rid, deleted_ok=True)
        return json_response(state.org.full_record(table, row, VERSION))

    async def edit_record(request: Request, org: str, obj: str, rid: str) -> Response:
        state = org_of(org)
        data = await body(request)
        try:
            state.org.update(obj, rid, record_body(data), system=True, stamp=stamp_of(data))
        except RecordRejected as exc:
            return rejected(exc)
        return Response(status_code=204)

    async def delete_record(request: Request, org: str, obj: str, rid: str) -> Response:
        state = org_of(org)
        data = await body(request)
        state.org.delete(obj, rid, stamp=stamp_of(data, "deleted_at"))
        return Response(status_code=204)

    async def undelete_record(request: Request, org: str, obj: str, rid: str) -> Response:
        state = org_of(org)
        try:
            state.org.undelete(obj, rid)
        except RecordRejected as exc:
            return rejected(exc)
        return Response(status_code=204)

    async def convert(request: Request, org: str, rid: str) -> Response:
        state = org_of(org)
        data = await body(request)
        try:
            contact_id, account_id = state.org.convert_lead(
                rid,
                account_id=data.get("account_id"),
                contact_id=data.get("contact_id"),
                stamp=stamp_of(data),
            )
        except RecordRejected as exc:
            return rejected(exc)
        return json_response({"contact_id": contact_id, "account_id": account_id})

    async def writes(request: Request, org: str) -> Response:
        return json_response(org_of(org).org.writes)

    async def clear_writes(request: Request, org: str) -> Response:
        org_of(org).org.writes.clear()
        return Response(status_code=204)

    async def list_faults(request: Request, org: str) -> Response:
        return json_response([f.as_json() for f in org_of(org).faults.faults])

    async def add_fault(request: Request, org: str) -> Response:
        state = org_of(org)
        data = await body(request)
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
        org_of(org).faults.clear()
        return Response(status_code=204)

    async def get_budget(request: Request, org: str) -> Response:
        o = org_of(org).org
        return json_response({"used": o.api_used, "limit": o.api_limit})

    async def set_budget(request: Request, org: str) -> Response:
        o = org_of(org).org
        data = await body(request)
        if "used" in data:
            o.api_used = int(data["used"])
        if "limit" in data:
            o.api_limit = int(data["limit"])
        return json_response({"used": o.api_used, "limit": o.api_limit})

    async def expire_tokens(request: Request, org: str) -> Response:
        state = org_of(org)
        for token, entry in emu.tokens.items():
            if entry.org_id == org:
                state.expired.add(token)
        return Response(status_code=204)

    async def clock(request: Request) -> Response:
        return json_response({"now": now_ms()})

    c = r"/__emulator"
    o = c + r"/orgs/(?P<org>00D\w+)"
    rec = o + r"/sobjects/(?P<obj>\w+)/(?P<rid>[A-Za-z0-9]{15,18})"
    for method, pattern, handler in (
        ("GET", c + r"/health", health),
        ("GET", c + r"/clock", clock),
        ("GET", c + r"/orgs", list_orgs),
        ("POST", c + r"/orgs", create_org),
        ("GET", o, get_org),
        ("DELETE", o, delete_org),
        ("POST", o + r"/sobjects/(?P<obj>\w+)", create_record),
        ("GET", o + r"/sobjects/(?P<obj>\w+)", list_records),
        ("GET", rec, get_record),
        ("PATCH", rec, edit_record),
        ("DELETE", rec, delete_record),
        ("POST", rec + r"/undelete", undelete_record),
        ("POST", o + r"/leads/(?P<rid>[A-Za-z0-9]{15,18})/convert", convert),
        ("GET", o + r"/writes", writes),
        ("DELETE", o + r"/writes", clear_writes),
        ("GET", o + r"/faults", list_faults),
        ("POST", o + r"/faults", add_fault),
        ("DELETE", o + r"/faults", clear_faults),
        ("GET", o + r"/budget", get_budget),
        ("PUT", o + r"/budget", set_budget),
        ("POST", o + r"/expire-tokens", expire_tokens),
    ):
        emu.route(method, pattern, handler, data=False)
