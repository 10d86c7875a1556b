"""Field mappings and the push policy as plain values (pure; R1, R7, R8).

Each CRM's default mapping (R7) is its connector's, built from `standard_row`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY, DataType


class CrmObject(StrEnum):
    LEAD = "Lead"
    CONTACT = "Contact"


class FieldKind(StrEnum):
    STANDARD = "standard"
    CUSTOM = "custom"


@dataclass(frozen=True)
class MappingRow:
    """One destination field and where it comes from in the CRM (R1)."""

    destination: str
    data_type: DataType
    kind: FieldKind = FieldKind.STANDARD
    lead_source: str | None = None
    contact_source: str | None = None
    allow_push: bool | None = None  # None: the account's default push policy decides (R8)

    def source_for(self, crm_object: CrmObject | str) -> str | None:
        """Returns the CRM field this row reads from/writes to on that object, if any."""
        return self.lead_source if crm_object == CrmObject.LEAD else self.contact_source

    @property
    def local_only(self) -> bool:
        return self.lead_source is None and self.contact_source is None

    @property
    def is_score(self) -> bool:
        return self.data_type == DataType.SCORE


@dataclass(frozen=True)
class Mapping:
    """A saved version of an account's mapping."""

    version: int
    rows: tuple[MappingRow, ...]

    def row(self, destination: str) -> MappingRow | None:
        return self._by_destination.get(destination)

    @cached_property
    def _by_destination(self) -> dict[str, MappingRow]:
        # Looked up for every changed field of every pushed event; the first row wins.
        rows: dict[str, MappingRow] = {}
        for r in self.rows:
            rows.setdefault(r.destination, r)
        return rows

    def source_fields(self, crm_object: CrmObject | str) -> list[str]:
        """Returns the distinct CRM fields mapped on that object, in row order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            source = row.source_for(crm_object)
            if source:
                seen.setdefault(source, None)
        return list(seen)


@dataclass(frozen=True)
class PushPolicy:
    default_allow_push: bool = True


def effective_allow_push(row: MappingRow, policy: PushPolicy) -> bool:
    """Returns whether updates of this field may be pushed: scores always, else row over default (R8)."""
    if row.is_score:
        return True
    return policy.default_allow_push if row.allow_push is None else row.allow_push


def standard_row(destination: str, lead: str | None, contact: str | None) -> MappingRow:
    """Returns a row of a standard field, with the catalogue's data type, from these CRM sources."""
    return MappingRow(
        destination, STANDARD_FIELDS_BY_KEY[destination].data_type, FieldKind.STANDARD, lead, contact
    )


def __getattr__(name: str) -> Any:
    # The Salesforce default mapping moved to its connector (crmsync.common.crm.salesforce,
    # or a provider's default_mapping); kept importable here while its last callers move.
    if name in ("DEFAULT_SALESFORCE_ROWS", "default_salesforce_mapping"):
        from crmsync.common.crm import salesforce

        return getattr(salesforce, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
