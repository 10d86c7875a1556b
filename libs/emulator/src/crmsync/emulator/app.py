"""The HTTP side: Salesforce's OAuth2, REST, composite and Bulk 2.0 paths, and the control API.

One emulator serves many orgs at the same instance URL: the access token says
which org a call belongs to. Everything runs on one event loop, so the stores
need no locks.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from crmsync.emulator import control, ids, soql
from crmsync.emulator.faults import Fault, FaultPlan
from crmsync.emulator.schema import OBJECTS, describe_global_entry, describe_object
from crmsync.emulator.store import (
    DELETED_REACH_MS,
    ApiError,
    Org,
    RecordError,
    RecordRejected,
    format_datetime,
    now_ms,
    parse_datetime,
)

MAX_URI_BYTES = 16_384
DEFAULT_PAGE = 2000
VERSIONS = [f"{v}.0" for v in range(52, 63)]
MAX_COLLECTION = 200
BULK_DEFAULT_MAX_RECORDS = 100_000
Handler = Callable[..., Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json;charset=UTF-8")


@dataclass
class OrgState:
    org: Org
    faults: FaultPlan
    token_ttl: int
    expired: set[str] = field(default_factory=set)


@dataclass
class Token:
    org_id: str
    expires_at: float


class Emulator:
    """The emulator's state (orgs, tokens) and its ASGI entry point."""

    def __init__(self, *, token_ttl: int = 7200, api_limit: int = 100_000) -> None:
        self.token_ttl = token_ttl
        # Generated modstamps count back from this instant, so one seed gives the same org all day long.
        self.started_ms = now_ms()
        self.api_limit = api_limit
        self.orgs: dict[str, OrgState] = {}
        self.by_client: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self._next_org = 1
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        self._register()

    # -- orgs ----------------------------------------------------------------------------
    def create_org(
        self,
        *,
        leads: int,
        contacts: int,
        seed: int,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_limit: int | None = None,
        token_ttl: int | None = None,
    ) -> Org:
        """Returns a new org with generated records and its own OAuth client."""
        number = self._next_org
        self._next_org += 1
        client_id = client_id or f"3MVG9{secrets.token_urlsafe(30)}"
        if client_id in self.by_client:
            raise ValueError(f"client_id {client_id!r} already belongs to another org")
        org = Org(
            org_id=ids.make_id("00D", ids.org_tag(number), number),
            number=number,
            leads=leads,
            contacts=contacts,
            seed=seed,
            client_id=client_id,
            client_secret=client_secret or secrets.token_hex(32),
            api_limit=api_limit if api_limit is not None else self.api_limit,
            now=self.started_ms,
        )
        self.orgs[org.org_id] = OrgState(
            org, FaultPlan(seed), token_ttl if token_ttl is not None else self.token_ttl
        )
        self.by_client[client_id] = org.org_id
        return org

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        raw_len = (
            len(request.scope.get("raw_path") or b"") + len(request.scope.get("query_string") or b"") + 1
        )
        if raw_len > MAX_URI_BYTES:
            return json_response([{"message": "Request-URI Too Long", "errorCode": "URI_TOO_LONG"}], 414)
        path = request.url.path.rstrip("/") or "/"
        method = request.method
        allowed = False
        for route_method, pattern, handler, is_data in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            allowed = True
            if route_method != method:
                continue
            try:
                if is_data:
                    return await self.data_call(request, handler, match.groupdict())
                return await handler(request, **match.groupdict())
            except ApiError as exc:
                return json_response(exc.body(), exc.status)
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                return json_response([{"message": str(exc), "errorCode": "JSON_PARSER_ERROR"}], 400)
            except Exception as exc:  # a bug here must still answer in Salesforce's shape, and be seen
                traceback.print_exc()
                return json_response(
                    [{"message": f"An unexpected error occurred: {exc!r}", "errorCode": "UNKNOWN_EXCEPTION"}],
                    500,
                )
        if allowed:
            return json_response(
                [{"message": f"HTTP Method '{method}' not allowed", "errorCode": "METHOD_NOT_ALLOWED"}], 405
            )
        return json_response(
            [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], 404
        )

    def route(self, method: str, pattern: str, handler: Handler, *, data: bool = True) -> None:
        prefix = r"/services/data/v(?P<version>\d+\.\d)" if data else ""
        self.routes.append((method, re.compile(prefix + pattern), handler, data))

    async def data_call(self, request: Request, handler: Handler, params: dict[str, str]) -> Response:
        """Authenticates a Salesforce API call, counts it against the budget, applies faults, runs it."""
        header = request.headers.get("authorization", "")
        token_text = header.split(" ", 1)[1].strip() if " " in header else ""
        token = self.tokens.get(token_text)
        invalid = json_response(
            [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
        )
        if token is None or token.org_id not in self.orgs:
            return invalid
        state = self.orgs[token.org_id]
        org = state.org
        path, method = request.url.path, request.method
        if state.faults.draw("expired_token", path=path, method=method):
            state.expired.add(token_text)
        if token.expires_at < time.time() or token_text in state.expired:
            return invalid
        if state.faults.draw("budget", path=path, method=method):
            org.api_used = max(org.api_used, org.api_limit)
        if org.api_used >= org.api_limit:
            return json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                403,
                self._limit_header(org),
            )
        org.api_used += 1
        if fault := state.faults.draw("latency", path=path, method=method):
            await asyncio.sleep(fault.latency_ms / 1000)
        response: Response | None = None
        if state.faults.draw("429", path=path, method=method):
            response = json_response(
                [{"message": "Too many requests, try again later", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                429,
                {"Retry-After": "1"},
            )
        elif state.faults.draw("503", path=path, method=method):
            response = json_response(
                [{"message": "Server is temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}], 503
            )
        elif state.faults.draw("500", path=path, method=method):
            response = json_response(
                [
                    {
                        "message": "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
                        "errorCode": "UNKNOWN_EXCEPTION",
                    }
                ],
                500,
            )
        if response is None:
            try:
                response = await handler(request, state, **params)
            except ApiError as exc:
                response = json_response(exc.body(), exc.status)
        response.headers["Sforce-Limit-Info"] = f"api-usage={org.api_used}/{org.api_limit}"
        return response

    @staticmethod
    def _limit_header(org: Org) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={org.api_used}/{org.api_limit}"}

    def _register(self) -> None:
        r = self.route
        r("POST", r"/services/oauth2/token", self.token, data=False)
        r("GET", r"/services/data", self.versions, data=False)
        r("GET", r"", self.resources)
        r("GET", r"/limits", self.limits)
        r("GET", r"/sobjects", self.describe_global)
        r("GET", r"/sobjects/(?P<obj>\w+)", self.sobject_info)
        r("POST", r"/sobjects/(?P<obj>\w+)", self.create_record)
        r("GET", r"/sobjects/(?P<obj>\w+)/describe", self.describe)
        r("GET", r"/sobjects/(?P<obj>\w+)/updated", self.updated)
        r("GET", r"/sobjects/(?P<obj>\w+)/deleted", self.deleted)
        r("GET", r"/sobjects/(?P<obj>\w+)/(?P<rid>[A-Za-z0-9]{15,18})", self.get_record)
        r("PATCH", r"/sobjects/(?P<obj>\w+)/(?P<rid>[A-Za-z0-9]{15,18})", self.update_record)
        r("DELETE", r"/sobjects/(?P<obj>\w+)/(?P<rid>[A-Za-z0-9]{15,18})", self.delete_record)
        r("GET", r"/(?P<kind>query|queryAll)", self.query)
        r("GET", r"/(?P<kind>query|queryAll)/(?P<locator>[A-Za-z0-9]+-\d+)", self.query_more)
        r("POST", r"/composite/sobjects", self.collection_create)
        r("PATCH", r"/composite/sobjects", self.collection_update)
        r("DELETE", r"/composite/sobjects", self.collection_delete)
        r("POST", r"/jobs/query", self.bulk_create)
        r("GET", r"/jobs/query/(?P<job>750\w+)", self.bulk_status)
        r("PATCH", r"/jobs/query/(?P<job>750\w+)", self.bulk_abort)
        r("DELETE", r"/jobs/query/(?P<job>750\w+)", self.bulk_delete)
        r("GET", r"/jobs/query/(?P<job>750\w+)/results", self.bulk_results)
        control.register(self)

    # -- OAuth2 --------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        form = {
            k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()
        }
        form.update({k: v for k, v in request.query_params.items() if k not in form})
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", user)
            form.setdefault("client_secret", password)
        grant = form.get("grant_type", "")

        def oauth_error(error: str, description: str, status: int = 400) -> Response:
            return json_response({"error": error, "error_description": description}, status)

        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            assertion = form.get("assertion", "")
            try:
                claims = jwt.decode(assertion, options={"verify_signature": False})
            except jwt.PyJWTError:
                return oauth_error("invalid_grant", "invalid assertion")
            state = self.orgs.get(self.by_client.get(str(claims.get("iss")), ""))
            if state is None:
                return oauth_error("invalid_client_id", "client identifier invalid")
            org = state.org
            try:
                if org.jwt_public_key:
                    jwt.decode(
                        assertion, org.jwt_public_key, algorithms=["RS256"], options={"verify_aud": False}
                    )
                else:
                    jwt.decode(
                        assertion, org.client_secret, algorithms=["HS256"], options={"verify_aud": False}
                    )
            except jwt.ExpiredSignatureError:
                return oauth_error("invalid_grant", "expired authorization code")
            except jwt.PyJWTError:
                return oauth_error("invalid_grant", "invalid assertion")
            if not claims.get("sub") or not claims.get("aud"):
                return oauth_error("invalid_grant", "invalid assertion")
            return await self._token_faults(request, state) or self._issue(request, state)
        state = self.orgs.get(self.by_client.get(form.get("client_id", ""), ""))
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
        return await self._token_faults(request, state) or self._issue(
            request, state, refresh=grant == "password"
        )

    async def _token_faults(self, request: Request, state: OrgState) -> Response | None:
        """Returns the failure a fault naming the token endpoint injects into this login, if one fires."""
        path, faults = request.url.path, state.faults
        if fault := faults.draw("latency", path=path, method="POST", named_only=True):
            await asyncio.sleep(fault.latency_ms / 1000)
        for kind, status in (("429", 429), ("503", 503), ("500", 500)):
            if faults.draw(kind, path=path, method="POST", named_only=True):
                return json_response(
                    {
                        "error": "temporarily_unavailable",
                        "error_description": "service temporarily unavailable",
                    },
                    status,
                )
        return None

    def _issue(self, request: Request, state: OrgState, *, refresh: bool = False) -> Response:
        org = state.org
        base = str(request.base_url).rstrip("/")
        token = f"{org.org_id[:15]}!AQ{secrets.token_urlsafe(80)}"
        self.tokens[token] = Token(org.org_id, time.time() + state.token_ttl)
        issued_at = str(now_ms())
        identity = f"{base}/id/{org.org_id}/{org.user_id}"
        signature = base64.b64encode(
            hmac.new(org.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        body = {
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

    # -- discovery -----------------------------------------------------------------------
    async def versions(self, request: Request) -> Response:
        return json_response(
            [{"label": f"Release {v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS]
        )

    async def resources(self, request: Request, state: OrgState, version: str) -> Response:
        base = f"/services/data/v{version}"
        names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
        return json_response({n: f"{base}/{n}" for n in names})

    async def limits(self, request: Request, state: OrgState, version: str) -> Response:
        org = state.org
        jobs = len(org.bulk_jobs)
        return json_response(
            {
                "DailyApiRequests": {"Max": org.api_limit, "Remaining": max(0, org.api_limit - org.api_used)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - jobs},
                "DailyBulkV2QueryFileStorageMB": {"Max": 1048576, "Remaining": 1048576},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            }
        )

    async def describe_global(self, request: Request, state: OrgState, version: str) -> Response:
        return json_response(
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [describe_global_entry(obj, version) for obj in OBJECTS.values()],
            }
        )

    async def sobject_info(self, request: Request, state: OrgState, version: str, obj: str) -> Response:
        table = state.org.table(obj)
        return json_response({"objectDescribe": describe_global_entry(table.obj, version), "recentItems": []})

    async def describe(self, request: Request, state: OrgState, version: str, obj: str) -> Response:
        table = state.org.table(obj)
        return json_response(describe_object(table.obj, version))

    # -- records -------------------------------------------------------------------------
    async def get_record(
        self, request: Request, state: OrgState, version: str, obj: str, rid: str
    ) -> Response:
        table, row = state.org.find(obj, rid)
        fields = request.query_params.get("fields")
        names = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
        if names:
            for name in names:
                if table.obj.field(name) is None:
                    raise ApiError(
                        400, "INVALID_FIELD", f"No such column '{name}' on entity '{table.obj.name}'."
                    )
            names = [table.obj.field(n).name for n in names]  # type: ignore[union-attr]
        return json_response(state.org.full_record(table, row, version, names))

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in JSON: {exc}") from exc

    def _lock(self, state: OrgState, request: Request) -> RecordError | None:
        if state.faults.draw("lock", path=request.url.path, method=request.method):
            return RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", ()
            )
        return None

    async def create_record(self, request: Request, state: OrgState, version: str, obj: str) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        org = state.org
        table = org.table(obj)
        if lock := self._lock(state, request):
            org.log_write(
                method="POST", obj=table.obj.name, record_id=None, fields=body, api="rest", success=False
            )
            return json_response(
                [{"message": lock.message, "errorCode": lock.status_code, "fields": []}], 400
            )
        try:
            table, row = org.create(obj, body)
        except RecordRejected as exc:
            org.log_write(
                method="POST", obj=table.obj.name, record_id=None, fields=body, api="rest", success=False
            )
            return json_response(
                [
                    {"message": e.message, "errorCode": e.status_code, "fields": list(e.fields)}
                    for e in exc.errors
                ],
                400,
            )
        record_id = table.id_of(row)
        org.log_write(
            method="POST", obj=table.obj.name, record_id=record_id, fields=body, api="rest", success=True
        )
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    async def update_record(
        self, request: Request, state: OrgState, version: str, obj: str, rid: str
    ) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        org = state.org
        table, row = org.find(obj, rid)
        record_id = table.id_of(row)
        if lock := self._lock(state, request):
            org.log_write(
                method="PATCH",
                obj=table.obj.name,
                record_id=record_id,
                fields=body,
                api="rest",
                success=False,
            )
            return json_response(
                [{"message": lock.message, "errorCode": lock.status_code, "fields": []}], 400
            )
        try:
            org.update(obj, rid, body)
        except RecordRejected as exc:
            org.log_write(
                method="PATCH",
                obj=table.obj.name,
                record_id=record_id,
                fields=body,
                api="rest",
                success=False,
            )
            return json_response(
                [
                    {"message": e.message, "errorCode": e.status_code, "fields": list(e.fields)}
                    for e in exc.errors
                ],
                400,
            )
        org.log_write(
            method="PATCH", obj=table.obj.name, record_id=record_id, fields=body, api="rest", success=True
        )
        return Response(status_code=204)

    async def delete_record(
        self, request: Request, state: OrgState, version: str, obj: str, rid: str
    ) -> Response:
        org = state.org
        table, row = org.find(obj, rid)
        if lock := self._lock(state, request):
            return json_response(
                [{"message": lock.message, "errorCode": lock.status_code, "fields": []}], 400
            )
        org.delete(obj, rid)
        org.log_write(
            method="DELETE",
            obj=table.obj.name,
            record_id=table.id_of(row),
            fields={},
            api="rest",
            success=True,
        )
        return Response(status_code=204)

    # -- feeds ---------------------------------------------------------------------------
    def _window(self, request: Request) -> tuple[int, int]:
        try:
            start = parse_datetime(request.query_params["start"])
            end = parse_datetime(request.query_params["end"])
        except (KeyError, Exception) as exc:
            raise ApiError(
                400, "MALFORMED_QUERY", "start and end are required date-times (ISO 8601)"
            ) from exc
        if start >= end:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        return start, end

    async def updated(self, request: Request, state: OrgState, version: str, obj: str) -> Response:
        table = state.org.table(obj)
        start, end = self._window(request)
        if start < now_ms() - 30 * 86_400_000:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        stamps = table.cols["SystemModstamp"]
        deleted = table.deleted_at
        everything = range(table.n)
        found = [
            table.id_of(row)
            for row, stamp in zip(everything, stamps.take(everything), strict=True)
            if start <= stamp < end and row not in deleted
        ]
        latest = min(end, now_ms())
        return json_response({"ids": found, "latestDateCovered": format_datetime(latest)})

    async def deleted(self, request: Request, state: OrgState, version: str, obj: str) -> Response:
        table = state.org.table(obj)
        start, end = self._window(request)
        earliest = now_ms() - DELETED_REACH_MS
        if start < earliest:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 15 days ago")
        records = [
            {"id": table.id_of(row), "deletedDate": format_datetime(at)}
            for row, at in sorted(table.deleted_at.items(), key=lambda item: item[1])
            if start <= at < end
        ]
        return json_response(
            {
                "deletedRecords": records,
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(min(end, now_ms())),
            }
        )

    # -- SOQL ----------------------------------------------------------------------------
    @staticmethod
    def _batch_size(request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        if not match:
            return DEFAULT_PAGE
        # Salesforce keeps a page between 200 and 2,000 records whatever is asked.
        return max(200, min(2000, int(match.group(1))))

    def _page(
        self, state: OrgState, version: str, kind: str, cursor_id: str, start: int, size: int
    ) -> dict[str, Any]:
        cursor = state.org.cursors[cursor_id]
        rows = cursor.rows[start : start + size]
        end = start + len(rows)
        done = end >= len(cursor.rows)
        body: dict[str, Any] = {
            "totalSize": len(cursor.rows),
            "done": done,
            "records": cursor.render_page(rows),
        }
        if done:
            state.org.cursors.pop(cursor_id, None)
        else:
            body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{cursor_id}-{end}"
        return body

    async def query(self, request: Request, state: OrgState, version: str, kind: str) -> Response:
        text = request.query_params.get("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string parameter 'q' is required")
        cursor, count = state.org.run_query(text, include_deleted=kind == "queryAll", version=version)
        if count is not None:
            return json_response({"totalSize": count, "done": True, "records": []})
        locator = state.org.save_cursor(cursor)
        return json_response(self._page(state, version, kind, locator, 0, self._batch_size(request)))

    async def query_more(
        self, request: Request, state: OrgState, version: str, kind: str, locator: str
    ) -> Response:
        cursor_id, _, start = locator.rpartition("-")
        if cursor_id not in state.org.cursors:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return json_response(
            self._page(state, version, kind, cursor_id, int(start), self._batch_size(request))
        )

    # -- composite collections -----------------------------------------------------------
    async def _collection(self, request: Request, state: OrgState, *, creating: bool) -> Response:
        body = await self._body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body needs a 'records' list")
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = body.get("allOrNone", False) in (True, "true", "True")
        org = state.org
        method = "POST" if creating else "PATCH"

        def check(record: Any) -> tuple[str, list[RecordError]]:
            if not isinstance(record, dict):
                return "", [RecordError("JSON_PARSER_ERROR", "Each record must be a JSON object")]
            obj = (record.get("attributes") or {}).get("type")
            if not isinstance(obj, str) or obj.lower() not in {o.lower() for o in OBJECTS}:
                return str(obj or ""), [RecordError("INVALID_TYPE", "Must send a concrete entity type.")]
            if creating and record.get("Id"):
                return obj, [RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",))]
            if not creating and not record.get("Id"):
                return obj, [RecordError("MISSING_ARGUMENT", "Id not specified in an update call")]
            if lock := self._lock(state, request):
                return obj, [lock]
            table = org.table(obj)
            try:
                if creating:
                    org._prepare(table, record, creating=True, system=False)
                else:
                    rtable, row = org.find(obj, record["Id"])
                    if rtable.obj.name == "Lead" and rtable.raw(row, "IsConverted"):
                        return obj, [
                            RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
                        ]
                    org._prepare(table, record, creating=False, system=False)
            except RecordRejected as exc:
                return obj, list(exc.errors)
            except ApiError as exc:
                code = (
                    "ENTITY_IS_DELETED"
                    if exc.error_code == "ENTITY_IS_DELETED"
                    else ("INVALID_FIELD" if exc.error_code == "INVALID_FIELD" else "INVALID_ID_FIELD")
                )
                message = exc.message if code != "INVALID_ID_FIELD" else "invalid cross reference id"
                return obj, [RecordError(code, message, ("Id",) if code == "INVALID_ID_FIELD" else ())]
            return obj, []

        checks = [check(record) for record in records]
        results: list[dict[str, Any]] = []
        if all_or_none and any(errors for _, errors in checks):
            rolled = RecordError(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header",
            )
            for record, (obj, errors) in zip(records, checks, strict=True):
                rid = record.get("Id") if isinstance(record, dict) and not creating else None
                org.log_write(
                    method=method,
                    obj=obj,
                    record_id=rid,
                    fields=record if isinstance(record, dict) else {},
                    api="composite",
                    success=False,
                )
                results.append(
                    {"id": rid, "success": False, "errors": [e.as_json() for e in (errors or [rolled])]}
                )
            return json_response(results)
        for record, (obj, errors) in zip(records, checks, strict=True):
            rid = record.get("Id") if isinstance(record, dict) and not creating else None
            if not errors:
                try:
                    if creating:
                        table, row = org.create(obj, record)
                    else:
                        table, row = org.update(obj, record["Id"], record)
                    rid = table.id_of(row)
                except RecordRejected as exc:
                    errors = list(exc.errors)
            if creating and errors:
                rid = None
            success = not errors
            org.log_write(
                method=method,
                obj=obj,
                record_id=rid,
                fields=record if isinstance(record, dict) else {},
                api="composite",
                success=success,
            )
            results.append({"id": rid, "success": success, "errors": [e.as_json() for e in errors]})
        return json_response(results)

    async def collection_create(self, request: Request, state: OrgState, version: str) -> Response:
        return await self._collection(request, state, creating=True)

    async def collection_update(self, request: Request, state: OrgState, version: str) -> Response:
        return await self._collection(request, state, creating=False)

    async def collection_delete(self, request: Request, state: OrgState, version: str) -> Response:
        given = [i for i in request.query_params.get("ids", "").split(",") if i]
        if len(given) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        org = state.org
        results = []
        for rid in given:
            parsed = ids.parse(rid)
            obj = ids.OBJECT_BY_PREFIX.get(parsed[0]) if parsed else None
            try:
                if obj is None:
                    raise ApiError(404, "MALFORMED_ID", f"malformed id {rid}")
                table, row = org.delete(obj, rid)
                org.log_write(
                    method="DELETE",
                    obj=obj,
                    record_id=table.id_of(row),
                    fields={},
                    api="composite",
                    success=True,
                )
                results.append({"id": table.id_of(row), "success": True, "errors": []})
            except ApiError as exc:
                results.append(
                    {
                        "id": None,
                        "success": False,
                        "errors": [{"statusCode": exc.error_code, "message": exc.message, "fields": []}],
                    }
                )
        return json_response(results)

    # -- Bulk API 2.0 query jobs ---------------------------------------------------------
    def _job_info(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    async def bulk_create(self, request: Request, state: OrgState, version: str) -> Response:
        body = await self._body(request)
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", "InvalidJob : operation must be query or queryAll")
        text = body.get("query") or ""

        try:
            parsed = soql.parse(text)
        except soql.SoqlError as exc:
            raise ApiError(400, "API_ERROR", f"{exc.error_code}: {exc.message}") from exc
        if parsed.count or parsed.offset:
            raise ApiError(400, "API_ERROR", "Aggregate queries and OFFSET are not supported in Bulk Query")
        org = state.org
        table = org.table(parsed.sobject) if parsed.sobject.lower() in {o.lower() for o in OBJECTS} else None
        if table is not None:
            for ref in parsed.fields:
                target = table
                if len(ref.path) == 2:
                    link = table.obj.relationship(ref.path[0])
                    target = org.tables[link.reference_to[0]] if link else table
                f = target.obj.field(ref.path[-1])
                if f is not None and f.type == "address":
                    raise ApiError(400, "API_ERROR", "Selecting compound data not supported in Bulk Query")
        try:
            cursor, _ = org.run_query(
                text, include_deleted=operation == "queryAll", version=version, csv=True
            )
        except ApiError as exc:
            raise ApiError(400, "API_ERROR", f"{exc.error_code}: {exc.message}") from exc
        job_id = ids.make_id("750", org.tag, len(org.bulk_jobs) + 1)
        stamp = format_datetime(now_ms())
        job = {
            "id": job_id,
            "operation": operation,
            "object": cursor.table.obj.name,
            "createdById": org.user_id,
            "createdDate": stamp,
            "systemModstamp": stamp,
            "state": "UploadComplete",
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version),
            "lineEnding": body.get("lineEnding", "LF"),
            "columnDelimiter": body.get("columnDelimiter", "COMMA"),
            "_cursor": cursor,
        }
        org.bulk_jobs[job_id] = job
        return json_response(self._job_info(job))

    def _job(self, state: OrgState, job: str) -> dict[str, Any]:
        found = state.org.bulk_jobs.get(ids.normalize(job) or job)
        if found is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return found

    async def bulk_status(self, request: Request, state: OrgState, version: str, job: str) -> Response:
        found = self._job(state, job)
        if found["state"] == "UploadComplete":
            # The work is done at creation; the first status read shows it complete, as a fast job would.
            found["state"] = "JobComplete"
        info = self._job_info(found)
        info.update(
            {
                "numberRecordsProcessed": len(found["_cursor"].rows),
                "retries": 0,
                "totalProcessingTime": 1,
                "isPkChunkingSupported": True,
            }
        )
        return json_response(info)

    async def bulk_abort(self, request: Request, state: OrgState, version: str, job: str) -> Response:
        found = self._job(state, job)
        body = await self._body(request)
        if body.get("state") != "Aborted":
            raise ApiError(400, "INVALIDJOB", "InvalidJob : only Aborted can be set on a query job")
        if found["state"] != "JobComplete":
            found["state"] = "Aborted"
        return json_response(self._job_info(found))

    async def bulk_delete(self, request: Request, state: OrgState, version: str, job: str) -> Response:
        found = self._job(state, job)
        state.org.bulk_jobs.pop(found["id"], None)
        return Response(status_code=204)

    async def bulk_results(self, request: Request, state: OrgState, version: str, job: str) -> Response:
        found = self._job(state, job)
        if found["state"] != "JobComplete":
            raise ApiError(
                400, "INVALIDJOB", f"InvalidJob : Job {found['id']} is not complete: {found['state']}"
            )
        cursor = found["_cursor"]
        locator = request.query_params.get("locator") or ""
        try:
            start = int(base64.b64decode(locator).decode()) if locator else 0
        except ValueError as exc:
            raise ApiError(400, "INVALIDLOCATOR", "InvalidLocator : the locator is not valid") from exc
        size = int(request.query_params.get("maxRecords") or BULK_DEFAULT_MAX_RECORDS)
        rows = cursor.rows[start : start + size]
        delimiter = {
            "COMMA": ",",
            "TAB": "\t",
            "PIPE": "|",
            "SEMICOLON": ";",
            "CARET": "^",
            "BACKQUOTE": "`",
        }[found["columnDelimiter"]]
        out = io.StringIO()
        writer = csv.writer(
            out,
            delimiter=delimiter,
            quoting=csv.QUOTE_ALL,
            lineterminator="\r\n" if found["lineEnding"] == "CRLF" else "\n",
        )
        writer.writerow([name for name, _ in cursor.columns])
        values = [[_csv_value(v) for v in fetch(rows)] for _, fetch in cursor.columns]
        writer.writerows(zip(*values, strict=True))
        end = start + len(rows)
        next_locator = base64.b64encode(str(end).encode()).decode() if end < len(cursor.rows) else "null"
        return Response(
            out.getvalue().encode(),
            200,
            {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(rows))},
            media_type="text/csv",
        )


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def build(*, token_ttl: int = 7200, api_limit: int = 100_000) -> Emulator:
    """Returns an emulator with no orgs yet."""
    return Emulator(token_ttl=token_ttl, api_limit=api_limit)


__all__ = ["Emulator", "Fault", "build"]
