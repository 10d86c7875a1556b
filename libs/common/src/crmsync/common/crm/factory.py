"""Building a CRM connector from a stored connection, whichever CRM it is (`connection.provider`)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.gate import CallGate
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.providers import SALESFORCE, SalesforceOptions, provider_named, settings_of
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
    options: SalesforceOptions | None = None,
) -> CrmConnector:
    """Returns a connector for the account's CRM connection; close it with `aclose()`.

    Raises ValueError for a provider crmsync has no connector for. `options` (Salesforce's
    own) is still taken for a Salesforce connection while callers move to `settings`.
    """
    provider = provider_named(connection.provider)
    if settings is None:
        settings = settings_of(options) if options is not None else ConnectorSettings()
    # Salesforce's own options go to its connector as they are; another CRM's gets their settings.
    extra = {"options": options} if options is not None and provider is SALESFORCE else {}
    return provider.build(
        connection,
        secret_box=secret_box,
        settings=settings,
        call_gate=call_gate,
        transport=transport,
        **extra,
    )


def connector_factory(
    secret_key: str,
    *,
    settings: ConnectorSettings | None = None,
    call_gates: CallGates | None = None,
    options: SalesforceOptions | None = None,
) -> ConnectorFactory:
    """Returns a factory of connectors that open stored credentials with the secret key.

    `call_gates` gives each connection's allowance, spent before every request.
    """
    box = SecretBox(secret_key)

    def build(connection: CrmConnectionInfo) -> CrmConnector:
        gate = call_gates(connection) if call_gates is not None else None
        return connector_for(connection, secret_box=box, settings=settings, call_gate=gate, options=options)

    return build
