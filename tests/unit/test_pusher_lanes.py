"""How a batch of events is spread over the pusher's lanes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crmsync.pusher.handlers.contact_changed import EVENTS_PER_LANE, lane_count


@given(events=st.integers(min_value=0, max_value=100_000), lanes=st.integers(min_value=1, max_value=64))
def test_a_batch_uses_between_one_lane_and_the_configured_lanes(events: int, lanes: int) -> None:
    assert 1 <= lane_count(events, lanes) <= lanes


@given(
    events=st.integers(min_value=0, max_value=100_000),
    more=st.integers(min_value=0, max_value=100_000),
    lanes=st.integers(min_value=1, max_value=64),
)
def test_a_bigger_batch_never_gets_fewer_lanes(events: int, more: int, lanes: int) -> None:
    assert lane_count(events + more, lanes) >= lane_count(events, lanes)


def test_a_small_batch_stays_in_one_lane_and_a_large_one_fills_every_lane() -> None:
    # Each lane has its own transactions and CRM requests: splitting a trickle of
    # events only multiplies round trips.
    assert lane_count(EVENTS_PER_LANE * 2 - 1, 4) == 1
    assert lane_count(EVENTS_PER_LANE * 2, 4) == 2
    assert lane_count(EVENTS_PER_LANE * 40, 4) == 4
