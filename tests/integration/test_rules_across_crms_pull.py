"""The puller's rules against each emulated CRM, one test body for both (R5, R13, R15-R18): the
puller in this process, the real PostgreSQL, the CRM over HTTP(S)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crmsync.common.db.schema import Contact, CrmAccount, CrmOpportunity, CrmOwner
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


async def test_r16_crm_deletion_removes_contact_at_the_next_incremental_and_full_sync(
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
    # A full sync removes whatever it no longer sees.
    gone = crm.first(CONTACT)
    crm.delete(CONTACT, gone.id)
    full = await sync(sessions, config, account_id, "full")
    assert full.status == "succeeded", full.error
    assert full.deleted == 1
    assert await store_of(sessions, account_id) == crm.expected_store()


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


async def test_r17_a_lead_converted_into_an_existing_contact_leaves_one_contact_with_the_leads_values(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=6, contacts=6, seed=15)
    config = await _synced(sessions, module_settings, account_id, crm)
    lead = crm.first(LEAD)
    existing = next(p for p in crm.people(CONTACT) if p.company_id)  # a conversion keeps its company
    await give_local_value(sessions, account_id, lead.id, "webinar", "attended")
    (contact_row,) = await contacts_of_record(sessions, account_id, existing.id)
    assert crm.convert(lead.id, contact_id=existing.id) == existing.id

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    store = await store_of(sessions, account_id)
    assert strip_local(store, "webinar") == crm.expected_store()
    assert store[existing.id]["values"]["webinar"] == "attended"
    (merged,) = await contacts_of_record(sessions, account_id, existing.id)
    assert merged.id == contact_row.id and merged.converted_from_lead_id == lead.id


async def test_r13_per_field_the_newer_side_wins_between_a_local_value_and_a_crm_edit(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=6, contacts=4, seed=16)
    config = await _synced(sessions, module_settings, account_id, crm)
    kept, overwritten = crm.first(LEAD, 0), crm.first(LEAD, 1)
    later = datetime.now(UTC) + timedelta(hours=1)
    await _local_value(sessions, account_id, kept.id, "job_title", "Newer local title", at=later)
    await _local_value(sessions, account_id, overwritten.id, "job_title", "Older local title", at=None)
    crm.edit(LEAD, kept.id, {"job_title": "CRM title"})
    crm.edit(LEAD, overwritten.id, {"job_title": "Newer CRM title"})

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    store = await store_of(sessions, account_id)
    assert store[kept.id]["values"]["job_title"] == "Newer local title"  # the local value is newer
    assert store[overwritten.id]["values"]["job_title"] == "Newer CRM title"  # the CRM's edit is newer


async def _local_value(sessions, account_id: str, external_id: str, name: str, value, *, at) -> None:
    """Sets a value a user edited locally at `at` (None: a minute ago) on a CRM record's contact."""
    moment = at or datetime.now(UTC) - timedelta(minutes=1)
    async with sessions.begin() as session:
        row = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == external_id)
        )
        row.fields = {**row.fields, name: value}
        row.field_meta = {**row.field_meta, name: {"origin": "user_edit", "at": moment.isoformat()}}


async def test_r16_r18_a_change_cursor_the_crm_no_longer_follows_becomes_a_full_read_that_finds_the_deletions(
    sessions, module_settings, account_id, make_crm
) -> None:
    crm = make_crm(leads=6, contacts=6, seed=17)
    config = await _synced(sessions, module_settings, account_id, crm)
    gone, edited = crm.first(CONTACT, 0), crm.first(CONTACT, 1)
    crm.delete(CONTACT, gone.id)
    crm.edit(CONTACT, edited.id, {"job_title": "Edited meanwhile"})
    await crm.expire_change_cursors(sessions, account_id)

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert run.pulled == len(crm.people(LEAD)) + len(crm.people(CONTACT))  # everyone read again
    store = await store_of(sessions, account_id)
    assert gone.id not in store
    assert store[edited.id]["values"]["job_title"] == "Edited meanwhile"
    assert store == crm.expected_store()
