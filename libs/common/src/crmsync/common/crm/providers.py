"""The one place that knows every CRM: each provider's label, sign-in methods, default mapping
and how a connector is built for one of its stored connections.

`crm_connections.provider` names the provider; services ask this registry (or the factory,
crmsync.common.crm.factory) and never name a CRM themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from crmsync.common.crm import dynamics, salesforce
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.dynamics import DynamicsOptions
from crmsync.common.crm.gate import CallGate
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.crypto import SecretBox
from crmsync.common.domain import mapping as domain_mapping
from crmsync.common.domain.fields import EMAIL

DEFAULT_PROVIDER = "salesforce"
# Salesforce's own options, still taken by the factory while callers move to ConnectorSettings.
SalesforceOptions = ConnectorOptions


class Connect(Protocol):
    """A connector module's `connector_for`: its connector for a stored connection, with its own options."""

    def __call__(
        self,
        connection: CrmConnectionInfo,
        *,
        secret_box: SecretBox,
        options: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> CrmConnector: ...


@dataclass(frozen=True)
class CrmProvider:
    """One CRM crmsync connects to."""

    name: str  # the crm_connections.provider value
    label: str
    auth_methods: tuple[str, ...]
    default_api_version: str
    default_mapping: Callable[[], domain_mapping.Mapping]  # R7, for a new account of this provider
    options: Callable[[ConnectorSettings, CallGate | None], Any]  # its connector's own options
    connect: Connect

    def email_field(self, kind: str) -> str:
        """Returns the e-mail field of leads or contacts, the source R2 pins E-mail Address to."""
        row = self.default_mapping().row(EMAIL)
        source = row.source_for(kind) if row is not None else None
        if source is None:
            raise ValueError(f"{self.label}'s default mapping maps no e-mail of {kind}")
        return source

    def build(
        self,
        connection: CrmConnectionInfo,
        *,
        secret_box: SecretBox,
        settings: ConnectorSettings,
        call_gate: CallGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        options: Any = None,
    ) -> CrmConnector:
        """Returns the connector for one of this provider's connections; `options`, the connector's
        own, replace what `settings` would give (the gate kept)."""
        if options is None:
            options = self.options(settings, call_gate)
        elif call_gate is not None:
            options = dataclasses.replace(options, call_gate=call_gate)
        return self.connect(connection, secret_box=secret_box, options=options, transport=transport)


def settings_of(options: ConnectorOptions) -> ConnectorSettings:
    """Returns the neutral settings a Salesforce `options` stands for (for another CRM's connector)."""
    return ConnectorSettings(
        timeout_s=options.timeout_s,
        connect_timeout_s=options.connect_timeout_s,
        max_retries=options.max_retries,
        backoff_max_s=options.backoff_max_s,
        bulk_threshold=options.bulk_threshold,
        change_lookback_s=options.change_lookback_s,
    )


def salesforce_options(settings: ConnectorSettings, call_gate: CallGate | None = None) -> ConnectorOptions:
    """Returns the Salesforce connector's options for these settings."""
    given = settings.given("timeout_s", "connect_timeout_s", "max_retries", "backoff_max_s", "bulk_threshold")
    return ConnectorOptions(**given, change_lookback_s=settings.change_lookback_s, call_gate=call_gate)  # type: ignore[arg-type]


def dynamics_options(settings: ConnectorSettings, call_gate: CallGate | None = None) -> DynamicsOptions:
    """Returns the Dynamics connector's options for these settings (it has no bulk export)."""
    given = settings.given("timeout_s", "connect_timeout_s", "max_retries", "backoff_max_s")
    return DynamicsOptions(**given, call_gate=call_gate)  # type: ignore[arg-type]


SALESFORCE = CrmProvider(
    name="salesforce",
    label="Salesforce",
    auth_methods=salesforce.AUTH_METHODS,
    default_api_version=salesforce.DEFAULT_API_VERSION,
    default_mapping=salesforce.default_salesforce_mapping,
    options=salesforce_options,
    connect=salesforce.connector_for,
)
DYNAMICS = CrmProvider(
    name=dynamics.PROVIDER,
    label="Dynamics 365",
    auth_methods=dynamics.AUTH_METHODS,
    default_api_version=dynamics.DEFAULT_API_VERSION,
    default_mapping=dynamics.default_dynamics_mapping,
    options=dynamics_options,
    connect=dynamics.connector_for,
)
PROVIDERS: Mapping[str, CrmProvider] = {p.name: p for p in (SALESFORCE, DYNAMICS)}


def provider_named(name: str) -> CrmProvider:
    """Returns the provider of a `crm_connections.provider` value; ValueError naming the known ones."""
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ValueError(f"unknown CRM provider {name!r} (known: {', '.join(PROVIDERS)})")
    return provider
