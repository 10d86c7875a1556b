"""OAuth2 grants against /services/oauth2/token, and the session they give, shared by calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import jwt
import orjson

from crmsync.common.crm.interface import CrmAuthError, CrmTransientError
from crmsync.common.crm.salesforce._config import SalesforceCredentials
from crmsync.common.crm.tls import untrusted_certificate
from crmsync.common.crm.tokens import TokenCache

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Session:
    """An access token and the instance it is good for."""

    access_token: str
    instance_url: str


def grant_form(credentials: SalesforceCredentials) -> dict[str, str]:
    """Returns the form fields of the token request for the configured grant."""
    if credentials.auth_method == "client_credentials":
        return {
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret or "",
        }
    if credentials.auth_method == "refresh_token":
        form = {
            "grant_type": "refresh_token",
            "client_id": credentials.client_id,
            "refresh_token": credentials.refresh_token or "",
        }
        if credentials.client_secret:
            form["client_secret"] = credentials.client_secret
        return form
    claims = {
        "iss": credentials.client_id,
        "sub": credentials.username,
        "aud": credentials.login_url.rstrip("/"),
        # Salesforce accepts assertions valid for at most a few minutes.
        "exp": int(time.time()) + 180,
    }
    assertion = jwt.encode(claims, credentials.private_key or "", algorithm="RS256")
    return {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}


async def obtain_session(client: httpx.AsyncClient, credentials: SalesforceCredentials) -> Session:
    """Returns a fresh session; a refused grant raises CrmAuthError, an outage CrmTransientError."""
    url = credentials.login_url.rstrip("/") + "/services/oauth2/token"
    try:
        form = grant_form(credentials)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise CrmAuthError(f"cannot build the {credentials.auth_method} grant: {exc}") from exc
    try:
        response = await client.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        untrusted = untrusted_certificate(exc, operation="token", url=url)
        if untrusted is not None:
            raise untrusted from exc
        raise CrmTransientError(f"token request failed: {exc!r}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise CrmTransientError(
            f"token endpoint answered {response.status_code}", status=response.status_code
        )
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        code = str(body.get("error") or "invalid_grant")
        description = body.get("error_description") or response.text[:200]
        raise CrmAuthError(
            f"Salesforce refused the {credentials.auth_method} grant: {description}",
            error_code=code,
            status=response.status_code,
        )
    return Session(access_token=body["access_token"], instance_url=body["instance_url"].rstrip("/"))


class SessionCache(TokenCache[Session]):
    """The org's session: obtained once, renewed when Salesforce stops taking it (it has no expiry time).

    `obtain` returns a fresh session, retries and all.
    """

    def __init__(self, obtain: Callable[[], Awaitable[Session]]) -> None:
        super().__init__(obtain, crm="salesforce")
