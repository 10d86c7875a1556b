"""An account's API allocation and the automatic interval it sets (pure; R14, R26)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.allowance import (
    SCHEDULED_SHARE_OF_ALLOCATION,
    ApiAllocation,
    allocated_calls,
    crm_day,
)
from crmsync.common.domain.schedule import (
    AUTOMATIC_INTERVALS,
    BASE_CALLS_PER_SYNC,
    CHANGED_SHARE,
    RECORDS_PER_CALL,
    automatic_interval_minutes,
)

limits = st.none() | st.integers(min_value=0, max_value=10_000_000)
shares = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False)
numbers = st.integers(min_value=1, max_value=10_000_000)
records = st.integers(min_value=0, max_value=5_000_000)


def _calls_per_sync(record_count: int) -> int:
    return BASE_CALLS_PER_SYNC + 2 * math.ceil(record_count * CHANGED_SHARE / RECORDS_PER_CALL)


@given(limit=limits, share=shares)
def test_r26_a_share_gives_at_most_that_share_of_a_known_limit_and_nothing_without_one(limit, share) -> None:
    calls = allocated_calls(limit, share, None)
    if limit is None:
        assert calls is None
    else:
        assert calls is not None
        assert 0 <= calls <= limit
        assert calls <= share * limit + 1e-6
        assert calls >= math.floor(share * limit) - 1  # rounded down, never by more than one call


@given(limit=limits, number=numbers)
def test_r26_a_number_of_calls_stands_as_given_but_never_above_a_known_limit(limit, number) -> None:
    assert allocated_calls(limit, None, number) == (number if limit is None else min(number, limit))


@given(limit=st.integers(min_value=0, max_value=10_000_000), low=shares, high=shares)
def test_r26_a_larger_share_never_allows_fewer_calls(limit, low, high) -> None:
    low, high = sorted((low, high))
    assert allocated_calls(limit, low, None) <= allocated_calls(limit, high, None)


@given(limit=limits)
def test_r26_no_allocation_holds_crmsync_to_no_number(limit) -> None:
    assert allocated_calls(limit, None, None) is None


def test_r26_the_whole_limit_and_round_shares_give_exact_calls() -> None:
    assert allocated_calls(15_000, 1.0, None) == 15_000
    assert allocated_calls(100, 0.29, None) == 29  # 0.29 * 100 is 28.999… in floating point
    assert allocated_calls(15_000, 0.2, None) == 3_000


@pytest.mark.parametrize(
    ("share", "calls", "message"),
    [
        (0.5, 100, "not both"),
        (0.0, None, "share"),
        (1.5, None, "share"),
        (-0.1, None, "share"),
        (None, 0, "calls"),
        (None, -5, "calls"),
        (None, 2.5, "calls"),
        (None, True, "calls"),
    ],
)
def test_r22_an_allocation_out_of_range_or_with_both_forms_is_refused_naming_what_is_wrong(
    share, calls, message
) -> None:
    with pytest.raises(ValueError, match=message):
        ApiAllocation(share=share, calls=calls)
    with pytest.raises(ValueError, match=message):
        allocated_calls(1000, share, calls)


def test_r26_the_connection_value_gives_its_allocated_calls_by_the_limit_last_seen() -> None:
    connection = CrmConnectionInfo(
        account_id="a",
        provider="salesforce",
        login_url="https://login.example.invalid",
        auth_method="client_credentials",
        client_id="c",
        secrets_encrypted=b"",
        api_limit=15_000,
        api_allocation_share=0.25,
    )
    assert connection.allocated_calls == 3_750
    assert CrmConnectionInfo(**{**connection.__dict__, "api_allocation_share": None}).allocated_calls is None


def test_r26_the_crm_day_is_the_utc_date() -> None:
    assert crm_day(datetime(2026, 12, 4, 23, 30, tzinfo=UTC)).isoformat() == "2026-12-04"
    east = timezone(timedelta(hours=3))
    assert crm_day(datetime(2026, 12, 5, 1, 30, tzinfo=east)).isoformat() == "2026-12-04"
    assert crm_day(datetime(2026, 12, 4, 23, 30)).isoformat() == "2026-12-04"  # naive: read as UTC


@given(record_count=records, allocated=st.integers(min_value=0, max_value=10_000_000), limit=limits)
def test_r14_an_allocation_sets_an_interval_whose_syncs_fit_their_share_of_it(
    record_count, allocated, limit
) -> None:
    minutes = automatic_interval_minutes(
        record_count=record_count, daily_api_limit=limit, allocated_calls=allocated
    )
    assert minutes in AUTOMATIC_INTERVALS
    fits = (1440 / minutes) * _calls_per_sync(record_count) <= allocated * SCHEDULED_SHARE_OF_ALLOCATION
    assert fits or minutes == AUTOMATIC_INTERVALS[-1]
    # Never shorter than the account's size asks for, whatever the allocation.
    assert minutes >= automatic_interval_minutes(record_count=record_count, daily_api_limit=None)


@given(record_count=records, low=st.integers(0, 10_000_000), high=st.integers(0, 10_000_000))
def test_r14_a_larger_allocation_never_makes_the_interval_longer(record_count, low, high) -> None:
    low, high = sorted((low, high))
    assert automatic_interval_minutes(
        record_count=record_count, daily_api_limit=None, allocated_calls=high
    ) <= automatic_interval_minutes(record_count=record_count, daily_api_limit=None, allocated_calls=low)


@given(record_count=records, limit=limits)
def test_r14_without_an_allocation_the_interval_follows_a_tenth_of_the_daily_limit(
    record_count, limit
) -> None:
    minutes = automatic_interval_minutes(record_count=record_count, daily_api_limit=limit)
    assert (
        automatic_interval_minutes(record_count=record_count, daily_api_limit=limit, allocated_calls=None)
        == minutes
    )
    if limit:
        fits = (1440 / minutes) * _calls_per_sync(record_count) <= limit * 0.10
        assert fits or minutes == AUTOMATIC_INTERVALS[-1]


def test_r14_a_small_allocation_widens_the_interval_a_large_one_does_not() -> None:
    # 5,000 records: 15 minutes by size, 96 syncs a day.
    enough = math.ceil(96 * _calls_per_sync(5_000) / SCHEDULED_SHARE_OF_ALLOCATION)

    def interval(allocated: int) -> int:
        return automatic_interval_minutes(
            record_count=5_000, daily_api_limit=15_000, allocated_calls=allocated
        )

    assert interval(100 * enough) == 15
    assert interval(enough) == 15
    assert interval(enough - 1) == 30
    assert interval(0) == 1440
