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
    WaitingPush,
    WaitingValue,
    changed_in_crm,
    coalesce,
    next_attempt_at,
    superseded,
    superseded_by_crm,
)

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
POLICY = RedeliveryPolicy()


def _value(value: object, minutes: int, event: str = "e") -> WaitingValue:
    return WaitingValue(value, T0 + timedelta(minutes=minutes), event)


@given(st.integers(min_value=1, max_value=2000), st.floats(min_value=0, max_value=1e4), st.floats(1, 1e5))
def test_backoff_delay_stays_under_a_ceiling_that_grows_to_the_cap(
    retry: int, base: float, cap: float
) -> None:
    ceiling = backoff_ceiling(retry, base=base, cap=cap)
    assert ceiling <= cap
    assert ceiling <= backoff_ceiling(retry + 1, base=base, cap=cap)
    assert 0 <= backoff_delay(retry, base=base, cap=cap, rng=random.Random(retry)) <= ceiling


def test_r24_a_failing_push_is_tried_for_at_least_the_horizon_then_given_up() -> None:
    rng = random.Random(7)
    now, failures, attempts = T0, 1, [T0]
    while (
        at := next_attempt_at(policy=POLICY, failures=failures, first_failed_at=T0, now=now, rng=rng)
    ) is not None:
        assert at > now
        now, failures = at, failures + 1
        attempts.append(at)
    assert now - T0 >= POLICY.horizon  # never given up before a day of trying
    assert now == T0 + POLICY.horizon  # and the last try falls at the horizon, not past it
    assert 10 <= len(attempts) <= 200  # minutes, then hours: not a tight loop, not a handful


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=24 * 60 - 1))
def test_r24_every_wait_is_between_the_minimum_and_the_cap(failures: int, minutes_since_first: int) -> None:
    now = T0 + timedelta(minutes=minutes_since_first)
    at = next_attempt_at(
        policy=POLICY, failures=failures, first_failed_at=T0, now=now, rng=random.Random(failures)
    )
    assert at is not None
    assert now + POLICY.min_wait <= at or at == T0 + POLICY.horizon
    assert at - now <= POLICY.cap


def test_r24_retry_after_from_the_crm_is_honoured() -> None:
    at = next_attempt_at(
        policy=POLICY,
        failures=1,
        first_failed_at=T0,
        now=T0,
        retry_after=timedelta(minutes=30),
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


def _push(**kwargs: object) -> WaitingPush:
    values = {"Title": _value("CEO", 5, "e1")}
    base = dict(
        account_id="a",
        contact_id="c",
        operation="update",
        crm_object="Lead",
        crm_id="00Q1",
        email_lower=None,
        values=values,
        next_attempt_at=T0,
        event_ids=("e1",),
    )
    return WaitingPush(**{**base, **kwargs})  # type: ignore[arg-type]


def test_r24_each_transient_failure_moves_the_next_attempt_until_the_horizon_then_fails() -> None:
    push = _push().failed_again(policy=POLICY, now=T0, error_code="SERVER_UNAVAILABLE", error_message="503")
    assert (push.state, push.failures, push.first_failed_at) == ("waiting", 1, T0)
    assert push.next_attempt_at >= T0 + POLICY.min_wait
    later = T0 + POLICY.horizon
    gone = push.failed_again(policy=POLICY, now=later, error_code="SERVER_UNAVAILABLE", error_message="503")
    assert (gone.state, gone.failures, gone.first_failed_at) == ("failed", 2, T0)


def test_r24_a_park_for_the_budget_counts_no_failure_and_starts_no_horizon() -> None:
    parked = _push().parked(
        until=T0 + timedelta(minutes=15), error_code="REQUEST_LIMIT_EXCEEDED", error_message="b"
    )
    assert (parked.failures, parked.first_failed_at, parked.state) == (0, None, "waiting")
    assert parked.next_attempt_at == T0 + timedelta(minutes=15)


def test_r24_a_joined_change_keeps_the_newest_value_and_adds_its_event_once() -> None:
    joined = _push().joined({"Title": _value("CFO", 7, "e2"), "City": _value("Oslo", 7, "e2")}, ["e2", "e2"])
    assert {n: v.value for n, v in joined.values.items()} == {"Title": "CFO", "City": "Oslo"}
    assert joined.event_ids == ("e1", "e2")


def test_r24_what_was_sent_leaves_the_push_and_what_joined_meanwhile_stays() -> None:
    sent = _push()
    meanwhile = sent.joined({"Title": _value("CFO", 7, "e2"), "City": _value("Oslo", 7, "e2")}, ["e2"])
    left = meanwhile.without(sent.values, sent.event_ids)
    assert {n: v.value for n, v in left.values.items()} == {"Title": "CFO", "City": "Oslo"}
    assert left.event_ids == ("e2",)
    assert sent.without(sent.values, sent.event_ids).values == {}


def test_r13_before_a_resend_a_newer_stored_value_drops_the_waiting_one_with_its_reason() -> None:
    waiting = {"Title": _value("CEO", 5), "City": _value("Paris", 5), "Phone": _value("555", 5)}
    keep, dropped = superseded(
        waiting,
        {
            "Title": (T0 + timedelta(minutes=5), True),  # the CRM's, at the same time: the CRM wins
            "City": (T0 + timedelta(minutes=6), False),  # a later local change, sent on its own
            "Phone": (T0 + timedelta(minutes=5), False),  # the waiting change itself
        },
    )
    assert keep == {"Phone": _value("555", 5)}
    assert dropped == {"Title": "superseded_by_crm", "City": "superseded"}


def test_a_waiting_value_survives_its_json_form() -> None:
    value = WaitingValue(["a", "b"], T0, "e1", "interests")
    assert WaitingValue.from_json(value.to_json()) == value


def test_r13_a_field_the_crm_changed_after_the_waiting_change_is_found_on_the_record_read_before_a_resend() -> (
    None
):
    waiting = {
        "Title": WaitingValue("Local", T0, "e1", "job_title", ("Old",)),
        "City": WaitingValue("Oslo", T0, "e1", "city", ("Paris",)),
        "Phone": WaitingValue("555", T0, "e1", "phone", None),  # its earlier value unknown: left alone
        "Street": WaitingValue("Main", T0, "e1", "street", ("Elm",)),
    }
    record = {"Title": "CRM edit", "City": "Paris", "Phone": "777", "Street": "Main"}
    assert changed_in_crm(waiting, record, modstamp=T0 + timedelta(minutes=1)) == ["Title"]
    assert changed_in_crm(waiting, record, modstamp=T0 - timedelta(minutes=1)) == []  # an older edit
    assert changed_in_crm(waiting, record, modstamp=None) == []


def test_r13_a_later_waiting_value_keeps_the_crm_value_from_before_the_first_change() -> None:
    first = {"Title": WaitingValue("A", T0, "e1", "job_title", ("CRM",))}
    later = {"Title": WaitingValue("B", T0 + timedelta(minutes=1), "e2", "job_title", ("A",))}
    assert coalesce(first, later)["Title"] == WaitingValue(
        "B", T0 + timedelta(minutes=1), "e2", "job_title", ("CRM",)
    )
