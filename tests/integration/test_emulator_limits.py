"""/limits: the keys a current org reports, each with Max and Remaining; what the emulator counts is counted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import CrmOrg, EmulatorServer

API = "/services/data/v60.0"
CURRENT_ORG_KEYS = {
    "ActiveScratchOrgs", "AnalyticsExternalDataSizeMB", "ConcurrentAsyncGetReportInstances",
    "ConcurrentEinsteinDataInsightsStoryCreation", "ConcurrentEinsteinDiscoveryStoryCreation",
    "ConcurrentSyncReportRuns", "DailyAnalyticsDataflowJobExecutions", "DailyAnalyticsUploadedFilesSizeMB",
    "DailyFunctionsApiCallLimit", "DailyApiRequests", "DailyAsyncApexExecutions", "DailyAsyncApexTests",
    "DailyBulkApiBatches", "DailyBulkV2QueryFileStorageMB", "DailyBulkV2QueryJobs",
    "DailyDeliveredPlatformEvents", "DailyDurableGenericStreamingApiEvents", "DailyDurableStreamingApiEvents",
    "DailyEinsteinDataInsightsStoryCreation", "DailyEinsteinDiscoveryPredictAPICalls",
    "DailyEinsteinDiscoveryPredictionsByCDC", "DailyEinsteinDiscoveryStoryCreation",
    "DailyGenericStreamingApiEvents", "DailyScratchOrgs", "DailyStandardVolumePlatformEvents",
    "DailyStreamingApiEvents", "DailyWorkflowEmails", "DataStorageMB", "DurableStreamingApiConcurrentClients",
    "FileStorageMB", "HourlyAsyncReportRuns", "HourlyDashboardRefreshes", "HourlyDashboardResults",
    "HourlyDashboardStatuses", "HourlyLongTermIdMapping", "HourlyManagedContentPublicRequests",
    "HourlyODataCallout", "HourlyPublishedPlatformEvents", "HourlyPublishedStandardVolumePlatformEvents",
    "HourlyShortTermIdMapping", "HourlySyncReportRuns", "HourlyTimeBasedWorkflow", "MassEmail",
    "MonthlyEinsteinDiscoveryStoryCreation", "Package2VersionCreates", "Package2VersionCreatesWithoutValidation",
    "PermissionSets", "PlatformEventTriggersWithParallelProcessing", "PrivateConnectOutboundCalloutHourlyLimitMB",
    "SingleEmail", "StreamingApiConcurrentClients",
}  # fmt: skip


@pytest.fixture
def api(emulator: EmulatorServer, crm_org: CrmOrg) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {crm_org.access_token()}"}
    with httpx.Client(base_url=emulator.base_url + API, headers=headers, timeout=30) as client:
        yield client


def test_limits_reports_every_key_of_a_current_org_with_max_and_remaining(api: httpx.Client):
    body = api.get("/limits").json()
    assert set(body) == CURRENT_ORG_KEYS
    for name, allocation in body.items():
        assert isinstance(allocation["Max"], int), name
        assert isinstance(allocation["Remaining"], int), name
        assert 0 <= allocation["Remaining"] <= allocation["Max"], name
    assert body["PermissionSets"]["CreateCustom"].keys() == {"Max", "Remaining"}


def test_limits_counts_daily_api_requests(api: httpx.Client, crm_org: CrmOrg):
    crm_org.set_budget(used=0, limit=1_000)
    first = api.get("/limits").json()["DailyApiRequests"]
    api.get("/sobjects")
    api.get("/query", params={"q": "SELECT Id FROM Lead LIMIT 1"})
    second = api.get("/limits").json()["DailyApiRequests"]
    assert first == {"Max": 1_000, "Remaining": 999}  # the /limits call itself counts
    assert second == {"Max": 1_000, "Remaining": 996}


def test_limits_counts_bulk_v2_query_jobs_even_once_deleted(api: httpx.Client):
    before = api.get("/limits").json()["DailyBulkV2QueryJobs"]
    jobs = [
        api.post("/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"}).json()["id"]
        for _ in range(3)
    ]
    assert len(set(jobs)) == 3
    api.delete(f"/jobs/query/{jobs[0]}")
    after = api.get("/limits").json()["DailyBulkV2QueryJobs"]
    assert after == {"Max": before["Max"], "Remaining": before["Remaining"] - 3}


def test_limits_bulk_v2_query_jobs_do_not_count_as_bulk_batches(api: httpx.Client):
    before = api.get("/limits").json()["DailyBulkApiBatches"]
    api.post("/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Lead"})
    assert api.get("/limits").json()["DailyBulkApiBatches"] == before
