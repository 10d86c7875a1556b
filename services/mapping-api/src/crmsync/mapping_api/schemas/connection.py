"""The CRM connection and the CRM's entities."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from crmsync.common.domain.fields import DataType
from crmsync.mapping_api.schemas.common import Body, Text, example

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
