"""The Web API's one dispatcher: a `Call` to its handler by path and method, errors as Dataverse's bodies.

HTTP requests and the operations of a `$batch` go through the same `dispatch`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from crmsync.dynamics_emulator.api import functions, metadata, reads, writes
from crmsync.dynamics_emulator.errors import DataverseError, invalid
from crmsync.dynamics_emulator.faults import Faults
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.ids import is_guid
from crmsync.dynamics_emulator.payload import table_of
from crmsync.dynamics_emulator.schema import TABLES, Table
from crmsync.dynamics_emulator.store import Environment

ACTION = re.compile(
    r"^(?P<set>\w+)/Microsoft\.Dynamics\.CRM\.(?P<action>CreateMultiple|UpdateMultiple|UpsertMultiple)$"
)
WRITES = frozenset({"POST", "PATCH", "DELETE"})
RECORD = re.compile(r"^(?P<set>\w+)\((?P<key>[^)]*)\)$")
COLLECTION = re.compile(r"^(?P<set>\w+)$")
ACTIONS = {
    "CreateMultiple": writes.create_multiple,
    "UpdateMultiple": writes.update_multiple,
    "UpsertMultiple": writes.upsert_multiple,
}


def _not_allowed(call: Call) -> DataverseError:
    return invalid(
        f"The HTTP method '{call.method}' is not allowed for the resource '{call.path}'.", status=405
    )


def _key(table: Table, key: str) -> str:
    key = key.strip()
    name, sep, value = key.partition("=")
    if sep and name == table.primary_id:
        key = value
    if not is_guid(key):
        raise invalid(
            f"The key '{key}' is not a valid key of '{table.logical}': alternate keys are not defined."
        )
    return key.lower()


def _service_document(call: Call) -> Reply:
    value = [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in TABLES.values()]
    return Reply.json(200, {"@odata.context": f"{call.root}/$metadata", "value": value})


def _who_am_i(env: Environment, call: Call) -> Reply:
    return Reply.json(200, {
        "@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": env.data.ids("businessunit").guid(0),
        "UserId": env.data.ref("systemuser", 0),
        "OrganizationId": env.data.ids("organization").guid(0),
    })  # fmt: skip


def _route(env: Environment, call: Call) -> Reply:
    if call.path in ("", "WhoAmI", "WhoAmI()") and call.method == "GET":
        return _service_document(call) if call.path == "" else _who_am_i(env, call)
    answered = metadata.handle(call) or functions.handle(env, call)
    if answered is not None:
        return answered
    if match := ACTION.match(call.path):
        if call.method != "POST":
            raise _not_allowed(call)
        return ACTIONS[match["action"]](env, call, table_of(match["set"]))
    if match := RECORD.match(call.path):
        table = table_of(match["set"])
        guid = _key(table, match["key"])
        handlers = {"GET": reads.read_one, "PATCH": writes.patch, "DELETE": writes.delete}
        if call.method not in handlers:
            raise _not_allowed(call)
        return handlers[call.method](env, call, table, guid)  # type: ignore[operator]
    if match := COLLECTION.match(call.path):
        table = table_of(match["set"])
        if call.method == "GET":
            return reads.read_many(env, call, table)
        if call.method == "POST":
            return writes.create(env, call, table)
        raise _not_allowed(call)
    segment = call.path.split("/")[0].split("(")[0]
    raise invalid(f"Resource not found for the segment '{segment}'.", status=404)


def _log_write(env: Environment, call: Call, reply: Reply) -> None:
    """Notes a client's write (method, table, id, fields, answer) in the environment's writes log."""
    match = ACTION.match(call.path) or RECORD.match(call.path) or COLLECTION.match(call.path)
    try:
        body = call.json() if call.body else None
    except DataverseError:  # not JSON: answered 400 already, logged without fields
        body = None
    entity = reply.headers.get("OData-EntityId", "")
    env.writes.append({
        "method": call.method,
        "path": call.path,
        "table": match["set"] if match else None,
        "id": entity.rpartition("(")[2].rstrip(")") or (match.groupdict().get("key") if match else None),
        "fields": body if isinstance(body, dict) else None,
        "status": reply.status,
        "success": reply.status < 400,
        "rolled_back": False,
        "time": datetime.now(UTC).isoformat(),
    })  # fmt: skip


def dispatch(env: Environment, call: Call, *, faults: Faults | None = None) -> Reply:
    """Answers one Web API call; a refusal is answered with its error body, never raised.

    `faults`: a write (alone or in a `$batch`) may meet a lock fault first."""
    try:
        if faults is not None and call.method in WRITES:
            faults.check_write()
        reply = _route(env, call)
    except DataverseError as error:
        reply = Reply.json(error.status, error.body(), error.headers)
    reply.headers.setdefault("OData-Version", "4.0")
    if call.method in WRITES:
        _log_write(env, call, reply)
    return reply
