"""The mapping, its versions and the push policy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind
from crmsync.mapping_api.schemas.common import Body, CrmFieldName, FieldName, Text, example

_ROW_EXAMPLE = {
    "destination": "first_name",
    "kind": "standard",
    "lead_source": "FirstName",
    "contact_source": "FirstName",
    "data_type": "text",
    "allow_push": None,
}


class MappingRowIn(Body):
    destination: FieldName = Field(description="A standard field key, or a custom field name.")
    kind: FieldKind = FieldKind.STANDARD
    lead_source: CrmFieldName | None = Field(None, description="The Lead field it comes from, if any.")
    contact_source: CrmFieldName | None = Field(None, description="The Contact field it comes from, if any.")
    data_type: DataType | None = Field(
        None, description="Required for custom fields; a standard field's type comes from the catalogue."
    )
    allow_push: bool | None = Field(
        None, description="Overrides the default push policy for this field; null follows the default (R8)."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [_ROW_EXAMPLE]})


class MappingRowOut(BaseModel):
    destination: str
    kind: FieldKind
    lead_source: str | None
    contact_source: str | None
    data_type: DataType
    allow_push: bool | None
    effective_allow_push: bool = Field(
        description="Whether updates of this field are pushed, policy applied."
    )
    local_only: bool = Field(description="No CRM source: kept in All Contacts, never pulled or pushed (R1).")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ROW_EXAMPLE, "effective_allow_push": True, "local_only": False}]}
    )


class MappingIn(Body):
    rows: list[MappingRowIn] = Field(
        max_length=500, description="The whole mapping, as the Save of the guide."
    )
    note: Annotated[Text, StringConstraints(max_length=500)] | None = Field(None, examples=["map job titles"])

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "note": "add Job Title",
                    "rows": [
                        {"destination": "email", "lead_source": "Email", "contact_source": "Email"},
                        {"destination": "job_title", "lead_source": "Title", "contact_source": "Title"},
                        {
                            "destination": "score",
                            "lead_source": "Marketing_Score__c",
                            "contact_source": "Marketing_Score__c",
                        },
                        {"destination": "Shoe_Size", "kind": "custom", "data_type": "number"},
                    ],
                }
            ]
        }
    )


class MappingOut(BaseModel):
    version: int = Field(examples=[2])
    note: str | None = None
    created_at: datetime
    default_allow_push: bool
    rows: list[MappingRowOut]


class MappingSaved(MappingOut):
    checked_against_crm: bool = Field(
        description="False when no CRM connection exists yet, so sources were not checked (R4)."
    )
    new_sources: list[str] = Field(
        description="CRM fields read for the first time, as Object.Field; they trigger a full sync (R15).",
        examples=[["Lead.Title", "Contact.Title"]],
    )
    full_sync_job_id: str | None = Field(None, examples=["acme:full:2026-11-28T10:00:00Z"])


class MappingVersionOut(BaseModel):
    version: int
    note: str | None
    created_at: datetime
    row_count: int

    model_config = example(version=2, note="add Job Title", created_at="2026-11-28T10:00:00Z", row_count=19)


class RowChange(BaseModel):
    destination: str
    changes: dict[str, list[Any]] = Field(
        description="Attribute -> [before, after].", examples=[{"allow_push": [None, False]}]
    )


class MappingDiffOut(BaseModel):
    from_version: int
    to_version: int
    added: list[MappingRowOut]
    removed: list[MappingRowOut]
    changed: list[RowChange]


class PushPolicyIn(Body):
    default_allow_push: bool = Field(description="Whether fields without their own setting push (R8).")

    model_config = ConfigDict(json_schema_extra={"examples": [{"default_allow_push": False}]})


class FieldPushIn(Body):
    allow_push: bool | None = Field(description="true or false, or null to follow the default.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"allow_push": False}]})


class FieldPushOut(BaseModel):
    destination: str
    allow_push: bool | None
    effective_allow_push: bool
    locked: bool = Field(description="Score fields always push; remove the mapping to stop them (R8).")


class PushPolicyOut(BaseModel):
    default_allow_push: bool
    mapping_version: int
    fields: list[FieldPushOut]
