"""What operators do about waiting and failed pushes and dead letters (R24), over in-memory fakes.

tests/integration/test_mapping_api_deliveries.py runs the same through HTTP against
PostgreSQL, Kafka, the Salesforce emulator and the real pusher.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from crmsync.common.domain.redelivery import FAILED, WAITING, WaitingPush, WaitingValue
from crmsync.common.messages import ContactChanged
from crmsync.mapping_api.handlers import deliveries
from crmsync.mapping_api.handlers.errors import Conflict, NotFound
from crmsync.mapping_api.operator_values import DeadLetterInfo
from crmsync.mapping_api.values import PushLogEntry
from tests.unit.mapping_api_fakes import T0, FakeDeadLetterTopic, FakeOperatorTransactions, OperatorData

ACME, OTHER = "acme", "other"
NOW = T0 + timedelta(days=2)


def push(push_id: int, *, account_id: str = ACME, state: str = FAILED, code: str = "SERVER_UNAVAILABLE"):
    return WaitingPush(
        id=push_id,
        account_id=account_id,
        contact_id=uuid.uuid4(),
        operation="update",
        crm_object="Lead",
        crm_id=f"00Q{push_id:015d}",
        email_lower=None,
        values={"Title": WaitingValue("Analyst", T0, f"e{push_id}", "job_title")},
        next_attempt_at=T0 + timedelta(days=1),
        event_ids=(f"e{push_id}",),
        failures=12,
        first_failed_at=T0,
        last_error_code=code,
        last_error_message="503",
        state=state,
        created_at=T0,
    )


def event(event_id: str, *, account_id: str = ACME) -> ContactChanged:
    return ContactChanged.model_validate(
        {
            "event_id": event_id,
            "account_id": account_id,
            "occurred_at": T0.isoformat(),
            "source": "form",
            "contact": {"email": "ada@example.com"},
            "changes": {"Shoe_Size": 42},
        }
    )


def letter(letter_id: int, event_id: str) -> DeadLetterInfo:
    return DeadLetterInfo(letter_id, event_id, "form", "changes.Shoe_Size: unknown field", T0, T0)


@pytest.fixture
def tx() -> FakeOperatorTransactions:
    data = OperatorData()
    data.deliveries = {
        ACME: [
            push(1),
            push(2, state=WAITING, code="UNABLE_TO_LOCK_ROW"),
            push(3, code="REQUEST_LIMIT_EXCEEDED"),
            push(4),
        ],
        OTHER: [push(9, account_id=OTHER)],
    }
    data.dead_letters = {ACME: [letter(10, "a1"), letter(11, "a2")], OTHER: [letter(20, "o1")]}
    data.push_log = {
        ACME: [
            PushLogEntry(
                id=1,
                event_id="x",
                source="form",
                contact_id=None,
                crm_object=None,
                crm_id=None,
                operation="update",
                status="skipped",
                sent_fields={},
                decisions={},
                error_code="INVALID_EVENT",
                error_message="unknown",
                attempts=0,
                occurred_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        ]
    }
    return FakeOperatorTransactions(data)


async def test_r24_pushes_are_listed_by_state_and_error_code_in_pages(tx) -> None:
    failed = await deliveries.list_pushes(tx, account_id=ACME, state=FAILED, limit=2)
    assert [p.id for p in failed.items] == [1, 3] and failed.next_cursor == "3"
    rest = await deliveries.list_pushes(tx, account_id=ACME, state=FAILED, after=3, limit=2)
    assert [p.id for p in rest.items] == [4] and rest.next_cursor is None
    by_code = await deliveries.list_pushes(
        tx, account_id=ACME, state=FAILED, error_code="REQUEST_LIMIT_EXCEEDED"
    )
    assert [p.id for p in by_code.items] == [3]
    waiting = await deliveries.list_pushes(tx, account_id=ACME, state=WAITING)
    assert [p.id for p in waiting.items] == [2]


async def test_r24_the_summary_counts_pushes_and_push_log_entries_by_error_code(tx) -> None:
    summary = await deliveries.push_summary(tx, account_id=ACME)
    assert summary.deliveries == {
        FAILED: {"SERVER_UNAVAILABLE": 2, "REQUEST_LIMIT_EXCEEDED": 1},
        WAITING: {"UNABLE_TO_LOCK_ROW": 1},
    }
    assert summary.push_log == {"skipped": {"INVALID_EVENT": 1}}


async def test_r24_retrying_all_failed_pushes_puts_them_back_in_line_with_a_fresh_horizon(tx) -> None:
    assert await deliveries.retry_failed_pushes(tx, account_id=ACME, error_code=None, now=NOW) == 3
    pushes = {p.id: p for p in tx.data.deliveries[ACME]}
    assert {p.state for p in pushes.values()} == {WAITING}
    assert pushes[1].next_attempt_at == NOW and pushes[1].failures == 0 and pushes[1].first_failed_at is None
    assert pushes[1].values == push(1).values  # nothing the push carries is lost
    assert tx.data.deliveries[OTHER][0].state == FAILED  # R21


async def test_r24_retrying_failed_pushes_of_one_error_code_leaves_the_others_failed(tx) -> None:
    n = await deliveries.retry_failed_pushes(
        tx, account_id=ACME, error_code="REQUEST_LIMIT_EXCEEDED", now=NOW
    )
    assert n == 1
    assert {p.id: p.state for p in tx.data.deliveries[ACME]} == {1: FAILED, 2: WAITING, 3: WAITING, 4: FAILED}


async def test_r24_one_failed_push_is_retried_and_a_waiting_one_is_a_conflict(tx) -> None:
    assert await deliveries.retry_push(tx, account_id=ACME, push_id=4, now=NOW) == 1
    assert next(p for p in tx.data.deliveries[ACME] if p.id == 4).state == WAITING
    with pytest.raises(Conflict) as refused:
        await deliveries.retry_push(tx, account_id=ACME, push_id=2, now=NOW)
    assert refused.value.field == "push_id"


async def test_r21_another_accounts_push_is_not_found(tx) -> None:
    with pytest.raises(NotFound) as missing:
        await deliveries.retry_push(tx, account_id=ACME, push_id=9, now=NOW)
    assert missing.value.field == "push_id"
    assert tx.data.deliveries[OTHER][0].state == FAILED


async def test_r22_dead_letters_are_listed_with_their_reasons(tx) -> None:
    page = await deliveries.list_dead_letters(tx, account_id=ACME, limit=1)
    assert [d.event_id for d in page.items] == ["a1"] and page.next_cursor == "10"
    assert page.items[0].reason == "changes.Shoe_Size: unknown field"
    rest = await deliveries.list_dead_letters(tx, account_id=ACME, after=10)
    assert [d.event_id for d in rest.items] == ["a2"] and rest.next_cursor is None


async def test_r24_a_replayed_dead_letter_goes_back_through_the_outbox_and_its_entry_is_forgotten(tx) -> None:
    topic = FakeDeadLetterTopic([event("a1"), event("a2")])
    replayed = await deliveries.replay_dead_letter(tx, topic, account_id=ACME, event_id="a1")
    assert replayed.event_ids == ("a1",) and replayed.not_on_topic == ()
    assert tx.outbox == [event("a1")]
    assert [d.event_id for d in tx.data.dead_letters[ACME]] == ["a2"]


async def test_r24_replaying_all_sends_every_dead_letter_the_topic_still_holds(tx) -> None:
    topic = FakeDeadLetterTopic([event("a2"), event("o1", account_id=OTHER)])
    replayed = await deliveries.replay_dead_letters(tx, topic, account_id=ACME)
    assert replayed.event_ids == ("a2",) and replayed.not_on_topic == ("a1",)
    assert tx.outbox == [event("a2")]
    # The letter no longer on the topic stays listed; the other account's is untouched (R21).
    assert [d.event_id for d in tx.data.dead_letters[ACME]] == ["a1"]
    assert [d.event_id for d in tx.data.dead_letters[OTHER]] == ["o1"]


async def test_r24_a_dead_letter_the_topic_no_longer_holds_is_a_conflict_and_changes_nothing(tx) -> None:
    with pytest.raises(Conflict) as refused:
        await deliveries.replay_dead_letter(tx, FakeDeadLetterTopic(), account_id=ACME, event_id="a1")
    assert refused.value.field == "event_id"
    assert tx.outbox == [] and len(tx.data.dead_letters[ACME]) == 2


async def test_r21_another_accounts_dead_letter_is_not_found_and_the_topic_is_not_read(tx) -> None:
    topic = FakeDeadLetterTopic([event("o1", account_id=OTHER)])
    with pytest.raises(NotFound) as missing:
        await deliveries.replay_dead_letter(tx, topic, account_id=ACME, event_id="o1")
    assert missing.value.field == "event_id" and topic.reads == 0 and tx.outbox == []


async def test_r24_replaying_with_no_dead_letters_reads_no_topic() -> None:
    tx, topic = FakeOperatorTransactions(), FakeDeadLetterTopic()
    assert (await deliveries.replay_dead_letters(tx, topic, account_id=ACME)).event_ids == ()
    assert topic.reads == 0
