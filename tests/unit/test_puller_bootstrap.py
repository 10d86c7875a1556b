"""The puller's composition root: its connectors spend each account's API allowance (R26)."""

from __future__ import annotations

from crmsync.common.crypto import SecretBox
from crmsync.common.db.allowance import PgCallGate
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.puller.bootstrap import bootstrap
from crmsync.puller.settings import Settings


async def test_r26_the_pullers_connectors_spend_the_accounts_api_allowance() -> None:
    settings = Settings()
    app = bootstrap(settings)
    try:
        box = SecretBox(settings.secret_key.get_secret_value())
        connection = CrmConnectionInfo(
            account_id="acme",
            provider="salesforce",
            login_url="https://login.example.test",
            auth_method="client_credentials",
            client_id="app",
            secrets_encrypted=box.seal({"client_secret": "s"}),
        )
        connector = app.crm_factory(connection)
        assert isinstance(connector.options.call_gate, PgCallGate)  # type: ignore[attr-defined]
        assert app.call_gates is not None and app.call_gates(connection) is connector.options.call_gate  # type: ignore[attr-defined]
        await connector.aclose()
    finally:
        await app.engine.dispose()
