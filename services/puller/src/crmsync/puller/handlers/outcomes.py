"""How a run that stopped early is recorded: its errors classified (pure).

- stopping: the run goes back to the queue with its progress;
- an incremental that must become full in a slot of the incremental lane: back
  to the queue too, where a full slot takes it (R26);
- the CRM's API budget is spent: paused, resumed later;
- transient (the CRM unreachable or erring, the database away or its
  connection lost, a timeout): failed with a retry time, with backoff, until
  the attempts are used up;
- permanent (the mapping no longer matches the CRM, the CRM refuses a field):
  failed for good, the error naming the field and the mapping row;
- anything else is a bug: the run is recorded as failed with a retry time and
  the exception goes on up (`bug`).
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crmsync.common.crm.interface import CrmBudgetExhausted, CrmError, CrmRejected
from crmsync.common.domain.mapping import Mapping
from crmsync.common.retry import RetryPolicy
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.runs import FAILED, PAUSED, QUEUED, RunEnd, RunProgress, SyncRun
from crmsync.puller.handlers.crm_records import MappingMismatch
from crmsync.puller.handlers.pull import MovesToFullLane, StopRequested

# What `outcome` classifies; any other exception is a bug.
CLASSIFIED = (
    StopRequested,
    MovesToFullLane,
    MappingMismatch,
    CrmError,
    StoreUnavailable,
    OSError,
    TimeoutError,
)

# The CRM refuses a field or a type of the query: retrying cannot help until the mapping changes.
_PERMANENT_REFUSALS = ("INVALID_FIELD", "INVALID_TYPE")

_MAX_ERROR = 2000


@dataclass(frozen=True)
class Outcome:
    """How the run is recorded, counted (the JOBS label, if any) and logged."""

    end: RunEnd
    metric: str | None
    event: str
    warning: bool = False
    details: AnyMapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stopped:
    """What a stopped run's outcome depends on besides the error."""

    run: SyncRun
    mapping: Mapping
    progress: RunProgress
    now: datetime
    retry: RetryPolicy
    budget_resume: timedelta


def retry_at(run: SyncRun, policy: RetryPolicy, now: datetime) -> datetime | None:
    """Returns when a failed run is tried again, or None once its attempts are used up.

    The wait is the backoff's ceiling, without jitter: an account has one run
    waiting, so there is no herd to spread.
    """
    if not policy.can_retry(run.attempts):
        return None
    return now + timedelta(seconds=policy.ceiling(run.attempts))


def outcome(exc: BaseException, at: Stopped) -> Outcome:
    """Returns how a run stopped by `exc` (one of CLASSIFIED) is recorded."""
    if isinstance(exc, StopRequested):
        return Outcome(RunEnd(QUEUED, progress=at.progress), None, "sync_run_requeued")
    if isinstance(exc, MovesToFullLane):
        return Outcome(RunEnd(QUEUED, progress=at.progress), None, "sync_run_moved_to_full_lane")
    if isinstance(exc, CrmBudgetExhausted):
        resume = at.now + at.budget_resume
        error = (
            f"paused: API budget ({exc.used} of {exc.limit} calls used today); resumes at {resume:%H:%M} UTC"
        )
        end = RunEnd(PAUSED, error=error, next_attempt_at=resume, progress=at.progress)
        return Outcome(end, PAUSED, "sync_run_paused", details={"used": exc.used, "limit": exc.limit})
    if isinstance(exc, MappingMismatch):
        return _failed(at, str(exc), None, permanent=True)
    if isinstance(exc, CrmRejected):
        retry = None if exc.error_code in _PERMANENT_REFUSALS else retry_at(at.run, at.retry, at.now)
        return _failed(at, rejected_message(exc, at.mapping), retry)
    if isinstance(exc, StoreUnavailable):
        return _failed(at, str(exc)[:_MAX_ERROR], retry_at(at.run, at.retry, at.now))
    if isinstance(exc, CLASSIFIED):
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        return _failed(at, error, retry_at(at.run, at.retry, at.now))
    raise TypeError(f"not a classified error: {exc!r}")


def bug(exc: BaseException, at: Stopped) -> RunEnd:
    """Returns how a run stopped by a bug is recorded before the bug goes on up."""
    error = f"internal error: {type(exc).__name__}: {exc}"[:_MAX_ERROR]
    return RunEnd(
        FAILED, error=error, next_attempt_at=retry_at(at.run, at.retry, at.now), progress=at.progress
    )


def _failed(at: Stopped, error: str, retry: datetime | None, *, permanent: bool = False) -> Outcome:
    details: dict[str, Any] = (
        {"error": error, "permanent": True} if permanent else {"error": error, "retry_at": retry}
    )
    end = RunEnd(FAILED, error=error, next_attempt_at=retry, progress=at.progress)
    return Outcome(end, FAILED, "sync_run_failed", warning=True, details=details)


def rejected_message(exc: CrmRejected, mapping: Mapping) -> str:
    """Returns the CRM's refusal, naming the mapping rows of the fields it names."""
    message = f"the CRM refused the sync: {exc.message}"
    names = {f.lower() for f in exc.fields}
    rows = [
        f"{row.destination!r}"
        for row in mapping.rows
        if {(row.lead_source or "").lower(), (row.contact_source or "").lower()} & names
    ]
    if rows:
        message += f" (mapping rows: {', '.join(rows)})"
    return message[:_MAX_ERROR]
