"""The CRM connection: which CRM (the provider), credentials sealed at rest, a test that records
status and API budget (R20)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmAuthError, CrmConnector, CrmError, ObjectDescribe
from crmsync.common.crm.providers import DEFAULT_PROVIDER, PROVIDERS, CrmProvider, provider_named
from crmsync.common.domain.mapping import CrmObject
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, Invalid, NoConnection, NotFound
from crmsync.mapping_api.handlers.ports import ConnectionStore, CrmPort, Secrets, Stores, Transactions

SECRET_NAMES = ("client_secret", "refresh_token", "private_key")
NEEDS = {
    "client_credentials": ("client_secret",),
    "refresh_token": ("refresh_token",),
    "jwt_bearer": ("username", "private_key"),
}
# What a connection is made of, as PUT /v1/connection names it: a connector's refusal of a
# connection that names one of these is that field's error.
CONNECTION_FIELDS = (
    "provider",
    "login_url",
    "instance_url",
    "auth_method",
    "client_id",
    "username",
    "api_version",
    *SECRET_NAMES,
)
T = TypeVar("T")


@dataclass(frozen=True)
class ConnectionView:
    """A stored connection and which secrets it holds (never their values)."""

    connection: CrmConnectionInfo
    secrets_set: list[str]


@dataclass(frozen=True)
class Credentials:
    """What PUT /v1/connection gives; a secret left None keeps its stored value.

    `api_version` None is the provider's default; `instance_url` is for a provider whose
    environment the admin names (one that learns it at sign-in leaves it None).
    """

    login_url: str
    auth_method: str
    client_id: str
    username: str | None
    api_version: str | None
    secrets: dict[str, str | None]
    provider: str = DEFAULT_PROVIDER
    instance_url: str | None = None


def provider_of(connection: CrmConnectionInfo) -> CrmProvider:
    """Returns the provider of a stored connection."""
    return provider_named(connection.provider)


def chosen_provider(name: str) -> CrmProvider:
    """Returns the provider a client named; Invalid naming the known ones."""
    try:
        return provider_named(name)
    except ValueError:
        raise Invalid(f"provider must be one of {', '.join(PROVIDERS)}", field="provider") from None


def refused_field(message: str) -> str:
    """Returns the connection field a connector's refusal names first ("connection" if none)."""
    words = message.replace(":", " ").replace(",", " ").split()
    return next((w for w in words if w in CONNECTION_FIELDS), "connection")


async def stored_connection(connections: ConnectionStore, account_id: str) -> CrmConnectionInfo:
    """Returns the account's connection; NoConnection when none was stored."""
    connection = await connections.get(account_id)
    if connection is None:
        raise NoConnection()
    return connection


def view(connection: CrmConnectionInfo, secret_box: Secrets) -> ConnectionView:
    """Returns the connection with the names of the secrets it holds (none when they cannot be opened)."""
    try:
        stored = secret_box.open(connection.secrets_encrypted)
    except ValueError:
        stored = {}
    return ConnectionView(connection, [name for name in SECRET_NAMES if stored.get(name)])


async def get_connection(tx: Transactions, *, account_id: str, secret_box: Secrets) -> ConnectionView:
    """Returns the account's connection and which secrets it holds; NoConnection when none was stored."""
    async with tx.read() as stores:
        return view(await stored_connection(stores.connections, account_id), secret_box)


async def put_connection(
    tx: Transactions,
    *,
    account_id: str,
    credentials: Credentials,
    secret_box: Secrets,
    crm: CrmPort,
    now: datetime,
) -> ConnectionView:
    """Returns the stored connection. Secrets not given keep their stored values; status resets.

    What the provider cannot use is refused (Invalid) and nothing is stored. A first
    connection, or one to another provider, brings that provider's default mapping to an
    account whose mapping nobody has changed (R7).
    """
    provider = chosen_provider(credentials.provider)
    if credentials.auth_method not in provider.auth_methods:
        raise Invalid(
            f"{provider.label} signs in with {' or '.join(provider.auth_methods)}", field="auth_method"
        )
    async with tx.begin() as stores:
        existing = await stores.connections.get(account_id)
        connection = _written(account_id, existing, credentials, provider, secret_box)
        try:
            await crm.check(connection)
        except ValueError as exc:
            raise Invalid(f"{provider.label}: {exc}", field=refused_field(str(exc))) from None
        await stores.connections.store(connection, updated_at=now)
        if existing is None or existing.provider != provider.name:
            await follow_provider_default(stores, account_id, provider)
    return view(connection, secret_box)


def _written(
    account_id: str,
    existing: CrmConnectionInfo | None,
    credentials: Credentials,
    provider: CrmProvider,
    secret_box: Secrets,
) -> CrmConnectionInfo:
    """Returns the connection to store: the given credentials over the stored secrets."""
    kept: dict[str, Any] = {}
    if existing is not None:
        try:
            kept = secret_box.open(existing.secrets_encrypted)
        except ValueError:
            kept = {}  # sealed with another key: the new values must be given again
    merged = {name: credentials.secrets.get(name) or kept.get(name) for name in SECRET_NAMES}
    given = {**merged, "username": credentials.username}
    for name in NEEDS[credentials.auth_method]:
        if not given.get(name):
            raise Invalid(f"auth_method {credentials.auth_method} needs {name}", field=name)
    written: dict[str, Any] = {
        "provider": provider.name,
        "login_url": credentials.login_url.rstrip("/"),
        "auth_method": credentials.auth_method,
        "client_id": credentials.client_id,
        "username": credentials.username,
        "api_version": credentials.api_version or provider.default_api_version,
        "secrets_encrypted": secret_box.seal({k: v for k, v in merged.items() if v}),
        "status": "untested",
        "status_message": None,
        "instance_url": credentials.instance_url.rstrip("/") if credentials.instance_url else None,
    }
    if existing is not None:
        return replace(existing, **written)
    return CrmConnectionInfo(account_id=account_id, **written)


async def follow_provider_default(stores: Stores, account_id: str, provider: CrmProvider) -> None:
    """Gives the account the provider's default mapping (R7) when it has none, or has another
    provider's default as it was made; a mapping an admin changed is kept."""
    current = await stores.mappings.get(account_id)
    rows = provider.default_mapping().rows
    if current is None:
        await stores.mappings.add(account_id=account_id, version=1, note=default_note(provider), rows=rows)
        return
    others = [p.default_mapping().rows for p in PROVIDERS.values() if p.name != provider.name]
    if current.rows in others:
        await stores.mappings.add(
            account_id=account_id, version=current.version + 1, note=default_note(provider), rows=rows
        )


def default_note(provider: CrmProvider) -> str:
    """Returns the note of a mapping version that is a provider's default."""
    return f"default {provider.label} mapping"


async def check_connection(
    tx: Transactions, *, account_id: str, crm: CrmPort, secret_box: Secrets, now: datetime
) -> ConnectionView:
    """Returns the connection after trying it: status connected or failed, and the API budget."""
    async with tx.begin() as stores:
        connection = await stored_connection(stores.connections, account_id)
        try:
            async with crm.connect(connection) as connector:
                await connector.describe(CrmObject.LEAD.value)
                budget = await connector.budget()
                instance_url = getattr(connector, "instance_url", None)
        except CrmAuthError as exc:
            checked = replace(
                connection, status="failed", status_message=f"credentials refused: {exc.message}"
            )
        except CrmError as exc:
            checked = replace(connection, status="failed", status_message=exc.message)
        except ValueError as exc:
            # Credentials sealed under another secret key, or a connection the connector cannot use.
            checked = replace(connection, status="failed", status_message=str(exc))
        else:
            checked = replace(
                connection,
                status="connected",
                status_message=None,
                api_usage=budget.used,
                api_limit=budget.limit,
                instance_url=instance_url if isinstance(instance_url, str) else connection.instance_url,
            )
        checked = replace(checked, last_checked_at=now)
        await stores.connections.record_check(checked)
    return view(checked, secret_box)


async def with_connector(
    tx: Transactions, *, account_id: str, crm: CrmPort, work: Callable[[CrmConnector], Awaitable[T]]
) -> T:
    """Returns what `work` returns with a connector to the account's CRM; CRM errors classified."""
    async with tx.read() as stores:
        connection = await stored_connection(stores.connections, account_id)
    try:
        async with crm.connect(connection) as connector:
            return await work(connector)
    except CrmError as exc:
        raise CrmUnavailable(f"the CRM answered: {exc.message}", field="connection") from exc
    except ValueError as exc:
        # Credentials sealed under another secret key, or missing what the auth method needs.
        raise Conflict(f"the stored CRM connection cannot be used: {exc}", field="connection") from exc


async def entity_counts(tx: Transactions, *, account_id: str, crm: CrmPort) -> list[tuple[str, int]]:
    """Returns the record count of each synced CRM entity (R20)."""

    async def work(connector: CrmConnector) -> list[tuple[str, int]]:
        return [(o.value, await connector.count(o.value)) for o in CrmObject]

    return await with_connector(tx, account_id=account_id, crm=crm, work=work)


async def entity_describe(tx: Transactions, *, account_id: str, entity: str, crm: CrmPort) -> ObjectDescribe:
    """Returns the live describe of one entity."""

    async def work(connector: CrmConnector) -> ObjectDescribe:
        return await connector.describe(entity)

    return await with_connector(tx, account_id=account_id, crm=crm, work=work)


async def sample_values(
    tx: Transactions, *, account_id: str, entity: str, field: str, limit: int, crm: CrmPort
) -> list[Any]:
    """Returns up to `limit` distinct values of a field of the entity (R20)."""

    async def work(connector: CrmConnector) -> list[Any]:
        described = await connector.describe(entity)
        if field not in described.fields:
            raise NotFound(f"{entity} has no field {field!r}", field="field")
        return await connector.sample_values(entity, field, limit=limit)

    return await with_connector(tx, account_id=account_id, crm=crm, work=work)
