"""When a pulled record needs no write: the "nothing changed" rules of a re-sync (pure, R13, R16, R18).

A full re-sync meets mostly records whose rows hold them already, and an
incremental one re-reads records through its lookback window. Telling them
apart from real changes without a merge spares parsing each row's metadata;
the rules here must agree with the merge they spare (`merge_from_crm` would
change nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from crmsync.common.domain.contacts import Merge
from crmsync.common.domain.pulled import MappedRecord


class StoredRow(Protocol):
    """What a contact row holds of its CRM record."""

    @property
    def external_id(self) -> str | None: ...
    @property
    def crm_object(self) -> str | None: ...
    @property
    def crm_modstamp(self) -> datetime | None: ...
    @property
    def account_external_id(self) -> str | None: ...
    @property
    def owner_external_id(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, Any]: ...


def same_version(row: StoredRow, record: MappedRecord) -> bool:
    """True when the row is linked to this record's id, object, stamp, company and owner."""
    return (
        row.crm_modstamp == record.modstamp
        and row.external_id == record.external_id
        and row.crm_object == record.crm_object
        and row.account_external_id == record.account_external_id
        and row.owner_external_id == record.owner_external_id
    )


def already_holds(row: StoredRow, record: MappedRecord) -> bool:
    """True when the row is this CRM record as of its modified time already.

    Then merging it changes nothing, whatever the row's local values: every
    value is the same and so is the stamp they would be stored with.
    """
    fields = row.fields
    return same_version(row, record) and all(
        name in fields and fields[name] == value for name, value in record.values.items()
    )


def needs_no_write(row: StoredRow, record: MappedRecord) -> bool:
    """True when the row holds a newer version of the record (read again through a lookback
    window) or this very version already."""
    newer = row.crm_modstamp is not None and record.modstamp < row.crm_modstamp
    return newer or already_holds(row, record)


def merge_changes_nothing(row: StoredRow, record: MappedRecord, merge: Merge) -> bool:
    """True when the merge of the record into the row changed no value and the row's CRM link stays."""
    return not merge.changed and same_version(row, record)
