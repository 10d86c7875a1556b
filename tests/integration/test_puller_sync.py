"""The puller against the real Postgres and the Salesforce emulator over HTTP.

Full and incremental syncs, deletions, related objects, lead conversion,
boundary-second commits, API budget pauses, a renamed field (R5, R12–R18, R23).
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from crmsync.common.crm.salesforce import SalesforceConnector
from crmsync.common.db.schema import (
    Account,
    Contact,
    CrmAccount,
    CrmOpportunity,
    CrmOwner,
    SyncRun,
)
from crmsync.common.domain.contacts import ContactValues, FieldMeta
from crmsync.common.domain.mapping import Mapping, default_salesforce_mapping
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.puller.adapters import contact_store
from crmsync.puller.adapters.runs import accounts_with_work, claim_next_run, finish_run, record_job
from crmsync.puller.bootstrap import crm_connectors, sync_runner
from crmsync.puller.domain.runs import RunEnd
from crmsync.puller.settings import Settings
from tests.support.connections import add_connection
from tests.support.mappings import store_mapping

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ helpers


def puller_settings(settings, **overrides: Any) -> Settings:
    """Returns puller settings on this test's database and topics."""
    return Settings(**{**settings.model_dump(), "puller_lookback_s": 60.0, **overrides})


async def connect(sessions, settings, account_id: str, org) -> None:
    """Stores the account's CRM connection to the emulated org (as the mapping API would)."""
    async with sessions.begin() as session:
        add_connection(session, settings=settings, account_id=account_id, org=org)


async def save_mapping(sessions, account_id: str, mapping: Mapping) -> None:
    """Saves the mapping as the account's next version."""
    await store_mapping(sessions, account_id=account_id, rows=mapping.rows)


async def queue(sessions, account_id: str, kind: str, *, reason: SyncReason = SyncReason.SYNC_NOW) -> str:
    job = RunSync(
        job_id=f"{account_id}:{kind}:{uuid.uuid4().hex[:8]}",
        account_id=account_id,
        kind=SyncKind(kind),
        reason=reason,
        requested_at=datetime.now(UTC),
    )
    async with sessions.begin() as session:
        assert await record_job(session, job=job)
    return job.job_id


async def run_queued(sessions, settings: Settings, account_id: str) -> list[str]:
    """Runs the account's runnable runs to their resting states; returns those states."""
    runner = sync_runner(sessions=sessions, crm_factory=crm_connectors(settings), settings=settings)
    statuses = []
    while True:
        async with sessions.begin() as session:
            run = await claim_next_run(session, account_id=account_id)
        if run is None:
            return statuses
        statuses.append(await runner.execute(run))
        if statuses[-1] != "succeeded":
            return statuses


async def sync(sessions, settings: Settings, account_id: str, kind: str) -> SyncRun:
    job_id = await queue(sessions, account_id, kind)
    await run_queued(sessions, settings, account_id)
    return await run_of(sessions, account_id, job_id)


async def run_of(sessions, account_id: str, job_id: str) -> SyncRun:
    async with sessions() as session:
        run = await session.scalar(
            select(SyncRun).where(SyncRun.account_id == account_id, SyncRun.job_id == job_id)
        )
    assert run is not None
    return run


def _stamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("+0000", "+00:00"))


def expected_store(org, mapping: Mapping | None = None) -> dict[str, dict[str, Any]]:
    """Returns what the contact store must hold for the org: external id -> type and values (R5)."""
    mapping = mapping or default_salesforce_mapping()
    users = {u["Id"]: u for u in org.records("User")}
    accounts = {a["Id"]: a for a in org.records("Account")}
    out: dict[str, dict[str, Any]] = {}
    for entity in ("Lead", "Contact"):
        for record in org.records(entity):
            if record.get("IsConverted"):
                continue
            values = {}
            for row in mapping.rows:
                source = row.source_for(entity)
                if source:
                    values[row.destination] = record.get(source)
            if entity == "Contact":
                account = accounts.get(record.get("AccountId"))
                values["company"] = account["Name"] if account else None
            owner = users.get(record.get("OwnerId"))
            values["sales_owner_name"] = owner["Name"] if owner else None
            values["sales_owner_email"] = owner["Email"] if owner else None
            out[record["Id"]] = {"type": entity, "values": values}
    return out


async def store_of(sessions, account_id: str) -> dict[str, dict[str, Any]]:
    """Returns the CRM-backed contacts of the account as external id -> type and values."""
    async with sessions() as session:
        contacts = (
            await session.scalars(
                select(Contact).where(Contact.account_id == account_id, Contact.external_id.is_not(None))
            )
        ).all()
    out = {}
    for c in contacts:
        assert c.external_id not in out
        out[c.external_id] = {"type": c.crm_object, "values": c.fields}
    return out


def strip_local(store: dict[str, dict[str, Any]], *names: str) -> dict[str, dict[str, Any]]:
    return {
        k: {"type": v["type"], "values": {f: x for f, x in v["values"].items() if f not in names}}
        for k, v in store.items()
    }


async def give_local_value(sessions, account_id: str, external_id: str, name: str, value: Any) -> uuid.UUID:
    """Sets a local-only value (from a form, now) on the contact of a CRM record; returns the contact's id."""
    async with sessions.begin() as session:
        row = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == external_id)
        )
        row.fields = {**row.fields, name: value}
        row.field_meta = {**row.field_meta, name: {"origin": "form", "at": datetime.now(UTC).isoformat()}}
        return row.id


async def contacts_of_record(sessions, account_id: str, external_id: str) -> list[Contact]:
    """Returns every local contact that holds this CRM record."""
    async with sessions() as session:
        return list(
            await session.scalars(
                select(Contact).where(Contact.account_id == account_id, Contact.external_id == external_id)
            )
        )


async def assert_converted(sessions, account_id: str, org, *, lead: str, contact: str, local_id: uuid.UUID):
    """Asserts R17 after a sync: the store equals the CRM (the local value apart), the Lead is
    gone, and one local contact, `local_id`, holds its Contact, converted from it, with the
    Lead's local value. Returns the store."""
    store = await store_of(sessions, account_id)
    assert strip_local(store, "webinar") == expected_store(org)
    assert lead not in store
    assert store[contact]["values"]["webinar"] == "attended"
    (converted,) = await contacts_of_record(sessions, account_id, contact)
    assert converted.id == local_id  # one contact (R17)
    assert converted.converted_from_lead_id == lead
    return store


async def synced(sessions, settings, account_id: str, org) -> Settings:
    """Connects the account to the org and runs a first full sync; returns the puller settings."""
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, org)
    run = await sync(sessions, config, account_id, "full")
    assert run.status == "succeeded", run.error
    return config


# -------------------------------------------------------------------- tests


async def test_r5_r15_a_first_full_sync_equals_the_crm_field_for_field(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=120, contacts=150, seed=11)
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, org)

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    expected = expected_store(org)
    assert await store_of(sessions, account_id) == expected
    assert (run.pulled, run.created, run.updated, run.deleted) == (270, 270, 0, 0)
    assert run.finished_at is not None and run.started_at is not None
    async with sessions() as session:
        crm_accounts = {
            a.external_id: a.name
            for a in await session.scalars(select(CrmAccount).where(CrmAccount.account_id == account_id))
        }
        owners = {
            o.external_id: (o.name, o.email)
            for o in await session.scalars(select(CrmOwner).where(CrmOwner.account_id == account_id))
        }
        opportunities = (
            await session.scalars(select(CrmOpportunity).where(CrmOpportunity.account_id == account_id))
        ).all()
        contact = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.crm_object == "Contact").limit(1)
        )
    emulated_accounts = {a["Id"]: a["Name"] for a in org.records("Account")}
    contact_accounts = {c["AccountId"] for c in org.records("Contact") if c.get("AccountId")}
    assert crm_accounts == {k: v for k, v in emulated_accounts.items() if k in contact_accounts}
    assert owners == {
        u["Id"]: (u["Name"], u["Email"])
        for u in org.records("User")
        if u["Id"] in {r["OwnerId"] for e in ("Lead", "Contact") for r in org.records(e)}
    }
    emulated_opportunities = {o["Id"]: o for o in org.records("Opportunity")}
    assert {o.external_id for o in opportunities} == set(emulated_opportunities)
    for o in opportunities:
        assert o.contact_external_id == emulated_opportunities[o.external_id].get("ContactId")
    # R12: every value pulled is marked as the CRM's, at the record's SystemModstamp.
    assert contact is not None
    record = org.get("Contact", contact.external_id)
    pulled = ContactValues.from_stored(contact.fields, contact.field_meta, contact.crm_modstamp)
    assert set(pulled.meta) == set(contact.fields)
    assert set(pulled.meta.values()) == {FieldMeta("crm", _stamp(record["SystemModstamp"]))}
    # ... implied by the row's modstamp rather than written once per field.
    assert contact.field_meta == {}


async def test_r15_a_full_sync_through_the_bulk_api_equals_the_crm_field_for_field(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=300, contacts=300, seed=19)
    config = puller_settings(settings, puller_bulk_threshold=100)
    await connect(sessions, settings, account_id, org)

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    assert await store_of(sessions, account_id) == expected_store(org)


async def test_r16_r17_an_incremental_sync_after_edits_deletions_conversions_and_new_records_makes_the_store_equal(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=60, contacts=60, seed=12)
    config = await synced(sessions, settings, account_id, org)
    leads = [r["Id"] for r in org.records("Lead")]
    contacts = [r["Id"] for r in org.records("Contact")]
    # A local-only value on the lead about to be converted: it must survive the conversion (R17).
    converted_lead = leads[0]
    local_id = await give_local_value(sessions, account_id, converted_lead, "webinar", "attended")

    org.edit("Lead", leads[1], {"FirstName": "Renamed", "Title": "Chief Tester"})
    org.edit("Contact", contacts[0], {"LastName": "Edited", "MailingCity": "Porto"})
    # Deleted a moment ago: the deleted feed is read in whole seconds.
    org.delete("Lead", leads[2], deleted_at=datetime.now(UTC) - timedelta(seconds=2))
    org.delete("Contact", contacts[1], deleted_at=datetime.now(UTC) - timedelta(seconds=2))
    new_contact_id = org.convert_lead(converted_lead)
    org.create("Lead", {"LastName": "Newcomer", "Company": "New Co", "Email": "new@example.com"})
    org.create(
        "Contact",
        {"LastName": "Fresh", "Email": "fresh@example.com", "AccountId": org.records("Account")[0]["Id"]},
    )

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    store = await assert_converted(
        sessions, account_id, org, lead=converted_lead, contact=new_contact_id, local_id=local_id
    )
    assert store[new_contact_id]["type"] == "Contact"
    assert run.deleted == 2


async def test_r17_a_full_sync_after_a_conversion_keeps_one_contact_with_its_local_values(
    sessions, settings, account_id, make_crm_org
) -> None:
    # The 14-day full sync meets the conversion instead of an incremental: the Lead
    # comes back converted and its Contact arrives in the Contact pass of the same run.
    org = make_crm_org(leads=30, contacts=30, seed=21)
    config = await synced(sessions, settings, account_id, org)
    converted_lead = org.records("Lead")[0]["Id"]
    local_id = await give_local_value(sessions, account_id, converted_lead, "webinar", "attended")
    new_contact_id = org.convert_lead(converted_lead)

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    # The same local contact, now the Contact's.
    await assert_converted(
        sessions, account_id, org, lead=converted_lead, contact=new_contact_id, local_id=local_id
    )


async def test_r17_a_lead_converted_into_an_existing_contact_leaves_that_contact_with_the_leads_local_values(
    sessions, settings, account_id, make_crm_org
) -> None:
    # A sales user may convert a Lead into a Contact the store already holds: the two
    # local contacts become one, the Contact's, with the Lead's newer local values.
    org = make_crm_org(leads=20, contacts=20, seed=22)
    config = await synced(sessions, settings, account_id, org)
    lead, existing = org.records("Lead")[0]["Id"], org.records("Contact")[0]["Id"]
    await give_local_value(sessions, account_id, lead, "webinar", "attended")
    (contact_row,) = await contacts_of_record(sessions, account_id, existing)
    assert org.convert_lead(lead, contact_id=existing) == existing

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    # The Contact's local contact, which the Lead's merged into.
    await assert_converted(sessions, account_id, org, lead=lead, contact=existing, local_id=contact_row.id)


async def test_r18_records_committed_at_the_watermark_second_or_late_with_an_older_stamp_are_not_missed(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=20, contacts=20, seed=13)
    config = await synced(sessions, settings, account_id, org)
    first = await sync(sessions, config, account_id, "incremental")
    assert first.status == "succeeded", first.error
    # Records changing at one instant, read by an incremental that saw only some of them.
    boundary = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    early = org.create("Lead", {"LastName": "Early", "Company": "Tie"}, system_modstamp=boundary)
    second = await sync(sessions, config, account_id, "incremental")
    assert second.status == "succeeded", second.error
    async with sessions() as session:
        watermark = await session.scalar(
            text("select watermark from sync_state where account_id = :a and entity = 'Lead'"),
            {"a": account_id},
        )
    assert watermark == boundary
    # Same second as the watermark, and a transaction that committed late with an older stamp.
    tie = org.create("Lead", {"LastName": "Tie", "Company": "Tie"}, system_modstamp=boundary)
    late = org.create(
        "Lead", {"LastName": "Late", "Company": "Late"}, system_modstamp=boundary - timedelta(seconds=30)
    )
    org.edit(
        "Contact",
        org.records("Contact")[0]["Id"],
        {"Title": "Late edit"},
        system_modstamp=boundary - timedelta(seconds=10),
    )

    third = await sync(sessions, config, account_id, "incremental")

    assert third.status == "succeeded", third.error
    store = await store_of(sessions, account_id)
    assert {early, tie, late} <= set(store)
    assert store == expected_store(org)


async def _set_cursor(sessions, account_id: str, entity: str, cursor: str | None) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text("update sync_state set change_cursor = :c where account_id = :a and entity = :e"),
            {"c": cursor, "a": account_id, "e": entity},
        )


async def test_r15_r16_an_incremental_whose_cursor_the_crm_no_longer_follows_becomes_a_full_sync(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=10, contacts=10, seed=23)
    config = await synced(sessions, settings, account_id, org)
    # The Contacts were last read 20 days ago: the deleted feed (15 days) no longer reaches back.
    stale = SalesforceConnector.cursor_from_watermarks(datetime.now(UTC) - timedelta(days=20))
    await _set_cursor(sessions, account_id, "Contact", stale)
    gone = org.records("Contact")[2]["Id"]
    org.delete("Contact", gone, deleted_at=datetime.now(UTC) - timedelta(days=18))

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert run.progress["escalated_to_full"].startswith("the CRM no longer follows the changes of Contact")
    assert run.progress["full_done"] == ["Lead", "Contact", "Opportunity"]
    assert run.deleted == 1  # the full sync's sweep found it gone
    assert await store_of(sessions, account_id) == expected_store(org)
    async with sessions() as session:
        cursor = await session.scalar(
            text("select change_cursor from sync_state where account_id = :a and entity = 'Contact'"),
            {"a": account_id},
        )
    assert cursor != stale


async def test_r18_after_migration_0007_an_incremental_goes_on_from_the_stored_watermarks(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=10, contacts=10, seed=24)
    config = await synced(sessions, settings, account_id, org)
    # As the puller left sync_state before change cursors: watermarks only; then the migration.
    for entity in ("Lead", "Contact", "Opportunity"):
        await _set_cursor(sessions, account_id, entity, None)
    migration = importlib.import_module("crmsync.common.db.migrations.versions.0007_change_cursors")
    async with sessions.begin() as session:
        await session.execute(text(migration._FILL))
    lead = org.records("Lead")[0]["Id"]
    org.edit("Lead", lead, {"Title": "After the upgrade"})

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    assert "escalated_to_full" not in run.progress  # no full sync for the upgrade
    assert run.pulled < 20  # what changed since the watermarks, not every record
    store = await store_of(sessions, account_id)
    assert store[lead]["values"]["job_title"] == "After the upgrade"
    assert store == expected_store(org)


async def test_r13_r23_a_newer_local_value_survives_and_a_crm_opt_in_never_clears_a_local_opt_out(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5, contacts=5, seed=14)
    config = await synced(sessions, settings, account_id, org)
    lead = org.records("Lead")[0]["Id"]
    org.edit("Lead", lead, {"HasOptedOutOfEmail": False, "Title": "Old CRM title"})
    future = datetime.now(UTC) + timedelta(hours=1)
    async with sessions.begin() as session:
        row = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == lead)
        )
        row.fields = {**row.fields, "opted_out": True, "job_title": "Newer local title"}
        meta = dict(row.field_meta)
        meta["opted_out"] = {"origin": "form", "at": (future - timedelta(hours=2)).isoformat()}
        meta["job_title"] = {"origin": "user_edit", "at": future.isoformat()}
        row.field_meta = meta

    run = await sync(sessions, config, account_id, "incremental")

    assert run.status == "succeeded", run.error
    async with sessions() as session:
        row = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.external_id == lead)
        )
    assert row.fields["opted_out"] is True  # R23: the CRM's opt-in does not clear it
    assert row.fields["job_title"] == "Newer local title"  # R13: newer wins
    assert row.field_meta["job_title"]["origin"] == "user_edit"


async def test_budget_exhaustion_pauses_the_run_with_its_progress_and_it_resumes_from_there(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5000, contacts=10, seed=15)
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, org)
    # The second page of the Lead query finds the daily budget spent.
    org.faults("budget", count=1, path="/query/")
    job_id = await queue(sessions, account_id, "full")

    assert await run_queued(sessions, config, account_id) == ["paused"]
    paused = await run_of(sessions, account_id, job_id)
    assert paused.status == "paused"
    assert paused.error.startswith("paused: API budget")
    assert paused.pulled == 2000
    assert paused.next_attempt_at is not None
    assert paused.progress["full_started_at"]

    org.set_budget(used=0)  # a new day
    async with sessions.begin() as session:  # resume now rather than in 15 minutes
        await session.execute(
            update(SyncRun).where(SyncRun.id == paused.id).values(next_attempt_at=datetime.now(UTC))
        )
    assert await run_queued(sessions, config, account_id) == ["succeeded"], (
        await run_of(sessions, account_id, job_id)
    ).error
    resumed = await run_of(sessions, account_id, job_id)
    assert resumed.status == "succeeded", resumed.error
    assert resumed.progress["full_started_at"] == paused.progress["full_started_at"]
    assert await store_of(sessions, account_id) == expected_store(org)


async def test_a_field_renamed_in_the_crm_fails_the_run_with_a_message_naming_the_field_and_the_mapping_row(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5, contacts=5, seed=16)
    config = puller_settings(settings)
    await connect(sessions, settings, account_id, org)
    base = default_salesforce_mapping()
    renamed = tuple(
        row
        if row.destination != "score"
        else type(row)(**{**row.__dict__, "contact_source": "Lead_Score_Old__c"})
        for row in base.rows
    )
    await save_mapping(sessions, account_id, Mapping(version=1, rows=renamed))

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "failed"
    assert "Lead_Score_Old__c" in run.error
    assert "'score'" in run.error
    assert "Traceback" not in run.error
    assert run.next_attempt_at is None  # retrying cannot help until the mapping changes
    assert await store_of(sessions, account_id) == {}


async def test_r18_a_redelivered_job_is_recorded_once(sessions, account_id) -> None:
    job = RunSync(
        job_id=f"{account_id}:full:x",
        account_id=account_id,
        kind=SyncKind.FULL,
        reason=SyncReason.FIRST_SYNC,
        requested_at=datetime.now(UTC),
    )
    async with sessions.begin() as session:
        assert await record_job(session, job=job)
    async with sessions.begin() as session:
        assert not await record_job(session, job=job)
    async with sessions() as session:
        count = await session.scalar(
            select(text("count(*)")).select_from(SyncRun).where(SyncRun.account_id == account_id)
        )
    assert count == 1


async def test_r16_a_full_sync_removes_contacts_the_crm_no_longer_has_and_keeps_local_only_ones(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=10, contacts=10, seed=17)
    config = await synced(sessions, settings, account_id, org)
    async with sessions.begin() as session:
        session.add(
            Contact(account_id=account_id, email="local@example.com", fields={"email": "local@example.com"})
        )
    gone = org.records("Contact")[3]["Id"]
    org.delete("Contact", gone)

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    assert run.deleted == 1
    assert await store_of(sessions, account_id) == expected_store(org)
    async with sessions() as session:
        local = await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.email == "local@example.com")
        )
    assert local is not None


async def _row_versions(sessions, account_id: str) -> dict[str, str]:
    """Each CRM-backed contact's row version and last locker (xmin, xmax).

    Either changes when the row is rewritten; xmax also when it is locked, which
    writes the row's header (and WAL) too.
    """
    async with sessions() as session:
        rows = await session.execute(
            text(
                "select external_id, xmin::text || '/' || xmax::text from contacts "
                "where account_id = :a and external_id is not null"
            ),
            {"a": account_id},
        )
        return {external_id: version for external_id, version in rows}


async def test_r16_a_full_re_sync_keeps_unchanged_contacts_without_rewriting_them(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=10, contacts=10, seed=18)
    config = await synced(sessions, settings, account_id, org)
    before = await _row_versions(sessions, account_id)
    gone = org.records("Lead")[2]["Id"]
    org.delete("Lead", gone)

    run = await sync(sessions, config, account_id, "full")

    assert run.status == "succeeded", run.error
    assert (run.deleted, run.updated, run.skipped) == (1, 0, 19)
    assert await store_of(sessions, account_id) == expected_store(org)
    # The unchanged rows are the very rows stored before: seen without a rewrite or a lock.
    assert await _row_versions(sessions, account_id) == {k: v for k, v in before.items() if k != gone}
    async with sessions() as session:
        sightings = await session.scalar(
            text("select count(*) from sync_run_sightings where run_id = :r"), {"r": run.id}
        )
    assert sightings == 0  # a finished run's sightings go with it


async def test_a_run_waiting_for_its_retry_holds_back_its_accounts_later_runs_and_no_other_account(
    sessions, account_id
) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        session.add(Account(id=other, name=other))
    first = await queue(sessions, account_id, "incremental")
    later = await queue(sessions, account_id, "incremental")
    await queue(sessions, other, "incremental")
    async with sessions.begin() as session:
        run = await claim_next_run(session, account_id=account_id)
        assert run is not None and run.job_id == first
        retry_at = datetime.now(UTC) + timedelta(minutes=10)
        await finish_run(session, run_id=run.id, end=RunEnd("failed", "the CRM is down", retry_at))

    async with sessions.begin() as session:
        assert await claim_next_run(session, account_id=account_id) is None
        waiting = await accounts_with_work(session, limit=10_000)
    assert account_id not in waiting  # its later run waits behind the failed one
    assert other in waiting  # and takes no worker from an account that can sync

    async with sessions.begin() as session:
        await session.execute(
            update(SyncRun).where(SyncRun.id == run.id).values(next_attempt_at=datetime.now(UTC))
        )
    async with sessions.begin() as session:
        retried = await claim_next_run(session, account_id=account_id)
        assert retried is not None and retried.job_id == first  # its turn again, first in line
        await finish_run(session, run_id=retried.id, end=RunEnd("succeeded"))
    async with sessions.begin() as session:
        after = await claim_next_run(session, account_id=account_id)
    assert after is not None and after.job_id == later


async def test_a_run_failed_by_a_crm_outage_is_retried_with_backoff_and_then_succeeds(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=5, contacts=5, seed=18)
    config = puller_settings(settings, puller_retry_base_s=120.0)
    await connect(sessions, settings, account_id, org)
    # Every attempt the connector makes at the first describe meets a 503.
    org.faults("503", count=6, path="/describe")
    job_id = await queue(sessions, account_id, "full")

    before = datetime.now(UTC)
    assert await run_queued(sessions, config, account_id) == ["failed"]
    failed = await run_of(sessions, account_id, job_id)
    assert failed.attempts == 1
    assert failed.error and "Traceback" not in failed.error
    assert failed.next_attempt_at >= before + timedelta(seconds=110)
    assert await run_queued(sessions, config, account_id) == []  # not before its retry time

    async with sessions.begin() as session:
        await session.execute(
            update(SyncRun).where(SyncRun.id == failed.id).values(next_attempt_at=datetime.now(UTC))
        )
    assert await run_queued(sessions, config, account_id) == ["succeeded"]
    retried = await run_of(sessions, account_id, job_id)
    assert (retried.status, retried.attempts, retried.error) == ("succeeded", 2, None)
    assert await store_of(sessions, account_id) == expected_store(org)


async def test_a_stopping_puller_puts_its_run_back_in_the_queue_between_batches_and_the_next_one_finishes_it(
    sessions, settings, account_id, make_crm_org
) -> None:
    org = make_crm_org(leads=6000, contacts=10, seed=20)
    config = puller_settings(settings, puller_batch_size=500)
    await connect(sessions, settings, account_id, org)
    job_id = await queue(sessions, account_id, "full")
    stop = asyncio.Event()
    runner = sync_runner(sessions=sessions, crm_factory=crm_connectors(config), settings=config, stop=stop)
    async with sessions.begin() as session:
        run = await claim_next_run(session, account_id=account_id)
    execution = asyncio.create_task(runner.execute(run))
    while (await run_of(sessions, account_id, job_id)).pulled < 1000:
        assert not execution.done(), (await run_of(sessions, account_id, job_id)).error
        await asyncio.sleep(0.05)
    stop.set()  # SIGTERM

    assert await execution == "queued"
    requeued = await run_of(sessions, account_id, job_id)
    assert requeued.status == "queued"
    assert 1000 <= requeued.pulled < 6010
    assert requeued.progress["full_started_at"]

    assert await run_queued(sessions, config, account_id) == ["succeeded"]
    assert await store_of(sessions, account_id) == expected_store(org)


def _mapped_lead(n: int, *, title: str) -> MappedRecord:
    return MappedRecord(
        external_id=f"00Q{n:015d}",
        crm_object="Lead",
        modstamp=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
        values={"email": f"lead{n}@example.com", "job_title": title},
        account_external_id=None,
        account_name=None,
        owner_external_id=None,
        owner_name=None,
        owner_email=None,
    )


async def _first_sync_batch(conn, account_id: str, run_id: uuid.UUID, leads: list[tuple[int, str]]):
    """Applies a batch of Leads (number, title) as a first full sync into an empty store does."""
    records = [_mapped_lead(n, title=title) for n, title in leads]
    return await contact_store.apply_records(
        conn,
        account_id=account_id,
        run_id=run_id,
        batch=contact_store.prepare(records, empty_store=True),
        full=True,
    )


async def _written_meanwhile(
    sessions, account_id: str, *, email: str, fields: dict[str, Any], local: tuple[str, ...], **link: Any
) -> None:
    """Stores a contact another writer made while the sync ran; its `local` fields came from a form."""
    meta = {name: {"origin": "form", "at": "2026-11-28T08:00:00+00:00"} for name in local}
    async with sessions.begin() as session:
        session.add(Contact(account_id=account_id, email=email, fields=fields, field_meta=meta, **link))


async def _contacts(sessions, account_id: str) -> list[Contact]:
    async with sessions() as session:
        return list((await session.scalars(select(Contact).where(Contact.account_id == account_id))).all())


async def test_r18_a_first_full_sync_into_an_empty_store_copies_new_rows_and_merges_one_written_meanwhile(
    sessions, account_id
) -> None:
    run_id = uuid.uuid4()
    # The store was empty when the sync began; the pusher then linked a record it created.
    await _written_meanwhile(
        sessions,
        account_id,
        email="lead1@example.com",
        fields={"email": "lead1@example.com", "first_name": "Ada", "job_title": "Intern"},
        local=("first_name", "job_title"),
        crm_object="Lead",
        external_id=_mapped_lead(1, title="x").external_id,
    )
    async with sessions.begin() as session:
        conn = await session.connection()
        first = await _first_sync_batch(conn, account_id, run_id, [(2, "CTO"), (3, "CFO")])
        clash = await _first_sync_batch(conn, account_id, run_id, [(1, "CEO"), (4, "COO")])
    assert (first.created, first.updated) == (2, 0)
    assert (clash.created, clash.updated) == (1, 1)  # the COPY was undone, the rows merged
    rows = await _contacts(sessions, account_id)
    by_id = {c.external_id: c for c in rows}
    assert len(rows) == len(by_id) == 4
    assert by_id[_mapped_lead(1, title="x").external_id].fields == {
        "email": "lead1@example.com",
        "first_name": "Ada",
        "job_title": "CEO",
    }
    assert {c.fields["job_title"] for c in rows} == {"CEO", "CTO", "CFO", "COO"}
    assert {c.last_seen_run_id for c in rows} == {run_id}
    meta = {
        c.external_id: ContactValues.from_stored(c.fields, c.field_meta, c.crm_modstamp).meta for c in rows
    }
    # The CRM's values are marked the CRM's, the merged row's included; its local value stays local.
    assert all(m["job_title"].from_crm for m in meta.values())
    assert meta[_mapped_lead(1, title="x").external_id]["first_name"].origin == "form"


async def test_r5_a_first_full_sync_adopts_a_local_contact_a_form_created_meanwhile(
    sessions, account_id
) -> None:
    run_id = uuid.uuid4()
    # The store was empty when the sync began; then a form created a contact for a Lead's e-mail.
    await _written_meanwhile(
        sessions,
        account_id,
        email="Lead7@Example.com",
        fields={"email": "Lead7@Example.com", "webinar": "attended"},
        local=("email", "webinar"),
    )
    async with sessions.begin() as session:
        conn = await session.connection()
        counts = await _first_sync_batch(conn, account_id, run_id, [(7, "CEO"), (8, "CTO")])

    assert (counts.created, counts.updated) == (1, 1)
    rows = await _contacts(sessions, account_id)
    assert len(rows) == 2  # one contact per person, not a second one for the Lead
    adopted = next(c for c in rows if c.email_lower == "lead7@example.com")
    assert adopted.external_id == _mapped_lead(7, title="x").external_id
    assert adopted.fields["webinar"] == "attended" and adopted.fields["job_title"] == "CEO"
