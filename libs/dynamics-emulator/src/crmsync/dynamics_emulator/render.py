"""Records as the Web API answers them: `@odata.etag`, the selected columns, expanded lookups, context URLs."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from crmsync.dynamics_emulator.annotate import annotations
from crmsync.dynamics_emulator.query import Expand
from crmsync.dynamics_emulator.schema import Table
from crmsync.dynamics_emulator.store import Environment

Record = dict[str, object]


def etag(record: Record) -> str:
    return f'W/"{record["versionnumber"]}"'


def columns(table: Table, select: tuple[str, ...] | None) -> tuple[str, ...]:
    return select if select is not None else tuple(a.field for a in table.attributes)


def shape(
    env: Environment,
    table: Table,
    record: Record,
    select: tuple[str, ...] | None,
    expand: tuple[Expand, ...] = (),
    *,
    annotate: bool = False,
) -> Record:
    out: Record = {"@odata.etag": etag(record)}
    for key in columns(table, select):
        value = out[key] = record.get(key)
        if annotate:
            out.update(annotations(env, table, key, value))
    for item in expand:
        ref = record.get(f"_{item.navigation.attribute}_value")
        target = env.rows(item.target.logical).find(str(ref)) if ref else None
        out[item.navigation.name] = (
            None if target is None else shape(env, item.target, target, item.select, annotate=annotate)
        )
    return out


def _projection(select: tuple[str, ...] | None, expand: tuple[Expand, ...]) -> str:
    names = list(select or ())
    for item in expand:
        names.append(f"{item.navigation.name}({','.join(item.select or ())})")
    return f"({','.join(names)})" if names else ""


def context(
    root: str, table: Table, select: tuple[str, ...] | None, expand: tuple[Expand, ...] = (), suffix: str = ""
) -> str:
    return f"{root}/$metadata#{table.entity_set}{_projection(select, expand)}{suffix}"


def entity_url(root: str, table: Table, guid: str) -> str:
    return f"{root}/{table.entity_set}({guid})"


def link(root: str, path: str, query: dict[str, str]) -> str:
    """An absolute URL of `path` with the query (OData's `$` and punctuation left readable)."""
    if not query:
        return f"{root}/{path}"
    encoded = urlencode(query, quote_via=quote, safe="$,()'=:")
    return f"{root}/{path}?{encoded}"
