"""The lookup of a create that may or may not have happened (R18) through the connector's roles and the
account mapping's e-mail field, against the Dataverse emulator in process: no Salesforce name assumed."""

from __future__ import annotations

from datetime import timedelta

import httpx

from crmsync.common.clock import utc_now
from crmsync.common.crm.dynamics import DynamicsConnector, DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.providers import provider_named
from crmsync.common.domain.mapping import CrmObject, Mapping
from crmsync.dynamics_emulator.app import create_app
from crmsync.dynamics_emulator.state import Emulator, Settings
from crmsync.pusher.adapters.crm import email_source, find_recent_by_email
from tests.support.dynamics_emulator import CLIENT_ID, CLIENT_SECRET, IN_PROCESS_URL, TENANT

DYNAMICS = provider_named("dynamics")


def _connector() -> DynamicsConnector:
    emulator = Emulator(Settings(5, 5, 3, CLIENT_ID, CLIENT_SECRET, TENANT))
    credentials = DynamicsCredentials(IN_PROCESS_URL, TENANT, CLIENT_ID, CLIENT_SECRET, IN_PROCESS_URL)
    transport = httpx.ASGITransport(app=create_app(emulator))
    return DynamicsConnector(credentials, options=DynamicsOptions(max_retries=0), transport=transport)


async def test_r18_a_create_that_may_have_happened_is_found_by_the_mappings_email_field_and_the_roles_id() -> (
    None
):
    mapping = DYNAMICS.default_mapping()
    email_field = email_source(mapping, CrmObject.LEAD)
    assert email_field == DYNAMICS.email_field(CrmObject.LEAD)
    connector = _connector()
    try:
        started = utc_now()
        (made,) = await connector.create(
            CrmObject.LEAD, [{"lastname": "Lovelace", email_field: "Ada@Example.com"}]
        )
        assert made.success, made
        found = await find_recent_by_email(
            connector,
            crm_object=CrmObject.LEAD,
            email_field=email_field,
            emails_lower={"ada@example.com", "nobody@example.com"},
            since=started,
            margin=timedelta(seconds=5),
        )
        assert found == {"ada@example.com": made.id}
    finally:
        await connector.aclose()


async def test_r18_without_an_e_mail_field_in_the_mapping_no_create_is_taken_for_found() -> None:
    assert email_source(Mapping(version=1, rows=()), CrmObject.CONTACT) is None
    connector = _connector()
    try:
        found = await find_recent_by_email(
            connector,
            crm_object=CrmObject.CONTACT,
            email_field=None,
            emails_lower={"ada@example.com"},
            since=utc_now(),
            margin=timedelta(seconds=5),
        )
        assert found == {}
    finally:
        await connector.aclose()
