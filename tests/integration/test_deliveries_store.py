"""What operators ask of waiting and failed pushes (R24), against PostgreSQL: pushes by state with
counts by error code, failed ones put back in line, dead-lettered events released for a replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Select, select

from crmsync.common.db.deliveries import (
    dead_lettered,
    delivery_counts,
    list_deliveries,
    push_log_counts,
    release_for_replay,
    retry_failed,
)
from crmsync.common.db.schema import PushDelivery, PushLog
from crmsync.common.domain.redelivery import WaitingValue

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _push(
    account_id: str, contact_id: uuid.UUID, *, state: str, code: str | None, events: list[str], **fields: str
):
    minute = len(events)
    return PushDelivery(
        account_id=account_id,
        contact_id=contact_id,
        operation="update",
        crm_object="Lead",
        crm_id="00Q000000000001AAA",
        fields={
            n: WaitingValue(v, T0 + timedelta(minutes=minute), events[-1], None).to_json()
            for n, v in fields.items()
        },
        event_ids=events,
        state=state,
        failures=3 if state == "failed" else 1,
        first_failed_at=T0,
        next_attempt_at=T0,
        last_error_code=code,
        last_error_message=code and f"{code} message",
    )


def _entry(account_id: str, event_id: str, *, status: str, code: str | None = None) -> PushLog:
    return PushLog(
        account_id=account_id, event_id=event_id, operation="update", status=status, error_code=code
    )


async def test_r24_operators_see_pushes_by_state_with_counts_by_error_code(sessions, account_id) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with sessions.begin() as session:
        session.add_all(
            [
                _push(account_id, a, state="waiting", code="SERVER_UNAVAILABLE", events=["e1"], Title="A"),
                _push(
                    account_id, b, state="waiting", code="REQUEST_LIMIT_EXCEEDED", events=["e2"], Title="B"
                ),
                _push(account_id, c, state="failed", code="SERVER_UNAVAILABLE", events=["e3"], Title="C"),
                _entry(account_id, "e1", status="waiting", code="SERVER_UNAVAILABLE"),
                _entry(account_id, "e3", status="failed", code="SERVER_UNAVAILABLE"),
            ]
        )
    async with sessions() as session:
        counts = await delivery_counts(session, account_id=account_id)
        failed = await list_deliveries(session, account_id=account_id, state="failed")
        parked = await list_deliveries(session, account_id=account_id, error_code="REQUEST_LIMIT_EXCEEDED")
        log = await push_log_counts(session, account_id=account_id)
        other = await delivery_counts(session, account_id="no-such-account")
    assert counts == {
        "waiting": {"SERVER_UNAVAILABLE": 1, "REQUEST_LIMIT_EXCEEDED": 1},
        "failed": {"SERVER_UNAVAILABLE": 1},
    }
    assert [(p.contact_id, p.values["Title"].value) for p in failed] == [(c, "C")]
    assert [p.contact_id for p in parked] == [b]
    assert log == {"waiting": {"SERVER_UNAVAILABLE": 1}, "failed": {"SERVER_UNAVAILABLE": 1}}
    assert other == {}  # R21: an account sees only its own


async def test_r24_a_failed_push_retried_waits_again_at_once_with_a_new_horizon(sessions, account_id) -> None:
    contact = uuid.uuid4()
    async with sessions.begin() as session:
        session.add_all(
            [
                _push(
                    account_id, contact, state="failed", code="SERVER_UNAVAILABLE", events=["e1"], Title="A"
                ),
                _entry(account_id, "e1", status="failed", code="SERVER_UNAVAILABLE"),
            ]
        )
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        assert await retry_failed(session, account_id=account_id, now=now) == 1
    async with sessions() as session:
        (push,) = await list_deliveries(session, account_id=account_id)
        entry = await session.get(PushLog, (await session.scalar(_entry_id(account_id, "e1"))))
    assert (push.state, push.failures, push.first_failed_at, push.next_attempt_at) == (
        "waiting",
        0,
        None,
        now,
    )
    assert entry is not None and entry.status == "waiting"


async def test_r24_a_failed_push_retried_joins_the_contacts_waiting_push_newest_values_winning(
    sessions, account_id
) -> None:
    contact = uuid.uuid4()
    async with sessions.begin() as session:
        session.add_all(
            [
                _push(
                    account_id,
                    contact,
                    state="failed",
                    code="SERVER_UNAVAILABLE",
                    events=["e1"],
                    Title="Old",
                    City="Paris",
                ),
                _push(account_id, contact, state="waiting", code=None, events=["e2", "e3"], Title="New"),
            ]
        )
    async with sessions.begin() as session:
        assert await retry_failed(session, account_id=account_id, now=T0) == 1
    async with sessions() as session:
        (push,) = await list_deliveries(session, account_id=account_id)
    assert push.state == "waiting"
    assert {n: v.value for n, v in push.values.items()} == {"Title": "New", "City": "Paris"}
    assert push.event_ids == ("e1", "e2", "e3")


async def test_r24_only_dead_lettered_events_are_released_for_a_replay(sessions, account_id) -> None:
    async with sessions.begin() as session:
        session.add_all(
            [
                _entry(account_id, "bad", status="skipped", code="INVALID_EVENT"),
                _entry(account_id, "done", status="succeeded"),
            ]
        )
    async with sessions.begin() as session:
        released = await release_for_replay(
            session, account_id=account_id, event_ids=["bad", "done", "unknown"]
        )
    assert released == ["bad"]
    async with sessions() as session:
        assert await session.scalar(_entry_id(account_id, "bad")) is None
        assert await session.scalar(_entry_id(account_id, "done")) is not None


async def test_r22_operators_list_an_accounts_dead_lettered_events_with_their_reasons(
    sessions, account_id
) -> None:
    async with sessions.begin() as session:
        session.add_all(
            [
                PushLog(
                    account_id=account_id,
                    event_id="bad",
                    operation="none",
                    status="skipped",
                    error_code="INVALID_EVENT",
                    error_message="changes.score: expected a number, got 'ninety' (data type score)",
                ),
                _entry(account_id, "fine", status="skipped"),
            ]
        )
    async with sessions() as session:
        (letter,) = await dead_lettered(session, account_id=account_id)
        assert await dead_lettered(session, account_id=account_id, after_id=letter.id) == []
    assert (letter.event_id, letter.reason) == (
        "bad",
        "changes.score: expected a number, got 'ninety' (data type score)",
    )


def _entry_id(account_id: str, event_id: str) -> Select[tuple[int]]:
    return select(PushLog.id).where(PushLog.account_id == account_id, PushLog.event_id == event_id)
