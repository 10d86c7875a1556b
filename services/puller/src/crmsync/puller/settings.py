"""Settings of the puller (environment, prefix CRMSYNC_)."""

from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class Settings(CommonSettings):
    puller_group_id: str = Field("crmsync-puller", description="Kafka consumer group of the puller.")
    puller_concurrency: int = Field(4, ge=1, description="Accounts synced at the same time by one process.")
    puller_incremental_slots: int = Field(
        2,
        ge=0,
        description=(
            "Of those, slots that take incremental syncs only (R26), so full syncs never hold them "
            "all; the others take full syncs first and incrementals when no full waits. At most "
            "CRMSYNC_PULLER_CONCURRENCY - 1 (a full sync always has a slot)."
        ),
    )
    puller_queue_metrics_s: float = Field(
        15.0, gt=0, description="How often the queued runs per lane are counted for /metrics."
    )
    puller_batch_size: int = Field(2000, ge=1, description="CRM records merged per transaction.")
    puller_read_ahead: int = Field(
        2, ge=1, le=16, description="Batches read from the CRM and mapped while one is being stored."
    )
    puller_lookback_s: float = Field(
        300.0,
        ge=0,
        description=(
            "Incremental syncs re-read this far before where the last one got to (late commits, skew); "
            "the connector's change lookback."
        ),
    )
    puller_poll_s: float = Field(1.0, gt=0, description="How often idle workers look for runs to start.")
    puller_retry_base_s: float = Field(30.0, gt=0, description="First wait before a failed run is retried.")
    puller_retry_max_s: float = Field(
        3600.0, gt=0, description="Longest wait between retries of a failed run."
    )
    puller_max_attempts: int = Field(8, ge=1, description="Attempts of a run before it stays failed.")
    puller_bulk_threshold: int = Field(
        50_000,
        ge=0,
        description="Full syncs of an object with more records than this use the CRM's bulk export.",
    )
    puller_budget_resume_s: float = Field(
        900.0, gt=0, description="How long a run paused by the CRM's API budget waits before resuming."
    )
    puller_repair_interval_s: float = Field(
        21_600.0,
        ge=0,
        description=(
            "Drift repair (R25) runs after every full sync, and after an incremental one when the "
            "account's last pass is older than this; 0: only after full syncs."
        ),
    )
    puller_switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description=(
            "How long a thread may hold the interpreter before another may take it (Python's default "
            "is 5 ms). Batches are mapped in a worker thread; each time the event loop's thread wakes "
            "for a database answer, it waits for the mapping thread to let go."
        ),
    )
