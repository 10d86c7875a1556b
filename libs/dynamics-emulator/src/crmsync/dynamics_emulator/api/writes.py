"""Writes of records: POST create, PATCH update or upsert (If-Match / If-None-Match), DELETE,
and the collection-bound CreateMultiple / UpdateMultiple / UpsertMultiple actions (all or nothing)."""

from __future__ import annotations

from crmsync.dynamics_emulator.annotate import wanted as annotations_wanted
from crmsync.dynamics_emulator.errors import DUPLICATE, VERSION_MISMATCH, DataverseError, invalid, not_found
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.ids import is_guid
from crmsync.dynamics_emulator.payload import changed_record, new_record, values
from crmsync.dynamics_emulator.query import select_keys
from crmsync.dynamics_emulator.render import context, entity_url, etag, shape
from crmsync.dynamics_emulator.schema import Table
from crmsync.dynamics_emulator.store import Environment

Record = dict[str, object]


def create_record(env: Environment, table: Table, body: object, guid: str | None = None) -> Record:
    changes = values(env, table, body, creating=True)
    wanted = str(changes.get(table.primary_id) or guid or "")
    if wanted and env.rows(table.logical).find(wanted) is not None:
        raise DataverseError(412, DUPLICATE, "A record with matching key values already exists.")
    record = new_record(env, table, changes, guid)
    env.insert(table.logical, record)
    return record


def update_record(env: Environment, table: Table, guid: str, body: object) -> Record:
    rows = env.rows(table.logical)
    row = rows.row_of(guid)
    record = None if row is None else rows.get(row)
    if row is None or record is None:
        raise not_found(table.logical, guid)
    changes = values(env, table, body, creating=False)
    changes.pop(table.primary_id, None)
    updated = changed_record(env, record, changes)
    env.replace(table.logical, row, updated)
    return updated


def _written(call: Call, env: Environment, table: Table, record: Record, status: int) -> Reply:
    url = entity_url(call.root, table, str(record[table.primary_id]))
    headers = {"OData-EntityId": url, "ETag": etag(record)}
    if call.prefers().get("return") == "representation":
        select = select_keys(table, call.query.get("$select"))
        body = {"@odata.context": context(call.root, table, select, suffix="/$entity")}
        body.update(shape(env, table, record, select, annotate=annotations_wanted(call.prefers())))
        headers["Preference-Applied"] = "return=representation"
        return Reply.json(201 if status == 204 and call.method == "POST" else 200, body, headers)
    return Reply(204, b"", headers)


def create(env: Environment, call: Call, table: Table) -> Reply:
    record = create_record(env, table, call.json())
    return _written(call, env, table, record, 204)


def patch(env: Environment, call: Call, table: Table, guid: str) -> Reply:
    record = env.rows(table.logical).find(guid)
    if_match, if_none_match = call.header("if-match"), call.header("if-none-match")
    if record is None:
        if if_match is not None:  # If-Match: * refuses to create
            raise not_found(table.logical, guid)
        created = create_record(env, table, call.json(), guid)
        return _written(call, env, table, created, 204)
    if if_none_match == "*":  # If-None-Match: * refuses to update
        raise DataverseError(412, DUPLICATE, "A record with matching key values already exists.")
    if if_match not in (None, "*") and if_match != etag(record):
        raise DataverseError(
            412,
            VERSION_MISMATCH,
            "The version of the existing record doesn't match the RowVersion property provided.",
        )
    updated = update_record(env, table, guid, call.json())
    return _written(call, env, table, updated, 204)


def delete(env: Environment, call: Call, table: Table, guid: str) -> Reply:
    rows = env.rows(table.logical)
    row = rows.row_of(guid)
    if row is None or rows.get(row) is None:
        raise not_found(table.logical, guid)
    env.remove(table.logical, row)
    return Reply(204)


def _targets(call: Call) -> list[object]:
    body = call.json()
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets:
        raise invalid("The parameter 'Targets' is required and must be a non-empty collection.")
    return targets


def _target_id(table: Table, target: object) -> str:
    guid = target.get(table.primary_id) if isinstance(target, dict) else None
    if not isinstance(guid, str) or not is_guid(guid):
        raise invalid(f"Each target needs its primary key '{table.primary_id}'.")
    return guid


def create_multiple(env: Environment, call: Call, table: Table) -> Reply:
    with env.transaction():
        ids = [str(create_record(env, table, t)[table.primary_id]) for t in _targets(call)]
    context_url = f"{call.root}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
    return Reply.json(200, {"@odata.context": context_url, "Ids": ids})


def update_multiple(env: Environment, call: Call, table: Table) -> Reply:
    with env.transaction():
        for target in _targets(call):
            update_record(env, table, _target_id(table, target), target)
    return Reply(204)


def upsert_multiple(env: Environment, call: Call, table: Table) -> Reply:
    """Upserts by primary key (alternate keys are not emulated)."""
    results = []
    with env.transaction():
        for target in _targets(call):
            guid = _target_id(table, target)
            exists = env.rows(table.logical).find(guid) is not None
            if exists:
                update_record(env, table, guid, target)
            else:
                create_record(env, table, target, guid)
            results.append({"RecordCreated": not exists, "Id": guid.lower()})
    context_url = f"{call.root}/$metadata#Microsoft.Dynamics.CRM.UpsertMultipleResponse"
    return Reply.json(200, {"@odata.context": context_url, "Results": results})
