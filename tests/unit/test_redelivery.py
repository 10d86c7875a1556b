"""R24 and R13 for waiting pushes: growing waits for at least a day, newest value per field, the CRM's newer value wins."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.backoff import backoff_ceiling, backoff_delay
from crmsync.common.domain.redelivery import (
    RedeliveryPolicy,
    WaitingValue,
    coalesce,
    next_attempt_at,
    superseded_by_crm,
)

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
POLICY = RedeliveryPolicy()


def _value(value: object, minutes: int, event: str = "e") -> WaitingValue:
    return WaitingValue(value, T0 + timedelta(minutes=minutes), event)


@given(st.integers(min_value=1, max_value=2000), st.floats(min_value=0, max_value=1e4), st.floats(1, 1e5))
def test_backoff_delay_stays_under_a_ceiling_that_grows_to_the_cap(retry: int, base: float, cap: float) -> None:
    ceiling = backoff_ceiling(retry, base=base, cap=cap)
    assert ceiling <= cap
    assert ceiling <= backoff_ceiling(retry + 1, base=base, cap=cap)
    assert 0 <= backoff_delay(retry, base=base, cap=cap, rng=random.Random(retry)) <= ceiling


def test_r24_a_failing_push_is_tried_for_at_least_the_horizon_then_given_up() -> None:
    rng = random.Random(7)
    now, failures, attempts = T0, 1, [T0]
    while (at := next_attempt_at(policy=POLICY, failures=failures, first_failed_at=T0, now=now, rng=rng)) is not None:
        assert at > now
        now, failures = at, failures + 1
        attempts.append(at)
    assert now - T0 >= POLICY.horizon  # never given up before a day of trying
    assert now == T0 + POLICY.horizon  # and the last try falls at the horizon, not past it
    assert 10 <= len(attempts) <= 200  # minutes, then hours: not a tight loop, not a handful


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=24 * 60 - 1))
def test_r24_every_wait_is_between_the_minimum_and_the_cap(failures: int, minutes_since_first: int) -> None:
    now = T0 + timedelta(minutes=minutes_since_first)
    at = next_attempt_at(policy=POLICY, failures=failures, first_failed_at=T0, now=now, rng=random.Random(failures))
    assert at is not None
    assert now + POLICY.min_wait <= at or at == T0 + POLICY.horizon
    assert at - now <= POLICY.cap


def test_r24_retry_after_from_the_crm_is_honoured() -> None:
    at = next_attempt_at(
        policy=POLICY, failures=1, first_failed_at=T0, now=T0, retry_after=timedelta(minutes=30),
        rng=random.Random(1),
    )
    assert at is not None and at >= T0 + timedelta(minutes=30)


def test_r24_failures_count_from_one_and_the_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        next_attempt_at(policy=POLICY, failures=0, first_failed_at=T0, now=T0)
    with pytest.raises(ValueError):
        RedeliveryPolicy(base=timedelta(hours=5), cap=timedelta(hours=1))
    with pytest.raises(ValueError):
        RedeliveryPolicy(horizon=timedelta(0))


def test_r24_later_changes_join_a_waiting_push_newest_value_per_field() -> None:
    waiting = {"job_title": _value("CTO", 1, "e1"), "city": _value("Paris", 1, "e1")}
    later = {"job_title": _value("CEO", 5, "e2"), "phone": _value("555", 5, "e2")}
    assert coalesce(waiting, later) == {
        "job_title": _value("CEO", 5, "e2"),
        "city": _value("Paris", 1, "e1"),
        "phone": _value("555", 5, "e2"),
    }


def test_r24_an_older_change_arriving_late_does_not_replace_a_newer_waiting_one() -> None:
    waiting = {"job_title": _value("CEO", 5, "e2")}
    assert coalesce(waiting, {"job_title": _value("CTO", 1, "e1")}) == waiting


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 1000), st.integers(0, 10)), max_size=30
    )
)
def test_r24_coalescing_in_any_grouping_keeps_the_newest_value_of_each_field(changes) -> None:
    one_by_one: dict[str, WaitingValue] = {}
    for i, (name, value, minute) in enumerate(changes):
        one_by_one = coalesce(one_by_one, {name: _value(value, minute, f"e{i}")})
    for name in {c[0] for c in changes}:
        newest = max(m for n, _, m in changes if n == name)
        assert one_by_one[name].occurred_at == T0 + timedelta(minutes=newest)


def test_r13_a_crm_value_newer_than_the_waiting_change_wins_and_the_field_is_dropped() -> None:
    waiting = {"job_title": _value("CEO", 5), "city": _value("Paris", 5), "phone": _value("555", 5)}
    keep, dropped = superseded_by_crm(
        waiting,
        {
            "job_title": T0 + timedelta(minutes=6),  # the CRM changed it later: it wins
            "city": T0 + timedelta(minutes=5),  # a tie: the CRM wins
            "phone": T0 + timedelta(minutes=4),  # older: ours goes
        },
    )
    assert keep == {"phone": _value("555", 5)}
    assert dropped == ["job_title", "city"]
