"""Tables' attributes from `EntityDefinitions(LogicalName=…)/Attributes`, as the interface's describes.

Dataverse attribute types are mapped onto the interface's field types, the
vocabulary the mapping checks (R4) read: String and Memo are text, an e-mail
formatted String is email, Boolean is boolean, DateTime is datetime (date when
its format is date-only), Integer, BigInt, Decimal, Double and Money are
numbers, MultiSelectPicklist is multi-text, Picklist, State and Status are
text (option values), lookups are references.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from crmsync.common.crm.dynamics._entities import (
    OPT_OUT_ATTRIBUTES,
    OPTED_OUT,
    QUALIFIED,
    QUALIFIED_CONTACT_ID,
    Entity,
    entity_named,
)
from crmsync.common.crm.dynamics._transport import Transport
from crmsync.common.crm.interface import CrmField, ObjectDescribe
from crmsync.common.domain.fields import DataType

LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
# AttributeType -> the interface's field type
FIELD_TYPES: dict[str, str] = {
    "String": "string",
    "Memo": "textarea",
    "Boolean": "boolean",
    "Integer": "int",
    "BigInt": "long",
    "Decimal": "double",
    "Double": "double",
    "Money": "currency",
    "Picklist": "picklist",
    "State": "picklist",
    "Status": "picklist",
    "Uniqueidentifier": "id",
    "Lookup": "reference",
    "Owner": "reference",
    "Customer": "reference",
    "EntityName": "string",
}
_TEXT = frozenset({DataType.TEXT})
_NUMBER = frozenset({DataType.NUMBER, DataType.SCORE})
# The connector's field type -> the crmsync data types a column of it may fill (R4).
FILLS: dict[str, frozenset[DataType]] = {
    "string": _TEXT,
    "textarea": _TEXT,
    "phone": _TEXT,
    "url": _TEXT,
    "picklist": _TEXT,  # option values
    "id": _TEXT,
    "reference": _TEXT,
    "email": frozenset({DataType.EMAIL, DataType.TEXT}),
    "boolean": frozenset({DataType.BOOLEAN}),
    "int": _NUMBER,
    "long": _NUMBER,
    "double": _NUMBER,
    "currency": _NUMBER,
    "date": frozenset({DataType.DATE}),
    "datetime": frozenset({DataType.DATETIME}),
    "multipicklist": frozenset({DataType.MULTI_TEXT}),
}
_STRING_FORMATS = {"email": "email", "phone": "phone", "url": "url", "textarea": "textarea"}
_UNREQUIRED = frozenset({"None", "Recommended"})


def _format(meta: dict[str, Any]) -> str:
    name = meta.get("FormatName")
    value = name.get("Value") if isinstance(name, dict) else None
    return str(value or meta.get("Format") or "").lower()


def field_type(meta: dict[str, Any]) -> str:
    """Returns the interface's type of one attribute's metadata."""
    kind = str(meta.get("AttributeType") or "")
    type_name = meta.get("AttributeTypeName")
    type_value = type_name.get("Value") if isinstance(type_name, dict) else None
    if type_value == "MultiSelectPicklistType" or kind == "MultiSelectPicklist":
        return "multipicklist"
    if kind == "DateTime":
        behavior = meta.get("DateTimeBehavior")
        date_only = isinstance(behavior, dict) and behavior.get("Value") == "DateOnly"
        return "date" if date_only or _format(meta) == "dateonly" else "datetime"
    if kind == "String":
        return _STRING_FORMATS.get(_format(meta), "string")
    return FIELD_TYPES.get(kind, kind.lower() or "string")


def _label(meta: dict[str, Any], fallback: str) -> str:
    display = meta.get("DisplayName")
    localized = display.get("UserLocalizedLabel") if isinstance(display, dict) else None
    return str((localized or {}).get("Label") or fallback)


def attribute_field(meta: dict[str, Any]) -> CrmField:
    """Returns one attribute as a describe field; a lookup under the key its value is read as (`_x_value`)."""
    logical = str(meta["LogicalName"])
    lookup = meta.get("AttributeType") in LOOKUP_TYPES
    required = meta.get("RequiredLevel")
    level = required.get("Value") if isinstance(required, dict) else "None"
    return CrmField(
        name=f"_{logical}_value" if lookup else logical,
        label=_label(meta, logical),
        type=field_type(meta),
        updateable=bool(meta.get("IsValidForUpdate", False)),
        createable=bool(meta.get("IsValidForCreate", False)),
        nillable=level in _UNREQUIRED,
        length=int(meta.get("MaxLength") or 0),
        reference_to=tuple(meta.get("Targets") or ()) if lookup else (),
        relationship_name=logical if lookup else None,
    )


def _role_fields(entity: Entity, fields: dict[str, CrmField]) -> dict[str, CrmField]:
    """Returns the role fields the table surfaces, typed like the attributes behind them."""
    out: dict[str, CrmField] = {}
    for alias, attribute in entity.aliases.items():
        behind = fields.get(attribute)
        if behind is not None and alias not in fields:
            # A plain rename is written as its attribute; a lookup's value is written through its parent.
            writable = not attribute.startswith("_")
            out[alias] = CrmField(
                alias,
                f"{behind.label} ({attribute})",
                behind.type,
                updateable=writable and behind.updateable,
                createable=writable and behind.createable,
                length=behind.length,
            )
    for related in entity.related:
        if related.lookup in fields:
            out[related.id_field] = CrmField(
                related.id_field,
                f"{related.name} ({related.lookup})",
                "reference",
                updateable=related.name == "Owner",
                createable=related.name == "Owner",
                reference_to=(related.target,),
                relationship_name=related.name,
            )
    if entity.role == "Lead":
        out[QUALIFIED] = CrmField(QUALIFIED, "Qualified (statecode)", "boolean", False, False, False)
        out[QUALIFIED_CONTACT_ID] = CrmField(
            QUALIFIED_CONTACT_ID,
            "Qualified as (parentcontactid)",
            "reference",
            False,
            False,
            reference_to=("Contact",),
        )
    if all(name in fields for name in OPT_OUT_ATTRIBUTES):
        out[OPTED_OUT] = CrmField(OPTED_OUT, "Opted out of e-mail (donotemail or donotbulkemail)", "boolean")
    return out


def described(entity: Entity, attributes: list[dict[str, Any]]) -> ObjectDescribe:
    """Returns the describe of a table from its attributes' metadata, role fields included."""
    fields: dict[str, CrmField] = {}
    for meta in attributes:
        if meta.get("AttributeOf") or meta.get("IsValidForRead") is False or "LogicalName" not in meta:
            continue  # name and yomi shadows of lookups, and unreadable columns
        field = attribute_field(meta)
        fields[field.name] = field
    fields.update(_role_fields(entity, fields))
    fields = {
        name: dataclasses.replace(f, fills=FILLS.get(f.type, frozenset())) for name, f in fields.items()
    }
    return ObjectDescribe(name=entity.role, label=entity.label, fields=fields)


class Describes:
    """Each table's describe, asked again after `describe_ttl_s` (makers add columns)."""

    def __init__(self, http: Transport) -> None:
        self._http = http
        self._kept: dict[str, tuple[float, ObjectDescribe]] = {}

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the table's fields under the interface's types."""
        entity = entity_named(object_name)
        kept = self._kept.get(entity.logical)
        if kept is not None and time.monotonic() < kept[0]:
            return kept[1]
        response = await self._http.call(
            "GET", f"EntityDefinitions(LogicalName='{entity.logical}')/Attributes", operation="describe"
        )
        answer = orjson.loads(response.content)
        result = described(entity, list(answer.get("value") or ()))
        self._kept[entity.logical] = (time.monotonic() + self._http.options.describe_ttl_s, result)
        return result
