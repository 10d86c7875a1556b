"""API names in any case, as Salesforce reads them; answers spell them as the describe does."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest

from tests.support.emulator import CrmOrg, EmulatorServer

API = "/services/data/v60.0"


@pytest.fixture
def api(emulator: EmulatorServer, crm_org: CrmOrg) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {crm_org.access_token()}"}
    with httpx.Client(base_url=emulator.base_url + API, headers=headers, timeout=30) as client:
        yield client


def _lead_id(api: httpx.Client) -> str:
    return api.get("/query", params={"q": "SELECT Id FROM Lead LIMIT 1"}).json()["records"][0]["Id"]


def test_case_insensitive_object_names_in_paths(api: httpx.Client):
    assert api.get("/sobjects/lead/describe").json()["name"] == "Lead"
    assert api.get("/sobjects/CONTACT").json()["objectDescribe"]["name"] == "Contact"
    lead_id = _lead_id(api)
    record = api.get(f"/sobjects/lEaD/{lead_id}").json()
    assert record["attributes"]["type"] == "Lead"
    assert record["attributes"]["url"] == f"{API}/sobjects/Lead/{lead_id}"


def test_case_insensitive_field_names_in_a_create_body(api: httpx.Client, crm_org: CrmOrg):
    response = api.post("/sobjects/contact", json={"lastname": "Okafor", "EMAIL": "n.okafor@example.com"})
    assert response.status_code == 201, response.text
    record = crm_org.get("Contact", response.json()["id"])
    assert (record["LastName"], record["Email"]) == ("Okafor", "n.okafor@example.com")


def test_case_insensitive_field_names_in_an_update_body_with_its_id(api: httpx.Client, crm_org: CrmOrg):
    lead_id = _lead_id(api)
    response = api.patch(f"/sobjects/Lead/{lead_id}", json={"id": lead_id, "title": "Head of Data"})
    assert response.status_code == 204, response.text
    assert crm_org.get("Lead", lead_id)["Title"] == "Head of Data"


def test_case_insensitive_field_names_in_a_record_read(api: httpx.Client):
    lead_id = _lead_id(api)
    record = api.get(f"/sobjects/Lead/{lead_id}", params={"fields": "email,LASTNAME"}).json()
    assert list(record) == ["attributes", "Email", "LastName"]


def test_case_insensitive_soql_answers_in_the_describe_spelling(api: httpx.Client):
    query = (
        "select id, lastname, account.name from contact "
        "where email != null and account.name != null order by lastname limit 3"
    )
    records = api.get("/query", params={"q": query}).json()["records"]
    assert len(records) == 3
    for record in records:
        assert list(record) == ["attributes", "Id", "LastName", "Account"]
        assert record["attributes"]["type"] == "Contact"
        assert list(record["Account"]) == ["attributes", "Name"]
        assert record["Account"]["attributes"]["type"] == "Account"
    assert [r["LastName"].lower() for r in records] == sorted(r["LastName"].lower() for r in records)


def test_case_insensitive_composite_update_with_lowercase_id(api: httpx.Client, crm_org: CrmOrg):
    lead_ids = [
        r["Id"] for r in api.get("/query", params={"q": "SELECT Id FROM Lead LIMIT 2"}).json()["records"]
    ]
    body = {
        "allOrNone": True,
        "records": [{"attributes": {"type": "lead"}, "id": rid, "title": "CMO"} for rid in lead_ids],
    }
    results = api.patch("/composite/sobjects", json=body).json()
    assert results == [{"id": rid, "success": True, "errors": []} for rid in lead_ids]
    assert [crm_org.get("Lead", rid)["Title"] for rid in lead_ids] == ["CMO", "CMO"]
    assert {w["object"] for w in crm_org.writes()} == {"Lead"}


def test_case_insensitive_composite_create_refuses_a_lowercase_id(api: httpx.Client):
    lead_id = _lead_id(api)
    body = {"records": [{"attributes": {"type": "Lead"}, "id": lead_id, "LastName": "X", "Company": "Y"}]}
    (result,) = api.post("/composite/sobjects", json=body).json()
    assert result["success"] is False
    assert result["errors"][0]["statusCode"] == "INVALID_FIELD"


def test_case_insensitive_bulk_query_columns_in_the_describe_spelling(api: httpx.Client):
    job = api.post(
        "/jobs/query", json={"operation": "query", "query": "select id, email, owner.email from lead"}
    ).json()
    assert job["object"] == "Lead"
    api.get(f"/jobs/query/{job['id']}")
    text = api.get(f"/jobs/query/{job['id']}/results").text
    assert next(csv.reader(io.StringIO(text))) == ["Id", "Email", "Owner.Email"]
