"""From the Web API's JSON to the interface's records, and back, for one table.

A `Selection` says what to `$select` for the fields a caller asked (role
fields, Dataverse attributes, `Owner.Name`-style parents) and how to shape
each answer: annotations dropped, dates typed (UTC-aware `datetime`, or
`date` for date-only columns), role fields filled in beside the attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from crmsync.common.crm.dynamics._entities import (
    LEAD_QUALIFIED,
    MODIFIED_ON,
    OPT_OUT_ATTRIBUTES,
    OPTED_OUT,
    QUALIFIED,
    QUALIFIED_CONTACT_ID,
    Entity,
    Related,
)
from crmsync.common.crm.interface import CrmRecord, ObjectDescribe

CONVERSION_ATTRIBUTES = ("statecode", "_parentcontactid_value")


def parse_datetime(value: Any) -> datetime | None:
    """Returns a Dataverse date-time (ISO 8601, `Z`) as a UTC-aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def incoming(value: Any, kind: str | None) -> Any:
    """Returns a value as the interface's records carry it, by its column's type."""
    if value is None:
        return None
    if kind == "datetime":
        return parse_datetime(value)
    if kind == "date":
        return _parse_date(value)
    if kind == "multipicklist" and isinstance(value, str):
        return value.replace(",", ";")  # Dataverse separates the options with commas, the interface with ;
    return value


def _written(value: Any, kind: str | None) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if kind == "multipicklist":
        options = value if isinstance(value, list | tuple) else str(value).split(";") if value else []
        return ",".join(str(o).strip() for o in options if str(o).strip()) or None
    return value


@dataclass
class Selection:
    """What one read selects and how its records are shaped."""

    entity: Entity
    attributes: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # role field -> attribute
    parents: dict[str, set[str]] = field(default_factory=dict)  # relationship -> its role fields
    types: dict[str, str] = field(default_factory=dict)  # attribute -> interface type
    opt_out: bool = False  # whether OptedOut is asked for

    def _add(self, attribute: str) -> None:
        if attribute not in self.attributes:
            self.attributes.append(attribute)

    @classmethod
    def of(cls, entity: Entity, fields: Sequence[str], described: ObjectDescribe) -> Selection:
        """Returns the selection of `fields` (plus the id and time every record carries)."""
        selection = cls(entity, types={n: f.type for n, f in described.fields.items()})
        for name in ("Id", MODIFIED_ON, *fields):
            selection.want(name, described)
        if entity.role == "Lead":
            for attribute in CONVERSION_ATTRIBUTES:
                if attribute in described.fields:
                    selection._add(attribute)
        return selection

    def want(self, name: str, described: ObjectDescribe) -> None:
        head, _, rest = name.partition(".")
        related = self.entity.related_named(head) if rest else None
        if related is not None:
            self._add(related.lookup)
            self.parents.setdefault(related.name, set()).add(rest)
            return
        for parent in self.entity.related:
            if parent.id_field.lower() == name.lower():
                self._add(parent.lookup)
                self.parents.setdefault(parent.name, set()).add("Id")
                return
        if name.lower() in (QUALIFIED.lower(), QUALIFIED_CONTACT_ID.lower()):
            return  # conversion is read on every lead
        if name.lower() == OPTED_OUT.lower():
            for attribute in OPT_OUT_ATTRIBUTES:
                self._add(attribute)
            self.opt_out = True
            return
        alias = next((a for a in self.entity.aliases if a.lower() == name.lower()), None)
        attribute = self.entity.aliases[alias] if alias is not None else name
        if alias is not None:
            self.aliases[alias] = attribute
        elif attribute not in described.fields:
            attribute = attribute.lower()  # logical names are lower case; Dataverse names an unknown one
        self._add(attribute)

    def shape(self, raw: dict[str, Any]) -> CrmRecord:
        """Returns one answer's record: attributes typed, role fields beside them (parents left to fill)."""
        out: CrmRecord = {}
        for key, value in raw.items():
            if "@" in key:
                continue  # @odata.etag, formatted values and other annotations
            out[key] = incoming(value, self.types.get(key))
        if MODIFIED_ON in out and not isinstance(out[MODIFIED_ON], datetime):
            out[MODIFIED_ON] = parse_datetime(out[MODIFIED_ON])
        for alias, attribute in self.aliases.items():
            out[alias] = out.get(attribute)
        if self.opt_out:
            flags = [out.get(a) for a in OPT_OUT_ATTRIBUTES]
            out[OPTED_OUT] = any(flags) if any(f is not None for f in flags) else None
        if self.entity.role == "Lead" and "statecode" in out:
            qualified = out.get("statecode") == LEAD_QUALIFIED
            out[QUALIFIED] = qualified
            out[QUALIFIED_CONTACT_ID] = out.get("_parentcontactid_value") if qualified else None
        return out

    def parent_attributes(self, related: Related) -> list[str]:
        wanted = self.parents.get(related.name, set()) | {"Id"}
        return sorted({related.fields.get(name, name) for name in wanted})

    def fill_parent(self, record: CrmRecord, related: Related, parents: dict[str, CrmRecord]) -> None:
        """Sets the record's parent (`{"Owner": {"Name": …}}`) and its id field, or None when not found."""
        parent_id = record.get(related.lookup)
        parent = parents.get(str(parent_id).lower()) if parent_id else None
        record[related.id_field] = parent_id if parent is not None else None
        if parent is None:
            record[related.name] = None
            return
        record[related.name] = {
            name: parent.get(related.fields.get(name, name)) for name in self.parents.get(related.name, ())
        }


def outgoing(entity: Entity, record: CrmRecord, types: dict[str, str]) -> dict[str, Any]:
    """Returns a record's body for a create or update: role fields as their columns, values as Dataverse
    takes them (`types`: each column's interface type, from the describe)."""
    lookups = {r.id_field: r for r in entity.related}
    body: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("Id", entity.primary_id, "attributes"):
            continue
        if key == OPTED_OUT:
            # An opt-out stops every e-mail; an opt-in lifts only the bulk (marketing) one (R23).
            body["donotbulkemail"] = bool(value)
            if value:
                body["donotemail"] = True
            continue
        if key in lookups:
            parent = lookups[key]
            body[f"{parent.bind}@odata.bind"] = f"/{parent.target_set}({value})" if value else None
            continue
        attribute = entity.attribute_of(key)
        body[attribute] = _written(value, types.get(attribute))
    return body
