"""Durable re-delivery over the fakes (R24, R13): what the CRM cannot take now waits in the store, joins
later changes of its contact, is sent again until it succeeds or the horizon passes, drops what the CRM
changed later, and is parked, never failed, by an API budget at its reserve."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.common.domain.contacts import FieldMeta
from crmsync.common.domain.redelivery import RedeliveryPolicy, WaitingPush
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import ContactChanged, RunOutbound
from crmsync.pusher.handlers.run_outbound import run_outbound
from crmsync.pusher.values import StoredContact
from tests.unit.pusher_fakes import Pusher

ACCOUNT = "t-redeliver"
LEAD_ID = "00Q000000000001AAA"


def _event(changes: dict[str, Any], *, occurred_at: datetime | None = None) -> ContactChanged:
    return ContactChanged.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "account_id": ACCOUNT,
            "occurred_at": occurred_at or datetime.now(UTC),
            "source": "form",
            "contact": {"external_id": LEAD_ID},
            "changes": changes,
        }
    )


def _pusher(**kwargs: Any) -> tuple[Pusher, StoredContact]:
    pusher = Pusher(**kwargs)
    pusher.store.add_account(ACCOUNT)
    contact = StoredContact(
        id=uuid.uuid4(),
        account_id=ACCOUNT,
        crm_object="Lead",
        external_id=LEAD_ID,
        email="ada@example.com",
        fields={"email": "ada@example.com", "first_name": "Ada"},
        raw_meta={},
        crm_modstamp=datetime.now(UTC) - timedelta(days=1),
    )
    pusher.store.rows[contact.id] = contact
    return pusher, contact


def _waiting(pusher: Pusher) -> list[WaitingPush]:
    return [p for p in pusher.store.pushes.values() if p.state == "waiting"]


async def test_r24_a_write_the_crm_cannot_take_waits_and_is_sent_again_without_a_new_event() -> None:
    pusher, contact = _pusher()
    pusher.crm.down = True
    change = _event({"job_title": "Countess"})

    logged = await pusher.handle(change)

    entry = logged[change.event_id]
    assert (entry.status, entry.error_code) == ("waiting", "SERVER_UNAVAILABLE")
    (push,) = _waiting(pusher)
    assert (push.contact_id, push.failures, push.event_ids) == (contact.id, 1, (change.event_id,))
    assert push.values["Title"].value == "Countess"
    assert push.values["Title"].field == "job_title"

    pusher.crm.down = False
    assert await pusher.redeliver() == 1

    (write,) = pusher.crm.writes
    assert (write.crm_id, write.values) == (LEAD_ID, {"Title": "Countess"})
    assert pusher.store.entries[(ACCOUNT, change.event_id)].status == "succeeded"
    assert pusher.store.pushes == {}


async def test_r24_later_changes_join_the_waiting_push_and_one_write_carries_the_newest_values() -> None:
    pusher, _ = _pusher()
    pusher.crm.down = True
    now = datetime.now(UTC)
    first = _event({"job_title": "CTO", "city": "Paris"}, occurred_at=now - timedelta(minutes=2))
    await pusher.handle(first)
    pusher.crm.down = False
    later = _event({"job_title": "CEO"}, occurred_at=now - timedelta(minutes=1))

    logged = await pusher.handle(later)

    # It does not overtake the waiting change: nothing was written, it waits with it.
    assert pusher.crm.writes == []
    assert logged[later.event_id].status == "waiting"
    (push,) = _waiting(pusher)
    assert {n: v.value for n, v in push.values.items()} == {"Title": "CEO", "City": "Paris"}
    assert push.event_ids == (first.event_id, later.event_id)

    await pusher.redeliver()

    (write,) = pusher.crm.writes
    assert write.values == {"Title": "CEO", "City": "Paris"}
    assert {pusher.store.entries[(ACCOUNT, e.event_id)].status for e in (first, later)} == {"succeeded"}


async def test_r13_a_crm_change_newer_than_the_waiting_value_is_kept_and_the_field_dropped() -> None:
    pusher, contact = _pusher()
    pusher.crm.down = True
    change = _event(
        {"job_title": "Countess", "city": "London"}, occurred_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    await pusher.handle(change)
    # A pull meanwhile brought the CRM's newer Title.
    stored = pusher.store.rows[contact.id]
    stored.fields["job_title"] = "Duchess"
    stored.raw_meta["job_title"] = FieldMeta("crm", datetime.now(UTC)).to_json()
    pusher.crm.down = False

    await pusher.redeliver()

    (write,) = pusher.crm.writes
    assert write.values == {"City": "London"}
    entry = pusher.store.entries[(ACCOUNT, change.event_id)]
    assert entry.status == "succeeded"
    assert entry.decisions["job_title"] == "superseded_by_crm"


async def test_r13_a_waiting_push_whose_every_value_the_crm_changed_later_is_skipped_without_a_call() -> None:
    pusher, contact = _pusher()
    pusher.crm.down = True
    change = _event({"job_title": "Countess"}, occurred_at=datetime.now(UTC) - timedelta(minutes=5))
    await pusher.handle(change)
    pusher.store.rows[contact.id].raw_meta["job_title"] = FieldMeta("crm", datetime.now(UTC)).to_json()
    pusher.crm.down = False

    await pusher.redeliver()

    assert pusher.crm.writes == []
    entry = pusher.store.entries[(ACCOUNT, change.event_id)]
    assert (entry.status, entry.decisions["job_title"]) == ("skipped", "superseded_by_crm")
    assert pusher.store.pushes == {}


async def test_r24_a_push_still_failing_past_the_horizon_fails_visibly_with_the_reason() -> None:
    policy = RedeliveryPolicy(
        base=timedelta(0), cap=timedelta(0), min_wait=timedelta(0), horizon=timedelta(microseconds=1)
    )
    pusher, _ = _pusher(redelivery=policy)
    pusher.crm.down = True
    change = _event({"job_title": "Countess"})
    await pusher.handle(change)

    await pusher.redeliver()

    (push,) = pusher.store.pushes.values()
    assert (push.state, push.failures, push.last_error_code) == ("failed", 2, "SERVER_UNAVAILABLE")
    entry = pusher.store.entries[(ACCOUNT, change.event_id)]
    assert (entry.status, entry.error_code) == ("failed", "SERVER_UNAVAILABLE")
    assert "gave up after 2 failed attempts" in (entry.error_message or "")
    assert await pusher.redeliver() == 0  # a failed push is not tried again by itself


async def test_r24_a_budget_at_its_reserve_parks_the_push_without_counting_a_failure() -> None:
    policy = RedeliveryPolicy(
        base=timedelta(0), cap=timedelta(0), min_wait=timedelta(0), horizon=timedelta(microseconds=1)
    )
    pusher, _ = _pusher(redelivery=policy, budget_recheck=timedelta(0))
    pusher.crm.exhausted = True
    change = _event({"job_title": "Countess"})

    logged = await pusher.handle(change)
    await pusher.redeliver()  # still at the reserve: parked again, past the horizon, never failed

    assert (logged[change.event_id].status, logged[change.event_id].error_code) == (
        "waiting",
        "REQUEST_LIMIT_EXCEEDED",
    )
    (push,) = _waiting(pusher)
    assert (push.failures, push.first_failed_at) == (0, None)
    assert pusher.crm.budget_rechecks == 1  # the budget is read afresh before the re-send

    pusher.crm.exhausted = False
    await pusher.redeliver()

    (write,) = pusher.crm.writes
    assert write.values == {"Title": "Countess"}
    assert pusher.store.entries[(ACCOUNT, change.event_id)].status == "succeeded"


async def test_r24_a_parked_push_waits_for_the_budgets_recheck_time() -> None:
    pusher, _ = _pusher(budget_recheck=timedelta(minutes=15))
    pusher.crm.exhausted = True
    before = datetime.now(UTC)
    await pusher.handle(_event({"job_title": "Countess"}))

    (push,) = _waiting(pusher)
    assert push.next_attempt_at >= before + timedelta(minutes=15)
    assert await pusher.redeliver() == 0


async def test_r18_a_redelivered_event_whose_entry_waits_has_no_second_effect() -> None:
    pusher, _ = _pusher()
    pusher.crm.down = True
    change = _event({"job_title": "Countess"})
    await pusher.handle(change)
    pusher.crm.down = False

    await pusher.handle(change)  # the same event again: it is in the waiting push already

    assert pusher.crm.writes == []
    (push,) = _waiting(pusher)
    assert push.event_ids == (change.event_id,)


async def test_r24_an_outbound_score_the_crm_cannot_take_waits_and_is_sent_again() -> None:
    pusher, contact = _pusher()
    stored = pusher.store.rows[contact.id]
    stored.fields["score"] = 87
    stored.raw_meta["score"] = FieldMeta("scoring", datetime.now(UTC)).to_json()
    stored.outbound_pending = True
    pusher.crm.down = True
    job = RunOutbound(job_id="job-1", account_id=ACCOUNT, requested_at=datetime.now(UTC))

    await run_outbound(pusher.ctx, Delivery("crmsync.outbound-jobs", 0, 0, None, job, 0))

    entry = pusher.store.entries[(ACCOUNT, "outbound:job-1")]
    assert (entry.status, entry.decisions["waiting"], entry.decisions["kept_for_retry"]) == (
        "succeeded",
        1,
        0,
    )
    assert not pusher.store.rows[contact.id].outbound_pending  # the waiting push has it now
    (push,) = _waiting(pusher)
    assert (push.values["Marketing_Score__c"].value, push.event_ids) == (87, ())

    pusher.crm.down = False
    await pusher.redeliver()

    (write,) = pusher.crm.writes
    assert (write.crm_id, write.values) == (LEAD_ID, {"Marketing_Score__c": 87})
    assert pusher.store.pushes == {}
