"""/limits: the org's daily allocations and what remains of them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.state import OrgState
from crmsync.emulator.web import data_route, json_response


async def limits(request: Request, state: OrgState, version: str) -> Response:
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


routes = [data_route("/limits", limits, "GET")]
