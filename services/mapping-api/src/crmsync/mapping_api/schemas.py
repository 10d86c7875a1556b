"""The API's request and response bodies (the OpenAPI contract), with examples."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind
from crmsync.common.domain.schedule import ScheduleMode


def storable(value: str) -> str:
    """Refuses text PostgreSQL or UTF-8 cannot hold (NUL, lone surrogates), so it is a 422, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Text = Annotated[str, AfterValidator(storable)]
FieldName = Annotated[Text, StringConstraints(min_length=1, max_length=80)]
CrmFieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")]
FieldValue = Annotated[
    Text | int | float | bool | list[Text] | None,
    Field(examples=["Ada", 42, True, ["Widgets", "Gadgets"]]),
]


def example(**values: Any) -> ConfigDict:
    """Returns a model config whose JSON schema carries one whole example object."""
    return ConfigDict(json_schema_extra={"examples": [values]})


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -----------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str | None = Field(description="The offending field, e.g. 'rows[3].lead_source' or 'limit'.")
    message: str
    rule: str | None = Field(None, description="The design rule broken (R1…R23), when one is.")
    row: int | None = Field(None, description="Index of the mapping row, for a refused mapping.")
    destination: str | None = None


class ErrorBody(BaseModel):
    error: str = Field(examples=["mapping_refused"], description="A stable, machine-readable code.")
    message: str = Field(examples=["the mapping breaks 1 rule"])
    field: str | None = Field(
        None, examples=["rows[0].lead_source"], description="The first offending field."
    )
    details: list[ErrorDetail] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "mapping_refused",
                    "message": "the mapping breaks 1 rule",
                    "field": "rows[0]",
                    "details": [
                        {
                            "field": "rows[0]",
                            "message": "E-mail Address must map from Lead.Email",
                            "rule": "R2",
                            "row": 0,
                            "destination": "email",
                        }
                    ],
                }
            ]
        }
    )


# --- account and catalogue -------------------------------------------------------


class AccountOut(BaseModel):
    id: str = Field(examples=["acme"])
    name: str = Field(examples=["Acme Corp"])
    role: Literal["admin", "reader"] = Field(description="The role of the key used for this call.")
    created_at: datetime

    model_config = example(id="acme", name="Acme Corp", role="admin", created_at="2026-11-01T09:00:00Z")


class StandardFieldOut(BaseModel):
    key: str = Field(examples=["first_name"])
    label: str = Field(examples=["First Name"])
    data_type: DataType
    related_object: bool = Field(
        description="Filled from a related CRM object (the record's owner); takes no source (R5)."
    )

    model_config = example(key="first_name", label="First Name", data_type="text", related_object=False)


class CatalogueOut(BaseModel):
    standard_fields: list[StandardFieldOut]
    data_types: list[DataType] = Field(description="The data types a custom field may have (R6).")


# --- mapping -------------------------------------------------------------------------

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


# --- push policy -----------------------------------------------------------------------


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


# --- schedule ------------------------------------------------------------------------------


class ScheduleIn(Body):
    mode: ScheduleMode = Field(description="automatic is recommended (R14).")
    interval_minutes: int | None = Field(None, ge=5, le=10080, description="For mode interval.")
    time_of_day: time | None = Field(
        None, description="For daily and weekly, in `timezone`.", examples=["02:30"]
    )
    weekday: int | None = Field(None, ge=0, le=6, description="For weekly: 0 = Monday … 6 = Sunday.")
    timezone: Annotated[Text, StringConstraints(min_length=1, max_length=64)] = Field(
        "UTC", examples=["Europe/Berlin"]
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"mode": "automatic"},
                {"mode": "interval", "interval_minutes": 30},
                {"mode": "weekly", "weekday": 0, "time_of_day": "02:30", "timezone": "Europe/Berlin"},
            ]
        }
    )


class DueTime(BaseModel):
    kind: Literal["full", "incremental"]
    at: datetime

    model_config = example(kind="incremental", at="2026-11-28T10:15:00Z")


class ScheduleOut(BaseModel):
    mode: ScheduleMode
    interval_minutes: int | None
    time_of_day: time | None
    weekday: int | None
    timezone: str
    automatic_interval_minutes: int | None = Field(
        description="For automatic: the interval chosen from the record count and the API budget."
    )
    full_sync_requested_at: datetime | None = Field(description="Set when the mapping gained a field (R15).")
    last_full_sync_at: datetime | None
    last_incremental_sync_at: datetime | None
    next_due: list[DueTime] = Field(description="The next scheduled syncs; empty for manual.")

    model_config = example(
        mode="automatic",
        interval_minutes=None,
        time_of_day=None,
        weekday=None,
        timezone="UTC",
        automatic_interval_minutes=15,
        full_sync_requested_at=None,
        last_full_sync_at="2026-11-20T02:00:00Z",
        last_incremental_sync_at="2026-11-28T10:00:00Z",
        next_due=[
            {"kind": "incremental", "at": "2026-11-28T10:15:00Z"},
            {"kind": "incremental", "at": "2026-11-28T10:30:00Z"},
            {"kind": "incremental", "at": "2026-11-28T10:45:00Z"},
        ],
    )


class SyncNowIn(Body):
    kind: Literal["full", "incremental"] | None = Field(
        None, description="Default: full until a full sync has succeeded, incremental afterwards."
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{}, {"kind": "full"}]})


class SyncJobOut(BaseModel):
    job_id: str = Field(examples=["acme:incremental:sync_now:5f0c2a9e"])
    kind: Literal["full", "incremental"]
    reason: str = Field(examples=["sync_now"])
    requested_at: datetime

    model_config = example(
        job_id="acme:incremental:sync_now:5f0c2a9e1b2c",
        kind="incremental",
        reason="sync_now",
        requested_at="2026-11-28T10:00:00Z",
    )


# --- CRM connection and entities ------------------------------------------------------------

AuthMethod = Literal["client_credentials", "refresh_token", "jwt_bearer"]
Secret = Annotated[Text, StringConstraints(min_length=1, max_length=10_000)]


class ConnectionIn(Body):
    login_url: AnyHttpUrl = Field(examples=["https://login.salesforce.com"])
    auth_method: AuthMethod = Field(examples=["client_credentials"])
    client_id: Annotated[Text, StringConstraints(min_length=1, max_length=500)] = Field(examples=["3MVG9..."])
    username: Annotated[Text, StringConstraints(min_length=1, max_length=320)] | None = Field(
        None, description="For jwt_bearer."
    )
    api_version: Annotated[str, StringConstraints(pattern=r"^\d{2,3}\.0$")] = "60.0"
    client_secret: Secret | None = Field(None, description="Write-only; stored encrypted, never returned.")
    refresh_token: Secret | None = Field(None, description="Write-only; for refresh_token.")
    private_key: Secret | None = Field(None, description="Write-only PEM; for jwt_bearer.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "login_url": "https://login.salesforce.com",
                    "auth_method": "client_credentials",
                    "client_id": "3MVG9-demo-client",
                    "client_secret": "s3cr3t",
                }
            ]
        }
    )


class ApiBudgetOut(BaseModel):
    used: int
    limit: int
    remaining: int

    model_config = example(used=1200, limit=15000, remaining=13800)


class ConnectionOut(BaseModel):
    provider: str = Field(examples=["salesforce"])
    login_url: str
    instance_url: str | None
    auth_method: AuthMethod
    client_id: str
    username: str | None
    api_version: str
    secrets_set: list[str] = Field(
        description="Which secrets are stored (their values are never returned).",
        examples=[["client_secret"]],
    )
    status: Literal["untested", "connected", "failed"]
    status_message: str | None
    last_checked_at: datetime | None
    api_budget: ApiBudgetOut | None = Field(description="Daily API requests used and left, at the last test.")

    model_config = example(
        provider="salesforce",
        login_url="https://login.salesforce.com",
        instance_url=None,
        auth_method="client_credentials",
        client_id="3MVG9-demo-client",
        username=None,
        api_version="60.0",
        secrets_set=["client_secret"],
        status="connected",
        status_message=None,
        last_checked_at="2026-11-28T10:00:00Z",
        api_budget={"used": 1200, "limit": 15000, "remaining": 13800},
    )


class EntityOut(BaseModel):
    name: Literal["Lead", "Contact"]
    record_count: int

    model_config = example(name="Lead", record_count=2000)


class CrmFieldOut(BaseModel):
    name: str = Field(examples=["FirstName"])
    label: str = Field(examples=["First Name"])
    type: str = Field(examples=["string"])
    updateable: bool
    fills: list[DataType] = Field(description="The data types this field may fill in a mapping (R4).")

    model_config = example(
        name="Marketing_Score__c",
        label="Marketing Score",
        type="double",
        updateable=True,
        fills=["number", "score"],
    )


class SampleValuesOut(BaseModel):
    entity: Literal["Lead", "Contact"]
    field: str
    values: list[Any] = Field(examples=[["Acme", "Globex"]])


# --- contacts, segments, runs, push log ----------------------------------------------------


class FieldValueOut(BaseModel):
    value: Any = Field(examples=["Ada"])
    origin: str | None = Field(description="'crm', or the event source that set it (form, user_edit…).")
    at: datetime | None = Field(description="When it was set (CRM SystemModstamp or the event time).")

    model_config = example(value="Ada", origin="crm", at="2026-11-20T10:00:00Z")


class ContactSummary(BaseModel):
    id: UUID
    type: Literal["Lead", "Contact"] | None = Field(description="null for a contact that is not in the CRM.")
    external_id: str | None = Field(examples=["00Q000000000001AAA"])
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    updated_at: datetime

    model_config = example(
        id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        type="Lead",
        external_id="00Q000000000001AAA",
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        company="Analytical Engines",
        updated_at="2026-11-28T10:00:00Z",
    )


class ContactOut(ContactSummary):
    fields: dict[str, FieldValueOut]
    owner_name: str | None
    owner_email: str | None
    crm_modstamp: datetime | None
    created_at: datetime

    model_config = example(
        id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        type="Lead",
        external_id="00Q000000000001AAA",
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        company="Analytical Engines",
        updated_at="2026-11-28T10:00:00Z",
        fields={
            "first_name": {"value": "Ada", "origin": "crm", "at": "2026-11-20T10:00:00Z"},
            "job_title": {"value": "Analyst", "origin": "user_edit", "at": "2026-11-28T09:00:00Z"},
        },
        owner_name="Sam Sales",
        owner_email="sam@example.com",
        crm_modstamp="2026-11-20T10:00:00Z",
        created_at="2026-11-20T10:05:00Z",
    )


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class ContactEditIn(Body):
    changes: dict[FieldName, FieldValue] = Field(
        min_length=1, max_length=100, description="Field -> new value, for fields of the mapping."
    )

    model_config = example(changes={"first_name": "Ada", "job_title": "Analyst"})


class ContactEditAccepted(BaseModel):
    event_id: str
    contact_id: UUID
    topic: str = Field(examples=["crmsync.contact-changes"])

    model_config = example(
        event_id="9eeacc14-8d6b-4793-9a77-e7e84999c472",
        contact_id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        topic="crmsync.contact-changes",
    )


class SegmentOut(BaseModel):
    id: Literal["all-contacts", "salesforce-leads", "salesforce-contacts"]
    name: str = Field(examples=["All Salesforce Leads"])
    count: int

    model_config = example(id="salesforce-leads", name="All Salesforce Leads", count=2000)


class SyncRunOut(BaseModel):
    id: UUID
    job_id: str
    kind: str = Field(examples=["incremental"])
    reason: str = Field(examples=["schedule"])
    status: str = Field(examples=["succeeded"])
    attempts: int
    pulled: int
    created: int
    updated: int
    deleted: int
    skipped: int
    errors: int
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None

    model_config = example(
        id="0b8f6f2e-8a43-4a55-8f7c-4b0e6f1d2a3b",
        job_id="acme:incremental:2026-11-28T10:00:00Z",
        kind="incremental",
        reason="schedule",
        status="succeeded",
        attempts=1,
        pulled=42,
        created=3,
        updated=39,
        deleted=1,
        skipped=0,
        errors=0,
        error=None,
        requested_at="2026-11-28T10:00:00Z",
        started_at="2026-11-28T10:00:01Z",
        finished_at="2026-11-28T10:00:07Z",
        duration_s=6.0,
    )


class SyncRunPage(BaseModel):
    items: list[SyncRunOut]
    next_cursor: str | None


class PushLogOut(BaseModel):
    id: int
    event_id: str
    source: str | None
    contact_id: UUID | None
    crm_object: str | None
    crm_id: str | None
    operation: str
    status: str
    sent_fields: dict[str, Any]
    decisions: dict[str, Any]
    error_code: str | None
    error_message: str | None
    attempts: int
    occurred_at: datetime | None
    created_at: datetime
    updated_at: datetime

    model_config = example(
        id=1017,
        event_id="6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11",
        source="form",
        contact_id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        crm_object="Lead",
        crm_id="00Q000000000001AAA",
        operation="update",
        status="succeeded",
        sent_fields={"Title": "Analyst"},
        decisions={"title": "sent", "company": "allow push off (R8)"},
        error_code=None,
        error_message=None,
        attempts=1,
        occurred_at="2026-11-28T10:00:00Z",
        created_at="2026-11-28T10:00:01Z",
        updated_at="2026-11-28T10:00:02Z",
    )


class PushLogPage(BaseModel):
    items: list[PushLogOut]
    next_cursor: str | None
