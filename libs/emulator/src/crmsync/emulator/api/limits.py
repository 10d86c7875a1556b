"""/limits: every allocation a current org reports, with Max and Remaining.

The API budget and the Bulk jobs and batches are counted; the others are a
Developer Edition org's allocations, untouched by anything the emulator does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crmsync.emulator.state import OrgState
from crmsync.emulator.store import Org
from crmsync.emulator.web import data_route, json_response

DAILY_BULK_V2_QUERY_JOBS = 10_000
DAILY_BULK_API_BATCHES = 15_000

# The allocations a Salesforce org reports that nothing here uses (a pure data table).
STATIC_LIMITS: dict[str, int] = {
    "ActiveScratchOrgs": 3,
    "AnalyticsExternalDataSizeMB": 40_960,
    "ConcurrentAsyncGetReportInstances": 200,
    "ConcurrentEinsteinDataInsightsStoryCreation": 5,
    "ConcurrentEinsteinDiscoveryStoryCreation": 2,
    "ConcurrentSyncReportRuns": 20,
    "DailyAnalyticsDataflowJobExecutions": 60,
    "DailyAnalyticsUploadedFilesSizeMB": 51_200,
    "DailyFunctionsApiCallLimit": 235_000,
    "DailyAsyncApexExecutions": 250_000,
    "DailyAsyncApexTests": 500,
    "DailyBulkV2QueryFileStorageMB": 976_562,
    "DailyDeliveredPlatformEvents": 10_000,
    "DailyDurableGenericStreamingApiEvents": 10_000,
    "DailyDurableStreamingApiEvents": 10_000,
    "DailyEinsteinDataInsightsStoryCreation": 1_000,
    "DailyEinsteinDiscoveryPredictAPICalls": 50_000,
    "DailyEinsteinDiscoveryPredictionsByCDC": 5_000_000,
    "DailyEinsteinDiscoveryStoryCreation": 100,
    "DailyGenericStreamingApiEvents": 10_000,
    "DailyScratchOrgs": 6,
    "DailyStandardVolumePlatformEvents": 10_000,
    "DailyStreamingApiEvents": 10_000,
    "DailyWorkflowEmails": 100_000,
    "DataStorageMB": 1_024,
    "DurableStreamingApiConcurrentClients": 20,
    "FileStorageMB": 1_024,
    "HourlyAsyncReportRuns": 1_200,
    "HourlyDashboardRefreshes": 200,
    "HourlyDashboardResults": 5_000,
    "HourlyDashboardStatuses": 999_999_999,
    "HourlyLongTermIdMapping": 100_000,
    "HourlyManagedContentPublicRequests": 50_000,
    "HourlyODataCallout": 20_000,
    "HourlyPublishedPlatformEvents": 50_000,
    "HourlyPublishedStandardVolumePlatformEvents": 1_000,
    "HourlyShortTermIdMapping": 100_000,
    "HourlySyncReportRuns": 500,
    "HourlyTimeBasedWorkflow": 1_000,
    "MassEmail": 5_000,
    "MonthlyEinsteinDiscoveryStoryCreation": 500,
    "Package2VersionCreates": 6,
    "Package2VersionCreatesWithoutValidation": 500,
    "PlatformEventTriggersWithParallelProcessing": 5,
    "PrivateConnectOutboundCalloutHourlyLimitMB": 0,
    "SingleEmail": 5_000,
    "StreamingApiConcurrentClients": 20,
}


def _allocation(limit: int, used: int) -> dict[str, int]:
    return {"Max": limit, "Remaining": max(0, limit - used)}


def org_limits(org: Org) -> dict[str, Any]:
    """Returns the /limits body of an org, its keys in Salesforce's (alphabetical) order."""
    body: dict[str, Any] = {name: {"Max": limit, "Remaining": limit} for name, limit in STATIC_LIMITS.items()}
    body["DailyApiRequests"] = _allocation(org.api_limit, org.api_used)
    body["DailyBulkApiBatches"] = _allocation(DAILY_BULK_API_BATCHES, org.bulk_batches)
    body["DailyBulkV2QueryJobs"] = _allocation(DAILY_BULK_V2_QUERY_JOBS, org.bulk_query_jobs)
    body["PermissionSets"] = {
        "Max": 1_500,
        "Remaining": 1_500,
        "CreateCustom": {"Max": 1_000, "Remaining": 1_000},
    }
    return dict(sorted(body.items(), key=lambda item: item[0].lower()))


async def limits(request: Request, state: OrgState, version: str) -> Response:
    return json_response(org_limits(state.org))


routes = [data_route("/limits", limits, "GET")]
