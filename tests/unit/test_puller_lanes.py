"""Fair lanes (R26): which waiting accounts the free worker slots take."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from crmsync.common.messages import SyncKind
from crmsync.puller.domain.lanes import Assignment, Lane, Slots, WaitingAccount, assign, lanes_for_slot
from crmsync.puller.domain.runs import SUCCEEDED, SyncRun
from crmsync.puller.entrypoints.workers import Workers
from tests.unit.puller_fakes import claimed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def waiting(account_id: str, lane: Lane, minutes: int) -> WaitingAccount:
    return WaitingAccount(account_id, lane, T0 + timedelta(minutes=minutes))


def test_r26_an_incremental_slot_never_takes_a_full_run() -> None:
    queue = [waiting("big", Lane.FULL, 0), waiting("other-big", Lane.FULL, 1)]
    assert assign(queue, Slots(full=0, incremental=2)) == []
    assert lanes_for_slot(Lane.INCREMENTAL) == {Lane.INCREMENTAL}


def test_r26_an_incremental_starts_beside_full_syncs_that_fill_the_full_slots() -> None:
    queue = [
        waiting("big", Lane.FULL, 0),
        waiting("huge", Lane.FULL, 1),
        waiting("small", Lane.INCREMENTAL, 9),
    ]
    assert assign(queue, Slots(full=1, incremental=1)) == [
        Assignment("small", Lane.INCREMENTAL),
        Assignment("big", Lane.FULL),
    ]


def test_r26_a_full_slot_takes_an_incremental_only_when_no_full_run_waits() -> None:
    incrementals = [waiting(f"i{n}", Lane.INCREMENTAL, n) for n in range(3)]
    assert assign(incrementals, Slots(full=2, incremental=1)) == [
        Assignment("i0", Lane.INCREMENTAL),
        Assignment("i1", Lane.FULL),
        Assignment("i2", Lane.FULL),
    ]
    with_full = [*incrementals, waiting("f", Lane.FULL, 5)]
    assert assign(with_full, Slots(full=1, incremental=1)) == [
        Assignment("i0", Lane.INCREMENTAL),
        Assignment("f", Lane.FULL),
    ]


def test_r26_accounts_running_or_locked_elsewhere_are_passed_over() -> None:
    queue = [waiting("a", Lane.INCREMENTAL, 0), waiting("b", Lane.INCREMENTAL, 1)]
    assert assign(queue, Slots(incremental=1), busy={"a"}) == [Assignment("b", Lane.INCREMENTAL)]


lanes = st.sampled_from(list(Lane))
queues = st.lists(
    st.builds(
        WaitingAccount,
        account_id=st.sampled_from([f"acct-{n}" for n in range(12)]),
        lane=lanes,
        since=st.integers(0, 10_000).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=30,
)
slots = st.builds(Slots, full=st.integers(0, 6), incremental=st.integers(0, 6))


@given(queues, slots, st.sets(st.sampled_from([f"acct-{n}" for n in range(12)]), max_size=4))
def test_r26_assignments_respect_slots_lanes_busy_accounts_and_waiting_order(
    queue: list[WaitingAccount], free: Slots, busy: set[str]
) -> None:
    plan = assign(queue, free, busy=busy)
    chosen = [a.account_id for a in plan]
    lane_of = {}
    for account in sorted(queue, key=lambda a: (a.since, a.account_id)):
        lane_of.setdefault(account.account_id, account)
    # One run per account, never one already busy, never more than the free slots.
    assert len(chosen) == len(set(chosen)) and not set(chosen) & busy
    for slot in Lane:
        assert sum(a.slot == slot for a in plan) <= free.of(slot)
    # A lane's slots take only what the lane may run.
    assert all(lane_of[a.account_id].lane in lanes_for_slot(a.slot) for a in plan)
    eligible = {a: w for a, w in lane_of.items() if a not in busy}
    fulls = [a for a, w in eligible.items() if w.lane == Lane.FULL]
    incs = [a for a, w in eligible.items() if w.lane == Lane.INCREMENTAL]
    taken_full = [a for a in chosen if a in fulls]
    taken_inc = [a for a in chosen if a in incs]
    # Work-conserving: a lane is left waiting only when the slots that may take it are full.
    assert len(taken_full) == min(len(fulls), free.full)
    assert len(taken_inc) == min(len(incs), free.incremental + free.full - len(taken_full))
    # A full slot serves an incremental only when no full run waits for it.
    if any(a.slot == Lane.FULL and a.account_id in incs for a in plan):
        assert len(taken_full) == len(fulls)
    # Within a lane, the accounts waiting longest go first.
    for taken, lane in ((taken_full, fulls), (taken_inc, incs)):
        by_wait = sorted(lane, key=lambda a: (eligible[a].since, a))
        assert sorted(taken, key=by_wait.index) == by_wait[: len(taken)]


@given(queues, st.integers(1, 6), st.integers(0, 6))
def test_r26_however_many_full_runs_wait_an_incremental_slot_serves_the_oldest_incremental(
    queue: list[WaitingAccount], full_slots: int, incremental_slots: int
) -> None:
    fulls = [waiting(f"big-{n}", Lane.FULL, -n) for n in range(20)]
    plan = assign([*fulls, *queue], Slots(full=full_slots, incremental=incremental_slots))
    increments = [a for a in plan if a.slot == Lane.INCREMENTAL]
    oldest_incremental = next(
        (a for a in sorted(queue, key=lambda a: (a.since, a.account_id)) if a.lane == Lane.INCREMENTAL), None
    )
    if incremental_slots and oldest_incremental is not None:
        # The account's oldest entry decides its lane; a later full entry of it cannot push it out.
        first = min(
            (a for a in queue if a.account_id == oldest_incremental.account_id),
            key=lambda a: (a.since, a.account_id),
        )
        if first.lane == Lane.INCREMENTAL:
            assert any(a.account_id == oldest_incremental.account_id for a in increments)


# ------------------------------------------------------------------ the workers


class LaneQueue:
    """One open run per account, in its lane; claims honour the slot's lanes."""

    def __init__(self, runs: dict[str, Lane]) -> None:
        self.runs = dict(runs)

    async def waiting_accounts(self, limit: int) -> list[WaitingAccount]:
        return [waiting(a, lane, n) for n, (a, lane) in enumerate(self.runs.items())]

    async def claim_next_run(self, account_id: str, lanes: frozenset[Lane]) -> SyncRun | None:
        lane = self.runs.get(account_id)
        if lane is None or lane not in lanes:
            return None
        del self.runs[account_id]
        kind = SyncKind.FULL if lane == Lane.FULL else SyncKind.INCREMENTAL
        return replace(claimed(kind), account_id=account_id)


class Lock:
    async def try_acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class SlowFulls:
    """Full runs last until `release`; incrementals end at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def execute(self, run: SyncRun) -> str:
        self.started.append(run.account_id)
        if run.kind == SyncKind.FULL:
            await self.release.wait()
        return SUCCEEDED


async def test_r26_workers_keep_their_incremental_slots_for_incrementals_while_full_syncs_run() -> None:
    queue = LaneQueue({"big-1": Lane.FULL, "big-2": Lane.FULL, "big-3": Lane.FULL, "small": Lane.INCREMENTAL})
    runner = SlowFulls()
    pool = Workers(
        queue=queue,  # type: ignore[arg-type]
        lock_for=lambda _: Lock(),
        runner=runner,  # type: ignore[arg-type]
        concurrency=3,
        incremental_slots=1,
        poll_s=0.01,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(pool.run(stop))
    for _ in range(200):
        if "small" in runner.started and len(runner.started) == 3:
            break
        await asyncio.sleep(0.01)
    # Two full slots took the oldest full runs; the incremental slot took the incremental.
    assert sorted(runner.started) == ["big-1", "big-2", "small"]
    await asyncio.sleep(0.05)
    assert REGISTRY.get_sample_value("crmsync_puller_busy_slots", {"lane": "full"}) == 2
    assert REGISTRY.get_sample_value("crmsync_puller_busy_slots", {"lane": "incremental"}) == 0
    assert "big-3" in queue.runs  # no free slot of its lane: it waits, the incremental slot stays free
    runner.release.set()
    for _ in range(200):
        if not queue.runs:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runner.started[-1] == "big-3"
