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
from collections.abc import Sequence
from dataclasses import dataclass, replace
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


# The states of a waiting push (`push_deliveries.state`).
WAITING = "waiting"
FAILED = "failed"
# Why a waiting value was dropped before a re-send (push log decisions, R13).
SUPERSEDED_BY_CRM = "superseded_by_crm"
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class WaitingValue:
    """One field's value waiting for the CRM, with when it changed and the event that changed it.

    `field` is the contact field (destination) the CRM field is mapped from,
    when known: it names where the store keeps the field's origin and time.
    """

    value: Any
    occurred_at: datetime
    event_id: str
    field: str | None = None
    # The CRM's value before the first waiting change, as the store knew it: (value,), or None if unknown.
    prior: tuple[Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "occurred_at": self.occurred_at.isoformat(),
            "event_id": self.event_id,
            "field": self.field,
            "prior": list(self.prior) if self.prior is not None else None,
        }

    @classmethod
    def from_json(cls, raw: AnyMapping[str, Any]) -> WaitingValue:
        prior = raw.get("prior")
        return cls(
            raw["value"],
            datetime.fromisoformat(raw["occurred_at"]),
            raw["event_id"],
            raw.get("field"),
            (prior[0],) if prior else None,
        )


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
        if current is None:
            merged[name] = value
        elif value.occurred_at >= current.occurred_at:
            # The CRM's value before the first change stays what a re-send compares with.
            merged[name] = replace(value, prior=current.prior)
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


def superseded(
    waiting: AnyMapping[str, WaitingValue],
    stored: AnyMapping[str, tuple[datetime, bool] | None],
) -> tuple[dict[str, WaitingValue], dict[str, str]]:
    """Returns (the values still to send, {dropped field: why}) against the store's latest changes.

    `stored` gives, per waiting CRM field, the time and whether it came from the
    CRM (True) of the value the store holds for it now. A CRM change at least
    as new wins (R13: `superseded_by_crm`); a newer local change that was sent
    on its own meanwhile wins too (`superseded`): an older value must not
    overwrite it.
    """
    crm_times = {n: s[0] for n, s in stored.items() if s is not None and s[1]}
    keep, by_crm = superseded_by_crm(waiting, crm_times)
    dropped = dict.fromkeys(by_crm, SUPERSEDED_BY_CRM)
    for name in list(keep):
        local = stored.get(name)
        if local is not None and not local[1] and local[0] > keep[name].occurred_at:
            dropped[name] = SUPERSEDED
            del keep[name]
    return keep, dropped


def changed_in_crm(
    waiting: AnyMapping[str, WaitingValue], record: AnyMapping[str, Any], *, modstamp: datetime | None
) -> list[str]:
    """Returns the waiting fields the CRM changed after the waiting change, as read just before a re-send.

    A field changed in the CRM holds neither its value before the change nor
    the waiting one, and the record was modified at or after the change: the
    CRM's change is the newer (R13). A field whose earlier value is unknown is
    left to the store's knowledge (`superseded`).
    """
    if modstamp is None:
        return []
    return [
        name
        for name, value in waiting.items()
        if value.prior is not None
        and name in record
        and record[name] != value.prior[0]
        and record[name] != value.value
        and modstamp >= value.occurred_at
    ]


@dataclass(frozen=True)
class WaitingPush:
    """One contact's push waiting in the store for its next attempt (R24).

    `values` are by CRM field; `event_ids` the events whose push log entries
    wait on it (an outbound run's values have none). `failures` counts the
    transient failures since `first_failed_at`; a budget at its reserve parks
    the push without counting one.
    """

    account_id: str
    contact_id: Any
    operation: str  # create | update
    crm_object: str
    crm_id: str | None
    email_lower: str | None
    values: AnyMapping[str, WaitingValue]
    next_attempt_at: datetime
    event_ids: tuple[str, ...] = ()
    failures: int = 0
    first_failed_at: datetime | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    state: str = WAITING
    id: int | None = None
    created_at: datetime | None = None

    def joined(self, values: AnyMapping[str, WaitingValue], event_ids: Sequence[str]) -> WaitingPush:
        """Returns the push with a later change's values joined (newest per field) and its events."""
        events = tuple(dict.fromkeys((*self.event_ids, *event_ids)))
        return replace(self, values=coalesce(self.values, values), event_ids=events)

    def failed_again(
        self,
        *,
        policy: RedeliveryPolicy,
        now: datetime,
        error_code: str | None,
        error_message: str | None,
        retry_after: timedelta | None = None,
        rng: Uniform | None = None,
    ) -> WaitingPush:
        """Returns the push after one more transient failure: waiting again, or failed past the horizon."""
        first = self.first_failed_at or now
        failures = self.failures + 1
        at = next_attempt_at(
            policy=policy, failures=failures, first_failed_at=first, now=now, retry_after=retry_after, rng=rng
        )
        failed = replace(
            self,
            failures=failures,
            first_failed_at=first,
            last_error_code=error_code,
            last_error_message=error_message,
        )
        if at is None:
            return replace(failed, state=FAILED)
        return replace(failed, next_attempt_at=at)

    def parked(self, *, until: datetime, error_code: str | None, error_message: str | None) -> WaitingPush:
        """Returns the push parked until `until` (the API budget's reset): no failure is counted."""
        return replace(
            self, next_attempt_at=until, last_error_code=error_code, last_error_message=error_message
        )

    def without(self, sent: AnyMapping[str, WaitingValue], events: Sequence[str]) -> WaitingPush:
        """Returns what is left once `sent` went out: values joined since the send, their events."""
        left = {n: v for n, v in self.values.items() if sent.get(n) != v}
        return replace(self, values=left, event_ids=tuple(e for e in self.event_ids if e not in events))


def waiting_values(
    values: AnyMapping[str, Any],
    *,
    fields: AnyMapping[str, str],
    occurred_at: datetime,
    event_id: str,
    priors: AnyMapping[str, Any] | None = None,
) -> dict[str, WaitingValue]:
    """Returns one change's CRM values as waiting values; `fields` names each CRM field's contact field,
    `priors` the CRM's value of each before the change, where known."""
    known = priors or {}
    return {
        n: WaitingValue(v, occurred_at, event_id, fields.get(n), (known[n],) if n in known else None)
        for n, v in values.items()
    }
