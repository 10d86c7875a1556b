"""A create or update body checked and turned into record values, as Dataverse validates it.

Unknown properties, wrong JSON types, strings over MaxLength, option values
outside the option set and bindings to missing records are refused with
Dataverse's codes; read-only columns (createdon, fullname, ...) are ignored.
Lookups are set through navigation properties: `nav@odata.bind: "/accounts(id)"`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from crmsync.dynamics_emulator.dataset import iso
from crmsync.dynamics_emulator.errors import VALIDATION, DataverseError, invalid, not_found
from crmsync.dynamics_emulator.ids import is_guid, new_guid
from crmsync.dynamics_emulator.schema import BY_SET, MULTI_SELECT, TABLES, Attribute, Table
from crmsync.dynamics_emulator.store import Environment

Record = dict[str, object]
_BIND = re.compile(r"^(?:.*/)?(?P<set>\w+)\((?P<id>[0-9a-fA-F-]{36})\)$")
NUMBER_TYPES = {"Integer": int, "Picklist": int, "State": int, "Status": int, "BigInt": int}


def _type_error(value: object, attribute: Attribute) -> DataverseError:
    return invalid(f"Cannot convert the literal '{value}' to the expected type '{attribute.edm}'.")


def _coerce(table: Table, attribute: Attribute, value: object) -> object:
    if value is None:
        return None
    kind = attribute.type
    if kind in ("String", "Memo"):
        if not isinstance(value, str):
            raise _type_error(value, attribute)
        if attribute.max_length is not None and len(value) > attribute.max_length:
            raise DataverseError(
                400, VALIDATION,
                f"A validation error occurred. The length of the '{attribute.name}' attribute of the "
                f"'{table.logical}' entity exceeded the maximum allowed length of '{attribute.max_length}'.",
            )  # fmt: skip
        return value
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, attribute)
        if attribute.options and value not in {v for v, _ in attribute.options}:
            raise DataverseError(
                400, VALIDATION,
                f"A validation error occurred. The value {value} of '{attribute.name}' on record of type "
                f"'{table.logical}' is outside the valid range.",
            )  # fmt: skip
        return value
    if kind == MULTI_SELECT:
        return _options(table, attribute, value)
    if kind in ("Money", "Decimal", "Double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(value, attribute)
        return value
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise _type_error(value, attribute)
        return value
    if kind == "DateTime":
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise _type_error(value, attribute) from None
        return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    if kind == "Uniqueidentifier":
        if not isinstance(value, str) or not is_guid(value):
            raise _type_error(value, attribute)
        return value.lower()
    raise _type_error(value, attribute)


def _options(table: Table, attribute: Attribute, value: object) -> str | None:
    """A multi-select choice's value: its options' values, comma-separated ("" clears it)."""
    if not isinstance(value, str):
        raise _type_error(value, attribute)
    chosen: list[int] = []
    for part in (p.strip() for p in value.split(",") if p.strip()):
        if not part.lstrip("-").isdigit():
            raise _type_error(value, attribute)
        option = int(part)
        if option not in {v for v, _ in attribute.options}:
            raise DataverseError(
                400, VALIDATION,
                f"A validation error occurred. The value {option} of '{attribute.name}' on record of type "
                f"'{table.logical}' is outside the valid range.",
            )  # fmt: skip
        if option not in chosen:
            chosen.append(option)
    return ",".join(str(o) for o in sorted(chosen)) or None


def _bind(env: Environment, table: Table, name: str, value: object) -> tuple[str, str | None]:
    navigation = table.navigation(name)
    if navigation is None:
        raise invalid(
            f"An undeclared property '{name}' which only has property annotations in the payload but no property value was found in the payload."
        )
    if value is None:  # a null binding clears the lookup
        return f"_{navigation.attribute}_value", None
    match = _BIND.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise invalid(
            f"The value '{value}' of the navigation property '{name}' is not a valid entity reference."
        )
    target = BY_SET.get(match["set"])
    if target is None or target.logical != navigation.target:
        raise invalid(
            f"The entity set '{match['set']}' is not the target of the navigation property '{name}'."
        )
    guid = match["id"].lower()
    if env.rows(target.logical).find(guid) is None:
        raise not_found(target.logical, guid)
    return f"_{navigation.attribute}_value", guid


def values(env: Environment, table: Table, body: object, *, creating: bool) -> Record:
    """The record values a create (creating) or update body sets."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object of the record's properties.")
    out: Record = {}
    for key, value in body.items():
        if key.endswith("@odata.bind"):
            field, guid = _bind(env, table, key[: -len("@odata.bind")], value)
            out[field] = guid
            continue
        if "@" in key:  # annotations: @odata.type, @odata.id, ...
            continue
        attribute = table.by_name.get(key)
        if attribute is None or attribute.field != key:
            raise invalid(
                f"The property '{key}' does not exist on type '{table.type_name}'. "
                "Make sure to only use property names that are defined by the type."
            )
        if attribute.is_lookup:
            raise invalid(f"A lookup is set through its navigation property with @odata.bind, not '{key}'.")
        if attribute.create if creating else attribute.update:
            out[key] = _coerce(table, attribute, value)
    return out


def _fullname(record: Record) -> str:
    return " ".join(str(p) for p in (record.get("firstname"), record.get("lastname")) if p)


def new_record(env: Environment, table: Table, changes: Record, guid: str | None = None) -> Record:
    """A whole new record: defaults, the changes, id, dates and version."""
    record: Record = {a.field: None for a in table.attributes}
    for attribute in table.attributes:
        if attribute.type == "Boolean":
            record[attribute.field] = False
        if attribute.type in ("State", "Status") and attribute.options:
            record[attribute.field] = attribute.options[0][0]
    if "_ownerid_value" in record:
        owner = env.data.ref("systemuser", 0)
        record["_ownerid_value"] = record["_owninguser_value"] = owner
    record.update(changes)
    record[table.primary_id] = str(changes.get(table.primary_id) or guid or new_guid()).lower()
    now = iso(datetime.now(UTC))
    record["createdon"] = record["modifiedon"] = now
    record["versionnumber"] = env.next_version()
    if "fullname" in record:
        record["fullname"] = _fullname(record)
    return record


def changed_record(env: Environment, record: Record, changes: Record) -> Record:
    """The record after an update: the changes, a new modifiedon and versionnumber."""
    out = {**record, **changes}
    if "_ownerid_value" in changes:
        out["_owninguser_value"] = changes["_ownerid_value"]
    out["modifiedon"] = iso(datetime.now(UTC))
    out["versionnumber"] = env.next_version()
    if "fullname" in out:
        out["fullname"] = _fullname(out)
    return out


def table_of(name: str) -> Table:
    table = TABLES.get(name) or BY_SET.get(name)
    if table is None:
        raise invalid(f"Resource not found for the segment '{name}'.", status=404)
    return table
