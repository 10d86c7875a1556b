"""Record ids: generated rows have GUIDs that carry their row number, so a read by id needs no index.

The row number is the last 12 hex digits (offset by a per-table base), the part
SQL Server sorts uniqueidentifiers by first, so id order is creation order as in
Dataverse. Everything else in the GUID comes from the seed and the table.
"""

from __future__ import annotations

import hashlib
import re
import uuid

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class RowIds:
    def __init__(self, seed: int, logical: str) -> None:
        digest = hashlib.sha256(f"{seed}:{logical}".encode()).hexdigest()
        self.prefix = f"{digest[0:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-"
        self.base = int(digest[20:30], 16)

    def guid(self, row: int) -> str:
        return f"{self.prefix}{self.base + row:012x}"

    def row(self, guid: str) -> int | None:
        """The row number a generated GUID carries (None: not one of this table's generated ids)."""
        guid = guid.lower()
        if not guid.startswith(self.prefix):
            return None
        return int(guid[-12:], 16) - self.base


def is_guid(text: str) -> bool:
    return bool(GUID_RE.match(text))


def new_guid() -> str:
    return str(uuid.uuid4())
