"""How a service wants its connectors to behave, in words every CRM shares.

The provider registry (crmsync.common.crm.providers) turns these into each connector's
own options; a field left None keeps that connector's default.
"""

from __future__ import annotations

from dataclasses import dataclass

# How far before its last resume point an incremental read re-reads (late commits, clock skew).
DEFAULT_CHANGE_LOOKBACK_S = 300.0


@dataclass(frozen=True)
class ConnectorSettings:
    """Timeouts, retries and read behaviour asked of a connector, whatever its CRM."""

    timeout_s: float | None = None  # read, write and pool wait
    connect_timeout_s: float | None = None
    max_retries: int | None = None  # extra attempts after the first for transient failures
    backoff_max_s: float | None = None  # longest wait between retries
    bulk_threshold: int | None = None  # a full read uses the CRM's bulk export above this many records
    change_lookback_s: float = DEFAULT_CHANGE_LOOKBACK_S

    def __post_init__(self) -> None:
        for name in ("timeout_s", "connect_timeout_s", "backoff_max_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.bulk_threshold is not None and self.bulk_threshold < 0:
            raise ValueError("bulk_threshold must not be negative")
        if self.change_lookback_s < 0:
            raise ValueError("change_lookback_s must not be negative")

    def given(self, *names: str) -> dict[str, object]:
        """Returns the named settings that were set (not None), to pass on as a connector's options."""
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}
