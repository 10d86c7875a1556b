"""An environment's records: generated rows read through a bounded chunk cache, and every change since.

A table is its generated rows (row numbers 0..n-1, made on demand and
regenerated when evicted) plus the rows created since (n, n+1, ...). A changed
generated row is kept whole in `changed_rows`; a deleted one is remembered with
the version of its deletion. Every change takes the next version number of the
environment, which is what change tracking's delta tokens count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from crmsync.dynamics_emulator.dataset import CHUNK, Dataset, Record
from crmsync.dynamics_emulator.ids import RowIds
from crmsync.dynamics_emulator.schema import TABLES, Table

CACHED_CHUNKS = 96  # per table: about 96,000 records kept; the rest is made again when read
FIRST_VERSION = 20_000_000  # above every generated row's version

Undo = Callable[[], None]


@dataclass
class Rows:
    """The records of one table."""

    table: Table
    data: Dataset
    generated: int
    ids: RowIds
    changed_rows: dict[int, Record] = field(default_factory=dict)  # generated rows as changed since
    created: dict[int, Record] = field(default_factory=dict)  # rows created since the start
    created_ids: dict[str, int] = field(default_factory=dict)
    deleted: dict[int, tuple[int, str]] = field(default_factory=dict)  # row -> (version, id)
    versions: dict[int, int] = field(default_factory=dict)  # row -> version of its last change
    next_row: int = 0
    _cache: OrderedDict[int, list[Record]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.next_row = self.generated

    def _generated(self, row: int) -> Record:
        index = row // CHUNK
        chunk = self._cache.get(index)
        if chunk is None:
            chunk = self._cache[index] = self.data.chunk(self.table.logical, index)
            if len(self._cache) > CACHED_CHUNKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return chunk[row - index * CHUNK]

    def get(self, row: int) -> Record | None:
        """The live record of a row (None: deleted or never there). Callers don't mutate it."""
        if row in self.deleted:
            return None
        if row >= self.generated:
            return self.created.get(row)
        changed = self.changed_rows.get(row)
        return changed if changed is not None else self._generated(row)

    def row_of(self, guid: str) -> int | None:
        guid = guid.lower()
        row = self.ids.row(guid)
        if row is not None and 0 <= row < self.generated:
            return row
        return self.created_ids.get(guid)

    def find(self, guid: str) -> Record | None:
        row = self.row_of(guid)
        return None if row is None else self.get(row)

    def scan(self, start: int = 0) -> Iterator[tuple[int, Record]]:
        """Live records from row `start` on, in row (creation) order."""
        for row in range(start, self.generated):
            record = self.get(row)
            if record is not None:
                yield row, record
        for row in sorted(r for r in self.created if r >= start):
            record = self.get(row)
            if record is not None:
                yield row, record

    def live_count(self) -> int:
        return self.generated + len(self.created) - len(self.deleted)


class Environment:
    """One Dataverse environment: its tables, its version counter, its delta token floor."""

    def __init__(self, data: Dataset, *, first_version: int = FIRST_VERSION) -> None:
        self.data = data
        self.tables: dict[str, Rows] = {
            logical: Rows(TABLES[logical], data, data.counts[logical], data.ids(logical))
            for logical in TABLES
        }
        self.version = first_version
        self.token_floor = first_version  # delta tokens below it are expired
        self.writes: list[dict[str, object]] = []  # what API clients wrote, for tests to read
        self._undo: list[Undo] | None = None

    def rows(self, logical: str) -> Rows:
        return self.tables[logical]

    def next_version(self) -> int:
        self.version += 1
        return self.version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Changes inside are all kept or, when it raises, all undone (a change set, a *Multiple action)."""
        if self._undo is not None:  # already inside one: the outer one decides
            yield
            return
        self._undo = []
        logged = len(self.writes)
        try:
            yield
        except BaseException:
            for undo in reversed(self._undo):
                undo()
            for entry in self.writes[logged:]:
                entry["rolled_back"] = True
            raise
        finally:
            self._undo = None

    def _remember(self, rows: Rows, row: int) -> None:
        if self._undo is None:
            return
        changed, created = rows.changed_rows.get(row), rows.created.get(row)
        deleted, version = rows.deleted.get(row), rows.versions.get(row)
        guid_key = None if created is None else str(created[rows.table.primary_id])

        def undo() -> None:
            for store, value in ((rows.changed_rows, changed), (rows.created, created),
                                 (rows.deleted, deleted), (rows.versions, version)):  # fmt: skip
                if value is None:
                    store.pop(row, None)
                else:
                    store[row] = value  # type: ignore[index]
            if created is None and row >= rows.generated:
                rows.created_ids = {k: v for k, v in rows.created_ids.items() if v != row}
            elif guid_key is not None:
                rows.created_ids[guid_key] = row

        self._undo.append(undo)

    def insert(self, logical: str, record: Record) -> int:
        """Adds a new record (its id, versionnumber and dates already set); returns its row."""
        rows = self.tables[logical]
        row = rows.next_row
        rows.next_row += 1
        self._remember(rows, row)
        rows.created[row] = record
        rows.created_ids[str(record[rows.table.primary_id]).lower()] = row
        rows.versions[row] = int(record["versionnumber"])  # type: ignore[arg-type]
        return row

    def replace(self, logical: str, row: int, record: Record) -> None:
        """Puts a changed record (a new versionnumber set) in place of a live row."""
        rows = self.tables[logical]
        self._remember(rows, row)
        if row >= rows.generated:
            rows.created[row] = record
        else:
            rows.changed_rows[row] = record
        rows.versions[row] = int(record["versionnumber"])  # type: ignore[arg-type]

    def remove(self, logical: str, row: int) -> None:
        rows = self.tables[logical]
        record = rows.get(row)
        if record is None:
            return
        self._remember(rows, row)
        rows.deleted[row] = (self.next_version(), str(record[rows.table.primary_id]))
        rows.versions.pop(row, None)

    def changes_since(
        self, logical: str, version: int, upto: int
    ) -> list[tuple[int, int, Record | None, str]]:
        """What changed in (version, upto], oldest first: (version, row, record or None if deleted, id)."""
        rows = self.tables[logical]
        out: list[tuple[int, int, Record | None, str]] = []
        for row, changed in rows.versions.items():
            if version < changed <= upto and row not in rows.deleted:
                record = rows.get(row)
                if record is not None:
                    out.append((changed, row, record, str(record[rows.table.primary_id])))
        for row, (deleted, guid) in rows.deleted.items():
            if version < deleted <= upto:
                out.append((deleted, row, None, guid))
        out.sort(key=lambda item: item[0])
        return out
