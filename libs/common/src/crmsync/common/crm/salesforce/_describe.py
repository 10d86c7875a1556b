"""Objects' describes, reused for a while, and the value plans built from them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from crmsync.common.crm.interface import CrmField, CrmRejected, ObjectDescribe
from crmsync.common.crm.salesforce import _soql as soql
from crmsync.common.crm.salesforce._transport import Transport
from crmsync.common.crm.salesforce._types import compatible_data_types
from crmsync.common.crm.salesforce._values import Plan, converter_for


class Describes:
    """Each object's describe, asked again after `describe_ttl_s` (admins add fields)."""

    def __init__(self, http: Transport) -> None:
        self._http = http
        self._cache: dict[str, tuple[float, ObjectDescribe]] = {}

    async def describe(self, object_name: str) -> ObjectDescribe:
        """Returns the object's fields (cached for `describe_ttl_s`, as admins add fields)."""
        key = soql.check_name(object_name).lower()
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self._http.options.describe_ttl_s:
            return cached[1]
        response = await self._http.call(
            "GET", f"{self._http.api}/sobjects/{object_name}/describe", operation="describe"
        )
        described = _described(orjson.loads(response.content), object_name)
        self._cache[key] = (time.monotonic(), described)
        return described

    async def prepare(
        self, object_name: str, fields: Sequence[str], *, first: Sequence[str]
    ) -> tuple[list[str], Plan]:
        """Returns the fields under their describe spelling, and the plan converting their values."""
        described = await self.describe(object_name)
        plan: Plan = {}
        names = [await self._plan_path(described, name.split("."), plan) for name in first]
        names += [await self._plan_path(described, name.split("."), plan) for name in fields]
        return soql.unique_fields(names), plan

    async def _plan_path(self, described: ObjectDescribe, parts: list[str], plan: Plan) -> str:
        for part in parts:
            soql.check_name(part)
        head = parts[0].lower()
        if len(parts) == 1:
            for field in described.fields.values():
                if field.name.lower() == head:
                    plan[field.name] = converter_for(field.type)
                    return field.name
            return parts[0]  # unknown: Salesforce itself will answer INVALID_FIELD
        for field in described.fields.values():
            if field.relationship_name and field.relationship_name.lower() == head:
                sub = plan.setdefault(field.relationship_name, {})
                assert isinstance(sub, dict)
                for target in field.reference_to:
                    try:
                        parent = await self.describe(target)
                    except CrmRejected:
                        continue
                    rest = await self._plan_path(parent, parts[1:], sub)
                    return f"{field.relationship_name}.{rest}"
                sub.setdefault(parts[-1], None)
                return ".".join([field.relationship_name, *parts[1:]])
        # Unknown to the describe: still planned, so its nested record is cleaned like the others.
        plan.setdefault(parts[0], {})
        return ".".join(parts)


def _described(body: dict[str, Any], object_name: str) -> ObjectDescribe:
    fields = {
        f["name"]: CrmField(
            name=f["name"],
            label=f.get("label") or f["name"],
            type=f.get("type") or "string",
            updateable=bool(f.get("updateable", False)),
            createable=bool(f.get("createable", False)),
            nillable=bool(f.get("nillable", True)),
            length=int(f.get("length") or 0),
            reference_to=tuple(f.get("referenceTo") or ()),
            relationship_name=f.get("relationshipName"),
            fills=compatible_data_types(f.get("type") or "string"),
        )
        for f in body.get("fields", [])
    }
    return ObjectDescribe(
        name=body.get("name", object_name),
        label=body.get("label", object_name),
        fields=fields,
        queryable=bool(body.get("queryable", True)),
        createable=bool(body.get("createable", True)),
        updateable=bool(body.get("updateable", True)),
    )
