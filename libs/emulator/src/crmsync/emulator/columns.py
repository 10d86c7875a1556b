"""A generated column: built a chunk of rows at a time, plus what was written over it.

A column is cut into chunks of 3,844 rows (62², so ids of a chunk share their
first 16 characters); a chunk is generated the first time one of its rows is
read, and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHUNK = 62 * 62
_MISSING = object()
Build = Callable[[int, int, int], list[Any]]  # (chunk number, first row, end row) → values


class Column:
    """A column of `n` generated rows, built a chunk at a time, plus what was written over them."""

    __slots__ = ("build", "chunks", "n", "over")

    def __init__(self, build: Build, n: int) -> None:
        self.build = build
        self.n = n
        self.chunks: dict[int, list[Any]] = {}
        self.over: dict[int, Any] = {}

    def chunk(self, number: int) -> list[Any]:
        """Returns the generated values of one chunk (building it the first time)."""
        values = self.chunks.get(number)
        if values is None:
            start = number * CHUNK
            values = self.chunks[number] = self.build(number, start, min(self.n, start + CHUNK))
        return values

    def __getitem__(self, row: int) -> Any:
        if self.over:
            value = self.over.get(row, _MISSING)
            if value is not _MISSING:
                return value
        if row >= self.n:
            return None
        values = self.chunks.get(row // CHUNK)
        if values is None:
            values = self.chunk(row // CHUNK)
        return values[row % CHUNK]

    def __setitem__(self, row: int, value: Any) -> None:
        self.over[row] = value

    def take(self, rows: list[int] | range) -> list[Any]:
        """Returns the values of many rows at once (slices of chunks when the rows are consecutive)."""
        if not rows:
            return []
        first, last, n = rows[0], rows[-1], self.n
        consecutive = last - first == len(rows) - 1 and (
            (isinstance(rows, range) and rows.step == 1) or rows == list(range(first, last + 1))
        )
        if last < n and consecutive:
            out: list[Any] = []
            for number in range(first // CHUNK, last // CHUNK + 1):
                start = number * CHUNK
                out += self.chunk(number)[max(first, start) - start : min(last + 1, start + CHUNK) - start]
        else:
            chunks, chunk = self.chunks, self.chunk
            out = [(chunks.get(r // CHUNK) or chunk(r // CHUNK))[r % CHUNK] if r < n else None for r in rows]
        over = self.over
        if over:
            for i, r in enumerate(rows):
                if r in over:
                    out[i] = over[r]
        return out
