"""Instance annotations asked for with `Prefer: odata.include-annotations="*"`: formatted values of
option sets, booleans and lookups, and the table a lookup points to."""

from __future__ import annotations

from crmsync.dynamics_emulator.schema import MULTI_SELECT, OPTION_TYPES, TABLES, Attribute, Table
from crmsync.dynamics_emulator.store import Environment

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE = "@Microsoft.Dynamics.CRM.lookuplogicalname"
Record = dict[str, object]


def wanted(prefers: dict[str, str]) -> bool:
    value = prefers.get("odata.include-annotations")
    return value is not None and (value == "*" or "FormattedValue" in value or "lookuplogicalname" in value)


def _lookup(env: Environment, attribute: Attribute, guid: str) -> tuple[str, str] | None:
    """(target table, the target's primary name) of a lookup's value."""
    for logical in attribute.targets:
        target = env.rows(logical).find(guid)
        if target is not None:
            return logical, str(target.get(TABLES[logical].primary_name) or "")
    return None


def annotations(env: Environment, table: Table, key: str, value: object) -> Record:
    attribute = table.by_name.get(key)
    if attribute is None or value is None:
        return {}
    if attribute.type == MULTI_SELECT:
        labels = dict(attribute.options)
        return {f"{key}{FORMATTED}": "; ".join(labels[int(v)] for v in str(value).split(","))}
    if attribute.type in OPTION_TYPES:
        label = dict(attribute.options).get(value)  # type: ignore[call-overload]
        return {} if label is None else {f"{key}{FORMATTED}": label}
    if attribute.type == "Boolean":
        return {f"{key}{FORMATTED}": "Yes" if value else "No"}
    if attribute.is_lookup:
        found = _lookup(env, attribute, str(value))
        if found is not None:
            return {f"{key}{FORMATTED}": found[1], f"{key}{LOOKUP_TABLE}": found[0]}
    return {}
