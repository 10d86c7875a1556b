"""OAuth 2.0 at /services/oauth2/token: client credentials, refresh token, password and JWT bearer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.emulator.clock import now_ms
from crmsync.emulator.state import Emulator, OrgState, Token
from crmsync.emulator.web import emulator_of, guarded, json_response

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


async def _form(request: Request) -> dict[str, str]:
    """Returns the token request's parameters: form body, then query string, then Basic credentials."""
    body = (await request.body()).decode()
    form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
    form.update({k: v for k, v in request.query_params.items() if k not in form})
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
        form.setdefault("client_id", user)
        form.setdefault("client_secret", password)
    return form


async def _token_faults(request: Request, state: OrgState) -> Response | None:
    """Returns the failure a fault naming the token endpoint injects into this login, if one fires."""
    path, faults = request.url.path, state.faults
    if fault := faults.draw("latency", path=path, method="POST", named_only=True):
        await asyncio.sleep(fault.latency_ms / 1000)
    for kind, status in (("429", 429), ("503", 503), ("500", 500)):
        if faults.draw(kind, path=path, method="POST", named_only=True):
            return oauth_error("temporarily_unavailable", "service temporarily unavailable", status)
    return None


def _issue(request: Request, emulator: Emulator, state: OrgState, *, refresh: bool = False) -> Response:
    org = state.org
    base = str(request.base_url).rstrip("/")
    token = f"{org.org_id[:15]}!AQ{secrets.token_urlsafe(80)}"
    emulator.tokens[token] = Token(org.org_id, time.time() + state.token_ttl)
    issued_at = str(now_ms())
    identity = f"{base}/id/{org.org_id}/{org.user_id}"
    signature = base64.b64encode(
        hmac.new(org.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    ).decode()
    body: dict[str, Any] = {
        "access_token": token,
        "instance_url": base,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    }
    if refresh:
        body["refresh_token"] = org.refresh_token
    return json_response(body)


async def _jwt_bearer(request: Request, emulator: Emulator, assertion: str) -> Response:
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return oauth_error("invalid_grant", "invalid assertion")
    state = emulator.orgs.get(emulator.by_client.get(str(claims.get("iss")), ""))
    if state is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    org = state.org
    try:
        if org.jwt_public_key:
            jwt.decode(assertion, org.jwt_public_key, algorithms=["RS256"], options={"verify_aud": False})
        else:
            jwt.decode(assertion, org.client_secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError:
        return oauth_error("invalid_grant", "expired authorization code")
    except jwt.PyJWTError:
        return oauth_error("invalid_grant", "invalid assertion")
    if not claims.get("sub") or not claims.get("aud"):
        return oauth_error("invalid_grant", "invalid assertion")
    return await _token_faults(request, state) or _issue(request, emulator, state)


async def token(request: Request) -> Response:
    emulator = emulator_of(request)
    form = await _form(request)
    grant = form.get("grant_type", "")
    if grant == JWT_BEARER:
        return await _jwt_bearer(request, emulator, form.get("assertion", ""))
    state = emulator.orgs.get(emulator.by_client.get(form.get("client_id", ""), ""))
    if grant not in ("client_credentials", "refresh_token", "password"):
        return oauth_error("unsupported_grant_type", "grant type not supported")
    if state is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if not hmac.compare_digest(form.get("client_secret", ""), state.org.client_secret):
        return oauth_error("invalid_client", "invalid client credentials")
    if grant == "refresh_token" and not hmac.compare_digest(
        form.get("refresh_token", ""), state.org.refresh_token
    ):
        return oauth_error("invalid_grant", "expired access/refresh token")
    if grant == "password" and not (form.get("username") and form.get("password")):
        return oauth_error("invalid_grant", "authentication failure")
    return await _token_faults(request, state) or _issue(
        request, emulator, state, refresh=grant == "password"
    )


routes = [Route("/services/oauth2/token", guarded(token), methods=["POST"])]
