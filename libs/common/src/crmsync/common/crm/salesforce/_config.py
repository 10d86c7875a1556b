"""What a Salesforce connection needs: who to log in as, and how to behave."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crmsync.common.crm.gate import CallGate
from crmsync.common.crm.settings import DEFAULT_CHANGE_LOOKBACK_S

AuthMethod = Literal["client_credentials", "refresh_token", "jwt_bearer"]
AUTH_METHODS: tuple[str, ...] = ("client_credentials", "refresh_token", "jwt_bearer")


@dataclass(frozen=True)
class SalesforceCredentials:
    """One org's OAuth2 client and the secret its grant needs.

    `login_url` is the base URL serving `/services/oauth2/token`
    (https://login.salesforce.com, a My Domain URL, or the emulator).
    """

    login_url: str
    auth_method: AuthMethod
    client_id: str
    client_secret: str | None = None
    refresh_token: str | None = None
    username: str | None = None
    private_key: str | None = None  # PEM, for the JWT bearer grant
    api_version: str = "60.0"

    def __post_init__(self) -> None:
        if self.auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {', '.join(AUTH_METHODS)}")
        missing = {
            "client_credentials": ("client_secret",),
            "refresh_token": ("refresh_token",),
            "jwt_bearer": ("username", "private_key"),
        }[self.auth_method]
        for name in missing:
            if not getattr(self, name):
                raise ValueError(f"{self.auth_method} needs {name}")

    def __repr__(self) -> str:
        # Secrets never reach a log line or a traceback through repr().
        return (
            f"SalesforceCredentials(login_url={self.login_url!r}, auth_method={self.auth_method!r}, "
            f"client_id={self.client_id!r}, username={self.username!r}, api_version={self.api_version!r})"
        )


@dataclass(frozen=True)
class ConnectorOptions:
    """Timeouts, paging, retry and API budget behaviour of one connector."""

    timeout_s: float = 30.0  # read, write and pool wait
    connect_timeout_s: float = 10.0
    max_connections: int = 8
    page_size: int = 2000  # REST query batch (Salesforce accepts 200..2000)
    bulk_threshold: int = 50_000  # export_all uses Bulk API 2.0 above this many records
    bulk_max_records: int = 100_000  # rows per Bulk results request (one Sforce-Locator step)
    bulk_poll_interval_s: float = 0.5
    bulk_poll_max_interval_s: float = 10.0
    bulk_timeout_s: float = 3600.0
    max_uri_bytes: int = 16_384  # Salesforce refuses longer request URIs
    max_retries: int = 5  # extra attempts after the first for transient failures
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # API budget kept for the customer's other tools: the larger of the two.
    budget_reserve_fraction: float = 0.10
    budget_reserve_calls: int = 0
    # Within this share of the daily limit above the reserve, calls are spaced out.
    budget_slowdown_fraction: float = 0.05
    budget_slowdown_max_delay_s: float = 2.0
    deleted_feed_days: int = 15  # how far back Salesforce's deleted feed reaches
    describe_ttl_s: float = 300.0  # how long an object's describe is reused before asking again
    # changes() re-reads this far before a cursor's watermarks (late commits, clock skew).
    change_lookback_s: float = DEFAULT_CHANGE_LOOKBACK_S
    # The account's allowance, spent before every request (None: no allowance).
    call_gate: CallGate | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 200 <= self.page_size <= 2000:
            raise ValueError("page_size must be between 200 and 2000")
        if not 0 <= self.budget_reserve_fraction < 1:
            raise ValueError("budget_reserve_fraction must be in [0, 1)")
        if self.max_retries < 0 or self.budget_reserve_calls < 0:
            raise ValueError("max_retries and budget_reserve_calls must not be negative")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.change_lookback_s < 0:
            raise ValueError("change_lookback_s must not be negative")

    def reserve_for(self, limit: int) -> int:
        """Returns how many of `limit` daily calls are left untouched for other tools."""
        return max(int(limit * self.budget_reserve_fraction), self.budget_reserve_calls)
