"""A stored CRM connection (a `crm_connections` row) as Salesforce credentials."""

from __future__ import annotations

import httpx

from crmsync.common.crm.salesforce._config import ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce._connector import SalesforceConnector
from crmsync.common.crypto import SecretBox
from crmsync.common.domain.account import CrmConnectionInfo

PROVIDER = "salesforce"
DEFAULT_API_VERSION = "60.0"


def credentials_from_connection(
    connection: CrmConnectionInfo, *, secret_box: SecretBox
) -> SalesforceCredentials:
    """Returns the connection's credentials, its secrets decrypted.

    The sealed JSON holds whichever of client_secret / refresh_token / private_key
    the auth method needs.
    """
    if connection.provider != PROVIDER:
        raise ValueError(f"not a Salesforce connection: provider {connection.provider!r}")
    secrets = secret_box.open(connection.secrets_encrypted)
    return SalesforceCredentials(
        login_url=connection.login_url,
        auth_method=connection.auth_method,  # type: ignore[arg-type]  # checked by the table and __post_init__
        client_id=connection.client_id,
        client_secret=secrets.get("client_secret"),
        refresh_token=secrets.get("refresh_token"),
        username=connection.username,
        private_key=secrets.get("private_key"),
        api_version=connection.api_version or DEFAULT_API_VERSION,
    )


def connector_for(
    connection: CrmConnectionInfo,
    *,
    secret_box: SecretBox,
    options: ConnectorOptions | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SalesforceConnector:
    """Returns a connector for the account's Salesforce connection; close it with `aclose()`."""
    return SalesforceConnector(
        credentials_from_connection(connection, secret_box=secret_box),
        options=options,
        transport=transport,
        account_id=connection.account_id,
    )
