"""Due-time logic of the scheduler (R14, R15, R18): which jobs belong to an account at a moment."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crmsync.common.domain.schedule import (
    FULL_SYNC_EVERY,
    LastRuns,
    Schedule,
    ScheduleMode,
    automatic_interval_minutes,
    due_jobs,
    interval_phase_s,
    job_id_for,
    next_due_times,
    next_tick_after,
    tick_at_or_before,
)
from crmsync.common.messages import SyncReason

NOW = datetime(2026, 11, 28, 10, 7, 30, tzinfo=UTC)
ACCOUNT = "acme"

moments = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
schedules = st.one_of(
    st.builds(
        Schedule,
        mode=st.just(ScheduleMode.INTERVAL),
        interval_minutes=st.integers(1, 24 * 60),
        timezone=zones,
    ),
    st.builds(Schedule, mode=st.just(ScheduleMode.AUTOMATIC), timezone=zones),
    st.builds(Schedule, mode=st.just(ScheduleMode.HOURLY), timezone=zones),
    st.builds(Schedule, mode=st.just(ScheduleMode.DAILY), time_of_day=st.times(), timezone=zones),
    st.builds(
        Schedule,
        mode=st.just(ScheduleMode.WEEKLY),
        time_of_day=st.times(),
        weekday=st.integers(0, 6),
        timezone=zones,
    ),
)
ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40))
account_ids = st.text(min_size=1, max_size=40)


def _sync_jobs(jobs):
    return [j for j in jobs if j.kind != "scores_optouts"]


def test_r15_the_first_sync_of_an_account_is_a_full_one_with_reason_first_sync() -> None:
    jobs = due_jobs(
        account_id=ACCOUNT, schedule=Schedule(ScheduleMode.AUTOMATIC), last_runs=LastRuns(), now=NOW
    )
    assert [(j.kind, j.reason) for j in jobs] == [("full", SyncReason.FIRST_SYNC), ("scores_optouts", None)]


@given(schedule=schedules, now=moments, age=ages)
def test_r15_a_full_sync_is_due_14_days_after_the_last_successful_full_and_incremental_in_between(
    schedule, now, age
) -> None:
    last = LastRuns(last_full_success=now - age)
    (sync,) = _sync_jobs(due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=now))
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=ACCOUNT)
    assert sync.slot == slot
    # Judged at the tick the job belongs to, so the full waits for the first tick after the 14 days.
    if slot >= last.last_full_success + FULL_SYNC_EVERY:
        assert (sync.kind, sync.reason) == ("full", SyncReason.BIWEEKLY)
    else:
        assert (sync.kind, sync.reason) == ("incremental", SyncReason.SCHEDULE)


@given(
    schedule=schedules, now=moments, age=ages, later=st.timedeltas(timedelta(seconds=1), timedelta(days=3))
)
def test_r15_a_field_added_to_the_mapping_after_the_last_full_sync_asks_for_a_full_sync_at_once(
    schedule, now, age, later
) -> None:
    last_full = now - age
    requested = last_full + later
    assume(requested <= now)
    last = LastRuns(last_full_success=last_full, full_requested_at=requested)
    (sync,) = _sync_jobs(due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=now))
    assert (sync.kind, sync.reason) == ("full", SyncReason.NEW_FIELD)
    assert sync.slot == requested.replace(microsecond=0)


def test_r15_a_field_request_older_than_the_last_full_sync_is_already_served() -> None:
    last = LastRuns(last_full_success=NOW - timedelta(hours=1), full_requested_at=NOW - timedelta(hours=2))
    jobs = due_jobs(account_id=ACCOUNT, schedule=Schedule(ScheduleMode.HOURLY), last_runs=last, now=NOW)
    assert [j.kind for j in jobs] == ["incremental", "scores_optouts"]


@given(
    now=moments,
    last=st.builds(LastRuns, last_full_success=st.none() | moments, full_requested_at=st.none() | moments),
)
def test_r14_manual_only_emits_nothing_by_itself(now, last) -> None:
    assert due_jobs(account_id=ACCOUNT, schedule=Schedule(ScheduleMode.MANUAL), last_runs=last, now=now) == []
    assert next_due_times(schedule=Schedule(ScheduleMode.MANUAL), last_runs=last, now=now) == []


@given(schedule=schedules, now=moments, age=ages)
def test_r15_each_scheduled_sync_comes_with_an_outbound_job_for_the_same_slot(schedule, now, age) -> None:
    jobs = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=LastRuns(now - age), now=now)
    (sync,) = _sync_jobs(jobs)
    (outbound,) = [j for j in jobs if j.kind == "scores_optouts"]
    assert outbound.slot == sync.slot
    assert outbound.reason is None
    assert outbound.job_id == f"{ACCOUNT}:scores_optouts:{sync.slot:%Y-%m-%dT%H:%M:%SZ}"


@given(schedule=schedules, now=moments, age=ages, back=st.floats(0, 1))
def test_r18_any_moment_of_the_same_tick_computes_the_same_job_ids(schedule, now, age, back) -> None:
    """Replicas with skewed clocks, a restart, or a clock set back within the tick emit the same ids."""
    last = LastRuns(
        last_full_success=now - age - FULL_SYNC_EVERY * 2 if age > timedelta(days=20) else now - age
    )
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=ACCOUNT)
    assert slot is not None and slot <= now
    earlier = slot + (now - slot) * back
    a = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=now)
    b = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=earlier)
    assert [j.job_id for j in a] == [j.job_id for j in b]
    assert len({j.job_id for j in a}) == len(a)


@given(schedule=schedules, now=moments, account=st.none() | account_ids)
def test_r14_slots_are_ticks_of_the_schedule_and_never_in_the_future(schedule, now, account) -> None:
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=account)
    assert slot is not None and slot <= now
    nxt = next_tick_after(schedule=schedule, moment=now, account_id=account)
    assert nxt is not None and slot < nxt and nxt > now
    assert tick_at_or_before(schedule=schedule, moment=nxt, account_id=account) == nxt
    assert (
        tick_at_or_before(schedule=schedule, moment=nxt - timedelta(microseconds=1), account_id=account)
        == slot
    )
    local = slot.astimezone(ZoneInfo(schedule.timezone))
    if schedule.mode == ScheduleMode.INTERVAL:
        step = schedule.interval_minutes * 60
        assert int(slot.timestamp()) % step == interval_phase_s(account, step)
        assert nxt - slot == timedelta(seconds=step)
    if schedule.mode == ScheduleMode.WEEKLY and local.utcoffset() == (local + timedelta(hours=3)).utcoffset():
        assert local.weekday() == schedule.weekday


def test_r14_daily_ticks_are_at_the_time_of_day_in_the_schedule_s_timezone() -> None:
    schedule = Schedule(ScheduleMode.DAILY, time_of_day=time(2, 30), timezone="Europe/Paris")
    slot = tick_at_or_before(schedule=schedule, moment=NOW)
    assert slot == datetime(2026, 11, 28, 1, 30, tzinfo=UTC)  # 02:30 in Paris, winter time
    assert next_tick_after(schedule=schedule, moment=NOW) == datetime(2026, 11, 29, 1, 30, tzinfo=UTC)


def test_r14_weekly_ticks_fall_on_the_weekday_at_the_time() -> None:
    schedule = Schedule(ScheduleMode.WEEKLY, time_of_day=time(9, 0), weekday=0)  # Mondays 09:00 UTC
    assert tick_at_or_before(schedule=schedule, moment=NOW) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert next_tick_after(schedule=schedule, moment=NOW) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_r15_an_incremental_already_requested_after_the_tick_is_not_asked_for_again() -> None:
    last = LastRuns(
        last_full_success=NOW - timedelta(days=1),
        last_incremental=NOW - timedelta(minutes=1),
        last_outbound=NOW - timedelta(minutes=1),
    )
    assert due_jobs(account_id=ACCOUNT, schedule=Schedule(ScheduleMode.HOURLY), last_runs=last, now=NOW) == []


def test_r15_next_due_times_show_the_full_sync_where_the_14_days_end() -> None:
    schedule = Schedule(ScheduleMode.DAILY, time_of_day=time(3, 0))
    last = LastRuns(last_full_success=datetime(2026, 11, 16, 3, 0, tzinfo=UTC))
    upcoming = next_due_times(schedule=schedule, last_runs=last, now=NOW, count=4)
    assert upcoming == [
        ("incremental", datetime(2026, 11, 29, 3, 0, tzinfo=UTC)),
        ("full", datetime(2026, 11, 30, 3, 0, tzinfo=UTC)),
        ("incremental", datetime(2026, 12, 1, 3, 0, tzinfo=UTC)),
        ("incremental", datetime(2026, 12, 2, 3, 0, tzinfo=UTC)),
    ]


@given(records=st.integers(0, 50_000_000), limit=st.none() | st.integers(0, 10_000_000))
def test_r14_automatic_picks_a_wider_interval_for_bigger_accounts_and_smaller_budgets(records, limit) -> None:
    minutes = automatic_interval_minutes(record_count=records, daily_api_limit=limit)
    assert 5 <= minutes <= 1440
    assert automatic_interval_minutes(record_count=records * 2, daily_api_limit=limit) >= minutes
    if limit and limit >= 2:
        assert automatic_interval_minutes(record_count=records, daily_api_limit=limit // 2) >= minutes


def test_r14_automatic_interval_for_a_small_account_with_a_normal_budget_is_15_minutes() -> None:
    assert automatic_interval_minutes(record_count=5_000, daily_api_limit=100_000) == 15
    # 13 calls a sync (11 whatever changed, 2 for the page of changes) in a tenth of 1,000 a day.
    assert automatic_interval_minutes(record_count=5_000, daily_api_limit=1_000) == 240


def test_r14_an_interval_schedule_needs_its_minutes() -> None:
    with pytest.raises(ValueError, match="interval_minutes"):
        Schedule(ScheduleMode.INTERVAL)


@given(schedule=schedules, now=moments, age=st.none() | st.timedeltas(FULL_SYNC_EVERY, timedelta(days=60)))
def test_r15_a_first_or_biweekly_full_is_not_asked_for_again_while_one_is_under_way(
    schedule, now, age
) -> None:
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=ACCOUNT)
    last = LastRuns(last_full_success=None if age is None else slot - age, full_in_progress=True)
    jobs = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=now)
    assert [j.kind for j in jobs] == ["scores_optouts"]


@given(schedule=schedules, now=moments, since_incremental=st.timedeltas(timedelta(0), timedelta(days=10)))
def test_r15_no_scheduled_incremental_piles_up_behind_an_open_sync_and_none_is_lost_after_it(
    schedule, now, since_incremental
) -> None:
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=ACCOUNT)
    # The full is not due: only the incremental is in question.
    recent_full = slot - timedelta(days=1)
    last = LastRuns(last_full_success=recent_full, last_incremental=recent_full - since_incremental)
    open_run = LastRuns(
        last_full_success=recent_full, last_incremental=last.last_incremental, sync_in_progress=True
    )
    held = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=open_run, now=now)
    free = due_jobs(account_id=ACCOUNT, schedule=schedule, last_runs=last, now=now)
    assert [j.kind for j in held] == ["scores_optouts"]
    # Once the open run has finished, the same tick's incremental is asked for, with the same id.
    assert [j.kind for j in free] == ["incremental", "scores_optouts"]
    assert free[0].job_id == job_id_for(account_id=ACCOUNT, kind="incremental", slot=slot)


def test_r15_a_new_field_asks_for_a_full_even_while_another_full_is_under_way() -> None:
    last = LastRuns(
        last_full_success=NOW - timedelta(days=1),
        full_requested_at=NOW - timedelta(minutes=1),
        full_in_progress=True,
    )
    jobs = due_jobs(account_id=ACCOUNT, schedule=Schedule(ScheduleMode.HOURLY), last_runs=last, now=NOW)
    assert [(j.kind, j.reason) for j in jobs] == [("full", SyncReason.NEW_FIELD), ("scores_optouts", None)]


# -- the phase of interval ticks -------------------------------------------------------------

intervals = st.integers(1, 24 * 60)
interval_schedules = st.one_of(
    st.builds(Schedule, mode=st.just(ScheduleMode.INTERVAL), interval_minutes=intervals),
    st.builds(Schedule, mode=st.just(ScheduleMode.AUTOMATIC)),
)


@given(account=account_ids, minutes=intervals)
def test_r14_an_account_s_phase_lies_within_its_interval_and_is_the_same_every_time(account, minutes) -> None:
    phase = interval_phase_s(account, minutes * 60)
    assert 0 <= phase < minutes * 60
    assert interval_phase_s(account, minutes * 60) == phase


def test_r18_the_phase_is_a_stable_hash_of_the_account_id_not_one_salted_per_process() -> None:
    # Fixed values: a replica or a release that computed another phase would emit other job ids.
    assert [interval_phase_s(a, 900) for a in ("acme", "globex", "a00001")] == [285, 690, 224]
    assert (interval_phase_s("acme", 60), interval_phase_s("acme", 86400)) == (45, 80385)
    assert interval_phase_s(None, 900) == 0
    slot = tick_at_or_before(
        schedule=Schedule(ScheduleMode.INTERVAL, interval_minutes=15), moment=NOW, account_id="acme"
    )
    assert slot == datetime(2026, 11, 28, 10, 4, 45, tzinfo=UTC)  # 10:00 + 285 s, the last before 10:07:30


@given(schedule=interval_schedules, now=moments, account=account_ids, back=st.floats(0, 1))
def test_r18_every_moment_of_an_account_s_phased_tick_computes_the_same_job_ids(
    schedule, now, account, back
) -> None:
    last = LastRuns(last_full_success=now - timedelta(days=1))
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=account)
    earlier = slot + (now - slot) * back
    a = due_jobs(account_id=account, schedule=schedule, last_runs=last, now=now)
    b = due_jobs(account_id=account, schedule=schedule, last_runs=last, now=earlier)
    assert [j.job_id for j in a] == [j.job_id for j in b]
    assert {j.slot for j in a} == {slot}
    # The tick before is exactly one interval earlier: one slot per interval, none skipped.
    before = tick_at_or_before(schedule=schedule, moment=slot - timedelta(microseconds=1), account_id=account)
    assert next_tick_after(schedule=schedule, moment=before, account_id=account) == slot


@settings(max_examples=20, deadline=None)
@given(minutes=st.sampled_from([5, 15, 30, 60]), now=moments, prefix=st.text(max_size=8))
def test_r14_two_thousand_accounts_of_one_interval_come_due_spread_over_it(minutes, now, prefix) -> None:
    schedule = Schedule(ScheduleMode.INTERVAL, interval_minutes=minutes)
    accounts = [f"{prefix}{i:05d}" for i in range(2000)]
    nexts = [next_tick_after(schedule=schedule, moment=now, account_id=a) for a in accounts]
    assert all(now < n <= now + timedelta(minutes=minutes) for n in nexts)
    # Per tenth of the interval, about a tenth of the accounts (200): none holds twice that.
    tenths = [int((n - now) / (timedelta(minutes=minutes) / 10)) for n in nexts]
    per_tenth = [tenths.count(t) for t in range(10)]
    assert max(per_tenth) < 300 and min(per_tenth) > 100, per_tenth
