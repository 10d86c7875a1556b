"""A SOQL query run over an org's tables: parsed, checked, filtered, ordered, cut, its subqueries
joined, and left as a cursor to page through."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from crmsync.emulator import soql
from crmsync.emulator.errors import ApiError
from crmsync.emulator.evaluate import matching, ordered
from crmsync.emulator.render import RenderPage, Tables, page_renderer
from crmsync.emulator.schema import ObjectDef, child_relationship, find_object
from crmsync.emulator.table import Cursor, Table


def _parse(text: str) -> tuple[soql.Query, ObjectDef]:
    try:
        query = soql.parse(text)
    except soql.SoqlError as exc:
        raise ApiError(400, exc.error_code, exc.message) from exc
    obj = find_object(query.sobject)
    if obj is None:
        raise ApiError(
            400,
            "INVALID_TYPE",
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, be "
            "sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for "
            "the appropriate names.",
        )
    _no_duplicates(query.fields)
    return query, obj


def _no_duplicates(fields: tuple[soql.FieldRef, ...]) -> None:
    seen = set()
    for ref in fields:
        key = ref.text.lower()
        if key in seen:
            raise ApiError(400, "MALFORMED_QUERY", f"duplicate field selected: {ref.text}")
        seen.add(key)


Children = Callable[[list[int]], list[dict[str, Any] | None]]


def _children(
    tables: Tables, parent: Table, sub: soql.Query, version: str, include_deleted: bool
) -> tuple[str, Children]:
    """Returns (relationship name, parent rows → each one's child records, or None when it has none)."""
    relationship = child_relationship(parent.obj.name, sub.sobject)
    if relationship is None:
        raise ApiError(
            400,
            "INVALID_TYPE",
            f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. If you are attempting "
            "to use a custom relationship, be sure to append the '__r' after the custom relationship name. "
            "Please reference your WSDL or the describe call for the appropriate names.",
        )
    _no_duplicates(sub.fields)
    child = tables[relationship.child]
    render, _ = page_renderer(tables, child, sub.fields, version)
    rows = ordered(tables, child, matching(tables, child, sub.where, include_deleted), sub.order_by)
    link = child.cols[relationship.field]
    index: dict[int, list[int]] = {}
    first, last = sub.offset or 0, None if sub.limit is None else (sub.offset or 0) + sub.limit

    def children(parent_rows: list[int]) -> list[dict[str, Any] | None]:
        if not index and len(rows):  # the child rows by parent, built the first time a page needs them
            grouped: dict[int, list[int]] = defaultdict(list)
            for row, parent_row in zip(rows, link.take(rows), strict=True):
                if parent_row is not None:
                    grouped[parent_row].append(row)
            index.update(grouped)
        out: list[dict[str, Any] | None] = []
        for parent_row in parent_rows:
            kids = index.get(parent_row, [])[first:last]
            out.append({"totalSize": len(kids), "done": True, "records": render(kids)} if kids else None)
        return out

    return relationship.name, children


def _keys_before(fields: tuple[soql.FieldRef, ...], position: int) -> int:
    """Returns how many record keys the first `position` fields make (parent fields share one)."""
    return len(
        {
            ref.path[0].lower() if len(ref.path) == 1 else ("parent", ref.path[0].lower())
            for ref in fields[:position]
        }
    )


def _with_children(render: RenderPage, joined: list[tuple[int, str, Children]]) -> RenderPage:
    """Returns render with each subquery's key where it stands in the SELECT list."""

    def render_page(rows: list[int]) -> list[dict[str, Any]]:
        records = render(rows)
        columns = [(at, key, children(rows)) for at, key, children in joined]
        out = []
        for i, record in enumerate(records):
            items = list(record.items())
            for at, key, values in reversed(columns):
                items.insert(1 + at, (key, values[i]))  # after "attributes"
            out.append(dict(items))
        return out

    return render_page


def run_query(
    tables: Tables, text: str, *, include_deleted: bool, version: str, csv: bool = False
) -> tuple[Cursor, int | None]:
    """Returns the cursor of a query and, for COUNT(), the count."""
    query, obj = _parse(text)
    table = tables[obj.name]
    render, columns = page_renderer(tables, table, query.fields, version, csv=csv)
    if query.subqueries:
        if csv:
            raise ApiError(400, "MALFORMED_QUERY", "Bulk queries do not support parent-to-child subqueries")
        joined = [
            (
                _keys_before(query.fields, sub.position),
                *_children(tables, table, sub, version, include_deleted),
            )
            for sub in query.subqueries
        ]
        render = _with_children(render, joined)
    rows = matching(tables, table, query.where, include_deleted)
    matched = ordered(tables, table, rows, query.order_by)
    if query.offset:
        matched = matched[query.offset :]
    if query.limit is not None:
        matched = matched[: query.limit]
    cursor = Cursor(table, matched, render, columns)
    return cursor, (len(matched) if query.count else None)
