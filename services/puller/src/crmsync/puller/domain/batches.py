"""A batch of pulled records on its way into the contact store, and what it changed there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.common.domain.contacts import Conflict
from crmsync.common.domain.pulled import MappedRecord


@dataclass(frozen=True)
class PreparedBatch:
    """A batch of mapped records made ready for the store before its transaction.

    What needs no database is done beforehand (dropping a record read twice,
    and for a store known to be empty, building every row), so the next batch
    is prepared while the database writes this one.
    """

    conversions: tuple[MappedRecord, ...]
    records: tuple[MappedRecord, ...]
    # Every record as a new row, in the store's column order; built only when the store had no contact.
    new_rows: tuple[tuple[Any, ...], ...] | None = None


def newest_per_record(
    records: Sequence[MappedRecord],
) -> tuple[tuple[MappedRecord, ...], tuple[MappedRecord, ...]]:
    """Returns the newest version of each CRM record: converted Leads (R17), then the others."""
    latest: dict[str, MappedRecord] = {}
    for record in records:
        seen = latest.get(record.external_id)
        if seen is None or record.modstamp >= seen.modstamp:
            latest[record.external_id] = record
    conversions = tuple(r for r in latest.values() if r.converted_contact_id)
    return conversions, tuple(r for r in latest.values() if not r.converted_contact_id)


@dataclass(frozen=True)
class FieldConflict:
    """A field both sides changed, met by a batch (R13): logged with both values."""

    external_id: str
    field: str
    local_value: Any
    local_at: datetime
    crm_value: Any
    crm_at: datetime
    winner: str

    @classmethod
    def of(cls, external_id: str, conflict: Conflict) -> FieldConflict:
        return cls(
            external_id,
            conflict.field,
            conflict.local_value,
            conflict.local_at,
            conflict.crm_value,
            conflict.crm_at,
            conflict.winner,
        )

    def to_log(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "field": self.field,
            "local_value": self.local_value,
            "local_at": self.local_at.isoformat(),
            "crm_value": self.crm_value,
            "crm_at": self.crm_at.isoformat(),
            "winner": self.winner,
        }


@dataclass(frozen=True)
class BatchCounts:
    """What merging a batch into the store changed."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    conflicts: tuple[FieldConflict, ...] = ()
