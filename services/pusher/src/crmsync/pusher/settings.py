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
    push_max_attempts: int = Field(
        3,
        ge=1,
        le=50,
        description="Tries of a CRM write whose failure the connector has not retried already (one round).",
    )
    push_backoff_s: float = Field(0.2, gt=0, description="First retry delay; doubles, with jitter.")
    push_backoff_max_s: float = Field(10.0, gt=0, description="Longest retry delay.")
    push_redelivery_enabled: bool = Field(True, description="Run the re-delivery loop of waiting pushes.")
    push_redelivery_base_s: float = Field(
        60.0,
        gt=0,
        description="First wait of a push that failed for a transient reason; doubles, with jitter.",
    )
    push_redelivery_cap_s: float = Field(4 * 3600.0, gt=0, description="Longest wait between re-deliveries.")
    push_redelivery_horizon_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="A waiting push is tried for at least this long after its first failure, then failed.",
    )
    push_redelivery_min_wait_s: float = Field(
        5.0, ge=0, description="Shortest wait (at most the first wait)."
    )
    push_budget_recheck_s: float = Field(
        900.0,
        gt=0,
        description="How long a push parked by an API budget at its reserve waits before a new look.",
    )
    push_redelivery_interval_s: float = Field(
        1.0, gt=0, description="How often the loop looks for due pushes."
    )
    push_redelivery_batch: int = Field(200, ge=1, le=2000, description="Pushes claimed per round, at most.")
    push_redelivery_lease_s: float = Field(
        300.0, gt=0, description="A claimed push comes back after this long if its replica stopped mid-send."
    )
    push_database_outage_s: float = Field(
        60.0,
        ge=0,
        description="How long a step waits for a database that does not answer (a restart) before it fails.",
    )
    push_config_ttl_s: float = Field(
        2.0, ge=0, description="How long an account's mapping and policy are reused before being read again."
    )
    push_reconcile_margin_s: float = Field(
        300.0,
        ge=0,
        description="How far before a pending create the CRM is searched for it after a crash (clock skew).",
    )
