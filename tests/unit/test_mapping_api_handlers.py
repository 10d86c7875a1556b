"""The mapping API's use cases against in-memory fakes of their ports: the rules that live in a handler.

Saving a mapping (R1–R4, R6, R15), Allow Push (R8), tenancy (R21) and Sync Now
(R14), fast and without servers; test_mapping_api*.py run the same through HTTP
on the real PostgreSQL, Kafka and the Salesforce emulator.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from crmsync.common.crm.interface import CrmField, CrmTransientError
from crmsync.common.crm.providers import provider_named
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, FieldKind, PushPolicy
from crmsync.common.domain.schedule import Schedule, automatic_interval_minutes, job_id_for, next_due_times
from crmsync.common.messages import ContactChanged, RunOutbound, RunSync, SyncKind, SyncReason
from crmsync.mapping_api.handlers import admin, contacts, history, schedule
from crmsync.mapping_api.handlers.accounts import Caller, authenticate, hash_key
from crmsync.mapping_api.handlers.errors import (
    CrmUnavailable,
    Forbidden,
    Invalid,
    MappingRefused,
    NoConnection,
    NotFound,
)
from crmsync.mapping_api.handlers.mapping import RowInput, save_mapping, set_default_push, set_field_push
from crmsync.mapping_api.values import ContactInfo, PushLogEntry, RunHistory, StoredSchedule, SyncRunInfo
from tests.unit.mapping_api_fakes import T0, Data, FakeCrm, FakeTransactions, connection_of

ACME = "acme"
NOW = T0 + timedelta(seconds=30, microseconds=123)


@pytest.fixture
async def tx() -> FakeTransactions:
    """An account as crmsync-admin makes it (R7), connected to a CRM."""
    tx = FakeTransactions(Data())
    await admin.create_account(tx, name="Acme Corp", account_id=ACME, now=T0)
    tx.data.connections[ACME] = connection_of(ACME)
    return tx


def inputs(rows=DEFAULT_SALESFORCE_ROWS) -> list[RowInput]:
    return [
        RowInput(r.destination, r.kind, r.lead_source, r.contact_source, r.data_type, r.allow_push)
        for r in rows
    ]


async def save(tx, rows, crm=None):
    return await save_mapping(tx, account_id=ACME, rows=rows, note=None, crm=crm or FakeCrm(), now=NOW)


def rules(refused: pytest.ExceptionInfo[MappingRefused]) -> set[tuple[int | None, str]]:
    return {(v.row_index, v.rule) for v in refused.value.violations}


# --- saving a mapping (R1–R4, R6, R15) --------------------------------------------------------


async def test_r7_a_new_account_has_mapping_version_1_two_way_policy_and_automatic_schedule(tx) -> None:
    assert [m.version for m in tx.data.mappings[ACME]] == [1]
    assert tx.data.mappings[ACME][0].rows == DEFAULT_SALESFORCE_ROWS
    assert tx.data.policies[ACME] == PushPolicy(default_allow_push=True)
    assert tx.data.schedules[ACME].schedule.mode == "automatic"
    assert tx.outbox == []


async def test_r15_a_mapping_reading_a_new_crm_field_is_a_new_version_and_one_full_sync(tx) -> None:
    crm = FakeCrm()
    crm.describes["Lead"].fields["Shoe_Size__c"] = CrmField("Shoe_Size__c", "Shoe Size", "double")
    shoe = RowInput("Shoe_Size", FieldKind.CUSTOM, lead_source="Shoe_Size__c", data_type=DataType.NUMBER)

    result = await save(tx, [*inputs(), shoe], crm)

    assert result.mapping.version == 2 and result.checked_against_crm
    assert result.new_sources == ["Lead.Shoe_Size__c"]
    requested = NOW.replace(microsecond=0)
    assert result.full_sync_job_id == job_id_for(account_id=ACME, kind="full", slot=requested)
    assert tx.data.schedules[ACME].full_sync_requested_at == requested
    (job,) = tx.outbox
    assert isinstance(job, RunSync)
    assert (job.job_id, job.kind, job.reason) == (
        result.full_sync_job_id,
        SyncKind.FULL,
        SyncReason.NEW_FIELD,
    )


async def test_r15_saving_the_saved_rows_again_adds_no_version_and_no_sync(tx) -> None:
    result = await save(tx, inputs())
    assert result.mapping.version == 1 and result.new_sources == [] and result.full_sync_job_id is None
    assert len(tx.data.mappings[ACME]) == 1 and tx.outbox == []


async def test_r15_reordering_or_dropping_rows_is_a_new_version_without_a_sync(tx) -> None:
    rows = [r for r in reversed(DEFAULT_SALESFORCE_ROWS) if r.destination != "website"]
    result = await save(tx, inputs(rows))
    assert result.mapping.version == 2 and result.full_sync_job_id is None
    assert tx.data.schedules[ACME].full_sync_requested_at is None and tx.outbox == []


async def test_r1_to_r4_a_refused_save_names_each_broken_row_and_changes_nothing(tx) -> None:
    before = list(tx.data.mappings[ACME])
    rows = [
        RowInput("email", lead_source="Email"),  # R2: Contact.Email must map to email too
        RowInput("email", lead_source="Email", contact_source="Email"),  # R1: a destination appears once
        RowInput("first_name", lead_source="NoSuchField__c"),  # R4: not in the describe
        RowInput("nickname", lead_source="FirstName"),  # R1: not a standard field
    ]
    with pytest.raises(MappingRefused) as refused:
        await save(tx, rows)
    assert {(1, "R1"), (2, "R4"), (3, "R1"), (None, "R3")} <= rules(refused)
    assert any(rule == "R2" for _, rule in rules(refused))
    assert tx.data.mappings[ACME] == before and tx.outbox == [] and tx.commits == 1


async def test_r4_a_field_that_may_push_must_be_updateable_in_the_crm(tx) -> None:
    crm = FakeCrm()
    crm.describes["Lead"].fields["Company"] = CrmField("Company", "Company", "string", updateable=False)
    with pytest.raises(MappingRefused) as refused:
        await save(tx, inputs(), crm)
    company = next(i for i, r in enumerate(DEFAULT_SALESFORCE_ROWS) if r.destination == "company")
    assert rules(refused) == {(company, "R4")}
    rows = [
        replace(r, allow_push=False) if r.destination == "company" else r for r in DEFAULT_SALESFORCE_ROWS
    ]
    assert (await save(tx, inputs(rows), crm)).mapping.version == 2


async def test_r6_a_custom_field_needs_a_data_type_before_anything_is_read(tx) -> None:
    crm = FakeCrm()
    with pytest.raises(Invalid) as invalid:
        await save(tx, [*inputs(), RowInput("Shoe_Size", FieldKind.CUSTOM)], crm)
    assert invalid.value.field == f"rows[{len(DEFAULT_SALESFORCE_ROWS)}].data_type"
    assert crm.connected == [] and len(tx.data.mappings[ACME]) == 1


async def test_r4_without_a_connection_sources_are_saved_unchecked(tx) -> None:
    del tx.data.connections[ACME]
    rows = [*inputs(), RowInput("Shoe_Size", FieldKind.CUSTOM, "Anything__c", data_type=DataType.NUMBER)]
    result = await save(tx, rows)
    assert result.mapping.version == 2 and not result.checked_against_crm
    assert result.new_sources == ["Lead.Anything__c"]


async def test_a_crm_that_cannot_be_reached_refuses_the_save_as_unavailable(tx) -> None:
    with pytest.raises(CrmUnavailable):
        await save(tx, inputs(), FakeCrm(error=CrmTransientError("timed out")))
    assert len(tx.data.mappings[ACME]) == 1


async def test_the_first_save_of_an_account_without_a_mapping_is_version_1() -> None:
    tx = FakeTransactions()
    result = await save(tx, inputs())
    assert result.mapping.version == 1 and not result.checked_against_crm
    assert result.full_sync_job_id is not None


# --- Allow Push (R8) -------------------------------------------------------------------------------


async def test_r8_a_score_field_cannot_be_toggled_off(tx) -> None:
    with pytest.raises(MappingRefused) as refused:
        await set_field_push(
            tx, account_id=ACME, destination="score", allow_push=False, crm=FakeCrm(), now=NOW
        )
    assert {rule for _, rule in rules(refused)} == {"R8"}
    assert len(tx.data.mappings[ACME]) == 1


async def test_r8_a_field_toggled_off_is_a_new_version_that_pulls_nothing_new(tx) -> None:
    result = await set_field_push(
        tx, account_id=ACME, destination="company", allow_push=False, crm=FakeCrm(), now=NOW
    )
    assert result.mapping.version == 2 and result.full_sync_job_id is None
    assert next(r for r in result.mapping.rows if r.destination == "company").allow_push is False
    assert result.mapping.note == "Allow Push of company set to False"


async def test_r8_allow_push_of_a_field_outside_the_mapping_is_not_found(tx) -> None:
    with pytest.raises(NotFound) as missing:
        await set_field_push(tx, account_id=ACME, destination="shoe", allow_push=True, crm=FakeCrm(), now=NOW)
    assert missing.value.field == "destination"


async def test_r4_the_default_policy_cannot_make_a_read_only_field_push(tx) -> None:
    tx.data.policies[ACME] = PushPolicy(default_allow_push=False)
    crm = FakeCrm()
    crm.describes["Lead"].fields["Company"] = CrmField("Company", "Company", "string", updateable=False)
    with pytest.raises(MappingRefused):
        await set_default_push(tx, account_id=ACME, default_allow_push=True, crm=crm, now=NOW)
    assert tx.data.policies[ACME] == PushPolicy(default_allow_push=False)
    view = await set_default_push(tx, account_id=ACME, default_allow_push=False, crm=crm, now=NOW)
    assert view.policy == PushPolicy(default_allow_push=False) and view.mapping.version == 1


# --- tenancy (R21) --------------------------------------------------------------------------------


async def test_r21_a_key_is_its_accounts_caller_until_it_is_revoked(tx) -> None:
    key = await admin.create_api_key(tx, account_id=ACME, role="reader")
    caller = await authenticate(tx, key=key, now=NOW)
    assert caller is not None and (caller.account_id, caller.role, caller.is_admin) == (ACME, "reader", False)
    assert await authenticate(tx, key=key + "x", now=NOW) is None
    await admin.revoke_api_key(tx, account_id=ACME, prefix=key[:14], now=NOW)
    assert await authenticate(tx, key=key, now=NOW) is None


async def test_r21_a_keys_last_use_is_written_at_most_once_a_minute(tx) -> None:
    key = await admin.create_api_key(tx, account_id=ACME, role="admin")
    await authenticate(tx, key=key, now=NOW)
    await authenticate(tx, key=key, now=NOW + timedelta(seconds=59))
    assert tx.data.keys[0].last_used_at == NOW
    await authenticate(tx, key=key, now=NOW + timedelta(minutes=1))
    assert tx.data.keys[0].last_used_at == NOW + timedelta(minutes=1)


async def test_r21_writes_need_an_admin_key() -> None:
    admin_caller = Caller(ACME, "admin", "k1")
    assert admin_caller.require_admin() is admin_caller
    with pytest.raises(Forbidden):
        Caller(ACME, "reader", "k2").require_admin()


async def test_r21_a_key_is_revoked_only_among_its_own_accounts_keys(tx) -> None:
    await admin.create_account(tx, name="Globex", account_id="globex", now=T0)
    key = await admin.create_api_key(tx, account_id="globex", role="admin")
    with pytest.raises(NotFound):
        await admin.revoke_api_key(tx, account_id=ACME, prefix=key[:14], now=NOW)
    assert tx.data.key_hashes and all(k.revoked_at is None for k in tx.data.keys)
    assert tx.data.key_hashes[tx.data.keys[0].id] == hash_key(key)


async def test_r21_another_accounts_contact_run_and_push_log_entry_are_not_found(tx) -> None:
    contact = ContactInfo(
        uuid.uuid4(), "globex", "Lead", "00Q1", "a@b.c", {"first_name": "Ada"}, {}, T0, None, T0, T0
    )
    run = SyncRunInfo(
        uuid.uuid4(), "j", "full", "sync_now", "succeeded", 1, 0, 0, 0, 0, 0, 0, None, T0, T0, T0, T0
    )
    entry = PushLogEntry(
        1, "e", "form", contact.id, "Lead", "00Q1", "update", "succeeded", {}, {}, None, None, 1, T0, T0, T0
    )
    tx.data.contacts["globex"], tx.data.runs["globex"], tx.data.push_log["globex"] = [contact], [run], [entry]

    with pytest.raises(NotFound):
        await contacts.get_contact(tx, account_id=ACME, contact_id=contact.id)
    with pytest.raises(NotFound):
        await contacts.edit_contact(
            tx, account_id=ACME, contact_id=contact.id, changes={"first_name": "X"}, now=NOW
        )
    with pytest.raises(NotFound):
        await history.get_sync_run(tx, account_id=ACME, run_id=run.id)
    with pytest.raises(NotFound):
        await history.get_push_log_entry(tx, account_id=ACME, entry_id=entry.id)
    assert (await contacts.list_contacts(tx, account_id=ACME)).items == []
    assert (await history.list_sync_runs(tx, account_id=ACME)).items == []
    assert tx.outbox == []
    own = (await contacts.get_contact(tx, account_id="globex", contact_id=contact.id)).contact
    assert own == contact


async def test_a_user_edit_of_a_mapped_field_is_enqueued_as_a_user_edit_event(tx) -> None:
    contact = ContactInfo(uuid.uuid4(), ACME, "Lead", "00Q1", "a@b.c", {}, {}, None, None, T0, T0)
    tx.data.contacts[ACME] = [contact]
    with pytest.raises(Invalid) as invalid:
        await contacts.edit_contact(
            tx, account_id=ACME, contact_id=contact.id, changes={"score": "high"}, now=NOW
        )
    assert invalid.value.field == "changes.score" and tx.outbox == []
    event = await contacts.edit_contact(
        tx, account_id=ACME, contact_id=contact.id, changes={"job_title": "Analyst"}, now=NOW
    )
    assert tx.outbox == [event] and isinstance(event, ContactChanged)
    assert (event.source, event.contact.id, event.changes) == (
        "user_edit",
        contact.id,
        {"job_title": "Analyst"},
    )


# --- Sync Now (R14) -------------------------------------------------------------------------------


async def test_r14_sync_now_needs_a_connection(tx) -> None:
    del tx.data.connections[ACME]
    with pytest.raises(NoConnection):
        await schedule.sync_now(tx, account_id=ACME, kind=None, now=NOW)
    assert tx.outbox == []


async def test_r23_under_the_manual_schedule_sync_now_also_sends_scores_and_opt_outs(tx) -> None:
    tx.data.schedules[ACME] = StoredSchedule(Schedule(mode="manual"))
    job = await schedule.sync_now(tx, account_id=ACME, kind=None, now=NOW)
    outbound = [m for m in tx.outbox if isinstance(m, RunOutbound)]
    assert len(outbound) == 1 and tx.outbox[0] == job
    assert outbound[0].account_id == ACME and outbound[0].requested_at == NOW
    assert outbound[0].job_id.startswith(f"{ACME}:outbound:sync_now:")


async def test_r11_under_a_timed_schedule_sync_now_leaves_scores_and_opt_outs_to_their_schedule(tx) -> None:
    tx.data.schedules[ACME] = StoredSchedule(Schedule(mode="interval", interval_minutes=30))
    job = await schedule.sync_now(tx, account_id=ACME, kind=None, now=NOW)
    assert tx.outbox == [job]


async def test_r14_sync_now_is_full_until_a_full_sync_succeeded_then_incremental(tx) -> None:
    first = await schedule.sync_now(tx, account_id=ACME, kind=None, now=NOW)
    tx.data.history[ACME] = RunHistory(last_full_success=T0, last_full_pulled=20)
    second = await schedule.sync_now(tx, account_id=ACME, kind=None, now=NOW)
    chosen = await schedule.sync_now(tx, account_id=ACME, kind="full", now=NOW)
    assert [j.kind for j in (first, second, chosen)] == [SyncKind.FULL, SyncKind.INCREMENTAL, SyncKind.FULL]
    assert tx.outbox == [first, second, chosen]
    assert all(j.reason == SyncReason.SYNC_NOW and j.requested_at == NOW for j in tx.outbox)  # type: ignore[union-attr]
    assert first.job_id.startswith(f"{ACME}:full:sync_now:") and first.job_id != chosen.job_id


async def test_r7_an_account_made_for_dynamics_starts_with_the_dynamics_default_mapping(tx) -> None:
    await admin.create_account(tx, name="Contoso", account_id="contoso", provider="dynamics", now=T0)
    (first,) = tx.data.mappings["contoso"]
    assert first.rows == provider_named("dynamics").default_mapping().rows
    assert first.note == "default Dynamics 365 mapping"
    with pytest.raises(Invalid) as refused:
        await admin.create_account(tx, name="Initech", account_id="initech", provider="sugarcrm", now=T0)
    assert refused.value.field == "provider" and "initech" not in tx.data.mappings


async def test_r26_the_schedule_shown_plans_with_the_accounts_allocation_and_phase_as_the_scheduler_does(
    tx,
) -> None:
    tx.data.connections[ACME] = replace(connection_of(ACME), api_limit=15_000, api_allocation_calls=300)
    view = await schedule.get_schedule(tx, account_id=ACME, now=NOW)
    without = automatic_interval_minutes(record_count=0, daily_api_limit=15_000)
    assert view.automatic_interval_minutes == automatic_interval_minutes(
        record_count=0, daily_api_limit=15_000, allocated_calls=300
    )
    assert view.automatic_interval_minutes > without  # 300 calls a day cannot sync every `without` minutes
    planned = next_due_times(
        schedule=view.schedule,
        last_runs=view.last_runs,
        now=NOW,
        account_id=ACME,
        record_count=0,
        daily_api_limit=15_000,
        allocated_calls=300,
    )
    assert view.next_due == planned
