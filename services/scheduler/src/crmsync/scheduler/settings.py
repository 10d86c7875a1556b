"""Settings of the scheduler (environment, prefix CRMSYNC_)."""

from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class Settings(CommonSettings):
    scheduler_tick_s: float = Field(5.0, gt=0, description="How often the leader looks for due jobs.")
    scheduler_accounts_per_batch: int = Field(
        500,
        ge=1,
        description=(
            "Due accounts read, decided and recorded in one transaction; a tick goes on batch after "
            "batch while a batch was full, publishing each batch's jobs before the next."
        ),
    )
    scheduler_open_run_recheck_s: float = Field(
        60.0,
        gt=0,
        description=(
            "While a sync of an account is open, its tick's incremental waits for it to end; the "
            "scheduler looks at such an account again this often (else at its next tick only)."
        ),
    )
    scheduler_lock_key: int = Field(
        0x63726D73796E63,  # "crmsync"
        description="Postgres advisory lock that elects the one replica that emits.",
    )
    # History the leader deletes once it is older than these (the scheduler's housekeeping).
    retention_sync_runs_days: int = Field(
        30,
        ge=1,
        description=(
            "Finished sync runs older than this are deleted. Each account keeps its latest "
            "successful run of each kind, whatever its age: the schedule counts from it."
        ),
    )
    retention_push_log_days: int = Field(
        30,
        ge=8,
        description=(
            "Push log entries older than this are deleted. The push log is what makes a redelivered "
            "event a no-op (R18), so keep it longer than the contact-changes topic keeps its "
            "messages (Kafka's default: 7 days)."
        ),
    )
    retention_scheduled_jobs_days: int = Field(
        30,
        ge=8,
        description=(
            "Records of emitted jobs older than this are deleted. They are what keeps a slot from "
            "being emitted twice, so keep them longer than the longest schedule period (a week)."
        ),
    )
    retention_outbox_hours: int = Field(
        24, ge=1, description="Outbox messages published longer ago than this are deleted."
    )
    housekeeping_interval_s: float = Field(
        3600.0, gt=0, description="How often the leader deletes expired history."
    )
    housekeeping_batch_rows: int = Field(
        5000,
        ge=1,
        description="Rows deleted per statement: each batch is its own short transaction.",
    )
    housekeeping_batches_per_tick: int = Field(
        5,
        ge=1,
        description="Batches deleted per tick at most; a large backlog is worked off over several ticks.",
    )
