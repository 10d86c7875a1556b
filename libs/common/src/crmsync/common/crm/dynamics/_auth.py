"""OAuth 2.0 client credentials against the Microsoft identity platform, and the token they give."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from crmsync.common.crm.dynamics._config import DynamicsCredentials
from crmsync.common.crm.dynamics._errors import is_transient_status
from crmsync.common.crm.interface import CrmAuthError, CrmTransientError
from crmsync.common.crm.tls import untrusted_certificate
from crmsync.common.crm.tokens import TokenCache as SharedTokenCache

Clock = Callable[[], float]


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # on the cache's clock (monotonic seconds)


async def request_token(
    client: httpx.AsyncClient, credentials: DynamicsCredentials, *, clock: Clock = time.monotonic
) -> AccessToken:
    """Returns a fresh token; a refused client raises CrmAuthError, an outage CrmTransientError."""
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "scope": credentials.scope,
    }
    asked_at = clock()
    try:
        response = await client.post(credentials.token_url, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        untrusted = untrusted_certificate(exc, operation="token", url=credentials.token_url)
        if untrusted is not None:
            raise untrusted from exc
        raise CrmTransientError(f"token request failed: {exc!r}") from exc
    if is_transient_status(response.status_code, None):
        raise CrmTransientError(
            f"token endpoint answered {response.status_code}", status=response.status_code
        )
    body = _json_object(response.content)
    if response.status_code != 200 or not body.get("access_token"):
        description = str(body.get("error_description") or response.text[:200])
        raise CrmAuthError(
            f"the identity platform refused the client credentials: {description}",
            error_code=str(body.get("error") or "invalid_client"),
            status=response.status_code,
        )
    lifetime = float(body.get("expires_in") or 3600)
    return AccessToken(value=str(body["access_token"]), expires_at=asked_at + lifetime)


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class TokenCache(SharedTokenCache[AccessToken]):
    """The environment's token: obtained once, renewed shortly before it expires or when refused."""

    def __init__(
        self, obtain: Callable[[], Awaitable[AccessToken]], *, margin_s: float, clock: Clock = time.monotonic
    ) -> None:
        super().__init__(obtain, fresh=lambda token: token.expires_at - margin_s > clock(), crm="dynamics")
