"""Settings of the pusher (environment, prefix CRMSYNC_)."""

from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class Settings(CommonSettings):
    pusher_group_id: str = Field("crmsync-pusher", description="Consumer group of contact-change events.")
    outbound_group_id: str = Field("crmsync-pusher-outbound", description="Consumer group of outbound jobs.")
    push_max_batch: int = Field(1000, ge=1, le=5000, description="Events polled together, at most.")
    push_lanes: int = Field(
        4, ge=1, le=64, description="Partitions are spread over this many lanes handled concurrently."
    )
    push_overlap_from: int = Field(
        200,
        ge=0,
        description="A batch of at least this many events overlaps its CRM writes with the next batch.",
    )
    push_linger_ms: int = Field(
        5, ge=0, le=1000, description="How long a small batch waits for more events before it is written."
    )
    push_crm_batch: int = Field(200, ge=1, le=200, description="Records per composite CRM request.")
    push_crm_concurrency: int = Field(4, ge=1, le=32, description="Composite requests in flight per batch.")
    push_max_attempts: int = Field(3, ge=1, le=50, description="Tries of a transient CRM failure.")
    push_backoff_s: float = Field(0.2, gt=0, description="First retry delay; doubles, with jitter.")
    push_backoff_max_s: float = Field(10.0, gt=0, description="Longest retry delay.")
    push_config_ttl_s: float = Field(
        2.0, ge=0, description="How long an account's mapping and policy are reused before being read again."
    )
    push_reconcile_margin_s: float = Field(
        300.0,
        ge=0,
        description="How far before a pending create the CRM is searched for it after a crash (clock skew).",
    )
