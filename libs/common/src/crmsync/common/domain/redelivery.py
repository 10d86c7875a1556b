"""Durable re-delivery of pushes (pure; R13, R24).

A change the CRM could not take for a transient reason waits, per contact,
with the time of its next attempt. While it waits, later changes of the same
contact join it (one CRM write carries the newest value of each field), and a
CRM value newer than a waiting one wins (R13). It is tried again with growing,
jittered waits for at least `horizon` before it is given up for good; a budget
at its reserve parks it without counting an attempt.
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crmsync.common.domain.backoff import Uniform, backoff_delay


@dataclass(frozen=True)
class RedeliveryPolicy:
    """How a waiting push is retried: waits from `base` doubling to `cap`, for at least `horizon`."""

    base: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=4)
    horizon: timedelta = timedelta(hours=24)
    min_wait: timedelta = timedelta(seconds=5)

    def __post_init__(self) -> None:
        if not (timedelta(0) <= self.min_wait <= self.base <= self.cap):
            raise ValueError("need 0 <= min_wait <= base <= cap")
        if self.horizon <= timedelta(0):
            raise ValueError("horizon must be positive")


@dataclass(frozen=True)
class WaitingValue:
    """One field's value waiting for the CRM, with when it changed and the event that changed it."""

    value: Any
    occurred_at: datetime
    event_id: str


def next_attempt_at(
    *,
    policy: RedeliveryPolicy,
    failures: int,
    first_failed_at: datetime,
    now: datetime,
    retry_after: timedelta | None = None,
    rng: Uniform | None = None,
) -> datetime | None:
    """Returns when to try again after `failures` transient failures, or None when it is time to give up.

    It gives up only once `horizon` has passed since the first failure, so a
    CRM that is down for a day loses nothing; the CRM's Retry-After is honoured.
    """
    if failures < 1:
        raise ValueError("failures counts the failed attempts, from 1")
    if now - first_failed_at >= policy.horizon:
        return None
    wait = timedelta(
        seconds=backoff_delay(
            failures, base=policy.base.total_seconds(), cap=policy.cap.total_seconds(), rng=rng
        )
    )
    wait = max(wait, policy.min_wait, retry_after or timedelta(0))
    # The last try falls at the horizon, not past it by up to a whole wait.
    return min(now + wait, first_failed_at + policy.horizon)


def coalesce(
    waiting: AnyMapping[str, WaitingValue], later: AnyMapping[str, WaitingValue]
) -> dict[str, WaitingValue]:
    """Returns the waiting values with the later change's joined: per field, the newer change wins.

    On a tie of `occurred_at` the change that arrived later wins, as it would
    have had the first been delivered.
    """
    merged = dict(waiting)
    for name, value in later.items():
        current = merged.get(name)
        if current is None or value.occurred_at >= current.occurred_at:
            merged[name] = value
    return merged


def superseded_by_crm(
    waiting: AnyMapping[str, WaitingValue], crm_changed_at: AnyMapping[str, datetime | None]
) -> tuple[dict[str, WaitingValue], list[str]]:
    """Returns (the values still to send, the fields dropped because the CRM changed them later).

    `crm_changed_at` gives, per waiting field, when the CRM's value last
    changed, as the store knows it from the last pull; on a tie the CRM wins (R13).
    """
    keep: dict[str, WaitingValue] = {}
    dropped: list[str] = []
    for name, value in waiting.items():
        crm_time = crm_changed_at.get(name)
        if crm_time is not None and crm_time >= value.occurred_at:
            dropped.append(name)
        else:
            keep[name] = value
    return keep, dropped
