"""A mapping checked and previewed before it is saved: the rule violations the save would refuse
(R1–R6, R8), the change set, whether it triggers a full sync (R15), and how many stored contacts
would gain, change or lose a value of each changed field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import CrmObject, FieldKind, MappingRow, PushPolicy
from crmsync.common.domain.mapping_rules import Violation
from crmsync.mapping_api.field_fill import FieldFill
from crmsync.mapping_api.handlers.errors import Invalid
from crmsync.mapping_api.handlers.mapping import (
    RowInput,
    diff_rows,
    rows_from_input,
    rule_violations,
    source_pairs,
)
from crmsync.mapping_api.handlers.ports import CrmPort, Transactions


@dataclass(frozen=True)
class FieldImpact:
    """What saving does to the stored values of one destination field."""

    destination: str
    change: str  # added | removed | changed
    gain: int = 0
    change_value: int = 0
    lose: int = 0
    note: str = ""


@dataclass(frozen=True)
class MappingPreview:
    """What a save of these rows would do; `violations` non-empty means the save is refused."""

    current_version: int | None
    violations: list[Violation]
    policy: PushPolicy
    added: list[MappingRow] = field(default_factory=list)
    removed: list[MappingRow] = field(default_factory=list)
    changed: list[tuple[str, dict[str, list[object]]]] = field(default_factory=list)
    new_sources: list[str] = field(default_factory=list)
    impacts: list[FieldImpact] = field(default_factory=list)
    checked_against_crm: bool = False

    @property
    def full_sync(self) -> bool:
        """Whether the save reads a CRM field not read before, and so runs a full sync (R15)."""
        return bool(self.new_sources)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed)


def resolve_rows(rows: Sequence[RowInput]) -> tuple[list[MappingRow], list[Violation]]:
    """Returns the rows with their data types, and a violation (R6) for each custom row lacking one."""
    missing = [
        Violation(i, r.destination, "R6", "a custom field needs a data type")
        for i, r in enumerate(rows)
        if r.kind == FieldKind.CUSTOM and r.data_type is None
    ]
    if missing:
        # Keep the row indexes: a stand-in type lets the other rules still be checked.
        rows = [
            RowInput(**{**vars(r), "data_type": DataType.TEXT})
            if r.kind == FieldKind.CUSTOM and r.data_type is None
            else r
            for r in rows
        ]
    try:
        return rows_from_input(rows), missing
    except Invalid as exc:  # every case rows_from_input refuses is covered above
        raise AssertionError(exc.message) from exc


def field_impacts(
    before: Sequence[MappingRow], after: Sequence[MappingRow], fills: Mapping[str | None, FieldFill]
) -> list[FieldImpact]:
    """Returns, per changed destination, how many stored contacts would gain, change or lose a value.

    A removed row loses every stored value. A CRM source set where there was none fills the
    contacts of that object at the next sync (those without a value gain one, those with a
    local value see it replaced); a source moved to another CRM field re-reads every value.
    A source taken away keeps the values as local-only ones. Allow Push changes no value.
    """
    old = {r.destination: r for r in before}
    new = {r.destination: r for r in after}

    def held(destination: str, crm_object: str | None) -> tuple[int, int]:
        fill = fills.get(crm_object)
        if fill is None:
            return 0, 0
        with_value = fill.with_value.get(destination, 0)
        return with_value, fill.total - with_value

    impacts = []
    for destination in [*new, *(d for d in old if d not in new)]:
        was, now = old.get(destination), new.get(destination)
        if was == now:
            continue
        if now is None:
            lose = sum(held(destination, o)[0] for o in fills)
            impacts.append(FieldImpact(destination, "removed", lose=lose))
            continue
        gain = change = 0
        notes = []
        for crm_object in CrmObject:
            before_source = was.source_for(crm_object) if was else None
            after_source = now.source_for(crm_object)
            if after_source == before_source:
                continue
            valued, empty = held(destination, crm_object.value)
            if after_source is None:
                notes.append(f"{crm_object.value} values kept, no longer synced")
            elif before_source is None:
                gain, change = gain + empty, change + valued
            else:
                change += valued + empty
        if was is not None and was.data_type != now.data_type:
            change += sum(held(destination, o)[0] for o in fills)
        sources_moved = was is not None and any(was.source_for(o) != now.source_for(o) for o in CrmObject)
        if was is not None and was.allow_push != now.allow_push and not sources_moved:
            notes.append("Allow Push only: no value changes")
        impacts.append(
            FieldImpact(destination, "changed" if was else "added", gain, change, 0, "; ".join(notes))
        )
    return impacts


async def check_rows(
    tx: Transactions, *, account_id: str, rows: Sequence[RowInput], crm: CrmPort
) -> list[Violation]:
    """Returns every rule the rows break, as the save checks them; empty when they may be saved."""
    return (await preview_mapping(tx, account_id=account_id, rows=rows, crm=crm, count=False)).violations


async def preview_mapping(
    tx: Transactions,
    *,
    account_id: str,
    rows: Sequence[RowInput],
    crm: CrmPort,
    policy: PushPolicy | None = None,
    count: bool = True,
) -> MappingPreview:
    """Returns what saving these rows would do, against the newest saved version; nothing is written."""
    resolved, missing = resolve_rows(rows)
    async with tx.read() as stores:
        policy = policy or await stores.policies.get(account_id)
        broken, checked = await rule_violations(
            stores, account_id=account_id, rows=resolved, policy=policy, crm=crm
        )
        violations = missing + broken
        violations.sort(key=lambda v: (v.row_index is None, v.row_index or 0))
        current = await stores.mappings.get(account_id)
        before = current.rows if current else ()
        added, removed, changed = diff_rows(before, resolved)
        fills: dict[str | None, FieldFill] = {}
        if count and (added or removed or changed):
            names = sorted({r.destination for r in [*added, *removed]} | {d for d, _ in changed})
            fills = await stores.contacts.field_counts(account_id, names)
    return MappingPreview(
        current_version=current.version if current else None,
        violations=violations,
        policy=policy,
        added=added,
        removed=removed,
        changed=changed,
        new_sources=sorted(source_pairs(resolved) - source_pairs(before)),
        impacts=field_impacts(before, resolved, fills),
        checked_against_crm=checked,
    )
