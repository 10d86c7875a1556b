"""Building SOQL safely and keeping request URIs under Salesforce's limit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import httpx

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def check_name(name: str) -> str:
    """Returns the object or field name, refusing anything that could change the query."""
    if not _NAME.match(name):
        raise ValueError(f"not a Salesforce object or field name: {name!r}")
    return name


def quote(value: str) -> str:
    """Returns a SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def datetime_literal(value: datetime) -> str:
    """Returns a SOQL dateTime literal in UTC (naive values are taken as UTC).

    Whole seconds only: SOQL literals carry no fraction, so `>=` on a truncated
    instant re-reads at most one second of records, which is harmless.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_fields(fields: Iterable[str], *, first: Sequence[str] = ()) -> list[str]:
    """Returns `first` then `fields`, each once (case-insensitive, as SOQL is), names checked."""
    seen: set[str] = set()
    out: list[str] = []
    for name in (*first, *fields):
        key = check_name(name).lower()
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def select(
    fields: Sequence[str],
    object_name: str,
    *,
    where: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> str:
    """Returns a SELECT statement."""
    soql = f"SELECT {', '.join(fields)} FROM {check_name(object_name)}"
    if where:
        soql += f" WHERE {where}"
    if order_by:
        soql += f" ORDER BY {order_by}"
    if limit is not None:
        soql += f" LIMIT {int(limit)}"
    return soql


def id_in(ids: Sequence[str]) -> str:
    """Returns an `Id IN (...)` condition."""
    return f"Id IN ({','.join(quote(i) for i in ids)})"


def query_url(base: str, soql: str) -> httpx.URL:
    """Returns the URL of a REST query (base ends in /query or /queryAll)."""
    return httpx.URL(base, params={"q": soql})


def url_bytes(url: httpx.URL) -> int:
    """Returns the length of the URL on the wire (scheme and host included, to be safe)."""
    return len(str(url).encode())


def _encoded_len(fragment: str) -> int:
    # The query-string cost of a fragment as httpx encodes it ("q=" taken off).
    return len(str(httpx.QueryParams({"q": fragment}))) - 2


def split_fields(
    fields: Sequence[str],
    *,
    fits: Callable[[Sequence[str]], bool],
    keep: Sequence[str] = ("Id",),
) -> list[list[str]]:
    """Returns groups of fields, each starting with `keep`, each passing `fits`.

    Every field lands in exactly one group (besides the `keep` fields, which are in
    all of them so the groups can be joined back by Id).
    """
    keep_lower = {k.lower() for k in keep}
    rest = [f for f in fields if f.lower() not in keep_lower]
    groups: list[list[str]] = []
    current = list(keep)
    for name in rest:
        if fits([*current, name]):
            current.append(name)
            continue
        if len(current) == len(keep):
            raise ValueError(f"field {name!r} alone makes the query too long")
        groups.append(current)
        current = [*keep, name]
        if not fits(current):
            raise ValueError(f"field {name!r} alone makes the query too long")
    groups.append(current)
    return groups


def chunk_ids(ids: Sequence[str], *, base_bytes: int, limit: int) -> list[list[str]]:
    """Returns chunks of ids whose `Id IN (...)` list fits in `limit - base_bytes` bytes.

    `base_bytes` is the URL length of the same query with an empty list.
    """
    room = limit - base_bytes
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for record_id in ids:
        cost = _encoded_len(quote(record_id) + ",")
        if current and used + cost > room:
            chunks.append(current)
            current, used = [], 0
        if cost > room:
            raise ValueError("the query is too long even for a single id")
        current.append(record_id)
        used += cost
    if current:
        chunks.append(current)
    return chunks
