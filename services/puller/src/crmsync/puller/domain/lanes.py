"""Fair lanes (R26): which waiting account each free worker slot takes.

Full syncs and incremental syncs wait in separate lanes. Incremental slots take
incremental runs only, so however many large full syncs run, an account's due
incremental waits behind other incrementals alone. Full slots take full runs,
and an incremental when no full run is waiting, so idle capacity is never kept
from either lane. Within a lane the account waiting longest goes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Lane(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


@dataclass(frozen=True)
class WaitingAccount:
    """An account whose oldest open run can start now, in the lane of that run."""

    account_id: str
    lane: Lane
    since: datetime


@dataclass(frozen=True)
class Slots:
    """Free worker slots per lane."""

    full: int = 0
    incremental: int = 0

    def of(self, lane: Lane) -> int:
        return self.full if lane == Lane.FULL else self.incremental


@dataclass(frozen=True)
class Assignment:
    account_id: str
    # The slot that runs it; a full slot may run an incremental account.
    slot: Lane


def lanes_for_slot(slot: Lane) -> frozenset[Lane]:
    """The lanes a worker slot may take runs from."""
    return frozenset(Lane) if slot == Lane.FULL else frozenset({Lane.INCREMENTAL})


def assign(waiting: Iterable[WaitingAccount], free: Slots, *, busy: Iterable[str] = ()) -> list[Assignment]:
    """Returns which waiting accounts the free slots take, in the order to start them.

    Accounts in `busy` (already running here, or found locked elsewhere) are passed over.
    """
    skip = set(busy)
    by_lane: dict[Lane, list[WaitingAccount]] = {lane: [] for lane in Lane}
    for account in sorted(waiting, key=lambda a: (a.since, a.account_id)):
        if account.account_id not in skip:
            skip.add(account.account_id)
            by_lane[account.lane].append(account)
    full = _take(by_lane[Lane.FULL], free.full, Lane.FULL)
    incremental = _take(by_lane[Lane.INCREMENTAL], free.incremental, Lane.INCREMENTAL)
    # Full slots left over serve the incrementals the incremental slots could not.
    rest = by_lane[Lane.INCREMENTAL][len(incremental) :]
    spare = _take(rest, free.full - len(full), Lane.FULL)
    return [*incremental, *full, *spare]


def _take(accounts: Sequence[WaitingAccount], count: int, slot: Lane) -> list[Assignment]:
    return [Assignment(a.account_id, slot) for a in accounts[: max(0, count)]]


@dataclass(frozen=True)
class LaneBacklog:
    """Runs of a lane that could start now but have no worker yet, and how long the oldest has waited."""

    lane: Lane
    queued: int = 0
    oldest_s: float = 0.0
