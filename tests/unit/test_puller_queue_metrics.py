"""The run queue's backlog per lane on /metrics (R26), counted on a timer."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, generate_latest

from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.lanes import Lane, LaneBacklog
from crmsync.puller.entrypoints.queue_metrics import count_backlog, run_queue_metrics


class Backlogs:
    """A queue whose backlog is the next of `answers` (an exception is raised); the last one stays."""

    def __init__(self, *answers: list[LaneBacklog] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def backlog(self) -> list[LaneBacklog]:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def gauge(name: str, lane: Lane) -> float | None:
    return REGISTRY.get_sample_value(name, {"lane": lane.value})


async def test_r26_the_backlog_of_each_lane_is_exported_as_queued_runs_and_oldest_age() -> None:
    await count_backlog(
        Backlogs([LaneBacklog(Lane.FULL, 3, 812.25), LaneBacklog(Lane.INCREMENTAL, 0, 0.0)])  # type: ignore[arg-type]
    )
    assert gauge("crmsync_puller_queued_runs", Lane.FULL) == 3
    assert gauge("crmsync_puller_oldest_queued_age_seconds", Lane.FULL) == 812.25
    assert gauge("crmsync_puller_queued_runs", Lane.INCREMENTAL) == 0
    text = generate_latest(REGISTRY).decode()
    assert 'crmsync_puller_queued_runs{lane="incremental"} 0.0' in text


async def test_r26_the_backlog_is_counted_on_a_timer_and_waits_out_a_database_outage() -> None:
    away = StoreUnavailable("ConnectionRefusedError: [Errno 111] Connect call failed")
    queue = Backlogs(away, [LaneBacklog(Lane.FULL, 1, 5.0), LaneBacklog(Lane.INCREMENTAL, 7, 42.0)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_queue_metrics(stop, queue=queue, interval_s=0.01))  # type: ignore[arg-type]
    for _ in range(500):
        if queue.calls >= 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert queue.calls >= 3
    assert gauge("crmsync_puller_queued_runs", Lane.INCREMENTAL) == 7
    assert gauge("crmsync_puller_oldest_queued_age_seconds", Lane.INCREMENTAL) == 42.0
