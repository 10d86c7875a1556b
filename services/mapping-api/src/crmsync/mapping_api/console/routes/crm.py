"""Connection (status, test, the API budget as a meter) and CRM Entities (record counts, sample
values of a chosen field, R20)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.mapping_api.console.deps import Crm, Poster, SecretBoxDep, Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import connection as handlers
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, NoConnection

router = APIRouter()
CRM_ERRORS = (NoConnection, CrmUnavailable, Conflict)


@router.get("/connection")
async def connection_page(request: Request, user: User, tx: Tx, secrets: SecretBoxDep) -> Response:
    try:
        view = await handlers.get_connection(tx, account_id=user.account_id, secret_box=secrets)
    except NoConnection:
        view = None
    connection = view.connection if view else None
    reserve = None
    if connection and connection.api_limit:
        reserve = ConnectorOptions().reserve_for(connection.api_limit)
    return render(
        request,
        "connection.html",
        user=user,
        active="connection",
        view=view,
        connection=connection,
        reserve=reserve,
    )


@router.post("/connection/test")
async def test_connection(user: Poster, tx: Tx, crm: Crm, secrets: SecretBoxDep) -> Response:
    user.caller.require_admin()
    await handlers.check_connection(
        tx, account_id=user.account_id, crm=crm, secret_box=secrets, now=utc_now()
    )
    return RedirectResponse("/console/connection", status_code=303)


@router.get("/entities")
async def entities_page(request: Request, user: User, tx: Tx, crm: Crm) -> Response:
    try:
        counts, problem = await handlers.entity_counts(tx, account_id=user.account_id, crm=crm), None
    except CRM_ERRORS as exc:
        counts, problem = [], exc.message
    return render(request, "entities.html", user=user, active="entities", counts=counts, problem=problem)


@router.get("/entities/{entity}")
async def entity_page(
    request: Request,
    user: User,
    tx: Tx,
    crm: Crm,
    entity: Literal["Lead", "Contact"],
    field: str | None = Query(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$"),
) -> Response:
    try:
        described = await handlers.entity_describe(tx, account_id=user.account_id, entity=entity, crm=crm)
        samples = (
            await handlers.sample_values(
                tx, account_id=user.account_id, entity=entity, field=field, limit=20, crm=crm
            )
            if field
            else None
        )
        problem = None
    except CRM_ERRORS as exc:
        described, samples, problem = None, None, exc.message
    return render(
        request,
        "entity.html",
        user=user,
        active="entities",
        entity=entity,
        fields=sorted(described.fields.values(), key=lambda f: f.name) if described else [],
        field=field,
        samples=samples,
        problem=problem,
    )
