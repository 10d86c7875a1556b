"""Settings of the scheduler (environment, prefix CRMSYNC_)."""

from __future__ import annotations

from crmsync.common.settings import CommonSettings


class Settings(CommonSettings):
    pass
