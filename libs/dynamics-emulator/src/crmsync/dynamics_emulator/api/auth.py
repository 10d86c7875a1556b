"""The Microsoft identity platform's part: OpenID discovery and the v2.0 token endpoint
(client credentials), answered as Entra ID answers, errors with their AADSTS codes."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.dynamics_emulator.state import Emulator


def _json(status: int, data: object) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json; charset=utf-8",
                    headers={"Cache-Control": "no-store, no-cache"})  # fmt: skip


def _error(status: int, error: str, code: int, description: str) -> Response:
    trace = str(uuid.uuid4())
    return _json(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Timestamp: {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [code],
        "timestamp": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
    })  # fmt: skip


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def openid_configuration(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    tenant = request.path_params["tenant"]
    if tenant != emulator.settings.tenant:
        return _error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
    base = f"{_base(request)}/{tenant}"
    return _json(200, {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "issuer": f"{base}/v2.0",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "grant_types_supported": ["client_credentials"],
        "tenant_region_scope": "NA",
    })  # fmt: skip


def _client(request: Request, form: dict[str, str]) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        return client_id, secret
    return form.get("client_id", ""), form.get("client_secret", "")


async def token(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    settings = emulator.settings
    tenant = request.path_params["tenant"]
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    if tenant != settings.tenant:
        return _error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
        )
    if form.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    client_id, secret = _client(request, form)
    if client_id != settings.client_id:
        return _error(400, "unauthorized_client", 700016,
                      f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.")  # fmt: skip
    if secret != settings.client_secret:
        return _error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        )
    scope = form.get("scope", "")
    if not scope.endswith("/.default") or " " in scope.strip():
        return _error(400, "invalid_scope", 1002012,
                      f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                      "scope value with /.default suffixed to the resource identifier (application ID URI).")  # fmt: skip
    audience = scope.removesuffix("/.default")
    return _json(200, {
        "token_type": "Bearer",
        "expires_in": settings.token_ttl,
        "ext_expires_in": settings.token_ttl,
        "access_token": emulator.issue_token(audience),
    })  # fmt: skip


def challenge(request: Request, tenant: str) -> dict[str, str]:
    """The WWW-Authenticate header Dataverse sends with a 401: where to sign in, for which resource."""
    base = _base(request)
    return {
        "WWW-Authenticate": f"Bearer authorization_uri={base}/{tenant}/oauth2/authorize, resource_id={base}/"
    }


routes = [
    Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
    Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
]
