"""What a Dataverse connection needs: the app registration to sign in as, and how to behave."""

from __future__ import annotations

from dataclasses import dataclass, field

from crmsync.common.crm.gate import CallGate
from crmsync.common.retry import RetryPolicy


@dataclass(frozen=True)
class DynamicsCredentials:
    """One environment's app registration (OAuth 2.0 client credentials).

    `authority_url` serves `/{tenant}/oauth2/v2.0/token` (https://login.microsoftonline.com,
    or the emulator); `resource_url` is the environment (https://contoso.crm.dynamics.com).
    """

    authority_url: str
    tenant_id: str
    client_id: str
    client_secret: str
    resource_url: str
    api_version: str = "9.2"

    def __post_init__(self) -> None:
        for name in ("authority_url", "tenant_id", "client_id", "client_secret", "resource_url"):
            if not getattr(self, name):
                raise ValueError(f"DynamicsCredentials needs {name}")

    @property
    def token_url(self) -> str:
        return f"{self.authority_url.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        return f"{self.resource_url.rstrip('/')}/.default"

    @property
    def web_api(self) -> str:
        return f"{self.resource_url.rstrip('/')}/api/data/v{self.api_version}"

    def __repr__(self) -> str:
        # The secret never reaches a log line or a traceback through repr().
        return (
            f"DynamicsCredentials(authority_url={self.authority_url!r}, tenant_id={self.tenant_id!r}, "
            f"client_id={self.client_id!r}, resource_url={self.resource_url!r}, "
            f"api_version={self.api_version!r})"
        )


@dataclass(frozen=True)
class DynamicsOptions:
    """Timeouts, paging, batching, retry and service-protection behaviour of one connector."""

    page_size: int = 5000  # odata.maxpagesize (Dataverse answers at most 5,000 a page)
    batch_size: int = 1000  # operations per $batch (Dataverse's limit)
    ids_per_query: int = 50  # ids in one `$filter` of a read by ids, under the URL length limit
    timeout_s: float = 30.0  # read, write and pool wait
    connect_timeout_s: float = 10.0
    max_connections: int = 8
    max_retries: int = 5  # extra attempts after the first for transient failures
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0  # Dataverse's Retry-After may ask for tens of seconds
    token_refresh_margin_s: float = 300.0  # a token is renewed this long before it expires
    # Service protection: requests a user may make per sliding window (Dataverse: 6,000 per 300 s).
    window_requests: int = 6000
    window_s: float = 300.0
    window_execution_ms: int = 1_200_000  # combined execution time per window
    # Share of the window kept for the customer's other tools: the larger of the two.
    budget_reserve_fraction: float = 0.10
    budget_reserve_calls: int = 0
    # Within this share of the window above the reserve, calls are spaced out.
    budget_slowdown_fraction: float = 0.05
    budget_slowdown_max_delay_s: float = 2.0
    describe_ttl_s: float = 300.0  # how long a table's attributes are reused before asking again
    # The account's allowance, spent before every request (None: no allowance).
    call_gate: CallGate | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 5000:
            raise ValueError("page_size must be between 1 and 5000")
        if not 1 <= self.batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000")
        if not 0 <= self.budget_reserve_fraction < 1:
            raise ValueError("budget_reserve_fraction must be in [0, 1)")
        if self.max_retries < 0 or self.budget_reserve_calls < 0 or self.ids_per_query < 1:
            raise ValueError("max_retries, budget_reserve_calls and ids_per_query must be positive")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0 or self.window_s <= 0:
            raise ValueError("timeouts and the window must be positive")

    def retry_policy(self) -> RetryPolicy:
        """Returns the retry policy of these options: `max_retries` after the first attempt."""
        return RetryPolicy(
            max_attempts=self.max_retries + 1, base_s=self.backoff_initial_s, cap_s=self.backoff_max_s
        )

    def reserve_for(self, limit: int) -> int:
        """Returns how many of `limit` requests in a window are left untouched for other tools."""
        return max(int(limit * self.budget_reserve_fraction), self.budget_reserve_calls)
