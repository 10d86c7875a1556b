"""One object's records in one org (columns indexed by row), and the cursor a query leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crmsync.emulator import ids
from crmsync.emulator.columns import Column
from crmsync.emulator.schema import FieldDef, ObjectDef

DELETED_REACH_MS = 15 * 86_400_000  # Salesforce keeps deleted records in the recycle bin 15 days

Fetch = Callable[[list[int]], list[Any]]


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
