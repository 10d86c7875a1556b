"""Table metadata: `EntityDefinitions` (by LogicalName or MetadataId, with $select / $filter) and
their `Attributes`, also cast to a type (`/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`)."""

from __future__ import annotations

import re
import uuid

from crmsync.dynamics_emulator.errors import NOT_FOUND, DataverseError, invalid
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.odata_filter import compile_filter
from crmsync.dynamics_emulator.query import split_top
from crmsync.dynamics_emulator.schema import MULTI_SELECT, OPTION_TYPES, TABLES, Attribute, Table

PATH = re.compile(
    r"^EntityDefinitions(?:\((?P<key>[^)]*)\))?"
    r"(?:/Attributes(?:\((?P<attribute>[^)]*)\))?(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?)?$"
)
KINDS = {"Uniqueidentifier": "UniqueIdentifier", "Owner": "Lookup", "Customer": "Lookup"}
SCHEMA_NAMES = {"systemuser": "SystemUser"}
Meta = dict[str, object]


def _label(text: str) -> Meta:
    label = {"Label": text, "LanguageCode": 1033}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def entity_metadata(table: Table) -> Meta:
    return {
        "MetadataId": table.metadata_id,
        "LogicalName": table.logical,
        "SchemaName": SCHEMA_NAMES.get(table.logical, table.logical.capitalize()),
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "DisplayName": _label(table.display),
        "IsPrivate": False,
        "IsCustomEntity": False,
        "ChangeTrackingEnabled": True,
        "IsValidForAdvancedFind": True,
    }


def _kind(attribute: Attribute) -> str:
    return KINDS.get(attribute.type, attribute.type)


def _string_format(attribute: Attribute) -> str:
    if attribute.type == "Memo":
        return "TextArea"
    name = attribute.name
    if "email" in name:
        return "Email"
    if name.startswith("telephone") or name == "mobilephone":
        return "Phone"
    return "Url" if name == "websiteurl" else "Text"


def attribute_metadata(table: Table, attribute: Attribute) -> Meta:
    meta: Meta = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{_kind(attribute)}AttributeMetadata",
        "MetadataId": str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-emulator/{table.logical}/{attribute.name}")
        ),
        "LogicalName": attribute.name,
        "SchemaName": attribute.schema_name or attribute.name.capitalize(),
        "EntityLogicalName": table.logical,
        # A multi-select choice is a virtual column over its values (AttributeTypeName says which).
        "AttributeType": "Virtual" if attribute.type == MULTI_SELECT else attribute.type,
        "AttributeTypeName": {"Value": f"{_kind(attribute)}Type"},
        "IsPrimaryId": attribute.name == table.primary_id,
        "IsPrimaryName": attribute.name == table.primary_name,
        "IsValidForCreate": attribute.create,
        "IsValidForUpdate": attribute.update,
        "IsValidForRead": True,
        "IsCustomAttribute": attribute.custom,
        "RequiredLevel": {"Value": "SystemRequired" if attribute.name == table.primary_id else "None"},
        "DisplayName": _label(attribute.name),
    }
    if attribute.type in ("String", "Memo"):
        meta["MaxLength"] = attribute.max_length
        meta["FormatName"] = {"Value": _string_format(attribute)}
    if attribute.type == "Integer":
        meta["MinValue"], meta["MaxValue"], meta["Format"] = -2_147_483_648, 2_147_483_647, "None"
    if attribute.type == "DateTime":
        meta["DateTimeBehavior"] = {"Value": "UserLocal"}  # values are date-times in UTC, even birthdate
    if attribute.is_lookup:
        meta["Targets"] = list(attribute.targets)
    return meta


def _option_set(attribute: Attribute) -> Meta:
    options = [{"Value": value, "Label": _label(text)} for value, text in attribute.options]
    kind = "Picklist" if attribute.type == MULTI_SELECT else attribute.type
    return {"Name": f"{attribute.name}", "OptionSetType": kind, "IsGlobal": False, "Options": options}


def _project(item: Meta, call: Call, extra: Meta | None = None) -> Meta:
    select = call.query.get("$select")
    expand = {part.partition("(")[0] for part in split_top(call.query.get("$expand", ""))}
    out = dict(item)
    if select:
        keep = set(split_top(select)) | {"MetadataId", "@odata.type"}
        out = {k: v for k, v in item.items() if k in keep}
    for name, value in (extra or {}).items():
        if name in expand:
            out[name] = value
    return out


def _resolve_meta(sample: Meta):  # type: ignore[no-untyped-def]
    def resolve(name: str) -> tuple[str, str]:
        if name not in sample:
            raise invalid(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
            )
        value = sample[name]
        edm = (
            "Edm.Boolean"
            if isinstance(value, bool)
            else "Edm.Int32"
            if isinstance(value, int)
            else "Edm.String"
        )
        return name, edm

    return resolve


def _table(key: str) -> Table:
    match = re.fullmatch(r"LogicalName='(\w+)'", key)
    table = (
        TABLES.get(match[1]) if match else next((t for t in TABLES.values() if t.metadata_id == key), None)
    )
    if table is None:
        raise DataverseError(404, NOT_FOUND, f"Could not find entity with {key}.")
    return table


def _attributes(call: Call, table: Table, attribute_key: str | None, cast: str | None) -> Reply:
    chosen = list(table.attributes)
    if cast is not None:
        chosen = [a for a in chosen if f"{_kind(a)}AttributeMetadata" == cast]
    if attribute_key is not None:
        match = re.fullmatch(r"LogicalName='(\w+)'", attribute_key)
        name = match[1] if match else None
        found = [
            a for a in chosen if a.name == name or attribute_metadata(table, a)["MetadataId"] == attribute_key
        ]
        if not found:
            raise DataverseError(
                404, NOT_FOUND, f"Could not find attribute {attribute_key} on {table.logical}."
            )
        item = attribute_metadata(table, found[0])
        extra = {"OptionSet": _option_set(found[0])} if found[0].type in OPTION_TYPES else None
        context = f"{call.root}/$metadata#EntityDefinitions('{table.metadata_id}')/Attributes/$entity"
        return Reply.json(200, {"@odata.context": context, **_project(item, call, extra)})
    value = []
    for attribute in chosen:
        extra = {"OptionSet": _option_set(attribute)} if attribute.type in OPTION_TYPES else None
        value.append(_project(attribute_metadata(table, attribute), call, extra))
    context = f"{call.root}/$metadata#EntityDefinitions('{table.metadata_id}')/Attributes"
    return Reply.json(200, {"@odata.context": context, "value": value})


def handle(call: Call) -> Reply | None:
    """Answers a metadata path (None: not one)."""
    match = PATH.match(call.path)
    if match is None:
        return None
    if call.method != "GET":
        raise invalid("The emulator's metadata is read-only.", status=405)
    key, attribute_key, cast = match["key"], match["attribute"], match["cast"]
    if key is None:
        items = [entity_metadata(t) for t in TABLES.values()]
        text = call.query.get("$filter")
        if text:
            predicate = compile_filter(text, _resolve_meta(items[0]))
            items = [item for item in items if predicate(item)]
        context = f"{call.root}/$metadata#EntityDefinitions"
        return Reply.json(200, {"@odata.context": context, "value": [_project(i, call) for i in items]})
    table = _table(key)
    if "/Attributes" in call.path:
        return _attributes(call, table, attribute_key, cast)
    context = f"{call.root}/$metadata#EntityDefinitions/$entity"
    return Reply.json(200, {"@odata.context": context, **_project(entity_metadata(table), call)})
