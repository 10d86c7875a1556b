"""Records in Salesforce's JSON (and Bulk CSV) shapes: field names resolved, values fetched a page at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from crmsync.emulator import ids, soql
from crmsync.emulator.clock import format_datetime
from crmsync.emulator.columns import Column
from crmsync.emulator.errors import ApiError
from crmsync.emulator.schema import FieldDef
from crmsync.emulator.table import Fetch, Table

Tables = dict[str, Table]
RenderPage = Callable[[list[int]], list[dict[str, Any]]]


def resolve(table: Table, ref: soql.FieldRef) -> FieldDef:
    f = table.obj.field(ref.path[0])
    if f is None:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"No such column '{ref.path[0]}' on entity '{table.obj.name}'. If you are attempting to use a custom "
            "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
            "describe call for the appropriate names.",
        )
    return f


def resolve_parent(tables: Tables, table: Table, ref: soql.FieldRef) -> tuple[FieldDef, Table, FieldDef]:
    link = table.obj.relationship(ref.path[0])
    if link is None:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Didn't understand relationship '{ref.path[0]}' in field path. If you are attempting to use a custom "
            "relationship, be sure to append the '__r' after the custom relationship name.",
        )
    parent_table = tables[link.reference_to[0]]
    return link, parent_table, resolve(parent_table, soql.FieldRef(ref.path[1:]))


def _address(table: Table, f: FieldDef) -> Fetch:
    parts = [(key, table.cols[fname]) for key, fname in f.compound_of]

    def address(rows: list[int]) -> list[Any]:
        columns = [(key, col.take(rows)) for key, col in parts]
        out: list[Any] = []
        for i in range(len(rows)):
            values = {key: values[i] for key, values in columns}
            if all(v is None for v in values.values()):
                out.append(None)
            else:
                out.append({**values, "geocodeAccuracy": None, "latitude": None, "longitude": None})
        return out

    return address


def fetcher(tables: Tables, table: Table, f: FieldDef, *, csv: bool = False) -> Fetch:
    """Returns a function rows → the field's JSON (or CSV) values for those rows."""
    name = f.name
    if f.type == "address":
        return _address(table, f)
    if f.type == "id":
        prefix, tag = table.obj.key_prefix, table.tag
        return lambda rows: [ids.make_id(prefix, tag, r) for r in rows]
    if f.type == "reference":
        target = tables[f.reference_to[0]]
        prefix, tag, col = target.obj.key_prefix, target.tag, table.cols[name]
        return lambda rows: [None if v is None else ids.make_id(prefix, tag, v) for v in col.take(rows)]
    if f.type == "datetime":
        col = table.cols[name]
        if csv:
            return lambda rows: [None if v is None else format_datetime(v)[:-5] + "Z" for v in col.take(rows)]
        return lambda rows: [None if v is None else format_datetime(v) for v in col.take(rows)]
    if name == "Name" and not f.createable and "FirstName" in table.cols:
        first, last = table.cols["FirstName"], table.cols["LastName"]
        return lambda rows: [
            f"{a} {b}" if a else b for a, b in zip(first.take(rows), last.take(rows), strict=True)
        ]
    if name in table.cols and name != "IsDeleted":
        return table.cols[name].take
    return lambda rows: [table.raw(r, name) for r in rows]


def page_renderer(
    tables: Tables, table: Table, refs: Iterable[soql.FieldRef], version: str, *, csv: bool = False
) -> tuple[RenderPage, list[tuple[str, Fetch]]]:
    """Returns (rows → records in the REST shape, [(CSV column, rows → values)]) for selected fields."""
    keys: list[str] = []
    fetches: list[Fetch] = []
    columns: list[tuple[str, Fetch]] = []
    parents: dict[str, list[tuple[str, Fetch]]] = {}
    for ref in refs:
        if len(ref.path) == 1:
            f = resolve(table, ref)
            fetch = fetcher(tables, table, f, csv=csv)
            keys.append(f.name)
            fetches.append(fetch)
            columns.append((f.name, fetch))
            continue
        link, parent_table, parent_field = resolve_parent(tables, table, ref)
        fetch = fetcher(tables, parent_table, parent_field, csv=csv)
        ref_col = table.cols[link.name]
        relationship = link.relationship_name or ""
        columns.append((f"{relationship}.{parent_field.name}", _through(ref_col, fetch)))
        if relationship not in parents:
            parents[relationship] = []
            keys.append(relationship)
            fetches.append(_nested(table, link, parent_table, parents[relationship], version))
        parents[relationship].append((parent_field.name, fetch))
    return _records(table, keys, fetches, version), columns


def _records(table: Table, keys: list[str], fetches: list[Fetch], version: str) -> RenderPage:
    obj_name = table.obj.name
    url = f"/services/data/v{version}/sobjects/{obj_name}/"
    prefix, tag = table.obj.key_prefix, table.tag
    all_keys = ["attributes", *keys]
    id_at = keys.index("Id") if "Id" in keys else -1

    def render_page(rows: list[int]) -> list[dict[str, Any]]:
        record_ids = [ids.make_id(prefix, tag, r) for r in rows]
        attributes = [{"type": obj_name, "url": url + i} for i in record_ids]
        values = [
            attributes,
            *(record_ids if n == id_at else fetch(rows) for n, fetch in enumerate(fetches)),
        ]
        return [dict(zip(all_keys, record, strict=True)) for record in zip(*values, strict=True)]

    return render_page


def _nested(
    table: Table, link: FieldDef, parent_table: Table, fields: list[tuple[str, Fetch]], version: str
) -> Fetch:
    """Returns rows → the parent records ({"attributes", fields…} or None) through a reference."""
    ref_col = table.cols[link.name]
    ptype = parent_table.obj.name
    url = f"/services/data/v{version}/sobjects/{ptype}/"
    prefix, tag = parent_table.obj.key_prefix, parent_table.tag

    def nested(rows: list[int]) -> list[Any]:
        parent_rows = ref_col.take(rows)
        present = [p for p in parent_rows if p is not None]
        keys = ["attributes", *(name for name, _ in fields)]
        values = [[{"type": ptype, "url": url + ids.make_id(prefix, tag, p)} for p in present]]
        values += [fetch(present) for _, fetch in fields]
        records = iter([dict(zip(keys, record, strict=True)) for record in zip(*values, strict=True)])
        return [None if p is None else next(records) for p in parent_rows]

    return nested


def _through(ref_col: Column, fetch: Fetch) -> Fetch:
    def through(rows: list[int]) -> list[Any]:
        parent_rows = ref_col.take(rows)
        found = iter(fetch([p for p in parent_rows if p is not None]))
        return [None if p is None else next(found) for p in parent_rows]

    return through


def full_record(
    tables: Tables, table: Table, row: int, version: str, fields: Iterable[str] | None = None
) -> dict[str, Any]:
    names = list(fields) if fields else list(table.obj.fields)
    render_page, _ = page_renderer(tables, table, [soql.FieldRef((n,)) for n in names], version)
    return render_page([row])[0]
