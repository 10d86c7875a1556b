"""The CRM connection and the CRM's entities."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from crmsync.common.crm.providers import DEFAULT_PROVIDER, PROVIDERS
from crmsync.common.domain.fields import DataType
from crmsync.mapping_api.schemas.common import Body, Text, example

# Every provider's sign-in methods; which of them a provider takes is checked with the provider.
AUTH_METHODS = tuple(dict.fromkeys(m for p in PROVIDERS.values() for m in p.auth_methods))
ProviderName = Annotated[str, Field(json_schema_extra={"enum": list(PROVIDERS)})]
AuthMethod = Annotated[str, Field(json_schema_extra={"enum": list(AUTH_METHODS)})]
Secret = Annotated[Text, StringConstraints(min_length=1, max_length=10_000)]
ApiVersion = Annotated[str, StringConstraints(pattern=r"^\d{1,3}\.\d{1,2}$")]


class ConnectionIn(Body):
    provider: ProviderName = Field(
        DEFAULT_PROVIDER,
        description="Which CRM: " + ", ".join(f"{p.name} ({p.label})" for p in PROVIDERS.values()),
    )
    login_url: AnyHttpUrl = Field(
        description="Where to sign in: the CRM's login URL, or for an Entra ID (Azure AD) sign-in the "
        "authority with the tenant (https://login.microsoftonline.com/<tenant id>).",
        examples=["https://login.salesforce.com"],
    )
    instance_url: AnyHttpUrl | None = Field(
        None,
        description="The CRM environment, for a provider that does not learn it at sign-in "
        "(https://<org>.crm.dynamics.com).",
    )
    auth_method: AuthMethod = Field(examples=["client_credentials"])
    client_id: Annotated[Text, StringConstraints(min_length=1, max_length=500)] = Field(examples=["3MVG9..."])
    username: Annotated[Text, StringConstraints(min_length=1, max_length=320)] | None = Field(
        None, description="For jwt_bearer."
    )
    api_version: ApiVersion | None = Field(None, description="The provider's default when left out.")
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
                },
                {
                    "provider": "dynamics",
                    "login_url": "https://login.microsoftonline.com/5f0c1e2d-7a3b-4c5d-9e8f-0a1b2c3d4e5f",
                    "instance_url": "https://contoso.crm.dynamics.com",
                    "auth_method": "client_credentials",
                    "client_id": "9a8b7c6d-1111-2222-3333-444455556666",
                    "client_secret": "s3cr3t",
                },
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
    provider_label: str = Field(examples=["Salesforce"], description="The CRM's name, to show.")
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
        provider_label="Salesforce",
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
