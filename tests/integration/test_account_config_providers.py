"""The account loader's default mapping is the one of the account's CRM (R7), against the real PostgreSQL."""

from __future__ import annotations

import pytest

from crmsync.common.crm.providers import DEFAULT_PROVIDER, provider_named
from crmsync.common.crypto import SecretBox
from crmsync.common.db.account_config import load_account_config, load_current_mapping
from crmsync.common.db.schema import CrmConnection

pytestmark = pytest.mark.integration


async def test_r7_an_account_connected_to_dynamics_starts_with_the_dynamics_mapping(
    sessions, account_id, settings
) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=account_id, provider="dynamics",
                login_url="https://login.microsoftonline.com/tenant", auth_method="client_credentials",
                client_id="client", instance_url="https://contoso.crm.dynamics.com",
                secrets_encrypted=SecretBox(settings.secret_key.get_secret_value()).seal({"client_secret": "s"}),
            )
        )  # fmt: skip
    async with sessions() as session:
        config = await load_account_config(session, account_id=account_id)
        alone = await load_current_mapping(session, account_id=account_id)
    dynamics = provider_named("dynamics").default_mapping()
    assert config.mapping == alone == dynamics
    assert dynamics != provider_named("salesforce").default_mapping()


async def test_r7_an_account_without_a_connection_starts_with_the_default_provider_s_mapping(
    sessions, account_id
) -> None:
    async with sessions() as session:
        config = await load_account_config(session, account_id=account_id)
        asked = await load_current_mapping(session, account_id=account_id, provider="dynamics")
    assert config.mapping == provider_named(DEFAULT_PROVIDER).default_mapping()
    assert asked == provider_named("dynamics").default_mapping()
