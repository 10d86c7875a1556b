"""Change cursors over in-memory ports: where each read resumes, and what it stores with it
(R5, R15, R16, R18).

The connector's cursor is opaque to the puller: an incremental read starts from the one the
entity's last read stored, each batch's cursor is stored with the batch, a full read's with
its sweep, and a cursor the CRM no longer follows makes the run a full sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

from crmsync.common.crm.interface import ChangeBatch, CrmTransientError, DeletedRecord
from crmsync.common.messages import SyncKind
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.runs import EntityState
from crmsync.puller.handlers.run_sync import SyncRunner
from crmsync.puller.settings import Settings
from tests.unit.puller_fakes import NOW, FakeCrm, FakeStore, claimed, contact, lead

SETTINGS = Settings(puller_batch_size=2, puller_repair_interval_s=0)
SINCE = NOW - timedelta(hours=1)


def runner(store: FakeStore, crm: FakeCrm) -> SyncRunner:
    return SyncRunner(store=store, crm_factory=lambda _: crm, settings=SETTINGS, clock=lambda: NOW)


def synced_store() -> FakeStore:
    """A store whose entities were read up to SINCE."""
    store = FakeStore()
    store.db.entities = {e: EntityState(cursor=SINCE.isoformat()) for e in ("Lead", "Contact")}
    return store


class PagedCrm(FakeCrm):
    """A CRM whose change read of Leads answers in pages, each with its cursor, and may fail after one."""

    def __init__(self, pages: list[ChangeBatch], *, fail_after: int | None = None) -> None:
        super().__init__({"Lead": [], "Contact": []})
        self.pages = pages
        self.fail_after = fail_after

    async def _changes(self, object_name: str, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        if object_name != "Lead":
            async for batch in super()._changes(object_name, cursor):
                yield batch
            return
        start = (
            0 if cursor is None else next((i + 1 for i, p in enumerate(self.pages) if p.cursor == cursor), 0)
        )
        for n, page in enumerate(self.pages[start:], start=start):
            if n == self.fail_after:
                raise CrmTransientError("service unavailable", status=503)
            yield page


async def test_r18_each_batch_of_an_incremental_stores_its_cursor_and_a_retry_resumes_from_the_last_one() -> (
    None
):
    store = synced_store()
    pages = [
        ChangeBatch([lead(1)], [], "page-1"),
        ChangeBatch([lead(2)], [], "page-2"),
        ChangeBatch([lead(3)], [], "page-3"),
    ]
    crm = PagedCrm(pages, fail_after=2)
    run = claimed(SyncKind.INCREMENTAL)

    assert await runner(store, crm).execute(run) == "failed"

    # The two batches read before the outage are stored, each with the cursor that covers it.
    assert set(store.db.contacts) == {"00Q001", "00Q002"}
    assert store.db.entities["Lead"].cursor == "page-2"

    crm.fail_after = None
    assert await runner(store, crm).execute(claimed(SyncKind.INCREMENTAL, attempts=2)) == "succeeded"
    assert ("Lead", "page-2") in crm.reads  # resumed where the stored cursor says
    assert set(store.db.contacts) == {"00Q001", "00Q002", "00Q003"}
    assert store.db.entities["Lead"].cursor == "page-3"


async def test_r16_the_deletions_of_a_batch_are_removed_in_its_transaction_and_counted() -> None:
    store = synced_store()
    store.db.contacts = {}
    pages = [ChangeBatch([lead(1), lead(2), lead(3)], [], None), ChangeBatch([], ["00Q002"], "page-2")]
    crm = PagedCrm(pages)
    run = claimed(SyncKind.INCREMENTAL)

    assert await runner(store, crm).execute(run) == "succeeded"

    assert set(store.db.contacts) == {"00Q001", "00Q003"}
    assert store.run(run).counts["deleted"] == 1
    assert store.db.entities["Lead"].cursor == "page-2"


async def test_r15_a_change_cursor_the_crm_no_longer_follows_makes_the_incremental_a_full_sync() -> None:
    store = synced_store()
    crm = FakeCrm({"Lead": [lead(1)], "Contact": [contact(1)]})
    crm.expired = {SINCE.isoformat()}
    run = claimed(SyncKind.INCREMENTAL)

    assert await runner(store, crm).execute(run) == "succeeded"

    progress = store.run(run).progress
    assert (
        progress.escalated_to_full == "the CRM no longer follows the changes of Lead: the cursor is too old"
    )
    assert progress.full_done == ("Lead", "Contact")
    assert ("Lead", None) in crm.reads  # read again from no cursor: a full read
    assert store.db.entities["Lead"].cursor == NOW.isoformat()


async def test_r16_a_full_read_stores_its_cursor_only_once_the_entity_is_done_and_swept() -> None:
    store = FakeStore()
    pages = [
        ChangeBatch([lead(1)], [], None),
        ChangeBatch([lead(2)], [], "mid-read"),
        ChangeBatch([lead(3)], [], "read-began"),
    ]
    crm = PagedCrm(pages, fail_after=2)
    run = claimed(SyncKind.FULL)

    assert await runner(store, crm).execute(run) == "failed"
    assert set(store.db.contacts) == {"00Q001", "00Q002"}
    # No cursor yet: an incremental cannot start from half a full read, whose sweep has not run.
    assert "Lead" not in store.db.entities

    crm.fail_after = None
    again = claimed(SyncKind.FULL, attempts=2, progress=store.run(run).progress)
    assert await runner(store, crm).execute(again) == "succeeded"
    assert crm.reads.count(("Lead", None)) == 2  # the entity is read again from the start
    assert store.db.entities["Lead"].cursor == "read-began"


async def test_a_full_sync_that_began_on_an_empty_store_tells_the_store_its_first_load_finished_even_when_resumed() -> (
    None
):
    store, crm = FakeStore(), FakeCrm({"Lead": [lead(1), lead(2)], "Contact": [contact(1)]})
    store.failures["finish_run"] = StoreUnavailable("OperationalError: connection was closed")
    run = claimed(SyncKind.FULL)

    assert await runner(store, crm).execute(run) == "failed"  # its last step failed, so it ran again
    assert store.db.full_loads == []  # rolled back with the run's end
    progress = store.run(run).progress
    assert progress.first_load and store.db.contacts

    again = claimed(SyncKind.FULL, attempts=2, progress=progress)
    assert await runner(store, crm).execute(again) == "succeeded"
    assert store.db.full_loads == [True]

    # A later full sync finds the store full.
    assert await runner(store, crm).execute(claimed(SyncKind.FULL)) == "succeeded"
    assert store.db.full_loads == [True, False]


async def test_r5_deals_are_read_through_the_deal_roles_and_their_deletions_follow() -> None:
    deal = {
        "Id": "006A",
        "SystemModstamp": NOW,
        "Name": "Big deal",
        "StageName": "Closed Won",
        "Amount": 1200.5,
        "CloseDate": date(2026, 12, 1),
        "AccountId": "001A",
        "ContactId": "003001",
    }
    store, crm = FakeStore(), FakeCrm({"Lead": [], "Contact": [contact(1)], "Opportunity": [deal]})

    assert await runner(store, crm).execute(claimed(SyncKind.FULL)) == "succeeded"

    (stored,) = store.db.deals.values()
    assert (stored.external_id, stored.name, stored.stage) == ("006A", "Big deal", "Closed Won")
    assert (str(stored.amount), stored.close_date) == ("1200.5", date(2026, 12, 1))
    assert (stored.company_external_id, stored.contact_external_id) == ("001A", "003001")
    assert store.db.entities["Opportunity"].cursor == NOW.isoformat()

    crm.deleted = {"Opportunity": [DeletedRecord("006A", NOW)]}
    assert await runner(store, crm).execute(claimed(SyncKind.INCREMENTAL)) == "succeeded"
    assert store.db.deals == {}
    assert ("Opportunity", NOW.isoformat()) in crm.reads
