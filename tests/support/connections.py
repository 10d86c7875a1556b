"""Test data: an account's CRM connection to an emulated org, stored as the mapping API stores it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection
from crmsync.common.settings import CommonSettings
from tests.support.emulator import CrmOrg


def add_connection(
    session: AsyncSession, *, settings: CommonSettings, account_id: str, org: CrmOrg, status: str = "untested"
) -> None:
    """Adds a client-credentials connection to `org`, its secret sealed with the settings' key."""
    box = SecretBox(settings.secret_key.get_secret_value())
    session.add(
        CrmConnection(
            account_id=account_id,
            login_url=org.login_url,
            instance_url=org.instance_url,
            auth_method="client_credentials",
            client_id=org.client_id,
            secrets_encrypted=box.seal({"client_secret": org.client_secret}),
            status=status,
        )
    )
