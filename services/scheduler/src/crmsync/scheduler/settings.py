"""Settings of the scheduler (environment, prefix CRMSYNC_)."""

from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class Settings(CommonSettings):
    scheduler_tick_s: float = Field(5.0, gt=0, description="How often the leader looks for due jobs.")
    scheduler_lock_key: int = Field(
        0x63726D73796E63,  # "crmsync"
        description="Postgres advisory lock that elects the one replica that emits.",
    )
