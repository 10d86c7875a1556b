"""When syncs are due: schedule modes, ticks and deterministic job ids (pure; R14, R15, R18).

A schedule defines *ticks* (every N minutes, every hour, daily at a time,
weekly on a day at a time). At each tick exactly one sync job belongs to the
account (a full one when a full is due, an incremental one otherwise) plus an
outbound job for scores and opt-outs. A job's id is derived from the account,
its kind and its slot (the tick it belongs to), so replicas, restarts and
clock jumps that compute the same tick compute the same id, and the scheduler's
record of emitted ids makes the second emission a no-op.

A full sync requested because the mapping gained a field does not wait for a
tick: its slot is the request time, so it runs at once and once per request.

Interval ticks (automatic and every N minutes) are offset from the epoch by a
phase of the account's own, a stable hash of its id within the interval, so
the many accounts of one interval come due spread over it rather than all at
the same instant. Hourly, daily and weekly ticks are at the times they name.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Literal, TypedDict, Unpack
from zoneinfo import ZoneInfo

from crmsync.common.domain.allowance import SCHEDULED_SHARE_OF_ALLOCATION
from crmsync.common.messages.models import SyncReason

FULL_SYNC_EVERY = timedelta(days=14)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Choices for the automatic interval, smallest first.
AUTOMATIC_INTERVALS = (5, 10, 15, 30, 60, 120, 240, 360, 720, 1440)
# Share of the CRM's daily API budget scheduled incremental syncs may spend.
AUTOMATIC_BUDGET_SHARE = 0.10
# Records per page of a CRM query, and the share of records assumed changed between two syncs.
RECORDS_PER_CALL = 2000
CHANGED_SHARE = 0.01
# Calls an incremental sync makes whatever changed, as measured (bench/RESULTS.md, accounts):
# a describe of each of the five objects it reads, their change queries and deletion feeds.
BASE_CALLS_PER_SYNC = 11

JobKind = Literal["full", "incremental", "scores_optouts"]


class Budget(TypedDict, total=False):
    """What `automatic` picks its interval from (see automatic_interval_minutes): the records of the
    last full sync, the CRM's daily API limit, and the account's allocation of it in calls a day."""

    record_count: int
    daily_api_limit: int | None
    allocated_calls: int | None


class ScheduleMode(StrEnum):
    AUTOMATIC = "automatic"
    INTERVAL = "interval"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MANUAL = "manual"


@dataclass(frozen=True)
class Schedule:
    """An account's sync schedule (R14). weekday: 0 = Monday … 6 = Sunday, as datetime.weekday()."""

    mode: ScheduleMode
    interval_minutes: int | None = None
    time_of_day: time | None = None
    weekday: int | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", ScheduleMode(self.mode))
        if self.mode == ScheduleMode.INTERVAL and (
            self.interval_minutes is None or self.interval_minutes < 1
        ):
            raise ValueError("interval_minutes: an interval schedule needs a whole number of minutes >= 1")
        if self.weekday is not None and not 0 <= self.weekday <= 6:
            raise ValueError("weekday: must be between 0 (Monday) and 6 (Sunday)")
        ZoneInfo(self.timezone)  # raises for an unknown zone


@dataclass(frozen=True)
class LastRuns:
    """What has happened so far, as the scheduler reads it from the database.

    last_full_success: when the latest successful full sync started.
    last_incremental: when the latest sync of either kind that brought the store up to date was requested.
    last_outbound: when the latest outbound job was requested.
    full_requested_at: when the mapping last gained a field (R15).
    full_in_progress: a full sync is queued, running, paused or waiting for a retry; a first or
        biweekly full is then not asked for again (it would only repeat the one under way).
    sync_in_progress: a sync of either kind is so; a scheduled incremental is then not asked
        for. The open run brings the store up to date when it finishes, and another would
        only queue behind it: an account whose CRM is down for a day would otherwise pile up
        a run per tick, each to be tried and failed in turn.
    """

    last_full_success: datetime | None = None
    last_incremental: datetime | None = None
    last_outbound: datetime | None = None
    full_requested_at: datetime | None = None
    full_in_progress: bool = False
    sync_in_progress: bool = False


@dataclass(frozen=True)
class DueJob:
    kind: JobKind
    reason: SyncReason | None  # None for scores_optouts
    slot: datetime
    job_id: str


def job_id_for(*, account_id: str, kind: str, slot: datetime) -> str:
    """Returns the deterministic id of an account's job of that kind for that slot."""
    return f"{account_id}:{kind}:{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def interval_phase_s(account_id: str | None, interval_s: int) -> int:
    """Returns the account's offset of its interval ticks from the epoch, in whole seconds below the interval.

    A hash of the id (the same in every process and release, unlike `hash`), so every
    replica computes the same slots and so the same job ids (R18). None: no offset.
    """
    if account_id is None:
        return 0
    digest = hashlib.blake2b(account_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % interval_s


def automatic_interval_minutes(
    *, record_count: int, daily_api_limit: int | None, allocated_calls: int | None = None
) -> int:
    """Returns the interval "automatic" uses: by the account's size, widened to fit the API budget.

    The budget is a share of the account's API allocation when it has one
    (`allocated_calls` a day, the rest left to pushes and Sync Now), else a
    fixed share of the CRM's daily limit; with neither, the size alone decides.
    """
    if record_count < 10_000:
        by_size = 15
    elif record_count < 100_000:
        by_size = 30
    elif record_count < 1_000_000:
        by_size = 60
    else:
        by_size = 120
    if allocated_calls is not None:
        allowed_calls = max(0, allocated_calls) * SCHEDULED_SHARE_OF_ALLOCATION
    elif daily_api_limit and daily_api_limit > 0:
        allowed_calls = daily_api_limit * AUTOMATIC_BUDGET_SHARE
    else:
        return by_size
    pages = math.ceil(max(0, record_count) * CHANGED_SHARE / RECORDS_PER_CALL)
    calls_per_sync = BASE_CALLS_PER_SYNC + 2 * pages
    for minutes in AUTOMATIC_INTERVALS:
        if minutes >= by_size and (1440 / minutes) * calls_per_sync <= allowed_calls:
            return minutes
    return AUTOMATIC_INTERVALS[-1]


def tick_at_or_before(
    *,
    schedule: Schedule,
    moment: datetime,
    account_id: str | None = None,
    **budget: Unpack[Budget],
) -> datetime | None:
    """Returns the latest tick of the schedule at or before `moment` (UTC), None for manual.

    `account_id` gives interval ticks the account's phase (None: aligned to the epoch).
    """
    moment = _utc(moment)
    mode = schedule.mode
    if mode == ScheduleMode.MANUAL:
        return None
    if mode in (ScheduleMode.INTERVAL, ScheduleMode.AUTOMATIC):
        step = 60 * _interval(schedule, **budget)
        phase = interval_phase_s(account_id, step)
        elapsed = (moment - EPOCH) // timedelta(seconds=1) - phase
        return EPOCH + timedelta(seconds=phase + elapsed - elapsed % step)
    tz = ZoneInfo(schedule.timezone)
    local = moment.astimezone(tz)
    if mode == ScheduleMode.HOURLY:
        candidate = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        while candidate > moment:  # a wall clock that jumped (DST) can land past `moment`
            candidate -= timedelta(hours=1)
        return candidate
    at = (schedule.time_of_day or time(0, 0)).replace(microsecond=0, tzinfo=None)
    day = local.date() + timedelta(days=1)
    for _ in range(16):
        if mode == ScheduleMode.DAILY or day.weekday() == (schedule.weekday or 0):
            candidate = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
            if candidate <= moment:
                return candidate
        day -= timedelta(days=1)
    raise AssertionError("a daily or weekly tick is always found within 16 days")


def next_tick_after(
    *,
    schedule: Schedule,
    moment: datetime,
    account_id: str | None = None,
    **budget: Unpack[Budget],
) -> datetime | None:
    """Returns the first tick strictly after `moment`, None for manual (`account_id`: as above)."""
    upper = {
        ScheduleMode.HOURLY: timedelta(hours=1),
        ScheduleMode.DAILY: timedelta(hours=26),
        ScheduleMode.WEEKLY: timedelta(days=7, hours=2),
    }
    if schedule.mode == ScheduleMode.MANUAL:
        return None
    if schedule.mode in (ScheduleMode.INTERVAL, ScheduleMode.AUTOMATIC):
        step = timedelta(minutes=_interval(schedule, **budget))
    else:
        step = upper[schedule.mode]
    current = tick_at_or_before(schedule=schedule, moment=moment, account_id=account_id, **budget)
    assert current is not None
    probe = current + step
    while True:
        nxt = tick_at_or_before(schedule=schedule, moment=probe, account_id=account_id, **budget)
        assert nxt is not None
        if nxt > _utc(moment):
            # Step back while an earlier tick is still after `moment` (days shorter than 26 h).
            while True:
                earlier = tick_at_or_before(
                    schedule=schedule, moment=nxt - timedelta(seconds=1), account_id=account_id, **budget
                )
                if earlier is None or earlier <= _utc(moment):
                    return nxt
                nxt = earlier
        probe += step


def full_due_reason(*, last_runs: LastRuns, at: datetime) -> SyncReason | None:
    """Returns why a full sync is due at `at`, or None when an incremental one will do (R15)."""
    last_full = last_runs.last_full_success
    if last_full is None:
        return SyncReason.FIRST_SYNC
    if last_runs.full_requested_at is not None and last_runs.full_requested_at > last_full:
        return SyncReason.NEW_FIELD
    if _utc(at) >= _utc(last_full) + FULL_SYNC_EVERY:
        return SyncReason.BIWEEKLY
    return None


def due_jobs(
    *,
    account_id: str,
    schedule: Schedule,
    last_runs: LastRuns,
    now: datetime,
    **budget: Unpack[Budget],
) -> list[DueJob]:
    """Returns the jobs that belong to the account at `now`; emitting them twice is harmless (same ids)."""
    slot = tick_at_or_before(schedule=schedule, moment=now, account_id=account_id, **budget)
    if slot is None:
        return []  # manual: only Sync Now starts a sync
    jobs: list[DueJob] = []
    # Judged at the tick, not at `now`, so every moment of one tick computes the same jobs.
    reason = full_due_reason(last_runs=last_runs, at=slot)
    if reason == SyncReason.NEW_FIELD:
        assert last_runs.full_requested_at is not None
        requested = _utc(last_runs.full_requested_at).replace(microsecond=0)
        jobs.append(
            DueJob("full", reason, requested, job_id_for(account_id=account_id, kind="full", slot=requested))
        )
    elif reason is not None:
        if not last_runs.full_in_progress:
            jobs.append(
                DueJob("full", reason, slot, job_id_for(account_id=account_id, kind="full", slot=slot))
            )
    elif not last_runs.sync_in_progress and (
        last_runs.last_incremental is None or _utc(last_runs.last_incremental) < slot
    ):
        jobs.append(
            DueJob(
                "incremental",
                SyncReason.SCHEDULE,
                slot,
                job_id_for(account_id=account_id, kind="incremental", slot=slot),
            )
        )
    if last_runs.last_outbound is None or _utc(last_runs.last_outbound) < slot:
        jobs.append(
            DueJob(
                "scores_optouts",
                None,
                slot,
                job_id_for(account_id=account_id, kind="scores_optouts", slot=slot),
            )
        )
    return jobs


def next_due_times(
    *,
    schedule: Schedule,
    last_runs: LastRuns,
    now: datetime,
    account_id: str | None = None,
    count: int = 3,
    **budget: Unpack[Budget],
) -> list[tuple[str, datetime]]:
    """Returns the next `count` scheduled syncs after `now` as (kind, when), assuming each succeeds.

    Pass the `account_id` to see the ticks the scheduler emits at (its phase).
    """
    if schedule.mode == ScheduleMode.MANUAL:
        return []
    out: list[tuple[str, datetime]] = []
    last_full = last_runs.last_full_success
    requested = last_runs.full_requested_at
    moment = _utc(now)
    while len(out) < count:
        tick = next_tick_after(schedule=schedule, moment=moment, account_id=account_id, **budget)
        assert tick is not None
        state = LastRuns(last_full_success=last_full, full_requested_at=requested)
        if full_due_reason(last_runs=state, at=tick) is not None:
            out.append(("full", tick))
            last_full, requested = tick, None
        else:
            out.append(("incremental", tick))
        moment = tick
    return out


def _interval(
    schedule: Schedule,
    *,
    record_count: int = 0,
    daily_api_limit: int | None = None,
    allocated_calls: int | None = None,
) -> int:
    if schedule.mode == ScheduleMode.INTERVAL:
        assert schedule.interval_minutes is not None
        return schedule.interval_minutes
    return automatic_interval_minutes(
        record_count=record_count, daily_api_limit=daily_api_limit, allocated_calls=allocated_calls
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)
