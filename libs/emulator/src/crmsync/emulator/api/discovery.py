"""What an org offers: the API versions and the resources of one version."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crmsync.emulator.state import OrgState
from crmsync.emulator.web import data_route, guarded, json_response

VERSIONS = [f"{v}.0" for v in range(52, 63)]


async def versions(request: Request) -> Response:
    return json_response(
        [{"label": f"Release {v}", "url": f"/services/data/v{v}", "version": v} for v in VERSIONS]
    )


async def resources(request: Request, state: OrgState, version: str) -> Response:
    base = f"/services/data/v{version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "jobs")
    return json_response({n: f"{base}/{n}" for n in names})


routes = [
    Route("/services/data", guarded(versions), methods=["GET"]),
    data_route("", resources, "GET"),
]
