"""What every path shares: Salesforce's response and error shapes, path parameters, and the
wrapper that authenticates an API call, counts it against the org's budget and applies faults.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from crmsync.emulator.errors import ApiError, RecordError
from crmsync.emulator.faults import FaultPlan
from crmsync.emulator.state import Emulator, OrgState
from crmsync.emulator.store import Org

MAX_URI_BYTES = 16_384
DATA = "/services/data/v{version:version}"
Endpoint = Callable[[Request], Awaitable[Response]]


def _convertor(name: str, pattern: str) -> None:
    class Pattern(Convertor[str]):
        regex = pattern

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    register_url_convertor(name, Pattern())


_convertor("version", r"\d+\.\d")
_convertor("name", r"\w+")
_convertor("sfid", r"[A-Za-z0-9]{15,18}")
_convertor("job", r"750\w+")
_convertor("batch", r"751\w+")
_convertor("result", r"752\w+")
_convertor("org", r"00D\w+")
_convertor("locator", r"[A-Za-z0-9]+-\d+")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json;charset=UTF-8")


def errors_response(status: int, message: str, error_code: str) -> Response:
    return json_response([{"message": message, "errorCode": error_code}], status)


def record_errors_response(errors: tuple[RecordError, ...] | list[RecordError]) -> Response:
    """Returns a single-record write's refusal: 400 with each error and its fields."""
    return json_response(
        [{"message": e.message, "errorCode": e.status_code, "fields": list(e.fields)} for e in errors], 400
    )


async def read_json(request: Request) -> Any:
    """Returns the request's JSON body ({} when empty), or raises Salesforce's JSON_PARSER_ERROR."""
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in JSON: {exc}") from exc


async def read_object(request: Request) -> dict[str, Any]:
    """Returns the request's JSON object body, or raises JSON_PARSER_ERROR."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
    return data


def emulator_of(request: Request) -> Emulator:
    return request.app.state.emulator


def limit_info(org: Org) -> dict[str, str]:
    return {"Sforce-Limit-Info": f"api-usage={org.api_used}/{org.api_limit}"}


def lock_fault(state: OrgState, request: Request) -> RecordError | None:
    """Returns the row-lock error a `lock` fault injects into this write, if one fires."""
    if state.faults.draw("lock", path=request.url.path, method=request.method):
        return RecordError(
            "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", ()
        )
    return None


def guarded(handler: Endpoint) -> Endpoint:
    """Answers any error of a handler in Salesforce's shape (a bug also prints its traceback)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            return errors_response(400, str(exc), "JSON_PARSER_ERROR")
        except Exception as exc:  # a bug here must still answer in Salesforce's shape, and be seen
            traceback.print_exc()
            return errors_response(500, f"An unexpected error occurred: {exc!r}", "UNKNOWN_EXCEPTION")

    return endpoint


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header.split(" ", 1)[1].strip() if " " in header else ""


def authenticated(request: Request, token_text: str) -> OrgState | None:
    """Returns the org an access token belongs to, if the token is valid (a fault may expire it)."""
    emulator = emulator_of(request)
    token = emulator.tokens.get(token_text)
    if token is None or token.org_id not in emulator.orgs:
        return None
    state = emulator.orgs[token.org_id]
    if state.faults.draw("expired_token", path=request.url.path, method=request.method):
        state.expired.add(token_text)
    if token.expires_at < time.time() or token_text in state.expired:
        return None
    return state


def charge(state: OrgState, request: Request) -> bool:
    """Counts a call against the org's daily budget; False (and not counted) when it is spent."""
    org = state.org
    if state.faults.draw("budget", path=request.url.path, method=request.method):
        org.api_used = max(org.api_used, org.api_limit)
    if org.api_used >= org.api_limit:
        return False
    org.api_used += 1
    return True


def _injected(faults: FaultPlan, path: str, method: str) -> Response | None:
    """Returns the failure a 429, 503 or 500 fault answers this call with, if one fires."""
    if faults.draw("429", path=path, method=method):
        return json_response(
            [{"message": "Too many requests, try again later", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            429,
            {"Retry-After": "1"},
        )
    if faults.draw("503", path=path, method=method):
        return errors_response(503, "Server is temporarily unavailable", "SERVER_UNAVAILABLE")
    if faults.draw("500", path=path, method=method):
        return errors_response(
            500,
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1234567890)",
            "UNKNOWN_EXCEPTION",
        )
    return None


DataHandler = Callable[..., Awaitable[Response]]


def data_endpoint(handler: DataHandler) -> Endpoint:
    """Wraps `handler(request, state, **path params)` as a Salesforce API call: authenticated,
    counted against the org's daily budget, subject to the org's faults, with Sforce-Limit-Info."""

    async def endpoint(request: Request) -> Response:
        state = authenticated(request, bearer_token(request))
        if state is None:
            return errors_response(401, "Session expired or invalid", "INVALID_SESSION_ID")
        org = state.org
        path, method = request.url.path, request.method
        if not charge(state, request):
            return json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                403,
                limit_info(org),
            )
        if fault := state.faults.draw("latency", path=path, method=method):
            await asyncio.sleep(fault.latency_ms / 1000)
        response = _injected(state.faults, path, method)
        if response is None:
            try:
                response = await handler(request, state, **request.path_params)
            except ApiError as exc:
                response = json_response(exc.body(), exc.status)
        response.headers.update(limit_info(org))
        return response

    return guarded(endpoint)


def data_route(path: str, handler: DataHandler, method: str) -> Route:
    """Returns the route of a Salesforce API call under /services/data/vNN.N."""
    return Route(DATA + path, data_endpoint(handler), methods=[method])


def plain_route(path: str, handler: Callable[..., Awaitable[Response]], method: str) -> Route:
    """Returns a route outside the API budget: `handler(request, **path params)`."""

    async def call(request: Request) -> Response:
        return await handler(request, **request.path_params)

    return Route(path, guarded(call), methods=[method])


async def not_found(request: Request, exc: Exception) -> Response:
    return errors_response(404, "The requested resource does not exist", "NOT_FOUND")


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    return errors_response(405, f"HTTP Method '{request.method}' not allowed", "METHOD_NOT_ALLOWED")


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return errors_response(status, str(getattr(exc, "detail", exc)), "UNKNOWN_EXCEPTION")


class PathGuard:
    """Refuses over-long URIs with 414 as Salesforce does, and ignores a trailing slash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_len = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 1
            if raw_len > MAX_URI_BYTES:
                response = errors_response(414, "Request-URI Too Long", "URI_TOO_LONG")
                await response(scope, receive, send)
                return
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        await self.app(scope, receive, send)
