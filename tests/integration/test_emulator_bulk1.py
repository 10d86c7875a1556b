"""Bulk API 1.0 query jobs, witnessed by the third-party client salesforce-bulk, unchanged, over HTTPS;
the JSON and XML forms and the refusals through plain HTTP calls."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
import requests
from salesforce_bulk import SalesforceBulk
from salesforce_bulk.salesforce_bulk import BulkApiError, BulkBatchFailed

from tests.support import emulator_tls
from tests.support.emulator import CrmOrg
from tests.support.emulator_tls import TlsEmulatorServer

tls_emulator = emulator_tls.tls_emulator
emulator = emulator_tls.tls_as_emulator  # crm_org on HTTPS

NS = "{http://www.force.com/2009/06/asyncapi/dataload}"
VERSION = "60.0"


@pytest.fixture(autouse=True)
def trust_the_emulator(tls_emulator: TlsEmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_emulator.cert))


@pytest.fixture
def bulk(crm_org: CrmOrg, tls_emulator: TlsEmulatorServer) -> SalesforceBulk:
    return SalesforceBulk(sessionId=crm_org.access_token(), host=tls_emulator.base_url, API_version=VERSION)


@pytest.fixture
def raw(crm_org: CrmOrg, tls_emulator: TlsEmulatorServer) -> Iterator[httpx.Client]:
    assert tls_emulator.cert is not None
    with httpx.Client(
        base_url=f"{tls_emulator.base_url}/services/async/{VERSION}",
        headers={"X-SFDC-Session": crm_org.access_token()},
        verify=emulator_tls.trusting(tls_emulator.cert),
        timeout=30,
    ) as client:
        yield client


def _csv_rows(bulk: SalesforceBulk, job: str, batch: str) -> list[dict[str, str]]:
    return [
        row
        for result in bulk.get_all_results_for_query_batch(batch, job)
        for row in csv.DictReader(io.TextIOWrapper(result, encoding="utf-8"))
    ]


def test_bulk1_salesforce_bulk_runs_a_csv_query_job(bulk: SalesforceBulk, crm_org: CrmOrg):
    job = bulk.create_query_job("Lead", contentType="CSV")
    batch = bulk.query(job, "SELECT Id, Email, CreatedDate, Owner.Email FROM Lead")
    bulk.wait_for_batch(job, batch, sleep_interval=0.05)
    bulk.close_job(job)
    rows = _csv_rows(bulk, job, batch)
    assert len(rows) == 50
    assert list(rows[0]) == ["Id", "Email", "CreatedDate", "Owner.Email"]
    assert rows[0]["CreatedDate"].endswith(".000Z")
    status = bulk.job_status(job)
    assert (status["state"], status["numberBatchesCompleted"], status["numberRecordsProcessed"]) == (
        "Closed",
        "1",
        "50",
    )


def test_bulk1_salesforce_bulk_runs_a_json_query_all_job(bulk: SalesforceBulk, crm_org: CrmOrg):
    gone = crm_org.records("Contact", limit=1)[0]["Id"]
    crm_org.delete("Contact", gone)
    job = bulk.create_queryall_job("Contact", contentType="JSON")
    batch = bulk.query(job, "SELECT Id, LastName, IsDeleted, CreatedDate, Account.Name FROM Contact")
    bulk.wait_for_batch(job, batch, sleep_interval=0.05)
    records = [
        record
        for result in bulk.get_all_results_for_query_batch(batch, job)
        for record in json.load(io.TextIOWrapper(result, encoding="utf-8"))
    ]
    assert len(records) == 50
    assert {r["Id"] for r in records if r["IsDeleted"]} == {gone}
    assert isinstance(records[0]["CreatedDate"], int)  # Bulk JSON gives date-times in epoch ms
    assert records[0]["attributes"]["type"] == "Contact"


def test_bulk1_salesforce_bulk_pk_chunking_splits_the_query_by_id_ranges(bulk: SalesforceBulk):
    job = bulk.create_query_job("Lead", contentType="CSV", pk_chunking=20)
    bulk.query(job, "SELECT Id FROM Lead")
    batches = bulk.get_batch_list(job)
    assert [b["state"] for b in batches] == ["NotProcessed", "Completed", "Completed", "Completed"]
    assert [b["numberRecordsProcessed"] for b in batches] == ["0", "20", "20", "10"]
    rows = [row for b in batches[1:] for row in _csv_rows(bulk, job, b["id"])]
    assert len({row["Id"] for row in rows}) == 50
    request = bulk.get_query_batch_request(batches[2]["id"], job)
    assert request.startswith("SELECT Id FROM Lead WHERE Id >= '00Q")


def test_bulk1_pk_chunking_starts_at_start_row(raw: httpx.Client, crm_org: CrmOrg):
    leads = [r["Id"] for r in crm_org.records("Lead")]
    job = _create(raw, "Lead", headers={"Sforce-Enable-PKChunking": f"chunkSize=30; startRow={leads[10]}"})
    raw.post(f"/job/{job}/batch", content=b"SELECT Id FROM Lead", headers={"Content-Type": "text/csv"})
    listed = ET.fromstring(raw.get(f"/job/{job}/batch").content)
    processed = [b.findtext(f"{NS}numberRecordsProcessed") for b in listed]
    assert processed == ["0", "30", "10"]


def test_bulk1_salesforce_bulk_sees_a_failed_query_batch(bulk: SalesforceBulk):
    job = bulk.create_query_job("Lead", contentType="CSV")
    batch = bulk.query(job, "SELECT Nope FROM Lead")
    with pytest.raises(BulkBatchFailed) as failed:
        bulk.wait_for_batch(job, batch, sleep_interval=0.05)
    assert "INVALID_FIELD" in failed.value.state_message


def test_bulk1_csv_result_of_no_records_says_so(bulk: SalesforceBulk):
    job = bulk.create_query_job("Lead", contentType="CSV")
    batch = bulk.query(job, "SELECT Id FROM Lead WHERE Email = 'nobody@nowhere.example'")
    bulk.wait_for_batch(job, batch, sleep_interval=0.05)
    (result,) = bulk.get_all_results_for_query_batch(batch, job)
    assert result.read() == b"Records not found for this query"


def _create(raw: httpx.Client, obj: str, *, content_type: str = "CSV", headers: dict | None = None) -> str:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
        f"<operation>query</operation><object>{obj}</object><contentType>{content_type}</contentType></jobInfo>"
    )
    response = raw.post(
        "/job", content=body.encode(), headers={"Content-Type": "application/xml", **(headers or {})}
    )
    assert response.status_code == 201, response.text
    return ET.fromstring(response.content).findtext(f"{NS}id")  # type: ignore[return-value]


def test_bulk1_json_job_answers_json_throughout(raw: httpx.Client):
    created = raw.post(
        "/job",
        json={"operation": "query", "object": "Account", "contentType": "JSON"},
        headers={"Content-Type": "application/json"},
    )
    assert created.status_code == 201
    assert created.headers["Content-Type"] == "application/json"
    job = created.json()
    assert (job["state"], job["contentType"], job["object"]) == ("Open", "JSON", "Account")
    batch = raw.post(
        f"/job/{job['id']}/batch",
        content=b"SELECT Id, Name FROM Account",
        headers={"Content-Type": "application/json"},
    ).json()
    assert batch["state"] == "Queued"
    assert raw.get(f"/job/{job['id']}/batch/{batch['id']}").json()["state"] == "Completed"
    (result,) = raw.get(f"/job/{job['id']}/batch/{batch['id']}/result").json()
    records = raw.get(f"/job/{job['id']}/batch/{batch['id']}/result/{result}").json()
    assert records[0]["attributes"]["type"] == "Account"
    closed = raw.post(
        f"/job/{job['id']}", json={"state": "Closed"}, headers={"Content-Type": "application/json"}
    )
    assert closed.json()["state"] == "Closed"


def test_bulk1_xml_job_gives_xml_query_results(raw: httpx.Client):
    job = _create(raw, "Contact", content_type="XML")
    batch = raw.post(
        f"/job/{job}/batch",
        content=b"SELECT Id, Title, Account.Name FROM Contact LIMIT 3",
        headers={"Content-Type": "application/xml"},
    )
    batch_id = ET.fromstring(batch.content).findtext(f"{NS}id")
    results = ET.fromstring(raw.get(f"/job/{job}/batch/{batch_id}/result").content)
    result_id = results.findtext(f"{NS}result")
    data = ET.fromstring(raw.get(f"/job/{job}/batch/{batch_id}/result/{result_id}").content)
    records = data.findall(f"{NS}records")
    assert len(records) == 3
    assert records[0].findtext(f"{NS}type") == "Contact"
    assert records[0].find(f"{NS}Account") is not None


def test_bulk1_refuses_a_bad_session_an_unknown_job_and_a_batch_on_a_closed_job(
    raw: httpx.Client, bulk: SalesforceBulk
):
    refused = raw.get("/job/750001000000999AAA", headers={"X-SFDC-Session": "nope"})
    assert refused.status_code == 400
    assert ET.fromstring(refused.content).findtext(f"{NS}exceptionCode") == "InvalidSessionId"
    unknown = raw.get("/job/750001000000999AAA")
    assert ET.fromstring(unknown.content).findtext(f"{NS}exceptionCode") == "InvalidJob"
    job = bulk.create_query_job("Lead", contentType="CSV")
    bulk.close_job(job)
    with pytest.raises(BulkApiError) as closed:
        bulk.query(job, "SELECT Id FROM Lead")
    assert "InvalidJobState" in str(closed.value)


def test_bulk1_batches_count_against_daily_bulk_api_batches(
    bulk: SalesforceBulk, crm_org: CrmOrg, tls_emulator: TlsEmulatorServer
):
    def remaining() -> int:
        response = requests.get(
            f"{tls_emulator.base_url}/services/data/v{VERSION}/limits",
            headers={"Authorization": f"Bearer {crm_org.access_token()}"},
            timeout=10,
        )
        return response.json()["DailyBulkApiBatches"]["Remaining"]

    before = remaining()
    job = bulk.create_query_job("Lead", contentType="CSV", pk_chunking=25)
    bulk.query(job, "SELECT Id FROM Lead")
    assert remaining() == before - 3  # the original batch and its two chunks
