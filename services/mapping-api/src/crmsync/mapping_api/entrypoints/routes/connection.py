"""The CRM connection (secrets write-only) and the CRM's entities (R20)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from crmsync.common.clock import utc_now
from crmsync.mapping_api.entrypoints.deps import (
    AdminAccount,
    CrmDep,
    CurrentAccount,
    SecretsDep,
    TransactionsDep,
)
from crmsync.mapping_api.handlers import connection as handlers
from crmsync.mapping_api.schemas import (
    ApiBudgetOut,
    ConnectionIn,
    ConnectionOut,
    CrmFieldOut,
    EntityOut,
    SampleValuesOut,
)

router = APIRouter(tags=["crm"])
Entity = Annotated[Literal["Lead", "Contact"], Path(description="A synced CRM entity.", examples=["Lead"])]


def connection_out(view: handlers.ConnectionView) -> ConnectionOut:
    connection = view.connection
    budget = None
    if connection.api_limit is not None and connection.api_usage is not None:
        budget = ApiBudgetOut(
            used=connection.api_usage,
            limit=connection.api_limit,
            remaining=max(0, connection.api_limit - connection.api_usage),
        )
    return ConnectionOut.model_validate(
        {
            **vars(connection),
            "provider_label": handlers.provider_of(connection).label,
            "secrets_set": view.secrets_set,
            "api_budget": budget,
        },
        from_attributes=True,
    )


@router.get(
    "/connection", response_model=ConnectionOut, summary="The CRM connection, its status and API budget"
)
async def read_connection(caller: CurrentAccount, tx: TransactionsDep, secrets: SecretsDep) -> ConnectionOut:
    return connection_out(await handlers.get_connection(tx, account_id=caller.account_id, secret_box=secrets))


@router.put(
    "/connection",
    response_model=ConnectionOut,
    summary="Store the CRM credentials",
    description="The provider (salesforce by default, or dynamics) says which CRM; what it cannot use "
    "is refused with a 422 naming the field, and nothing is stored. Secrets are encrypted at rest "
    "and never returned; a secret left out keeps its stored value. A first connection, or one to "
    "another provider, gives an account whose mapping was never changed that provider's default "
    "mapping (R7).",
)
async def put_connection(
    body: ConnectionIn, caller: AdminAccount, tx: TransactionsDep, secrets: SecretsDep, crm: CrmDep
) -> ConnectionOut:
    credentials = handlers.Credentials(
        provider=body.provider,
        login_url=str(body.login_url),
        instance_url=str(body.instance_url) if body.instance_url else None,
        auth_method=body.auth_method,
        client_id=body.client_id,
        username=body.username,
        api_version=body.api_version,
        secrets={name: getattr(body, name) for name in handlers.SECRET_NAMES},
    )
    view = await handlers.put_connection(
        tx, account_id=caller.account_id, credentials=credentials, secret_box=secrets, crm=crm, now=utc_now()
    )
    return connection_out(view)


@router.post(
    "/connection/test",
    response_model=ConnectionOut,
    summary="Try the connection; records its status and the API budget left",
)
async def test_connection(
    caller: AdminAccount, tx: TransactionsDep, crm: CrmDep, secrets: SecretsDep
) -> ConnectionOut:
    view = await handlers.check_connection(
        tx, account_id=caller.account_id, crm=crm, secret_box=secrets, now=utc_now()
    )
    return connection_out(view)


@router.get("/crm/entities", response_model=list[EntityOut], summary="Record count of each CRM entity (R20)")
async def list_entities(caller: CurrentAccount, tx: TransactionsDep, crm: CrmDep) -> list[EntityOut]:
    counts = await handlers.entity_counts(tx, account_id=caller.account_id, crm=crm)
    return [EntityOut(name=name, record_count=count) for name, count in counts]  # type: ignore[arg-type]


@router.get(
    "/crm/entities/{entity}/fields",
    response_model=list[CrmFieldOut],
    summary="The entity's fields from the CRM's describe, and what each may fill",
)
async def list_fields(
    entity: Entity, caller: CurrentAccount, tx: TransactionsDep, crm: CrmDep
) -> list[CrmFieldOut]:
    described = await handlers.entity_describe(tx, account_id=caller.account_id, entity=entity, crm=crm)
    return [
        CrmFieldOut(
            name=f.name,
            label=f.label,
            type=f.type,
            updateable=f.updateable,
            fills=sorted(f.fills),
        )
        for f in described.fields.values()
    ]


@router.get(
    "/crm/entities/{entity}/fields/{field}/samples",
    response_model=SampleValuesOut,
    summary="Sample values of a field (R20)",
)
async def field_samples(
    entity: Entity,
    field: Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$", examples=["Industry"])],
    caller: CurrentAccount,
    tx: TransactionsDep,
    crm: CrmDep,
    limit: Annotated[int, Query(ge=1, le=100, examples=[10])] = 10,
) -> SampleValuesOut:
    values = await handlers.sample_values(
        tx, account_id=caller.account_id, entity=entity, field=field, limit=limit, crm=crm
    )
    return SampleValuesOut(entity=entity, field=field, values=values)
