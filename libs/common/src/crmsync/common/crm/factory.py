"""Building a CRM connector from a stored connection."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector, SalesforceCredentials
from crmsync.common.crypto import SecretBox

# Builds a connector for an account's stored connection; the caller closes it with `aclose()`.
# Takes a `CrmConnectionInfo` (or a `crm_connections` row: the same attributes).
ConnectorFactory = Callable[[CrmConnectionInfo], CrmConnector]


def credentials_from_connection(
    connection: CrmConnectionInfo, *, secret_box: SecretBox
) -> SalesforceCredentials:
    """Returns the connection's credentials, its secrets decrypted.

    The sealed JSON holds whichever of client_secret / refresh_token / private_key
    the auth method needs.
    """
    if connection.provider != "salesforce":
        raise ValueError(f"no connector for CRM provider {connection.provider!r}")
    secrets = secret_box.open(connection.secrets_encrypted)
    return SalesforceCredentials(
        login_url=connection.login_url,
        auth_method=connection.auth_method,  # type: ignore[arg-type]  # checked by the table and __post_init__
        client_id=connection.client_id,
        client_secret=secrets.get("client_secret"),
        refresh_token=secrets.get("refresh_token"),
        username=connection.username,
        private_key=secrets.get("private_key"),
        api_version=connection.api_version or "60.0",
    )


def connector_for(
    connection: CrmConnectionInfo,
    *,
    secret_box: SecretBox,
    options: ConnectorOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SalesforceConnector:
    """Returns a connector for the account's CRM connection; close it with `aclose()`."""
    return SalesforceConnector(
        credentials_from_connection(connection, secret_box=secret_box),
        options=options,
        transport=transport,
        account_id=connection.account_id,
    )


def connector_factory(secret_key: str, *, options: ConnectorOptions | None = None) -> ConnectorFactory:
    """Returns a factory of connectors that open stored credentials with the secret key."""
    box = SecretBox(secret_key)

    def build(connection: CrmConnectionInfo) -> CrmConnector:
        return connector_for(connection, secret_box=box, options=options)

    return build
