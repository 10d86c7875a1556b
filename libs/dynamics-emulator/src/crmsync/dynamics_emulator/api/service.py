"""The Web API over HTTP: `/api/data/v9.x/...` signed in with a bearer token, faults and the
service protection window applied, each request handed to the dispatcher (or to `$batch`)."""

from __future__ import annotations

import functools
import re
import time
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.dynamics_emulator.api import batch
from crmsync.dynamics_emulator.api.auth import challenge
from crmsync.dynamics_emulator.api.webapi import dispatch
from crmsync.dynamics_emulator.errors import DataverseError, invalid
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.state import Emulator


def _signed_in(emulator: Emulator, request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and emulator.valid_token(token.strip())


def _response(reply: Reply, extra: dict[str, str]) -> Response:
    headers = {**reply.headers, **extra}
    media = headers.pop("Content-Type", None)
    return Response(reply.body, reply.status, headers=headers, media_type=media)


async def web_api(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    now = time.monotonic()
    request_id = str(uuid.uuid4())
    common = {"REQ_ID": request_id, "x-ms-service-request-id": request_id, "OData-Version": "4.0"}
    if not _signed_in(emulator, request):
        return Response(b"", 401, headers={**common, **challenge(request, emulator.settings.tenant)})
    refusal = emulator.faults.check(now)
    common.update(emulator.faults.headers(now))
    if refusal is not None:
        return _response(Reply.json(refusal.status, refusal.body(), refusal.headers), common)
    version = request.path_params["version"]
    if not VERSIONS.match(version):
        error = invalid(f"Resource not found for the segment '{version}'.", status=404)
        return _response(Reply.json(error.status, error.body()), common)
    root = f"{request.url.scheme}://{request.url.netloc}/api/data/{version}"
    call = Call(
        request.method,
        request.path_params.get("path", ""),
        dict(request.query_params),
        {k.lower(): v for k, v in request.headers.items()},
        await request.body(),
        root,
    )
    answer = functools.partial(dispatch, faults=emulator.faults)
    if call.path == "$batch":
        try:
            reply = batch.handle(emulator.env, call, answer)
        except DataverseError as error:
            reply = Reply.json(error.status, error.body(), error.headers)
    else:
        reply = answer(emulator.env, call)
    return _response(reply, common)


VERSIONS = re.compile(r"^v9\.[0-2]$")
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
routes = [
    Route("/api/data/{version:str}/{path:path}", web_api, methods=METHODS),
    Route("/api/data/{version:str}", web_api, methods=METHODS),
]
