"""The control API for tests, under `/__emulator` (plain JSON, no sign-in, never throttled):
environments, records as a CRM user edits them (`modifiedon` may be given), lead qualification,
faults, expiries, reset."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.dynamics_emulator.api.writes import create_record, update_record
from crmsync.dynamics_emulator.dataset import MAX_ROWS, iso
from crmsync.dynamics_emulator.errors import DataverseError
from crmsync.dynamics_emulator.schema import TABLES, Table, table_named
from crmsync.dynamics_emulator.state import Emulator
from crmsync.dynamics_emulator.store import Environment

Handler = Callable[[Request], Awaitable[Response]]
OPEN, QUALIFIED = 0, 1
STATUS_QUALIFIED = 3
CONTACT_FIELDS = ("firstname", "lastname", "emailaddress1", "telephone1", "mobilephone", "jobtitle",
                  "address1_line1", "address1_city", "address1_stateorprovince", "address1_postalcode",
                  "address1_country", "donotemail", "donotbulkemail", "donotphone", "crmsync_marketingscore",
                  "crmsync_interests")  # fmt: skip


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _emulator(request: Request) -> Emulator:
    return request.app.state.emulator


async def _body(request: Request) -> dict[str, object]:
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ControlError(400, f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "the body must be a JSON object")
    return data


def _table(request: Request):  # type: ignore[no-untyped-def]
    table = table_named(request.path_params["table"])
    if table is None:
        raise ControlError(404, f"no table {request.path_params['table']!r}; tables: {sorted(TABLES)}")
    return table


def guarded(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ControlError as error:
            return _json({"error": str(error)}, error.status)
        except DataverseError as error:
            return _json({"error": error.message, "code": error.code}, error.status)

    return endpoint


async def health(request: Request) -> Response:
    return _json({"status": "ok"})


async def environments(request: Request) -> Response:
    emulator = _emulator(request)
    settings = emulator.settings
    base = f"{request.url.scheme}://{request.url.netloc}"
    counts = {logical: rows.live_count() for logical, rows in emulator.env.tables.items()}
    return _json([{
        "name": settings.name, "url": base, "web_api": f"{base}/api/data/v9.2", "tenant": settings.tenant,
        "authority": f"{base}/{settings.tenant}", "client_id": settings.client_id, "seed": settings.seed,
        "records": counts, "version": emulator.env.version,
    }])  # fmt: skip


async def read_record(request: Request) -> Response:
    table = _table(request)
    record = _emulator(request).env.rows(table.logical).find(request.path_params["id"])
    if record is None:
        raise ControlError(404, f"no {table.logical} {request.path_params['id']}")
    return _json(record)


async def list_records(request: Request) -> Response:
    table = _table(request)
    limit = int(request.query_params.get("limit", "100"))
    records = []
    for _, record in _emulator(request).env.rows(table.logical).scan():
        if len(records) >= limit:
            break
        records.append(record)
    return _json(records)


def _stamped(env: Environment, table: Table, record: dict[str, object], when: object) -> dict[str, object]:
    """The record with `modifiedon` set to `when` (None: as written), e.g. as if its transaction
    committed late; its version, which change tracking follows, stays the write's."""
    if when is None:
        return record
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        raise ControlError(400, f"modifiedon must be an ISO 8601 date-time, not {when!r}") from None
    stamped = {**record, "modifiedon": iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))}
    rows = env.rows(table.logical)
    row = rows.row_of(str(record[table.primary_id]))
    assert row is not None  # just written
    env.replace(table.logical, row, stamped)
    return stamped


async def create(request: Request) -> Response:
    table = _table(request)
    body = await _body(request)
    env = _emulator(request).env
    record = create_record(env, table, body.get("fields", {}))
    return _json(_stamped(env, table, record, body.get("modifiedon")), 201)


async def edit(request: Request) -> Response:
    table = _table(request)
    body = await _body(request)
    env = _emulator(request).env
    record = update_record(env, table, request.path_params["id"], body.get("fields", {}))
    return _json(_stamped(env, table, record, body.get("modifiedon")))


async def delete(request: Request) -> Response:
    table = _table(request)
    env = _emulator(request).env
    rows = env.rows(table.logical)
    row = rows.row_of(request.path_params["id"])
    if row is None or rows.get(row) is None:
        raise ControlError(404, f"no {table.logical} {request.path_params['id']}")
    env.remove(table.logical, row)
    return Response(status_code=204)


async def qualify(request: Request) -> Response:
    """Qualifies an open lead: a new contact from it (or the existing `contact_id`), linked both ways."""
    env = _emulator(request).env
    lead_id = request.path_params["id"]
    contact_id = (await _body(request)).get("contact_id")
    lead = env.rows("lead").find(lead_id)
    if lead is None:
        raise ControlError(404, f"no lead {lead_id}")
    if lead["statecode"] != OPEN:
        raise ControlError(400, f"lead {lead_id} is not open (statecode {lead['statecode']})")
    with env.transaction():
        if contact_id is None:
            fields: dict[str, object] = {k: lead.get(k) for k in CONTACT_FIELDS}
            fields["originatingleadid@odata.bind"] = f"/leads({lead_id})"
            if lead.get("_parentaccountid_value"):
                fields["parentcustomerid_account@odata.bind"] = f"/accounts({lead['_parentaccountid_value']})"
            contact_id = create_record(env, TABLES["contact"], fields)["contactid"]
        elif env.rows("contact").find(str(contact_id)) is None:
            raise ControlError(404, f"no contact {contact_id}")
        update_record(env, TABLES["lead"], lead_id, {
            "statecode": QUALIFIED, "statuscode": STATUS_QUALIFIED, "parentcontactid@odata.bind": f"/contacts({contact_id})",
        })  # fmt: skip
    return _json({"leadid": lead_id, "contactid": contact_id, "statecode": QUALIFIED})


async def faults(request: Request) -> Response:
    emulator = _emulator(request)
    now = time.monotonic()
    if request.method == "DELETE":
        emulator.faults.clear()
    elif request.method == "POST":
        _add_fault(emulator, await _body(request), now)
    return _json(emulator.faults.describe(now))


def _add_fault(emulator: Emulator, body: dict[str, object], now: float) -> None:
    kind = str(body.get("kind"))
    if kind == "429":
        emulator.faults.throttle_next += int(body.get("count", 1))  # type: ignore[arg-type]
        emulator.faults.retry_after = int(body.get("retry_after", 2))  # type: ignore[arg-type]
    elif kind == "503":
        emulator.faults.unavailable_until = now + float(body.get("seconds", 5))  # type: ignore[arg-type]
    elif kind == "lock":
        emulator.faults.lock_next += int(body.get("count", 1))  # type: ignore[arg-type]
    elif kind == "throttle":
        emulator.faults.limit = int(body.get("limit", 6000))  # type: ignore[arg-type]
        emulator.faults.window = float(body.get("window_seconds", 300))  # type: ignore[arg-type]
        emulator.faults.enforced = True
        emulator.faults.hits.clear()
    else:
        raise ControlError(400, f"unknown fault kind {kind!r}: 429, 503, lock or throttle")


async def writes(request: Request) -> Response:
    """What API clients wrote (never the control API's own edits); DELETE forgets it."""
    env = _emulator(request).env
    if request.method == "DELETE":
        env.writes.clear()
        return Response(status_code=204)
    return _json(env.writes)


async def expire_tokens(request: Request) -> Response:
    _emulator(request).expire_tokens()
    return Response(status_code=204)


async def expire_change_tokens(request: Request) -> Response:
    _emulator(request).expire_change_tokens()
    return Response(status_code=204)


async def reset(request: Request) -> Response:
    """Records as generated again; the body may choose another dataset (`leads`, `contacts`, `seed`)."""
    body = await _body(request)
    sizes = {k: body[k] for k in ("leads", "contacts", "seed") if body.get(k) is not None}
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ROWS for v in sizes.values()):
        raise ControlError(400, f"leads, contacts and seed are whole numbers from 0 to {MAX_ROWS}")
    _emulator(request).reset(**sizes)
    return Response(status_code=204)


P = "/__emulator"
routes = [
    Route(f"{P}/health", guarded(health), methods=["GET"]),
    Route(f"{P}/environments", guarded(environments), methods=["GET"]),
    Route(f"{P}/tables/{{table}}", guarded(list_records), methods=["GET"]),
    Route(f"{P}/tables/{{table}}", guarded(create), methods=["POST"]),
    Route(f"{P}/tables/{{table}}/{{id}}", guarded(read_record), methods=["GET"]),
    Route(f"{P}/tables/{{table}}/{{id}}", guarded(edit), methods=["PATCH"]),
    Route(f"{P}/tables/{{table}}/{{id}}", guarded(delete), methods=["DELETE"]),
    Route(f"{P}/leads/{{id}}/qualify", guarded(qualify), methods=["POST"]),
    Route(f"{P}/faults", guarded(faults), methods=["GET", "POST", "DELETE"]),
    Route(f"{P}/writes", guarded(writes), methods=["GET", "DELETE"]),
    Route(f"{P}/expire-tokens", guarded(expire_tokens), methods=["POST"]),
    Route(f"{P}/expire-change-tokens", guarded(expire_change_tokens), methods=["POST"]),
    Route(f"{P}/reset", guarded(reset), methods=["POST"]),
]
