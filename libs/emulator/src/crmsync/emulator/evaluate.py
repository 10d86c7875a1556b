"""SOQL conditions and ordering evaluated over an org's tables: which rows match, in which order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from crmsync.emulator import dateliterals, ids, soql
from crmsync.emulator.clock import now_ms
from crmsync.emulator.errors import ApiError
from crmsync.emulator.render import Tables, resolve, resolve_parent
from crmsync.emulator.schema import NUMBER_TYPES, STRING_TYPES, FieldDef
from crmsync.emulator.table import DELETED_REACH_MS, Table

Predicate = Callable[[int], bool]


@dataclass(frozen=True)
class Span:
    """What a relative date literal stands for: stored values from `start` (in) to `end` (out)."""

    start: Any
    end: Any

    def holds(self, op: str, value: Any) -> bool:
        if op == "=":
            return self.start <= value < self.end
        if op == "!=":
            return not self.start <= value < self.end
        if op == "<":
            return value < self.start
        if op == "<=":
            return value < self.end
        if op == ">":
            return value >= self.end
        return value >= self.start


def _span(f: FieldDef, lit: soql.Literal) -> Span:
    if f.type not in ("date", "datetime"):
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"value of filter criterion for field '{f.name}' must be of type "
            f"{'string' if f.type in STRING_TYPES else f.type} and should not be a date literal",
        )
    name, n = lit.value
    start, end = dateliterals.date_range(name, n, dt.datetime.fromtimestamp(now_ms() / 1000, dt.UTC).date())
    if f.type == "date":
        return Span(start.isoformat(), end.isoformat())
    midnight = dt.time(tzinfo=dt.UTC)
    return Span(
        int(dt.datetime.combine(start, midnight).timestamp() * 1000),
        int(dt.datetime.combine(end, midnight).timestamp() * 1000),
    )


RowFilter = Callable[[list[int] | range], list[int]]


def _is_text(f: FieldDef) -> bool:
    return f.type in STRING_TYPES and f.type not in ("id", "reference")


def raw_getter(
    tables: Tables, table: Table, ref: soql.FieldRef
) -> tuple[FieldDef, Callable[[int], Any], Table]:
    """Returns (field, row → stored value, the table the field belongs to)."""
    if len(ref.path) == 1:
        f = resolve(table, ref)
        name = f.name
        if f.type == "address":
            raise ApiError(400, "INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call")
        if name in table.cols and name != "IsDeleted":
            col = table.cols[name]
            return f, col.__getitem__, table
        return f, lambda row: table.raw(row, name), table
    link, parent_table, pf = resolve_parent(tables, table, ref)
    if pf.type == "address":
        raise ApiError(400, "INVALID_FIELD", f"field '{pf.name}' can not be filtered in a query call")
    ref_col = table.cols[link.name]
    pname = pf.name
    return (
        pf,
        lambda row: None if (p := ref_col[row]) is None else parent_table.raw(p, pname),
        parent_table,
    )


def literal(tables: Tables, f: FieldDef, lit: soql.Literal, owner: Table) -> Any:
    """Returns a literal in the field's stored form, refusing mismatched types as Salesforce does."""
    if lit.kind == "null":
        return None
    if lit.kind == "dateliteral":
        return _span(f, lit)
    kinds = {"datetime": "datetime", "date": "date", "boolean": "boolean"}
    expected = kinds.get(f.type, "number" if f.type in NUMBER_TYPES else "string")
    if lit.kind != expected:
        shape = {"datetime": "dateTime", "string": "string", "number": "double"}.get(expected, expected)
        quoted = (
            "should be enclosed in quotes" if expected == "string" else "should not be enclosed in quotes"
        )
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"value of filter criterion for field '{f.name}' must be of type {shape} and {quoted}",
        )
    if f.type in ("id", "reference"):
        table = tables[f.reference_to[0]] if f.type == "reference" else owner
        parsed = ids.parse(lit.value)
        if parsed is None:
            raise ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")
        return parsed[2] if parsed[0] == table.obj.key_prefix and parsed[1] == table.tag else -1
    if expected == "string":
        return lit.value.lower()
    return lit.value


def _bool_predicate(tables: Tables, table: Table, cond: soql.BoolOp) -> Predicate:
    parts = [predicate(tables, table, c) for c in cond.items]
    if cond.op == "AND":

        def every(row: int) -> bool:
            for p in parts:
                if not p(row):
                    return False
            return True

        return every

    def some(row: int) -> bool:
        for p in parts:
            if p(row):
                return True
        return False

    return some


def _like(f: FieldDef, lit: soql.Literal, get: Callable[[int], Any]) -> Predicate:
    if not _is_text(f):
        raise ApiError(
            400,
            "INVALID_FIELD",
            "invalid operator on id field: LIKE"
            if f.type in ("id", "reference")
            else f"LIKE operator only valid on string fields: {f.name}",
        )
    if lit.value is None:
        return lambda row: False
    pattern = soql.like_pattern(lit.value)
    return lambda row: (v := get(row)) is not None and pattern.fullmatch(v) is not None


def predicate(tables: Tables, table: Table, cond: soql.Condition) -> Predicate:
    """Returns row → whether it matches the condition (the general, row-at-a-time path)."""
    if isinstance(cond, soql.BoolOp):
        return _bool_predicate(tables, table, cond)
    if isinstance(cond, soql.Not):
        inner = predicate(tables, table, cond.item)
        return lambda row: not inner(row)
    f, get, owner = raw_getter(tables, table, cond.field)
    value_of = (lambda row: v.lower() if (v := get(row)) is not None else None) if _is_text(f) else get
    if cond.op in ("IN", "NOTIN"):
        values = {literal(tables, f, lit, owner) for lit in cond.value}  # type: ignore[union-attr]
        spans = [v for v in values if isinstance(v, Span)]
        if spans:
            scalars = values - set(spans)

            def within(row: int) -> bool:
                v = value_of(row)
                return v in scalars or (v is not None and any(s.holds("=", v) for s in spans))

            return within if cond.op == "IN" else (lambda row: not within(row))
        if cond.op == "IN":
            return lambda row: value_of(row) in values
        return lambda row: value_of(row) not in values
    if cond.op == "LIKE":
        return _like(f, cond.value, get)  # type: ignore[arg-type]
    target = literal(tables, f, cond.value, owner)  # type: ignore[arg-type]
    op = cond.op
    if isinstance(target, Span):
        if op == "!=":
            return lambda row: (v := get(row)) is None or target.holds(op, v)
        return lambda row: (v := get(row)) is not None and target.holds(op, v)
    if target is None:
        if op == "=":
            return lambda row: get(row) is None
        if op == "!=":
            return lambda row: get(row) is not None
        return lambda row: False
    if op == "=":
        return lambda row: value_of(row) == target
    if op == "!=":
        return lambda row: value_of(row) != target
    compare = {
        "<": lambda a: a < target,
        "<=": lambda a: a <= target,
        ">": lambda a: a > target,
        ">=": lambda a: a >= target,
    }[op]
    return lambda row: (v := value_of(row)) is not None and compare(v)


def _vector_step(out: list[int] | range, values: list[Any], op: str, target: Any) -> list[int]:
    pairs = zip(out, values, strict=True)
    if target is None:
        if op == "=":
            return [r for r, v in pairs if v is None]
        return [r for r, v in pairs if v is not None] if op == "!=" else []
    if op == "=":
        return [r for r, v in pairs if v == target]
    if op == "!=":
        return [r for r, v in pairs if v != target]
    if op == "<":
        return [r for r, v in pairs if v is not None and v < target]
    if op == "<=":
        return [r for r, v in pairs if v is not None and v <= target]
    if op == ">":
        return [r for r, v in pairs if v is not None and v > target]
    return [r for r, v in pairs if v is not None and v >= target]


def vector_filter(tables: Tables, table: Table, cond: soql.Condition) -> RowFilter | None:
    """Returns a filter over whole row lists for comparisons of non-text fields (alone or ANDed), else None."""
    items = cond.items if isinstance(cond, soql.BoolOp) and cond.op == "AND" else (cond,)
    steps = []
    for item in items:
        if not isinstance(item, soql.Comparison) or len(item.field.path) != 1:
            return None
        if item.op not in ("=", "!=", "<", "<=", ">", ">=") or not isinstance(item.value, soql.Literal):
            return None
        if item.value.kind == "dateliteral":
            return None
        f = table.obj.field(item.field.path[0])
        if f is None or f.name not in table.cols or f.name == "IsDeleted" or f.type == "address":
            return None
        if _is_text(f):
            return None
        steps.append((table.cols[f.name], item.op, literal(tables, f, item.value, table)))

    def run(rows: list[int] | range) -> list[int]:
        out: list[int] | range = rows
        for col, op, target in steps:
            out = _vector_step(out, col.take(out), op, target)
        return list(out)

    return run


def id_rows(tables: Tables, table: Table, cond: soql.Condition) -> set[int] | None:
    """Returns the only rows an `Id = …` / `Id IN (…)` filter (alone or under AND) can match, if any."""
    if isinstance(cond, soql.Comparison) and [p.lower() for p in cond.field.path] == ["id"]:
        id_field = table.obj.fields["Id"]
        if cond.op == "=" and isinstance(cond.value, soql.Literal) and cond.value.kind == "string":
            return {literal(tables, id_field, cond.value, table)}
        if cond.op == "IN":
            return {literal(tables, id_field, v, table) for v in cond.value if v.kind == "string"}  # type: ignore[union-attr]
    if isinstance(cond, soql.BoolOp) and cond.op == "AND":
        for item in cond.items:
            found = id_rows(tables, table, item)
            if found is not None:
                return found
    return None


def matching(
    tables: Tables, table: Table, where: soql.Condition | None, include_deleted: bool
) -> Iterable[int]:
    """Returns the rows that pass the WHERE clause and the recycle bin, in id order."""
    vector = vector_filter(tables, table, where) if where is not None else None
    pred = predicate(tables, table, where) if where is not None and vector is None else None
    deleted = table.deleted_at
    rows: Iterable[int] = range(table.n)
    if where is not None and (by_id := id_rows(tables, table, where)) is not None:
        rows = sorted(r for r in by_id if 0 <= r < table.n)
    if not include_deleted and deleted:
        rows = [r for r in rows if r not in deleted]
    elif deleted:
        # The recycle bin keeps deleted records 15 days; after that even queryAll no longer sees them.
        purged_before = now_ms() - DELETED_REACH_MS
        rows = [r for r in rows if r not in deleted or deleted[r] >= purged_before]
    if vector is not None:
        rows = vector(rows)  # type: ignore[arg-type]
    if pred is not None:
        rows = filter(pred, rows)
    return rows


def ordered(
    tables: Tables, table: Table, rows: Iterable[int], order_by: tuple[soql.OrderItem, ...]
) -> list[int] | range:
    order = list(order_by)
    if order and [p.lower() for p in order[-1].field.path] == ["id"] and not order[-1].descending:
        order.pop()  # rows are already in id order, and the sorts below are stable
    # A whole table in id order stays a range: no list of a million rows per cursor.
    matched: list[int] | range = rows if isinstance(rows, range) and not order else list(rows)
    for item in reversed(order):
        f, get, owner = raw_getter(tables, table, item.field)
        if owner is table and f.name in table.cols and f.name != "IsDeleted":
            values = table.cols[f.name].take(matched)
        else:
            values = [get(r) for r in matched]
        if _is_text(f):
            values = [None if v is None else v.lower() for v in values]
        if None in values:
            low = item.descending == item.nulls_last
            null_key = (0, 0) if low else (2, 0)
            values = [null_key if v is None else (1, v) for v in values]
        # Sorting positions by a list lookup keeps the key function in C; sorted() is stable.
        positions = sorted(range(len(matched)), key=values.__getitem__, reverse=item.descending)
        matched = [matched[i] for i in positions]
    return matched
