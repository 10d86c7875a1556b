"""A stored CRM connection (a `crm_connections` row) as Dynamics credentials, with no new column.

provider `dynamics`; `login_url` is the authority with the tenant as its last path segment
(https://login.microsoftonline.com/<tenant id>, as MSAL names an authority); `instance_url`
is the environment (https://contoso.crm.dynamics.com); `auth_method` is client_credentials;
`client_id` the app registration; the sealed secrets hold `client_secret`; `api_version`
is the Web API's (9.x; the table's Salesforce default stands for "not set").
"""

from __future__ import annotations

import httpx

from crmsync.common.crm.dynamics._config import DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.dynamics._connector import DynamicsConnector
from crmsync.common.crypto import SecretBox
from crmsync.common.domain.account import CrmConnectionInfo

PROVIDER = "dynamics"
DEFAULT_API_VERSION = "9.2"
AUTH_METHODS: tuple[str, ...] = ("client_credentials",)


def credentials_from_connection(
    connection: CrmConnectionInfo, *, secret_box: SecretBox
) -> DynamicsCredentials:
    """Returns the connection's Dynamics credentials, the client secret decrypted.

    Raises ValueError when the row is not a complete Dynamics connection.
    """
    if connection.provider != PROVIDER:
        raise ValueError(f"not a Dynamics connection: provider {connection.provider!r}")
    if connection.auth_method not in AUTH_METHODS:
        raise ValueError(f"Dynamics signs in with client_credentials, not {connection.auth_method!r}")
    authority, _, tenant = connection.login_url.rstrip("/").rpartition("/")
    if not tenant or "://" not in authority:
        raise ValueError(
            "login_url must be the authority with the tenant: https://login.microsoftonline.com/<tenant>"
        )
    if not connection.instance_url:
        raise ValueError("instance_url must be the environment's URL (https://<org>.crm.dynamics.com)")
    version = connection.api_version if connection.api_version.startswith("9.") else DEFAULT_API_VERSION
    secrets = secret_box.open(connection.secrets_encrypted)
    return DynamicsCredentials(
        authority_url=authority,
        tenant_id=tenant,
        client_id=connection.client_id,
        client_secret=str(secrets.get("client_secret") or ""),
        resource_url=connection.instance_url,
        api_version=version,
    )


def connector_for(
    connection: CrmConnectionInfo,
    *,
    secret_box: SecretBox,
    options: DynamicsOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DynamicsConnector:
    """Returns a connector for the account's Dynamics connection; close it with `aclose()`."""
    return DynamicsConnector(
        credentials_from_connection(connection, secret_box=secret_box),
        options=options,
        transport=transport,
        account_id=connection.account_id,
    )
