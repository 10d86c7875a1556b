"""The OData system query options of a read: $select, $filter, $orderby, $top, $count, $expand, paging tokens."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from crmsync.dynamics_emulator.errors import invalid, no_property
from crmsync.dynamics_emulator.odata_filter import Predicate, Resolver, compile_filter
from crmsync.dynamics_emulator.schema import TABLES, Navigation, Table

SUPPORTED = frozenset(
    {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken", "$deltatoken"}
)
UNSUPPORTED = frozenset({"sql", "fetchXml", "savedQuery", "userQuery"})  # Dataverse has them; not emulated
MAX_PAGE = 5000


@dataclass(frozen=True)
class Expand:
    navigation: Navigation
    target: Table
    select: tuple[str, ...] | None


@dataclass(frozen=True)
class Options:
    select: tuple[str, ...] | None  # record keys, the primary id first
    filter: Predicate | None
    filter_text: str | None
    orderby: tuple[tuple[str, bool], ...]  # (record key, descending)
    top: int | None
    count: bool
    expand: tuple[Expand, ...]
    skiptoken: str | None
    deltatoken: str | None


def split_top(text: str) -> list[str]:
    """Splits on commas outside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def resolver(table: Table) -> Resolver:
    def resolve(name: str) -> tuple[str, str]:
        attribute = table.by_name.get(name)
        if attribute is None:
            raise no_property(name, table.logical)
        return attribute.field, attribute.edm

    return resolve


def select_keys(table: Table, text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    keys = [table.primary_id]
    for name in split_top(text):
        attribute = table.by_name.get(name)
        if attribute is None:
            raise no_property(name, table.logical)
        if attribute.field not in keys:
            keys.append(attribute.field)
    return tuple(keys)


def _orderby(table: Table, text: str | None) -> tuple[tuple[str, bool], ...]:
    out = []
    for part in split_top(text or ""):
        name, _, direction = part.partition(" ")
        direction = direction.strip().lower()
        if direction not in ("", "asc", "desc"):
            raise invalid(f"Syntax error in $orderby: '{part}'.")
        key, _ = resolver(table)(name.strip())
        out.append((key, direction == "desc"))
    return tuple(out)


def _expand(table: Table, text: str | None) -> tuple[Expand, ...]:
    out = []
    for part in split_top(text or ""):
        name, _, inner = part.partition("(")
        navigation = table.navigation(name.strip())
        if navigation is None:
            raise no_property(name.strip(), table.logical)
        target = TABLES[navigation.target]
        select = None
        for option in split_top(inner.rstrip(")")) if inner else []:
            key, _, value = option.partition("=")
            if key.strip() != "$select":
                raise invalid(f"The query option '{key.strip()}' is not supported inside $expand here.")
            select = select_keys(target, value)
        out.append(Expand(navigation, target, select))
    return tuple(out)


def _top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise invalid(
            f"Invalid value '{text}' for $top query option found. The $top query option requires a non-negative integer value."
        )
    return int(text)


def parse_options(table: Table, query: dict[str, str]) -> Options:
    for name in query:
        if (name.startswith("$") and name not in SUPPORTED) or name in UNSUPPORTED:
            raise invalid(f"The query parameter {name} is not supported")
    text = query.get("$filter")
    return Options(
        select=select_keys(table, query.get("$select")),
        filter=compile_filter(text, resolver(table)) if text else None,
        filter_text=text,
        orderby=_orderby(table, query.get("$orderby")),
        top=_top(query.get("$top")),
        count=query.get("$count", "false").lower() == "true",
        expand=_expand(table, query.get("$expand")),
        skiptoken=query.get("$skiptoken"),
        deltatoken=query.get("$deltatoken"),
    )


def page_size(prefers: dict[str, str]) -> int | None:
    """The `odata.maxpagesize` asked for, held to Dataverse's 5,000 (None: not asked)."""
    value = prefers.get("odata.maxpagesize")
    if value is None or not value.isdigit() or int(value) < 1:
        return None
    return min(int(value), MAX_PAGE)


def encode_token(state: dict[str, int | None]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def decode_token(token: str | None) -> dict[str, int]:
    if not token:
        return {}
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise invalid("The $skiptoken is not valid.") from None
    if not isinstance(state, dict):
        raise invalid("The $skiptoken is not valid.")
    return state
