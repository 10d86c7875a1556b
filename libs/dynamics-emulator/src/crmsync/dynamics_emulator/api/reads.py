"""Reads of an entity set: one record, pages of a query (`odata.maxpagesize`, `@odata.nextLink`),
and change tracking (`odata.track-changes`, `@odata.deltaLink`, `$deletedEntity`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from crmsync.dynamics_emulator.annotate import wanted as annotations_wanted
from crmsync.dynamics_emulator.dataset import iso
from crmsync.dynamics_emulator.errors import EXPIRED_VERSION_STAMP, DataverseError, invalid, not_found
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.narrow import candidate_rows
from crmsync.dynamics_emulator.query import (
    MAX_PAGE,
    Options,
    decode_token,
    encode_token,
    page_size,
    parse_options,
)
from crmsync.dynamics_emulator.render import context, etag, link, shape
from crmsync.dynamics_emulator.schema import Table
from crmsync.dynamics_emulator.store import Environment

Record = dict[str, object]
MAX_COUNT = 5000  # $count counts at most this many, as in Dataverse


def read_one(env: Environment, call: Call, table: Table, guid: str) -> Reply:
    options = parse_options(table, call.query)
    record = env.rows(table.logical).find(guid)
    if record is None:
        raise not_found(table.logical, guid)
    if call.header("if-none-match") == etag(record):
        return Reply(304)
    body = {"@odata.context": context(call.root, table, options.select, options.expand, "/$entity")}
    annotate = annotations_wanted(call.prefers())
    body.update(shape(env, table, record, options.select, options.expand, annotate=annotate))
    return Reply.json(200, body, {"ETag": etag(record)})


def _sort_key(value: object) -> tuple[bool, object]:
    return (value is not None, value.casefold() if isinstance(value, str) else value)


def _source(env: Environment, table: Table, options: Options, start: int = 0) -> Iterator[tuple[int, Record]]:
    """The records the filter may match from row `start` on: the narrowed rows, else a scan."""
    rows = env.rows(table.logical)
    candidates = candidate_rows(table, rows, options.filter_text, iso(env.data.epoch))
    if candidates is None:
        yield from rows.scan(start)
        return
    for row in candidates:
        record = rows.get(row) if row >= start else None
        if record is not None:
            yield row, record


def _ordered(env: Environment, table: Table, options: Options) -> list[Record]:
    matches = [r for _, r in _source(env, table, options) if options.filter is None or options.filter(r)]
    for key, descending in reversed(options.orderby):
        matches.sort(key=lambda r, k=key: _sort_key(r.get(k)), reverse=descending)  # type: ignore[misc]
    return matches


def _scan_page(
    env: Environment, table: Table, options: Options, start: int, limit: int
) -> tuple[list[Record], int | None]:
    """Up to `limit` matching records from row `start`, and the row to go on from (None: no more)."""
    items: list[Record] = []
    for row, record in _source(env, table, options, start):
        if options.filter is not None and not options.filter(record):
            continue
        if len(items) == limit:
            return items, row
        items.append(record)
    return items, None


def _count(env: Environment, table: Table, options: Options) -> int:
    total = 0
    for _, record in _source(env, table, options):
        if options.filter is None or options.filter(record):
            total += 1
            if total >= MAX_COUNT:
                break
    return total


def _delta_token(version: int) -> str:
    return f"{version}!{datetime.now(UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def _tracked_version(token: str, env: Environment) -> int:
    head = token.partition("!")[0]
    if not head.isdigit() or not env.token_floor <= int(head) <= env.version:
        raise DataverseError(
            400, EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        )  # fmt: skip
    return int(head)


def _follow(call: Call, **state: int | None) -> str:
    query = {k: v for k, v in call.query.items() if k != "$skiptoken"}
    query["$skiptoken"] = encode_token(state)
    return link(call.root, call.path, query)


def _delta_link(call: Call, table: Table, version: int) -> str:
    query = {k: v for k, v in call.query.items() if k == "$select"}
    query["$deltatoken"] = _delta_token(version)
    return link(call.root, table.entity_set, query)


def _page(
    env: Environment, call: Call, table: Table, options: Options, size: int
) -> tuple[list[Record], str | None]:
    """One page of a plain query: its records and the next page's link (None: the last page)."""
    state = decode_token(options.skiptoken)
    remaining = state.get("t", options.top)
    limit = size if remaining is None else min(size, remaining)
    if options.orderby:
        matches = _ordered(env, table, options)
        offset = state.get("o", 0)
        items = matches[offset : offset + limit]
        more = offset + limit < len(matches)
        following = {"o": offset + len(items)}
    else:
        items, next_row = _scan_page(env, table, options, state.get("r", 0), limit)
        more = next_row is not None
        following = {"r": next_row}
    left = None if remaining is None else remaining - len(items)
    if not more or left == 0:
        return items, None
    return items, _follow(call, **following, t=left, v=state.get("v"))


def _delta(env: Environment, call: Call, table: Table, options: Options, size: int) -> Reply:
    since = _tracked_version(options.deltatoken or "", env)
    state = decode_token(options.skiptoken)
    upto = state.get("v", env.version)
    changes = env.changes_since(table.logical, since, upto)
    offset = state.get("o", 0)
    deleted_context = f"{call.root}/$metadata#{table.entity_set}/$deletedEntity"
    value: list[Record] = []
    for _, _, record, guid in changes[offset : offset + size]:
        if record is None:
            value.append({"@odata.context": deleted_context, "id": guid, "reason": "deleted"})
        else:
            value.append(
                shape(env, table, record, options.select, annotate=annotations_wanted(call.prefers()))
            )
    body: Record = {
        "@odata.context": context(call.root, table, options.select, suffix="/$delta"),
        "value": value,
    }
    if offset + size < len(changes):
        body["@odata.nextLink"] = _follow(call, o=offset + size, v=upto)
    else:
        body["@odata.deltaLink"] = _delta_link(call, table, upto)
    return Reply.json(200, body, {"Preference-Applied": "odata.track-changes"})


def read_many(env: Environment, call: Call, table: Table) -> Reply:
    options = parse_options(table, call.query)
    prefers = call.prefers()
    asked = page_size(prefers)
    size = asked or MAX_PAGE
    tracking = "odata.track-changes" in prefers or options.deltatoken is not None
    if tracking and (options.filter or options.orderby or options.expand or options.top is not None):
        raise invalid(
            "Change tracking supports only $select: $filter, $orderby, $expand and $top are not allowed."
        )
    if options.deltatoken is not None:
        return _delta(env, call, table, options, size)
    applied = [f"odata.maxpagesize={asked}"] if asked else []
    state = decode_token(options.skiptoken)
    snapshot = state.get("v") if state else (env.version if tracking else None)
    if tracking:
        applied.insert(0, "odata.track-changes")
        options = Options(**{**options.__dict__, "skiptoken": encode_token({**state, "v": snapshot})})
    items, next_link = _page(env, call, table, options, size)
    body: Record = {"@odata.context": context(call.root, table, options.select, options.expand)}
    if options.count:
        body["@odata.count"] = _count(env, table, options)
    annotate = annotations_wanted(prefers)
    if annotate:
        applied.append(f'odata.include-annotations="{prefers["odata.include-annotations"]}"')
    body["value"] = [shape(env, table, r, options.select, options.expand, annotate=annotate) for r in items]
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    elif tracking and snapshot is not None:
        body["@odata.deltaLink"] = _delta_link(call, table, snapshot)
    return Reply.json(200, body, {"Preference-Applied": ",".join(applied)} if applied else None)
