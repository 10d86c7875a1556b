"""One environment over HTTP: the keep-alive client, the token, retries and service protection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
import structlog

from crmsync.common.crm.dynamics._auth import AccessToken, TokenCache, request_token
from crmsync.common.crm.dynamics._config import DynamicsCredentials, DynamicsOptions
from crmsync.common.crm.dynamics._errors import raise_for
from crmsync.common.crm.dynamics._limits import RequestBudget
from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.observability.metrics import CRM_CALLS
from crmsync.common.retry import call_with_retries, is_transient

log = structlog.get_logger(__name__)

T = TypeVar("T")

ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}


def _surely_not_applied(error: BaseException) -> bool:
    return is_transient(error, idempotent=False)


def _unreachable(operation: str, exc: httpx.TransportError) -> CrmTransientError:
    """Returns the transient error a failed exchange stands for, noting whether Dataverse may have acted."""
    if isinstance(exc, httpx.TimeoutException):
        error = CrmTransientError(f"{operation}: Dataverse did not answer in time ({exc!r})")
        error.maybe_applied = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        CRM_CALLS.labels(operation, "timeout").inc()
    else:
        error = CrmTransientError(f"{operation}: the connection to Dataverse failed ({exc!r})")
        error.maybe_applied = not isinstance(exc, httpx.ConnectError)
        CRM_CALLS.labels(operation, "connection_error").inc()
    return error


def _keep_alive_client(
    options: DynamicsOptions, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """Returns the one client of a connector: its connections kept alive, every wait bounded."""
    pool = httpx.Limits(
        max_connections=options.max_connections, max_keepalive_connections=options.max_connections
    )
    timeout = httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s)
    headers = {"User-Agent": "crmsync-connector", **ODATA_HEADERS}
    return httpx.AsyncClient(transport=transport, timeout=timeout, limits=pool, headers=headers)


class Transport:
    """Sends Web API calls: signed in, paced by service protection, retried when transient."""

    def __init__(
        self,
        credentials: DynamicsCredentials,
        options: DynamicsOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        account_id: str | None = None,
    ) -> None:
        self.options = options
        self._account_id = account_id or "-"
        self.web_api = credentials.web_api
        self.policy = options.retry_policy()
        self.budget = RequestBudget(options, account=self._account_id)
        self._client = _keep_alive_client(options, transport)
        self._tokens = TokenCache(
            lambda: self.retrying(lambda: request_token(self._client, credentials)),
            margin_s=options.token_refresh_margin_s,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = True,
        calls: int = 1,
    ) -> httpx.Response:
        """Returns a successful answer; transient failures are retried with backoff (Retry-After honoured).

        `path` is below the Web API root, or a whole URL (a next or delta link). A
        call that is not idempotent is repeated only when Dataverse surely did not
        act on it (throttled, unavailable, no connection), never after a timeout or a 500.
        `calls`: what one send takes from the account's allowance (a $batch: its operations,
        each a request of the daily limit).
        """
        body = orjson.dumps(json) if json is not None else content
        sent = {"Content-Type": "application/json"} if json is not None else {}
        sent.update(headers or {})
        url = path if path.startswith(("http://", "https://")) else f"{self.web_api}/{path}"

        async def once() -> httpx.Response:
            token = await self._tokens.current()
            await self.budget.pace()
            response = await self._send(token, method, url, params, body, sent, operation, calls)
            if response.status_code == 401:
                # Expired or revoked before its time: renew once and repeat the call.
                token = await self._tokens.renew(token)
                response = await self._send(token, method, url, params, body, sent, operation, calls)
            raise_for(response)
            return response

        return await self.retrying(once, idempotent=idempotent)

    async def retrying(self, attempt: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        """Returns what `attempt` returns, retried under the one retry policy."""
        retry_if = is_transient if idempotent else _surely_not_applied
        return await call_with_retries(
            attempt, policy=self.policy, retry_if=retry_if, on_retry=self._log_retry
        )

    def _log_retry(self, attempt: int, error: BaseException | None) -> None:
        log.warning(
            "crm.retry", crm="dynamics", account_id=self._account_id, attempt=attempt,
            error=type(error).__name__, error_code=getattr(error, "error_code", None),
            status=getattr(error, "status", None),
        )  # fmt: skip

    async def _send(
        self,
        token: AccessToken,
        method: str,
        url: str,
        params: dict[str, str] | None,
        body: bytes | None,
        headers: dict[str, str],
        operation: str,
        calls: int = 1,
    ) -> httpx.Response:
        headers = {**headers, "Authorization": f"Bearer {token.value}"}
        if self.options.call_gate is not None:
            await self.options.call_gate.spend(calls)  # every request, retries and renewals included
        self.budget.count_call()
        try:
            response = await self._client.request(method, url, params=params, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise _unreachable(operation, exc) from exc
        CRM_CALLS.labels(operation, str(response.status_code)).inc()
        self.budget.read(response)
        return response
