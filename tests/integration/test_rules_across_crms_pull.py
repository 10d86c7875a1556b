"""The puller's rules against each emulated CRM, one test body for both (R5, R15, R16, R17): the
puller in this process, the real PostgreSQL, the CRM over HTTP(S)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crmsync.common.db.schema import CrmAccount, CrmOpportunity, CrmOwner
from tests.integration.test_puller_sync import (
    contacts_of_record,
    give_local_value,
    puller_settings,
    store_of,
    strip_local,
    sync,
)
from tests.support.crm_backends import CONTACT, LEAD, Crm, connect, crm_backend, make_crm, module_settings

__all__ = ["crm_backend", "make_crm", "module_settings"]
pytestmark = pytest.mark.integration


async def _synced(sessions, settings, account_id: str, crm: Crm):
    """Connects the account to the CRM and runs a first full sync; returns the puller settings."""
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, crm)
    run = await sync(sessions, config, account_id, "full")
    assert run.status == "succeeded", run.error
    return config


async def test_r5_related_objects_fill_company_owner_and_deals_and_each_contact_gets_its_id_and_type(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=15, contacts=20, seed=11)
    await _synced(sessions, module_settings, account_id, crm)

    assert await store_of(sessions, account_id) == crm.expected_store()
    async with sessions() as session:
        companies = {
            a.external_id: a.name
            for a in await session.scalars(select(CrmAccount).where(CrmAccount.account_id == account_id))
        }
        owners = {
            o.external_id: (o.name, o.email)
            for o in await session.scalars(select(CrmOwner).where(CrmOwner.account_id == account_id))
        }
        deals = {
            d.external_id: d.contact_external_id
            for d in await session.scalars(
                select(CrmOpportunity).where(CrmOpportunity.account_id == account_id)
            )
        }
    people = crm.people(LEAD) + crm.people(CONTACT)
    used_companies = {p.company_id for p in people if p.company_id}
    assert companies == {k: v for k, v in crm.companies().items() if k in used_companies}
    assert owners == {k: v for k, v in crm.owners().items() if k in {p.owner_id for p in people}}
    assert deals == crm.deals()


async def test_r15_after_the_full_sync_an_incremental_pulls_only_what_changed(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=10, contacts=10, seed=12)
    config = await _synced(sessions, module_settings, account_id, crm)
    lead, contact = crm.first(LEAD), crm.first(CONTACT)
    crm.edit(LEAD, lead.id, {"job_title": "Chief Tester"})
    crm.edit(CONTACT, contact.id, {"city": "Porto"})

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert run.pulled == 2
    store = await store_of(sessions, account_id)
    assert store == crm.expected_store()
    assert store[lead.id]["values"]["job_title"] == "Chief Tester"
    assert store[contact.id]["values"]["city"] == "Porto"


async def test_r16_crm_deletion_removes_contact_at_the_next_sync(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=10, contacts=10, seed=13)
    config = await _synced(sessions, module_settings, account_id, crm)
    lead, contact = crm.first(LEAD), crm.first(CONTACT)
    crm.delete(LEAD, lead.id)
    crm.delete(CONTACT, contact.id)

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert run.deleted == 2
    store = await store_of(sessions, account_id)
    assert lead.id not in store and contact.id not in store
    assert store == crm.expected_store()


async def test_r17_a_converted_lead_becomes_its_contact_keeping_its_local_values(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=10, contacts=10, seed=14)
    config = await _synced(sessions, module_settings, account_id, crm)
    lead = crm.first(LEAD)
    local_id = await give_local_value(sessions, account_id, lead.id, "webinar", "attended")
    contact_id = crm.convert(lead.id)

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    store = await store_of(sessions, account_id)
    assert strip_local(store, "webinar") == crm.expected_store()
    assert lead.id not in store
    assert store[contact_id]["type"] == CONTACT
    assert store[contact_id]["values"]["webinar"] == "attended"
    (converted,) = await contacts_of_record(sessions, account_id, contact_id)
    assert converted.id == local_id  # one contact, not two
    assert converted.converted_from_lead_id == lead.id
