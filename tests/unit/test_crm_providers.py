"""The provider registry and the factory: each stored connection gets its own CRM's connector."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.dynamics import DynamicsConnector
from crmsync.common.crm.factory import connector_factory, connector_for
from crmsync.common.crm.providers import DEFAULT_PROVIDER, PROVIDERS, provider_named
from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.crypto import SecretBox
from crmsync.common.domain.fields import EMAIL
from crmsync.common.domain.mapping import CrmObject

KEY = "a-test-key-of-enough-length-for-the-box"
BOX = SecretBox(KEY)


class Gate:
    async def spend(self, calls: int = 1) -> None:
        return None


def _connection(provider: str, **overrides: Any) -> CrmConnectionInfo:
    fields: dict[str, Any] = {
        "account_id": "acme",
        "provider": provider,
        "login_url": "https://login.example.test/tenant-1",
        "auth_method": "client_credentials",
        "client_id": "cid",
        "secrets_encrypted": BOX.seal({"client_secret": "s"}),
        "instance_url": "https://org.example.test",
    }
    return CrmConnectionInfo(**{**fields, **overrides})


def test_the_registry_knows_salesforce_and_dynamics_and_refuses_others_by_name() -> None:
    assert set(PROVIDERS) == {"salesforce", "dynamics"} and DEFAULT_PROVIDER == "salesforce"
    salesforce, dynamics = provider_named("salesforce"), provider_named("dynamics")
    assert (salesforce.label, salesforce.default_api_version) == ("Salesforce", "60.0")
    assert (dynamics.label, dynamics.default_api_version) == ("Dynamics 365", "9.2")
    assert salesforce.auth_methods == ("client_credentials", "refresh_token", "jwt_bearer")
    assert dynamics.auth_methods == ("client_credentials",)
    with pytest.raises(ValueError, match="salesforce, dynamics"):
        provider_named("hubspot")


@pytest.mark.parametrize("name", ["salesforce", "dynamics"])
def test_r2_r7_each_provider_s_email_field_is_the_one_its_default_mapping_maps(name: str) -> None:
    provider = provider_named(name)
    row = provider.default_mapping().row(EMAIL)
    assert row is not None
    for kind in (CrmObject.LEAD, CrmObject.CONTACT):
        assert provider.email_field(kind) == row.source_for(kind)


async def test_the_factory_builds_the_connector_of_the_connection_s_provider() -> None:
    build = connector_factory(KEY)
    salesforce, dynamics = build(_connection("salesforce")), build(_connection("dynamics"))
    try:
        assert isinstance(salesforce, SalesforceConnector) and isinstance(dynamics, DynamicsConnector)
        assert salesforce.roles.modified_at == "SystemModstamp" and dynamics.roles.modified_at == "modifiedon"
    finally:
        await salesforce.aclose()
        await dynamics.aclose()
    with pytest.raises(ValueError, match="unknown CRM provider"):
        build(_connection("hubspot"))


async def test_r26_the_factory_hands_each_connector_its_account_s_gate_and_the_neutral_settings() -> None:
    gates = {"acme": Gate()}
    settings = ConnectorSettings(timeout_s=7.0, max_retries=1, bulk_threshold=10, change_lookback_s=60)
    build = connector_factory(KEY, settings=settings, call_gates=lambda c: gates.get(c.account_id))
    salesforce, dynamics = build(_connection("salesforce")), build(_connection("dynamics"))
    other = build(_connection("salesforce", account_id="globex"))
    try:
        assert salesforce.options.call_gate is gates["acme"] and dynamics.options.call_gate is gates["acme"]
        assert other.options.call_gate is None
        assert (salesforce.options.timeout_s, salesforce.options.max_retries) == (7.0, 1)
        assert (salesforce.options.bulk_threshold, salesforce.options.change_lookback_s) == (10, 60)
        assert (dynamics.options.timeout_s, dynamics.options.max_retries) == (7.0, 1)
        # What the settings leave unset keeps each connector's own default.
        assert salesforce.options.backoff_max_s == ConnectorOptions().backoff_max_s
        assert dynamics.options.backoff_max_s == 60.0
    finally:
        for connector in (salesforce, dynamics, other):
            await connector.aclose()


async def test_salesforce_s_own_options_are_still_taken_and_keep_the_gate() -> None:
    gate = Gate()
    options = ConnectorOptions(timeout_s=3.0, bulk_threshold=5)
    connection = _connection("salesforce")
    salesforce = connector_for(connection, secret_box=BOX, options=options, call_gate=gate)
    dynamics = connector_for(replace(connection, provider="dynamics"), secret_box=BOX, options=options)
    try:
        assert salesforce.options == options and salesforce.options.call_gate is gate
        assert dynamics.options.timeout_s == 3.0
    finally:
        await salesforce.aclose()
        await dynamics.aclose()


def test_settings_refuse_what_no_connector_could_use() -> None:
    for bad in ({"timeout_s": 0}, {"max_retries": -1}, {"bulk_threshold": -1}, {"change_lookback_s": -1}):
        with pytest.raises(ValueError):
            ConnectorSettings(**bad)
