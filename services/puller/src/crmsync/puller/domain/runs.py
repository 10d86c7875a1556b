"""A sync run, its resume point and its counts, and the sync state of a CRM entity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crmsync.common.messages import SyncKind, SyncReason

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
PAUSED = "paused"


@dataclass(frozen=True)
class RunProgress:
    """Where a run is: stored with it, so a run stopped, paused or failed resumes there."""

    # When the full sync began reading: the sweep's bound (R16).
    full_started_at: datetime | None = None
    # The store had no contact when the full sync began: its end tells the store a first load finished.
    first_load: bool = False
    # Entities the full sync has finished, in order.
    full_done: tuple[str, ...] = ()
    # Why an incremental run became a full one.
    escalated_to_full: str | None = None
    # The run that did this one's work (a sync that started after it was asked for).
    covered_by: str | None = None

    @property
    def empty(self) -> bool:
        return self == RunProgress()

    def done(self, entity: str) -> RunProgress:
        """Returns the progress with `entity` finished by the full sync."""
        return replace(self, full_done=(*self.full_done, entity))

    def to_json(self) -> dict[str, Any]:
        """Returns the progress as stored: only what is set."""
        stored: dict[str, Any] = {}
        if self.full_started_at is not None:
            stored["full_started_at"] = self.full_started_at.isoformat()
        if self.full_done or self.full_started_at is not None:
            stored["full_done"] = list(self.full_done)
        if self.first_load:
            stored["first_load"] = True
        if self.escalated_to_full is not None:
            stored["escalated_to_full"] = self.escalated_to_full
        if self.covered_by is not None:
            stored["covered_by"] = self.covered_by
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> RunProgress:
        stored = stored or {}
        started = stored.get("full_started_at")
        return cls(
            full_started_at=datetime.fromisoformat(started) if started else None,
            full_done=tuple(stored.get("full_done", ())),
            first_load=bool(stored.get("first_load", False)),
            escalated_to_full=stored.get("escalated_to_full"),
            covered_by=stored.get("covered_by"),
        )


@dataclass(frozen=True)
class SyncRun:
    """A claimed sync run, as the worker that executes it sees it."""

    id: uuid.UUID
    account_id: str
    job_id: str
    kind: SyncKind
    reason: SyncReason
    status: str
    attempts: int
    progress: RunProgress
    requested_at: datetime
    started_at: datetime | None
    # Claimed by a worker slot that runs full syncs (R26). An incremental slot's run
    # that must become a full sync goes back to the queue, for the full lane.
    full_lane: bool = True


@dataclass(frozen=True)
class RunCounts:
    """What a step of a run added to its counts."""

    pulled: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    errors: int = 0


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, or stopped for now (queued, paused, failed with a retry time)."""

    status: str
    error: str | None = None
    next_attempt_at: datetime | None = None
    # None keeps the stored resume point.
    progress: RunProgress | None = None

    @property
    def over(self) -> bool:
        """True when the run will not run again."""
        return self.status == SUCCEEDED or (self.status == FAILED and self.next_attempt_at is None)


@dataclass(frozen=True)
class EntityState:
    """How far the store has the CRM's records of one entity.

    `cursor` is where the next incremental read resumes (the connector's opaque text; None:
    no full sync yet). The watermarks say, for operators, the newest record time stored and
    when deletions were last read up to.
    """

    watermark: datetime | None = None
    deleted_watermark: datetime | None = None
    last_full_at: datetime | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class EntityAdvance:
    """What moves an entity's state forward: its change cursor, watermarks (never back, R18) and
    times; None leaves one as it is."""

    cursor: str | None = None
    watermark: datetime | None = None
    watermark_id: str | None = None
    deleted_watermark: datetime | None = None
    full_at: datetime | None = None
    incremental_at: datetime | None = None
