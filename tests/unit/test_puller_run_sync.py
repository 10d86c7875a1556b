"""The sync use case over in-memory ports: where a run ends up, and why (R15, R16, R18, R22).

No database, no CRM: the run's state transitions are the handler's rules, so
they are tested here; the integration tests check the same against Postgres
and the emulated CRM.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from crmsync.common.crm.interface import CrmBudgetExhausted, CrmRejected, CrmTransientError, DeletedRecord
from crmsync.common.domain.mapping import default_salesforce_mapping
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.runs import EntityState, RunProgress
from crmsync.puller.handlers.crm_records import map_record
from crmsync.puller.handlers.record_job import record_jobs
from crmsync.puller.handlers.run_sync import SyncRunner
from crmsync.puller.settings import Settings
from tests.unit.puller_fakes import NOW, ROLES, FakeCrm, FakeJobs, FakeStore, claimed, contact, lead

SETTINGS = Settings(
    puller_retry_base_s=30.0,
    puller_retry_max_s=3600.0,
    puller_max_attempts=8,
    puller_budget_resume_s=900.0,
    puller_lookback_s=60.0,
    puller_batch_size=2,
)

MAPPING = default_salesforce_mapping()


def runner(store: FakeStore, crm: FakeCrm, *, stop: asyncio.Event | None = None) -> SyncRunner:
    return SyncRunner(store=store, crm_factory=lambda _: crm, settings=SETTINGS, stop=stop, clock=lambda: NOW)


def org() -> FakeCrm:
    return FakeCrm({"Lead": [lead(1), lead(2), lead(3)], "Contact": [contact(1)]})


async def test_r15_a_full_sync_stores_every_record_and_moves_each_entity_s_watermark_to_its_start() -> None:
    store, crm = FakeStore(), org()
    run = claimed(SyncKind.FULL)

    assert await runner(store, crm).execute(run) == "succeeded"

    stored = store.run(run)
    assert stored.end is not None and stored.end.status == "succeeded"
    assert stored.progress == RunProgress(full_started_at=NOW, full_done=("Lead", "Contact"), first_load=True)
    assert stored.counts["pulled"] == 4 and stored.counts["created"] == 4
    assert set(store.db.contacts) == {"00Q001", "00Q002", "00Q003", "003001"}
    assert {e: s.watermark for e, s in store.db.entities.items()} == {"Lead": NOW, "Contact": NOW}
    # The next incremental reads from the cursor each full read ended with.
    assert {e: s.cursor for e, s in store.db.entities.items()} == {
        "Lead": NOW.isoformat(),
        "Contact": NOW.isoformat(),
    }
    assert crm.reads == [("Lead", None), ("Contact", None)]
    assert store.db.full_loads == [True]  # the store was empty: a first load
    assert store.db.full_request_cleared
    assert crm.closed


async def test_r15_an_incremental_sync_with_no_full_sync_before_it_becomes_a_full_one() -> None:
    store, crm = FakeStore(), org()
    run = claimed(SyncKind.INCREMENTAL)

    assert await runner(store, crm).execute(run) == "succeeded"

    progress = store.run(run).progress
    assert progress.escalated_to_full == "no full sync of Lead yet"
    assert progress.full_done == ("Lead", "Contact")
    assert len(store.db.contacts) == 4


async def test_r26_an_incremental_that_must_become_full_in_an_incremental_slot_goes_back_for_the_full_lane() -> (
    None
):
    store, crm = FakeStore(), org()
    run = replace(claimed(SyncKind.INCREMENTAL), full_lane=False)

    assert await runner(store, crm).execute(run) == "queued"

    end = store.run(run).end
    assert end is not None and end.next_attempt_at is None
    assert end.progress is not None and end.progress.escalated_to_full == "no full sync of Lead yet"
    assert store.db.contacts == {}  # the full sync is left to a full slot
    assert crm.closed

    # Claimed again by a full slot, the run resumes as the full sync it became.
    again = replace(run, attempts=2, progress=end.progress, full_lane=True)
    assert await runner(store, crm).execute(again) == "succeeded"
    assert store.run(again).progress.full_done == ("Lead", "Contact")


async def test_r16_an_incremental_sync_reads_what_changed_since_the_watermark_and_removes_what_was_deleted() -> (
    None
):
    store = FakeStore()
    since = NOW - timedelta(hours=1)
    store.db.entities = {"Lead": EntityState(since, since), "Contact": EntityState(since, since)}
    store.db.contacts = {
        "00Q009": map_record(mapping=MAPPING, roles=ROLES, entity="Lead", record=lead(9, modstamp=since))
    }
    old, new = lead(1, modstamp=since - timedelta(hours=1)), lead(2, modstamp=NOW)
    crm = FakeCrm({"Lead": [old, new], "Contact": []})
    crm.deleted = {"Lead": [DeletedRecord("00Q009", NOW)]}
    run = claimed(SyncKind.INCREMENTAL)

    assert await runner(store, crm).execute(run) == "succeeded"

    assert set(store.db.contacts) == {"00Q002"}  # the old record is outside the lookback; 00Q009 is gone
    assert store.run(run).counts["deleted"] == 1
    assert store.run(run).progress.escalated_to_full is None
    assert store.db.entities["Lead"].watermark == NOW
    assert crm.reads == [("Lead", since.isoformat()), ("Contact", since.isoformat())]
    assert store.db.entities["Lead"].cursor == NOW.isoformat()  # where the next one reads from
    assert store.db.full_loads == []


async def test_r22_a_crm_outage_fails_the_run_with_a_retry_time_that_grows_with_its_attempts() -> None:
    for attempts, wait in ((1, 30), (2, 60), (4, 240), (7, 1920)):
        store, crm = FakeStore(), org()
        crm.failures["describe"] = CrmTransientError("service unavailable", status=503)
        run = claimed(attempts=attempts)

        assert await runner(store, crm).execute(run) == "failed"

        end = store.run(run).end
        assert end is not None
        assert end.error == "CrmTransientError: service unavailable"
        assert end.next_attempt_at == NOW + timedelta(seconds=wait)
        assert crm.closed


async def test_r22_a_run_that_used_up_its_attempts_stays_failed() -> None:
    store, crm = FakeStore(), org()
    crm.failures["describe"] = CrmTransientError("service unavailable", status=503)
    run = claimed(attempts=SETTINGS.puller_max_attempts)

    assert await runner(store, crm).execute(run) == "failed"
    end = store.run(run).end
    assert end is not None and end.next_attempt_at is None


async def test_r18_a_lost_database_connection_fails_the_run_with_a_retry_time_and_keeps_what_was_committed() -> (
    None
):
    store, crm = FakeStore(), org()
    store.failures["apply_records"] = StoreUnavailable("OperationalError: connection was closed")
    run = claimed()

    assert await runner(store, crm).execute(run) == "failed"

    stored = store.run(run)
    assert stored.end is not None
    assert stored.end.error == "OperationalError: connection was closed"
    assert stored.end.next_attempt_at == NOW + timedelta(seconds=30)
    assert stored.progress.full_started_at == NOW  # the retry resumes the same full sync
    assert store.db.contacts == {}  # the batch's transaction rolled back


async def test_a_mapping_that_no_longer_matches_the_crm_fails_the_run_for_good_naming_the_field_and_the_row() -> (
    None
):
    store, crm = FakeStore(), org()
    crm.missing = {"Title"}
    run = claimed()

    assert await runner(store, crm).execute(run) == "failed"

    end = store.run(run).end
    assert end is not None
    assert "'Title'" in end.error and "'job_title'" in end.error
    assert end.next_attempt_at is None
    assert store.db.contacts == {}  # nothing is written before the mapping is checked


@pytest.mark.parametrize(("code", "retried"), [("INVALID_FIELD", False), ("QUERY_TIMEOUT", True)])
async def test_a_crm_refusal_names_the_mapping_rows_and_is_retried_unless_it_is_about_a_field(
    code: str, retried: bool
) -> None:
    store, crm = FakeStore(), org()
    crm.failures["read"] = CrmRejected("No such column 'Title'", error_code=code, fields=["Title"])
    run = claimed()

    assert await runner(store, crm).execute(run) == "failed"

    end = store.run(run).end
    assert end is not None
    assert end.error == "the CRM refused the sync: No such column 'Title' (mapping rows: 'job_title')"
    assert (end.next_attempt_at is not None) is retried


async def test_an_exhausted_api_budget_pauses_the_run_with_its_progress() -> None:
    store, crm = FakeStore(), org()
    crm.failures["read"] = CrmBudgetExhausted("limit", used=14_500, limit=15_000)
    run = claimed()

    assert await runner(store, crm).execute(run) == "paused"

    stored = store.run(run)
    assert stored.end is not None
    assert stored.end.error == "paused: API budget (14500 of 15000 calls used today); resumes at 10:15 UTC"
    assert stored.end.next_attempt_at == NOW + timedelta(seconds=900)
    assert stored.progress.full_started_at == NOW


async def test_a_stopping_process_puts_the_run_back_in_the_queue_with_its_progress() -> None:
    store, crm = FakeStore(), org()
    stop = asyncio.Event()
    stop.set()
    run = claimed()

    assert await runner(store, crm, stop=stop).execute(run) == "queued"

    stored = store.run(run)
    assert stored.end is not None and (stored.end.error, stored.end.next_attempt_at) == (None, None)
    assert stored.progress.full_started_at == NOW
    assert crm.closed


async def test_a_bug_is_recorded_on_the_run_and_raised() -> None:
    store, crm = FakeStore(), org()
    crm.failures["read"] = ZeroDivisionError("division by zero")
    run = claimed()

    with pytest.raises(ZeroDivisionError):
        await runner(store, crm).execute(run)

    end = store.run(run).end
    assert end is not None
    assert (end.status, end.error) == ("failed", "internal error: ZeroDivisionError: division by zero")
    assert end.next_attempt_at == NOW + timedelta(seconds=30)
    assert crm.closed


async def test_r18_a_run_a_later_sync_has_covered_succeeds_without_reading_the_crm() -> None:
    store, crm = FakeStore(), org()
    earlier = claimed()
    store.db.covering = earlier.id
    run = claimed()

    assert await runner(store, crm).execute(run) == "succeeded"

    assert store.run(run).progress == RunProgress(covered_by=str(earlier.id))
    assert store.db.contacts == {}


async def test_a_resumed_run_is_not_taken_for_a_covered_one() -> None:
    store, crm = FakeStore(), org()
    store.db.covering = claimed().id
    run = claimed(attempts=2)

    assert await runner(store, crm).execute(run) == "succeeded"
    assert store.run(run).progress.covered_by is None


async def test_an_account_without_a_crm_connection_fails_its_run() -> None:
    store, crm = FakeStore(), org()
    store.db.connection = None
    run = claimed()

    assert await runner(store, crm).execute(run) == "failed"
    end = store.run(run).end
    assert end is not None and (end.error, end.next_attempt_at) == ("the account has no CRM connection", None)


async def test_a_connection_whose_credentials_cannot_be_opened_fails_its_run() -> None:
    def broken(_):
        raise ValueError("the secret key does not open these credentials")

    store = FakeStore()
    run = claimed()
    sync = SyncRunner(store=store, crm_factory=broken, settings=SETTINGS, clock=lambda: NOW)

    assert await sync.execute(run) == "failed"
    end = store.run(run).end
    assert end is not None
    assert end.error == "the CRM connection cannot be used: the secret key does not open these credentials"


async def test_r18_a_redelivered_job_is_recorded_once() -> None:
    job = RunSync(
        job_id="acme:full:1",
        account_id="acme",
        kind=SyncKind.FULL,
        reason=SyncReason.SYNC_NOW,
        requested_at=NOW,
    )
    jobs = FakeJobs()
    assert await record_jobs(store=jobs, jobs=[job]) == 1
    assert await record_jobs(store=jobs, jobs=[job, job]) == 0
