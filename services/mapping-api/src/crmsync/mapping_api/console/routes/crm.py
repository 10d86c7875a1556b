"""Connection (status, test, the API budget as a meter) and CRM Entities (record counts, sample
values of a chosen field, R20)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.providers import DEFAULT_PROVIDER, PROVIDERS
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.mapping_api.console.deps import ConsoleUser, Crm, Poster, SecretBoxDep, Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import connection as handlers
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, Invalid, NoConnection
from crmsync.mapping_api.handlers.ports import Secrets, Transactions
from crmsync.mapping_api.schemas.connection import AUTH_METHODS

router = APIRouter()
CRM_ERRORS = (NoConnection, CrmUnavailable, Conflict)
# The connection form's fields; its secrets (handlers.SECRET_NAMES) are written only, never shown back.
FORM_FIELDS = ("provider", "login_url", "instance_url", "auth_method", "client_id", "username", "api_version")


async def _connection_page(
    request: Request,
    user: ConsoleUser,
    tx: Transactions,
    secrets: Secrets,
    *,
    error: Invalid | None = None,
    draft: dict[str, str] | None = None,
) -> Response:
    try:
        view = await handlers.get_connection(tx, account_id=user.account_id, secret_box=secrets)
    except NoConnection:
        view = None
    connection = view.connection if view else None
    provider = handlers.provider_of(connection) if connection else None
    reserve = None
    if connection and provider and connection.api_limit:
        # What the CRM's connector, with its own default options, leaves to the customer's other tools.
        reserve = provider.options(ConnectorSettings(), None).reserve_for(connection.api_limit)
    return render(
        request,
        "connection.html",
        user=user,
        active="connection",
        status_code=422 if error else 200,
        view=view,
        connection=connection,
        provider=provider,
        providers=list(PROVIDERS.values()),
        auth_methods=AUTH_METHODS,
        form=draft or form_of(connection),
        error=error,
        reserve=reserve,
    )


def form_of(connection: CrmConnectionInfo | None) -> dict[str, str]:
    """Returns the connection form's fields as stored (secrets are never shown)."""
    if connection is None:
        return {"provider": DEFAULT_PROVIDER, "auth_method": "client_credentials"}
    return {name: getattr(connection, name) or "" for name in FORM_FIELDS}


@router.get("/connection")
async def connection_page(request: Request, user: User, tx: Tx, secrets: SecretBoxDep) -> Response:
    return await _connection_page(request, user, tx, secrets)


@router.post("/connection")
async def save_connection(
    request: Request, user: Poster, tx: Tx, crm: Crm, secrets: SecretBoxDep
) -> Response:
    user.caller.require_admin()
    form = await request.form()
    draft = {name: v.strip() for name in FORM_FIELDS if isinstance(v := form.get(name), str)}
    given = {
        name: v.strip() or None for name in handlers.SECRET_NAMES if isinstance(v := form.get(name), str)
    }
    try:
        for name in ("login_url", "instance_url"):
            if draft.get(name) and not draft[name].startswith(("https://", "http://")):
                raise Invalid(f"{name} must be an http(s) URL", field=name)
        if not draft.get("login_url") or not draft.get("client_id"):
            raise Invalid("a login URL and a client id are needed", field="login_url")
        credentials = handlers.Credentials(
            provider=draft.get("provider") or DEFAULT_PROVIDER,
            login_url=draft["login_url"],
            instance_url=draft.get("instance_url") or None,
            auth_method=draft.get("auth_method") or "client_credentials",
            client_id=draft["client_id"],
            username=draft.get("username") or None,
            api_version=draft.get("api_version") or None,
            secrets={name: given.get(name) for name in handlers.SECRET_NAMES},
        )
        await handlers.put_connection(
            tx,
            account_id=user.account_id,
            credentials=credentials,
            secret_box=secrets,
            crm=crm,
            now=utc_now(),
        )
    except Invalid as exc:
        return await _connection_page(request, user, tx, secrets, error=exc, draft=draft)
    return RedirectResponse("/console/connection", status_code=303)


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
