"""Building a CRM connector from a stored connection row."""

from __future__ import annotations

import httpx

from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector, SalesforceCredentials
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection


def credentials_from_connection(connection: CrmConnection, *, secret_box: SecretBox) -> SalesforceCredentials:
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
    connection: CrmConnection,
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
