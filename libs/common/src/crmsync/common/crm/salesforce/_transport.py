"""One org over HTTP: the keep-alive client, the session, retries, the API budget and allowance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
import structlog

from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.crm.salesforce._auth import Session, SessionCache, obtain_session
from crmsync.common.crm.salesforce._config import ConnectorOptions, SalesforceCredentials
from crmsync.common.crm.salesforce._errors import raise_for, untrusted_certificate
from crmsync.common.crm.salesforce._limits import ApiUsage
from crmsync.common.observability.metrics import CRM_CALLS
from crmsync.common.retry import RetryPolicy, call_with_retries, is_transient

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Transport:
    """Sends calls to one org: authenticated, paced by the API budget, retried when transient."""

    def __init__(
        self,
        credentials: SalesforceCredentials,
        options: ConnectorOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        account_id: str | None = None,
    ) -> None:
        self.options = options
        self.api = f"/services/data/v{credentials.api_version}"
        self.policy = RetryPolicy(
            max_attempts=options.max_retries + 1,
            base_s=options.backoff_initial_s,
            cap_s=options.backoff_max_s,
        )
        self.usage = ApiUsage(options, account=account_id or "-")
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=options.max_connections, max_keepalive_connections=options.max_connections
            ),
            headers={"User-Agent": "crmsync-connector"},
            # HTTPS is verified against certifi's CAs, or the bundle SSL_CERT_FILE names.
            verify=True,
            trust_env=True,
        )
        self._sessions = SessionCache(
            lambda: self.retrying(lambda: obtain_session(self._client, credentials))
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def session(self) -> Session:
        """Returns the current session (its instance URL bounds query lengths)."""
        return await self._sessions.current()

    async def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        budgeted: bool = True,
        stream: bool = False,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Returns a successful response; transient failures are retried with backoff.

        A call that is not idempotent (a create) is repeated only when Salesforce
        surely did not act on it (429, 503, a lock, no connection), never after a
        timeout or a 500, when it may have.
        """

        async def once() -> httpx.Response:
            session = await self._sessions.current()
            if budgeted:
                await self.usage.pace()
            response = await self._send(session, method, path, params, json, headers, stream, operation)
            if response.status_code == 401:
                # An expired or revoked token: renew once and repeat the call.
                session = await self._sessions.renew(session)
                response = await self._send(session, method, path, params, json, headers, stream, operation)
            raise_for(response, usage=self.usage)
            return response

        return await self.retrying(once, idempotent=idempotent)

    async def retrying(self, attempt: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        """Returns what `attempt` returns, retried under the policy; one round per failure."""
        return await call_with_retries(
            attempt,
            policy=self.policy,
            retry_if=lambda error: is_transient(error, idempotent=idempotent),
            on_retry=_log_retry,
        )

    async def _send(
        self,
        session: Session,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json: Any,
        headers: dict[str, str] | None,
        stream: bool,
        operation: str,
    ) -> httpx.Response:
        url = path if path.startswith("http") else session.instance_url + path
        all_headers = {"Authorization": f"Bearer {session.access_token}", "Accept": "application/json"}
        content = None
        if json is not None:
            content = orjson.dumps(json)
            all_headers["Content-Type"] = "application/json"
        if headers:
            all_headers.update(headers)
        if self.options.call_gate is not None:
            await self.options.call_gate.spend()  # every request, retries and renewals included
        self.usage.count_call()
        request = self._client.build_request(method, url, params=params, content=content, headers=all_headers)
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            CRM_CALLS.labels(operation, "timeout").inc()
            error = CrmTransientError(f"{operation}: Salesforce did not answer in time ({exc!r})")
            error.maybe_applied = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            raise error from exc
        except httpx.TransportError as exc:
            CRM_CALLS.labels(operation, "connection_error").inc()
            untrusted = untrusted_certificate(exc, operation=operation, url=url)
            if untrusted is not None:
                raise untrusted from exc
            error = CrmTransientError(f"{operation}: connection to Salesforce failed ({exc!r})")
            error.maybe_applied = not isinstance(exc, httpx.ConnectError)
            raise error from exc
        CRM_CALLS.labels(operation, str(response.status_code)).inc()
        self.usage.read(response)
        if stream and response.status_code >= 300:
            try:
                await response.aread()
            except httpx.TransportError as exc:
                raise CrmTransientError(f"{operation}: error body lost ({exc!r})") from exc
            finally:
                await response.aclose()
        return response


def _log_retry(attempt: int, error: BaseException | None) -> None:
    log.warning(
        "crm.retry",
        attempt=attempt,
        error=type(error).__name__,
        error_code=getattr(error, "error_code", None),
        status=getattr(error, "status", None),
    )
