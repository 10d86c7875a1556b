"""Orgs and their records: columnar tables, SOQL evaluation, validated writes, lead conversion."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crmsync.emulator import ids, soql
from crmsync.emulator.dataset import Column, day, generate
from crmsync.emulator.schema import NUMBER_TYPES, OBJECTS, STRING_TYPES, FieldDef, ObjectDef, find_object

DELETED_REACH_MS = 15 * 86_400_000  # Salesforce keeps deleted records in the recycle bin 15 days
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_DAYS: dict[int, str] = {}


def format_datetime(ms: int) -> str:
    """Returns Salesforce's REST date-time form: 2026-11-28T10:00:00.000+0000."""
    seconds, millis = divmod(ms, 1000)
    days, seconds = divmod(seconds, 86_400)
    date = _DAYS.get(days)
    if date is None:
        date = _DAYS[days] = datetime.fromtimestamp(days * 86_400, UTC).strftime("%Y-%m-%d")
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+0000"


def parse_datetime(value: str) -> int:
    """Returns epoch ms of an ISO 8601 date-time as Salesforce accepts it."""
    return soql.parse_datetime(value.strip())


Fetch = Callable[[list[int]], list[Any]]


class ApiError(Exception):
    """A Salesforce error for the whole request: [{"message", "errorCode", "fields"?}]."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: Iterable[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


@dataclass(frozen=True)
class RecordError:
    """One record's error in a write result."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}


class RecordRejected(Exception):
    def __init__(self, *errors: RecordError) -> None:
        super().__init__(errors[0].message)
        self.errors = errors


class Table:
    """One object's records in one org: columns indexed by row; the row is encoded in the id."""

    def __init__(self, obj: ObjectDef, tag: str, columns: dict[str, Column], n: int) -> None:
        self.obj = obj
        self.tag = tag
        self.n = n
        self.cols = columns
        for name, f in obj.fields.items():
            if name not in columns and not self.computed(f):
                columns[name] = Column(lambda k, a, b: [None] * (b - a), n)
        self.deleted_at: dict[int, int] = {}

    @staticmethod
    def computed(f: FieldDef) -> bool:
        return f.name == "Id" or f.type == "address" or (f.name == "Name" and not f.createable)

    def id_of(self, row: int) -> str:
        return ids.make_id(self.obj.key_prefix, self.tag, row)

    def row_of(self, record_id: str) -> int | None:
        """Returns the row of one of this table's ids, or None (wrong object, other org, unknown)."""
        parsed = ids.parse(record_id) if isinstance(record_id, str) else None
        if parsed is None:
            return None
        prefix, tag, row = parsed
        if prefix != self.obj.key_prefix or tag != self.tag or row >= self.n:
            return None
        return row

    def raw(self, row: int, name: str) -> Any:
        """Returns the stored value: ids and references as rows, date-times as epoch ms."""
        if name == "Id":
            return row
        if name == "Name" and "FirstName" in self.cols and not self.obj.fields["Name"].createable:
            first, last = self.cols["FirstName"][row], self.cols["LastName"][row]
            return f"{first} {last}" if first else last
        if name == "IsDeleted":
            return row in self.deleted_at
        return self.cols[name][row]

    def alive(self, row: int) -> bool:
        return row not in self.deleted_at


@dataclass
class Cursor:
    """A query's matched rows and how to render them; pages are cut from it on demand."""

    table: Table
    rows: list[int] | range
    render_page: Callable[[list[int]], list[dict[str, Any]]]
    columns: list[tuple[str, Fetch]]
    created: float = field(default_factory=time.monotonic)


class Org:
    """One Salesforce org: its records, credentials, API budget, faults and what clients wrote."""

    def __init__(
        self,
        *,
        org_id: str,
        number: int,
        leads: int,
        contacts: int,
        seed: int,
        client_id: str,
        client_secret: str,
        api_limit: int,
        now: int | None = None,
    ) -> None:
        self.org_id = org_id
        self.number = number
        self.tag = ids.org_tag(number)
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = f"5Aep{secrets.token_urlsafe(48)}"
        self.jwt_public_key: str | None = None
        self.api_limit = api_limit
        self.api_used = 0
        self.writes: list[dict[str, Any]] = []
        self.cursors: dict[str, Cursor] = {}
        self.bulk_jobs: dict[str, dict[str, Any]] = {}
        columns = generate(leads=leads, contacts=contacts, seed=seed, now_ms=now or now_ms())
        self.tables = {
            name: Table(obj, self.tag, columns[name], columns[name]["SystemModstamp"].n)
            for name, obj in OBJECTS.items()
        }
        self.user_id = self.tables["User"].id_of(0)  # the integration user the API acts as

    # -- lookups -------------------------------------------------------------------------
    def table(self, name: str) -> Table:
        obj = find_object(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return self.tables[obj.name]

    def find(self, name: str, record_id: str, *, deleted_ok: bool = False) -> tuple[Table, int]:
        """Returns (table, row) of a record, or raises Salesforce's 404."""
        table = self.table(name)
        if ids.normalize(record_id) is None:
            raise ApiError(
                404,
                "NOT_FOUND",
                "Provided external ID field does not exist or is not accessible: " + record_id,
            )
        row = table.row_of(record_id)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if not deleted_ok and not table.alive(row):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return table, row

    # -- rendering -----------------------------------------------------------------------
    def fetcher(self, table: Table, f: FieldDef, *, csv: bool = False) -> Fetch:
        """Returns a function rows → the field's JSON (or CSV) values for those rows."""
        name = f.name
        if f.type == "address":
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
        if f.type == "id":
            prefix, tag = table.obj.key_prefix, table.tag
            return lambda rows: [ids.make_id(prefix, tag, r) for r in rows]
        if f.type == "reference":
            target = self.tables[f.reference_to[0]]
            prefix, tag, col = target.obj.key_prefix, target.tag, table.cols[name]
            return lambda rows: [None if v is None else ids.make_id(prefix, tag, v) for v in col.take(rows)]
        if f.type == "datetime":
            col = table.cols[name]
            if csv:
                return lambda rows: [
                    None if v is None else format_datetime(v)[:-5] + "Z" for v in col.take(rows)
                ]
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
        self, table: Table, refs: Iterable[soql.FieldRef], version: str, *, csv: bool = False
    ) -> tuple[Callable[[list[int]], list[dict[str, Any]]], list[tuple[str, Fetch]]]:
        """Returns (rows → records in the REST shape, [(CSV column, rows → values)]) for selected fields."""
        keys: list[str] = []
        fetches: list[Fetch] = []
        columns: list[tuple[str, Fetch]] = []
        parents: dict[str, tuple[FieldDef, Table, list[tuple[str, Fetch]]]] = {}
        for ref in refs:
            if len(ref.path) == 1:
                f = self.resolve(table, ref)
                fetch = self.fetcher(table, f, csv=csv)
                keys.append(f.name)
                fetches.append(fetch)
                columns.append((f.name, fetch))
                continue
            link, parent_table, parent_field = self.resolve_parent(table, ref)
            fetch = self.fetcher(parent_table, parent_field, csv=csv)
            ref_col = table.cols[link.name]
            columns.append((f"{link.relationship_name}.{parent_field.name}", _through(ref_col, fetch)))
            if link.relationship_name not in parents:
                parents[link.relationship_name] = (link, parent_table, [])
                keys.append(link.relationship_name)
                fetches.append(
                    self._nested(table, link, parent_table, parents[link.relationship_name][2], version)
                )
            parents[link.relationship_name][2].append((parent_field.name, fetch))
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

        return render_page, columns

    def _nested(
        self, table: Table, link: FieldDef, parent_table: Table, fields: list[tuple[str, Fetch]], version: str
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

    def full_record(
        self, table: Table, row: int, version: str, fields: Iterable[str] | None = None
    ) -> dict[str, Any]:
        names = list(fields) if fields else list(table.obj.fields)
        render_page, _ = self.page_renderer(table, [soql.FieldRef((n,)) for n in names], version)
        return render_page([row])[0]

    # -- SOQL ----------------------------------------------------------------------------
    def resolve(self, table: Table, ref: soql.FieldRef) -> FieldDef:
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

    def resolve_parent(self, table: Table, ref: soql.FieldRef) -> tuple[FieldDef, Table, FieldDef]:
        link = table.obj.relationship(ref.path[0])
        if link is None:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Didn't understand relationship '{ref.path[0]}' in field path. If you are attempting to use a custom "
                "relationship, be sure to append the '__r' after the custom relationship name.",
            )
        parent_table = self.tables[link.reference_to[0]]
        return link, parent_table, self.resolve(parent_table, soql.FieldRef(ref.path[1:]))

    def raw_getter(self, table: Table, ref: soql.FieldRef) -> tuple[FieldDef, Callable[[int], Any], Table]:
        """Returns (field, row → stored value, the table the field belongs to)."""
        if len(ref.path) == 1:
            f = self.resolve(table, ref)
            name = f.name
            if f.type == "address":
                raise ApiError(400, "INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call")
            if name in table.cols and name != "IsDeleted":
                col = table.cols[name]
                return f, col.__getitem__, table
            return f, lambda row: table.raw(row, name), table
        link, parent_table, pf = self.resolve_parent(table, ref)
        if pf.type == "address":
            raise ApiError(400, "INVALID_FIELD", f"field '{pf.name}' can not be filtered in a query call")
        ref_col = table.cols[link.name]
        pname = pf.name
        return (
            pf,
            lambda row: None if (p := ref_col[row]) is None else parent_table.raw(p, pname),
            parent_table,
        )

    def literal(self, f: FieldDef, lit: soql.Literal, owner: Table) -> Any:
        """Returns a literal in the field's stored form, refusing mismatched types as Salesforce does."""
        if lit.kind == "null":
            return None
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
            table = self.tables[f.reference_to[0]] if f.type == "reference" else owner
            parsed = ids.parse(lit.value)
            if parsed is None:
                raise ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")
            return parsed[2] if parsed[0] == table.obj.key_prefix and parsed[1] == table.tag else -1
        if expected == "string":
            return lit.value.lower()
        return lit.value

    def predicate(self, table: Table, cond: soql.Condition) -> Callable[[int], bool]:
        if isinstance(cond, soql.BoolOp):
            parts = [self.predicate(table, c) for c in cond.items]
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
        if isinstance(cond, soql.Not):
            inner = self.predicate(table, cond.item)
            return lambda row: not inner(row)
        f, get, owner = self.raw_getter(table, cond.field)
        is_string = f.type in STRING_TYPES and f.type not in ("id", "reference")
        value_of = (lambda row: v.lower() if (v := get(row)) is not None else None) if is_string else get
        if cond.op in ("IN", "NOTIN"):
            values = {self.literal(f, lit, owner) for lit in cond.value}  # type: ignore[union-attr]
            if cond.op == "IN":
                return lambda row: value_of(row) in values
            return lambda row: value_of(row) not in values
        lit = cond.value
        if cond.op == "LIKE":
            if not is_string:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    "invalid operator on id field: LIKE"
                    if f.type in ("id", "reference")
                    else f"LIKE operator only valid on string fields: {f.name}",
                )
            if lit.value is None:  # type: ignore[union-attr]
                return lambda row: False
            pattern = soql.like_pattern(lit.value)  # type: ignore[union-attr]
            return lambda row: (v := get(row)) is not None and pattern.fullmatch(v) is not None
        target = self.literal(f, lit, owner)  # type: ignore[arg-type]
        op = cond.op
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

    def run_query(
        self, text: str, *, include_deleted: bool, version: str, csv: bool = False
    ) -> tuple[Cursor, int | None]:
        """Returns the cursor of a query and, for COUNT(), the count."""
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
        table = self.tables[obj.name]
        seen = set()
        for ref in query.fields:
            key = ref.text.lower()
            if key in seen:
                raise ApiError(400, "MALFORMED_QUERY", f"duplicate field selected: {ref.text}")
            seen.add(key)
        render, columns = self.page_renderer(table, query.fields, version, csv=csv)
        vector = self._vector_filter(table, query.where) if query.where is not None else None
        pred = self.predicate(table, query.where) if query.where is not None and vector is None else None
        deleted = table.deleted_at
        rows: Iterable[int] = range(table.n)
        if query.where is not None and (by_id := self._id_rows(table, query.where)) is not None:
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
        order = list(query.order_by)
        if order and [p.lower() for p in order[-1].field.path] == ["id"] and not order[-1].descending:
            order.pop()  # rows are already in id order, and the sorts below are stable
        # A whole table in id order stays a range: no list of a million rows per cursor.
        matched: list[int] | range = rows if isinstance(rows, range) and not order else list(rows)
        for item in reversed(order):
            f, get, owner = self.raw_getter(table, item.field)
            if owner is table and f.name in table.cols and f.name != "IsDeleted":
                values = table.cols[f.name].take(matched)
            else:
                values = [get(r) for r in matched]
            if f.type in STRING_TYPES and f.type not in ("id", "reference"):
                values = [None if v is None else v.lower() for v in values]
            if None in values:
                low = item.descending == item.nulls_last
                null_key = (0, 0) if low else (2, 0)
                values = [null_key if v is None else (1, v) for v in values]
            # Sorting positions by a list lookup keeps the key function in C; sorted() is stable.
            positions = sorted(range(len(matched)), key=values.__getitem__, reverse=item.descending)
            matched = [matched[i] for i in positions]
        if query.offset:
            matched = matched[query.offset :]
        if query.limit is not None:
            matched = matched[: query.limit]
        cursor = Cursor(table, matched, render, columns)  # type: ignore[arg-type]
        return cursor, (len(matched) if query.count else None)

    def _vector_filter(
        self, table: Table, cond: soql.Condition
    ) -> Callable[[list[int] | range], list[int]] | None:
        """Returns a filter over whole row lists for comparisons of non-text fields (alone or ANDed), else None."""
        items = cond.items if isinstance(cond, soql.BoolOp) and cond.op == "AND" else (cond,)
        steps = []
        for item in items:
            if not isinstance(item, soql.Comparison) or len(item.field.path) != 1:
                return None
            if item.op not in ("=", "!=", "<", "<=", ">", ">=") or not isinstance(item.value, soql.Literal):
                return None
            f = table.obj.field(item.field.path[0])
            if f is None or f.name not in table.cols or f.name == "IsDeleted" or f.type == "address":
                return None
            if f.type in STRING_TYPES and f.type not in ("id", "reference"):
                return None
            steps.append((table.cols[f.name], item.op, self.literal(f, item.value, table)))

        def run(rows: list[int] | range) -> list[int]:
            out: list[int] | range = rows
            for col, op, target in steps:
                pairs = zip(out, col.take(out), strict=True)
                if target is None:
                    out = (
                        [r for r, v in pairs if v is None]
                        if op == "="
                        else ([r for r, v in pairs if v is not None] if op == "!=" else [])
                    )
                elif op == "=":
                    out = [r for r, v in pairs if v == target]
                elif op == "!=":
                    out = [r for r, v in pairs if v != target]
                elif op == "<":
                    out = [r for r, v in pairs if v is not None and v < target]
                elif op == "<=":
                    out = [r for r, v in pairs if v is not None and v <= target]
                elif op == ">":
                    out = [r for r, v in pairs if v is not None and v > target]
                else:
                    out = [r for r, v in pairs if v is not None and v >= target]
            return list(out)

        return run

    def _id_rows(self, table: Table, cond: soql.Condition) -> set[int] | None:
        """Returns the only rows an `Id = …` / `Id IN (…)` filter (alone or under AND) can match, if any."""
        if isinstance(cond, soql.Comparison) and [p.lower() for p in cond.field.path] == ["id"]:
            if cond.op == "=" and isinstance(cond.value, soql.Literal) and cond.value.kind == "string":
                return {self.literal(table.obj.fields["Id"], cond.value, table)}
            if cond.op == "IN":
                return {
                    self.literal(table.obj.fields["Id"], v, table) for v in cond.value if v.kind == "string"
                }  # type: ignore[union-attr]
        if isinstance(cond, soql.BoolOp) and cond.op == "AND":
            for item in cond.items:
                found = self._id_rows(table, item)
                if found is not None:
                    return found
        return None

    def save_cursor(self, cursor: Cursor) -> str:
        """Returns the locator of a cursor kept for nextRecordsUrl (the oldest go first, as in Salesforce)."""
        while len(self.cursors) >= 10:  # Salesforce keeps 10 open query cursors per user
            self.cursors.pop(next(iter(self.cursors)))
        locator = ids.make_id("01g", self.tag, secrets.randbelow(62**8))
        self.cursors[locator] = cursor
        return locator

    # -- writes --------------------------------------------------------------------------
    def _coerce(self, f: FieldDef, value: Any) -> Any:
        label = f.name
        if value is None:
            if not f.nillable or f.required:
                if f.type == "boolean":
                    return False
                raise RecordRejected(
                    RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{label}]", (label,))
                )
            return None
        if f.type in ("reference",):
            if not isinstance(value, str) or ids.normalize(value) is None:
                raise RecordRejected(
                    RecordError("MALFORMED_ID", f"{label}: id value of incorrect type: {value}", (label,))
                )
            target = self.tables[f.reference_to[0]]
            row = target.row_of(value)
            if row is None or not target.alive(row):
                raise RecordRejected(
                    RecordError(
                        "INVALID_CROSS_REFERENCE_KEY", f"{label}: invalid cross reference id", (label,)
                    )
                )
            return row
        if f.type == "boolean":
            if not isinstance(value, bool):
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                )
            return value
        if f.type in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                )
            try:
                number = float(value)
            except ValueError:
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                ) from None
            return int(number) if f.type == "int" else number
        if f.type == "date":
            try:
                datetime.strptime(str(value)[:10], "%Y-%m-%d")
            except ValueError:
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                ) from None
            return str(value)[:10]
        if f.type == "datetime":
            try:
                return parse_datetime(str(value))
            except soql.SoqlError:
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                ) from None
        if not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RecordRejected(
                    RecordError(
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{label}: value not of required type: {value}",
                        (label,),
                    )
                )
            value = str(value)
        if f.length and len(value) > f.length:
            raise RecordRejected(
                RecordError(
                    "STRING_TOO_LONG",
                    f"{f.label or label}: data value too large: {value[:40]} (max length={f.length})",
                    (label,),
                )
            )
        if f.type == "email" and value and not _EMAIL.match(value):
            raise RecordRejected(
                RecordError("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}", (label,))
            )
        return value if value != "" else None

    def _prepare(
        self, table: Table, fields: dict[str, Any], *, creating: bool, system: bool
    ) -> dict[str, Any]:
        """Returns validated stored values, or raises RecordRejected with every problem found."""
        errors: list[RecordError] = []
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "attributes" or (key == "Id" and not creating):
                continue
            f = table.obj.field(key)
            if f is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.obj.name}"
                )
            allowed = f.createable if creating else f.updateable
            if not allowed and not (system and not Table.computed(f)):
                errors.append(
                    RecordError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {f.name}. Please check the security settings of this field "
                        "and verify that it is read/write for your profile or permission set.",
                        (f.name,),
                    )
                )
                continue
            try:
                values[f.name] = self._coerce(f, value)
            except RecordRejected as exc:
                errors.extend(exc.errors)
        if creating:
            missing = [f.name for f in table.obj.fields.values() if f.required and values.get(f.name) is None]
            if missing:
                errors.append(
                    RecordError(
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{', '.join(missing)}]",
                        tuple(missing),
                    )
                )
        if errors:
            raise RecordRejected(*errors)
        return values

    def _stamp(self, table: Table, row: int, stamp: int | None, *, creating: bool) -> None:
        moment = stamp if stamp is not None else now_ms()
        if creating:
            table.cols["CreatedDate"][row] = moment
        table.cols["LastModifiedDate"][row] = moment
        table.cols["SystemModstamp"][row] = moment

    def create(
        self, obj: str, fields: dict[str, Any], *, system: bool = False, stamp: int | None = None
    ) -> tuple[Table, int]:
        """Returns (table, row) of a new record; raises RecordRejected or ApiError."""
        table = self.table(obj)
        values = self._prepare(table, fields, creating=True, system=system)
        row = table.n
        table.n += 1
        defaults = {"OwnerId": 0, "HasOptedOutOfEmail": False, "IsConverted": False, "IsActive": True}
        if table.obj.name == "Lead":
            defaults["Status"] = "Open - Not Contacted"
        for name, value in {**defaults, **values}.items():
            if name in table.cols:
                table.cols[name][row] = value
        self._stamp(table, row, stamp, creating=True)
        return table, row

    def update(
        self,
        obj: str,
        record_id: str,
        fields: dict[str, Any],
        *,
        system: bool = False,
        stamp: int | None = None,
    ) -> tuple[Table, int]:
        table, row = self.find(obj, record_id)
        if table.obj.name == "Lead" and table.raw(row, "IsConverted") and not system:
            raise RecordRejected(
                RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ())
            )
        values = self._prepare(table, fields, creating=False, system=system)
        for name, value in values.items():
            table.cols[name][row] = value
        self._stamp(table, row, stamp, creating=False)
        return table, row

    def delete(self, obj: str, record_id: str, *, stamp: int | None = None) -> tuple[Table, int]:
        table, row = self.find(obj, record_id)
        moment = stamp if stamp is not None else now_ms()
        table.deleted_at[row] = moment
        table.cols["SystemModstamp"][row] = moment
        return table, row

    def undelete(self, obj: str, record_id: str) -> tuple[Table, int]:
        table, row = self.find(obj, record_id, deleted_ok=True)
        if table.alive(row):
            raise RecordRejected(RecordError("UNDELETE_FAILED", "Entity is not in the recycle bin", ()))
        del table.deleted_at[row]
        self._stamp(table, row, None, creating=False)
        return table, row

    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        stamp: int | None = None,
    ) -> tuple[str, str]:
        """Returns (contact id, account id) after converting a lead as a sales user would.

        With `contact_id` the lead is merged into that existing Contact (and its
        Account), whose fields stay as they are; without, a new Contact is made
        from the lead, under `account_id` or a new Account named after its Company.
        """
        leads, row = self.find("Lead", lead_id)
        if leads.raw(row, "IsConverted"):
            raise RecordRejected(
                RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "This lead was already converted.", ())
            )
        if contact_id is not None:
            contacts, contact_row = self.find("Contact", contact_id)
            account_row = contacts.raw(contact_row, "AccountId")
            if account_id is None and account_row is not None:
                account_id = self.tables["Account"].id_of(account_row)
            if account_id is None:
                raise RecordRejected(
                    RecordError("REQUIRED_FIELD_MISSING", "The contact has no account to convert into.", ())
                )
            self._stamp(contacts, contact_row, stamp, creating=False)
            self._mark_converted(leads, row, contact_row, account_id, stamp)
            return contacts.id_of(contact_row), account_id
        get = lambda name: leads.raw(row, name)  # noqa: E731
        owner = self.tables["User"].id_of(get("OwnerId") or 0)
        if account_id is None:
            _, account_row = self.create(
                "Account", {"Name": get("Company"), "OwnerId": owner}, system=True, stamp=stamp
            )
            account_id = self.tables["Account"].id_of(account_row)
        contact = {
            "FirstName": get("FirstName"),
            "LastName": get("LastName"),
            "Email": get("Email"),
            "Title": get("Title"),
            "Phone": get("Phone"),
            "MobilePhone": get("MobilePhone"),
            "MailingStreet": get("Street"),
            "MailingCity": get("City"),
            "MailingState": get("State"),
            "MailingPostalCode": get("PostalCode"),
            "MailingCountry": get("Country"),
            "LeadSource": get("LeadSource"),
            "HasOptedOutOfEmail": get("HasOptedOutOfEmail"),
            "Marketing_Score__c": get("Marketing_Score__c"),
            "AccountId": account_id,
            "OwnerId": owner,
        }
        contacts, contact_row = self.create("Contact", contact, system=True, stamp=stamp)
        self._mark_converted(leads, row, contact_row, account_id, stamp)
        return contacts.id_of(contact_row), account_id

    def _mark_converted(
        self, leads: Table, row: int, contact_row: int, account_id: str, stamp: int | None
    ) -> None:
        moment = stamp if stamp is not None else now_ms()
        leads.cols["IsConverted"][row] = True
        leads.cols["ConvertedContactId"][row] = contact_row
        leads.cols["ConvertedAccountId"][row] = self.tables["Account"].row_of(account_id)
        leads.cols["ConvertedDate"][row] = day(moment)
        leads.cols["Status"][row] = "Closed - Converted"
        self._stamp(leads, row, moment, creating=False)

    def log_write(
        self, *, method: str, obj: str, record_id: str | None, fields: dict[str, Any], api: str, success: bool
    ) -> None:
        self.writes.append(
            {
                "method": method,
                "object": obj,
                "id": record_id,
                "fields": {k: v for k, v in fields.items() if k != "attributes"},
                "api": api,
                "success": success,
                "time": format_datetime(now_ms()),
            }
        )


def _through(ref_col: Column, fetch: Fetch) -> Fetch:
    def through(rows: list[int]) -> list[Any]:
        parent_rows = ref_col.take(rows)
        found = iter(fetch([p for p in parent_rows if p is not None]))
        return [None if p is None else next(found) for p in parent_rows]

    return through
