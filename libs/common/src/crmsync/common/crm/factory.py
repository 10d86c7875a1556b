"""Building a CRM connector from a stored connection, whichever CRM it is (`connection.provider`)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.gate import CallGate
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.providers import provider_named
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.crypto import SecretBox

# Builds a connector for an account's stored connection; the caller closes it with `aclose()`.
# Takes a `CrmConnectionInfo` (or a `crm_connections` row: the same attributes).
ConnectorFactory = Callable[[CrmConnectionInfo], CrmConnector]
# The allowance of the account a connection belongs to (None: not held to one).
CallGates = Callable[[CrmConnectionInfo], CallGate | None]


def connector_for(
    connection: CrmConnectionInfo,
    *,
    secret_box: SecretBox,
    settings: ConnectorSettings | None = None,
    call_gate: CallGate | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    options: ConnectorOptions | None = None,
) -> CrmConnector:
    """Returns a connector for the account's CRM connection; close it with `aclose()`.

    Raises ValueError for a provider crmsync has no connector for. `options` (Salesforce's
    own) is still taken for a Salesforce connection while callers move to `settings`.
    """
    provider = provider_named(connection.provider)
    extra = {"options": options} if options is not None and provider.name == "salesforce" else {}
    return provider.build(
        connection,
        secret_box=secret_box,
        settings=settings or _settings_of(options),
        call_gate=call_gate,
        transport=transport,
        **extra,
    )


def connector_factory(
    secret_key: str,
    *,
    settings: ConnectorSettings | None = None,
    call_gates: CallGates | None = None,
    options: ConnectorOptions | None = None,
) -> ConnectorFactory:
    """Returns a factory of connectors that open stored credentials with the secret key.

    `call_gates` gives each connection's allowance, spent before every request.
    """
    box = SecretBox(secret_key)

    def build(connection: CrmConnectionInfo) -> CrmConnector:
        gate = call_gates(connection) if call_gates is not None else None
        return connector_for(connection, secret_box=box, settings=settings, call_gate=gate, options=options)

    return build


def _settings_of(options: ConnectorOptions | None) -> ConnectorSettings:
    """Returns the neutral settings a Salesforce `options` stands for (for another CRM's connector)."""
    if options is None:
        return ConnectorSettings()
    return ConnectorSettings(
        timeout_s=options.timeout_s,
        connect_timeout_s=options.connect_timeout_s,
        max_retries=options.max_retries,
        backoff_max_s=options.backoff_max_s,
        bulk_threshold=options.bulk_threshold,
        change_lookback_s=options.change_lookback_s,
    )
