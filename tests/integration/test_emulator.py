"""The Salesforce emulator over HTTP: each path, each Salesforce limit and each fault."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.emulator import CrmOrg, EmulatorServer

V = "/services/data/v60.0"


def client_for(org: CrmOrg) -> httpx.Client:
    return httpx.Client(
        base_url=org.instance_url, headers={"Authorization": f"Bearer {org.access_token()}"}, timeout=30
    )


@pytest.fixture
def api(crm_org: CrmOrg) -> Iterator[httpx.Client]:
    """An httpx client for the org's REST API, authenticated with a client_credentials token."""
    with client_for(crm_org) as client:
        yield client


def query(api: httpx.Client, text: str, *, all_rows: bool = False, **kw) -> httpx.Response:
    return api.get(f"{V}/{'queryAll' if all_rows else 'query'}", params={"q": text}, **kw)


def records(api: httpx.Client, text: str, **kw) -> list[dict]:
    response = query(api, text, **kw)
    assert response.status_code == 200, response.text
    return response.json()["records"]


def error_code(response: httpx.Response) -> str:
    return response.json()[0]["errorCode"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- OAuth2 -------------------------------------------------------------------------------


def test_client_credentials_token_has_salesforce_shape(crm_org: CrmOrg):
    data = {
        "grant_type": "client_credentials",
        "client_id": crm_org.client_id,
        "client_secret": crm_org.client_secret,
    }
    body = httpx.post(crm_org.token_url, data=data).json()
    assert set(body) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert body["instance_url"] == crm_org.instance_url
    assert body["token_type"] == "Bearer"
    assert body["id"].endswith(f"/id/{crm_org.org_id}/{crm_org.user_id}")


def test_client_credentials_in_basic_auth_header(crm_org: CrmOrg):
    response = httpx.post(
        crm_org.token_url,
        data={"grant_type": "client_credentials"},
        auth=(crm_org.client_id, crm_org.client_secret),
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            "invalid_client_id",
        ),
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, "invalid_client"),
        ({"grant_type": "authorization_code", "code": "abc"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token", "refresh_token": "stale", "client_secret": None}, "invalid_grant"),
    ],
)
def test_token_endpoint_refuses_bad_grants_with_oauth_errors(crm_org: CrmOrg, form: dict, error: str):
    form = {"client_id": crm_org.client_id, **form}
    if "client_secret" in form and form["client_secret"] is None:
        form["client_secret"] = crm_org.client_secret
    response = httpx.post(crm_org.token_url, data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_refresh_token_grant_issues_a_new_access_token(crm_org: CrmOrg):
    data = {
        "grant_type": "refresh_token",
        "client_id": crm_org.client_id,
        "client_secret": crm_org.client_secret,
        "refresh_token": crm_org.refresh_token,
    }
    body = httpx.post(crm_org.token_url, data=data).json()
    response = httpx.get(
        f"{crm_org.instance_url}{V}/limits", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert response.status_code == 200


def test_jwt_bearer_grant_signed_with_the_client_secret(crm_org: CrmOrg):
    expires = datetime.now(UTC) + timedelta(minutes=3)
    claims = {
        "iss": crm_org.client_id,
        "sub": "integration@example.com",
        "aud": crm_org.login_url,
        "exp": expires,
    }
    assertion = jwt.encode(claims, crm_org.client_secret, algorithm="HS256")
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    assert httpx.post(crm_org.token_url, data=data).status_code == 200
    forged = jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256")
    refused = httpx.post(crm_org.token_url, data={**data, "assertion": forged})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_expired_token_gets_401_invalid_session_id(make_crm_org):
    org = make_crm_org(token_ttl=0)
    with client_for(org) as client:
        response = client.get(f"{V}/limits")
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_missing_token_gets_401_invalid_session_id(crm_org: CrmOrg):
    response = httpx.get(f"{crm_org.instance_url}{V}/sobjects")
    assert response.status_code == 401
    assert error_code(response) == "INVALID_SESSION_ID"


def test_token_identifies_the_org_so_orgs_are_isolated(make_crm_org):
    first, second = make_crm_org(), make_crm_org()
    lead_of_second = second.create("Lead", {"LastName": "Only", "Company": "Second"})
    with client_for(first) as client:
        assert client.get(f"{V}/sobjects/Lead/{lead_of_second}").status_code == 404
        assert records(client, "SELECT Id FROM Lead WHERE LastName = 'Only'") == []


# -- discovery ----------------------------------------------------------------------------


def test_versions_list_needs_no_token(emulator: EmulatorServer):
    versions = httpx.get(f"{emulator.base_url}/services/data/").json()
    assert {"label", "url", "version"} <= set(versions[-1])
    assert "60.0" in [v["version"] for v in versions]


def test_global_describe_lists_the_five_objects_with_key_prefixes(api: httpx.Client):
    body = api.get(f"{V}/sobjects/").json()
    prefixes = {o["name"]: o["keyPrefix"] for o in body["sobjects"]}
    assert prefixes == {
        "Lead": "00Q",
        "Contact": "003",
        "Account": "001",
        "User": "005",
        "Opportunity": "006",
    }
    assert body["maxBatchSize"] == 200


@pytest.mark.parametrize("obj", ["Lead", "Contact", "Account", "User", "Opportunity"])
def test_describe_fields_have_salesforce_attributes(api: httpx.Client, obj: str):
    body = api.get(f"{V}/sobjects/{obj}/describe").json()
    assert body["name"] == obj
    for f in body["fields"]:
        assert {
            "name",
            "type",
            "updateable",
            "createable",
            "nillable",
            "length",
            "referenceTo",
            "relationshipName",
        } <= set(f)
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["Id"]["type"] == "id"
    assert fields["SystemModstamp"]["updateable"] is False
    assert fields["SystemModstamp"]["createable"] is False


def test_describe_lead_matches_the_default_mapping_sources(api: httpx.Client):
    from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS

    lead = {f["name"]: f for f in api.get(f"{V}/sobjects/Lead/describe").json()["fields"]}
    contact = {f["name"]: f for f in api.get(f"{V}/sobjects/Contact/describe").json()["fields"]}
    for row in DEFAULT_SALESFORCE_ROWS:
        if row.lead_source:
            assert lead[row.lead_source]["updateable"], row.lead_source
        if row.contact_source:
            assert contact[row.contact_source]["updateable"], row.contact_source
    assert lead["Address"]["type"] == "address"
    assert lead["Address"]["updateable"] is False
    assert lead["Email"]["type"] == "email"
    assert lead["HasOptedOutOfEmail"]["type"] == "boolean"
    assert lead["OwnerId"]["relationshipName"] == "Owner"
    assert contact["AccountId"]["referenceTo"] == ["Account"]
    assert contact["MailingAddress"]["type"] == "address"
    assert lead["Name"]["updateable"] is False


def test_unknown_object_describe_is_404(api: httpx.Client):
    response = api.get(f"{V}/sobjects/Widget__c/describe")
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


# -- SOQL -----------------------------------------------------------------------------------


def test_query_pages_2000_records_with_next_records_url(make_crm_org):
    org = make_crm_org(leads=2500, contacts=0)
    with client_for(org) as client:
        first = query(client, "SELECT Id FROM Lead").json()
        assert (first["totalSize"], first["done"], len(first["records"])) == (2500, False, 2000)
        second = client.get(first["nextRecordsUrl"]).json()
        assert (second["done"], len(second["records"])) == (True, 500)
        assert "nextRecordsUrl" not in second
    ids = {r["Id"] for r in first["records"] + second["records"]}
    assert len(ids) == 2500


@pytest.mark.parametrize(("asked", "served"), [(200, 200), (500, 500), (50, 200), (5000, 2000)])
def test_batch_size_option_is_held_between_200_and_2000(make_crm_org, asked: int, served: int):
    org = make_crm_org(leads=2500, contacts=0)
    with client_for(org) as client:
        page = query(
            client, "SELECT Id FROM Lead", headers={"Sforce-Query-Options": f"batchSize={asked}"}
        ).json()
    assert len(page["records"]) == served


def test_query_selects_parent_relationship_fields(api: httpx.Client, crm_org: CrmOrg):
    account = crm_org.create("Account", {"Name": "Analytical Engines"})
    contact = crm_org.create("Contact", {"LastName": "Lovelace", "AccountId": account})
    (record,) = records(
        api, f"SELECT Id, Account.Name, Owner.Email, Owner.Name FROM Contact WHERE Id = '{contact}'"
    )
    assert record["Account"]["Name"] == "Analytical Engines"
    assert record["Account"]["attributes"]["type"] == "Account"
    assert set(record["Owner"]) == {"attributes", "Email", "Name"}
    assert record["attributes"]["url"].endswith(f"/sobjects/Contact/{contact}")


def test_query_where_operators(api: httpx.Client, crm_org: CrmOrg):
    a = crm_org.create(
        "Lead", {"LastName": "Alpha", "Company": "Q", "Marketing_Score__c": 10, "Email": "a@q.example"}
    )
    b = crm_org.create(
        "Lead", {"LastName": "Beta", "Company": "Q", "Marketing_Score__c": 50, "HasOptedOutOfEmail": True}
    )
    c = crm_org.create(
        "Lead", {"LastName": "Gamma", "Company": "Q", "Marketing_Score__c": 90, "Email": "g@q.example"}
    )

    def ids(where: str) -> set[str]:
        return {r["Id"] for r in records(api, f"SELECT Id FROM Lead WHERE Company = 'Q' AND {where}")}

    assert ids("Marketing_Score__c > 10") == {b, c}
    assert ids("Marketing_Score__c >= 10") == {a, b, c}
    assert ids("Marketing_Score__c < 50") == {a}
    assert ids("Marketing_Score__c <= 50") == {a, b}
    assert ids("LastName != 'Beta'") == {a, c}
    assert ids("LastName = 'beta'") == {b}  # SOQL compares strings case-insensitively
    assert ids("LastName LIKE '%mm%'") == {c}
    assert ids("LastName IN ('Alpha', 'Gamma')") == {a, c}
    assert ids("LastName NOT IN ('Alpha', 'Gamma')") == {b}
    assert ids("Email = null") == {b}
    assert ids("Email != null") == {a, c}
    assert ids("HasOptedOutOfEmail = true") == {b}
    assert ids("(LastName = 'Alpha' OR Marketing_Score__c > 80)") == {a, c}
    assert ids(f"Id IN ('{a[:15]}', '{b}')") == {a, b}


def test_query_filters_on_references_and_parent_fields(api: httpx.Client, crm_org: CrmOrg):
    account = crm_org.create("Account", {"Name": "Difference Engines"})
    contact = crm_org.create("Contact", {"LastName": "Babbage", "AccountId": account})
    assert [r["Id"] for r in records(api, f"SELECT Id FROM Contact WHERE AccountId = '{account}'")] == [
        contact
    ]
    assert [r["Id"] for r in records(api, f"SELECT Id FROM Contact WHERE Account.Id = '{account[:15]}'")] == [
        contact
    ]
    assert [
        r["Id"] for r in records(api, "SELECT Id FROM Contact WHERE Account.Name LIKE 'difference%'")
    ] == [contact]


def test_query_date_time_literals_against_system_modstamp(api: httpx.Client, crm_org: CrmOrg):
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    lead = crm_org.create("Lead", {"LastName": "Timed", "Company": "T"}, system_modstamp=moment)
    assert records(api, "SELECT Id FROM Lead WHERE SystemModstamp = 2026-01-02T03:04:05Z")[0]["Id"] == lead
    assert (
        records(api, "SELECT Id FROM Lead WHERE SystemModstamp = 2026-01-02T03:04:05.000+0000")[0]["Id"]
        == lead
    )
    assert records(api, "SELECT Id FROM Lead WHERE SystemModstamp < 2026-01-02T03:04:06Z")[0]["Id"] == lead
    assert (
        records(api, "SELECT Id FROM Lead WHERE SystemModstamp > 2026-01-02T03:04:05Z AND Company = 'T'")
        == []
    )


def test_query_order_by_several_fields_and_limit(api: httpx.Client, crm_org: CrmOrg):
    stamp = datetime(2026, 2, 1, tzinfo=UTC)
    made = [
        crm_org.create("Lead", {"LastName": n, "Company": "O"}, system_modstamp=stamp)
        for n in ("b", "a", "c")
    ]
    rows = records(
        api, "SELECT Id, LastName FROM Lead WHERE Company = 'O' ORDER BY SystemModstamp ASC, LastName DESC"
    )
    assert [r["LastName"] for r in rows] == ["c", "b", "a"]
    rows = records(api, "SELECT Id FROM Lead WHERE Company = 'O' ORDER BY SystemModstamp, Id LIMIT 2")
    assert [r["Id"] for r in rows] == sorted(made)[:2]


def test_count_query_returns_total_size_only(api: httpx.Client):
    body = query(api, "SELECT COUNT() FROM Contact").json()
    assert body == {"totalSize": 50, "done": True, "records": []}


def test_records_with_the_same_modstamp_and_a_late_commit_are_all_found(api: httpx.Client, crm_org: CrmOrg):
    boundary = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    same = [
        crm_org.create("Lead", {"LastName": f"S{i}", "Company": "B"}, system_modstamp=boundary)
        for i in range(3)
    ]
    late = crm_org.create("Lead", {"LastName": "Late", "Company": "B"})
    crm_org.edit("Lead", late, {"Title": "late commit"}, system_modstamp=boundary - timedelta(seconds=1))
    rows = records(
        api, f"SELECT Id, SystemModstamp FROM Lead WHERE Company = 'B' AND SystemModstamp >= {iso(boundary)}"
    )
    assert {r["Id"] for r in rows} == set(same)
    assert {r["SystemModstamp"] for r in rows} == {"2026-11-20T10:00:00.000+0000"}
    assert crm_org.get("Lead", late)["LastModifiedDate"] == "2026-11-20T09:59:59.000+0000"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id, FROM Lead", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead GROUP BY Id", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE LastName = 'a' AND Company = 'b' OR Title = 'c'", "MALFORMED_QUERY"),
        ("SELECT Nope FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Nope = 1", "INVALID_FIELD"),
        ("SELECT Nope.Name FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Email = 5", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Address = null", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id FROM Lead WHERE LastName = 'unterminated", "MALFORMED_QUERY"),
        ("DELETE FROM Lead", "MALFORMED_QUERY"),
        ("", "MALFORMED_QUERY"),
    ],
)
def test_bad_queries_get_salesforce_errors_never_a_500(api: httpx.Client, text: str, code: str):
    response = query(api, text)
    assert response.status_code == 400
    assert error_code(response) == code


def test_uri_over_16384_bytes_is_refused_with_414(api: httpx.Client):
    ids = ",".join(f"'00Q000000000{i:03d}AAA'" for i in range(800))
    response = query(api, f"SELECT Id FROM Lead WHERE Id IN ({ids})")
    assert response.status_code == 414


def test_query_all_includes_deleted_rows_with_is_deleted_true(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Gone", "Company": "D"})
    crm_org.delete("Lead", lead)
    assert records(api, "SELECT Id FROM Lead WHERE Company = 'D'") == []
    (row,) = records(api, "SELECT Id, IsDeleted FROM Lead WHERE Company = 'D'", all_rows=True)
    assert row == {"attributes": row["attributes"], "Id": lead, "IsDeleted": True}


def test_query_all_no_longer_sees_records_deleted_over_15_days_ago(api: httpx.Client, crm_org: CrmOrg):
    old = crm_org.create("Lead", {"LastName": "LongGone", "Company": "P"})
    recent = crm_org.create("Lead", {"LastName": "JustGone", "Company": "P"})
    crm_org.delete("Lead", old, deleted_at=datetime.now(UTC) - timedelta(days=16))
    crm_org.delete("Lead", recent, deleted_at=datetime.now(UTC) - timedelta(days=14))
    assert [r["Id"] for r in records(api, "SELECT Id FROM Lead WHERE Company = 'P'", all_rows=True)] == [
        recent
    ]


def test_invalid_query_locator_is_refused(api: httpx.Client):
    response = api.get(f"{V}/query/01g000000000000AAA-2000")
    assert response.status_code == 400
    assert error_code(response) == "INVALID_QUERY_LOCATOR"


# -- records --------------------------------------------------------------------------------


def test_record_create_get_update_delete(api: httpx.Client, crm_org: CrmOrg):
    created = api.post(
        f"{V}/sobjects/Lead/", json={"LastName": "Turing", "Company": "Bletchley", "Email": "alan@b.example"}
    )
    assert created.status_code == 201
    assert created.json()["success"] is True
    lead = created.json()["id"]
    assert lead.startswith("00Q") and len(lead) == 18
    record = api.get(f"{V}/sobjects/Lead/{lead}").json()
    assert record["Name"] == "Turing"
    assert record["OwnerId"] == crm_org.user_id
    assert record["IsConverted"] is False
    partial = api.get(f"{V}/sobjects/Lead/{lead}", params={"fields": "Email,Company"}).json()
    assert set(partial) == {"attributes", "Email", "Company"}
    updated = api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "Codebreaker"})
    assert updated.status_code == 204
    assert updated.content == b""
    assert api.get(f"{V}/sobjects/Lead/{lead[:15]}").json()["Title"] == "Codebreaker"
    assert api.delete(f"{V}/sobjects/Lead/{lead}").status_code == 204
    gone = api.get(f"{V}/sobjects/Lead/{lead}")
    assert gone.status_code == 404
    assert error_code(gone) == "ENTITY_IS_DELETED"


def test_every_change_moves_system_modstamp_and_last_modified_date(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Old", "Company": "C"}, system_modstamp="2026-01-01T00:00:00Z")
    api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "New"})
    record = crm_org.get("Lead", lead)
    assert record["SystemModstamp"] > "2026-01-01T00:00:00.000+0000"
    assert record["LastModifiedDate"] == record["SystemModstamp"]
    assert record["CreatedDate"] == "2026-01-01T00:00:00.000+0000"


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"SystemModstamp": "2026-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["SystemModstamp"]),
        ({"Email": "not-an-address"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        ({"FirstName": "x" * 41}, "STRING_TOO_LONG", ["FirstName"]),
        ({"HasOptedOutOfEmail": "yes"}, "INVALID_TYPE_ON_FIELD_IN_RECORD", ["HasOptedOutOfEmail"]),
        ({"OwnerId": "a lead id"}, "INVALID_CROSS_REFERENCE_KEY", ["OwnerId"]),
        ({"OwnerId": "005000000000000XYZ"}, "MALFORMED_ID", ["OwnerId"]),
    ],
)
def test_record_update_refusals_name_the_field(api: httpx.Client, body: dict, code: str, fields: list[str]):
    lead = records(api, "SELECT Id FROM Lead LIMIT 1")[0]["Id"]
    body = {k: lead if v == "a lead id" else v for k, v in body.items()}
    response = api.patch(f"{V}/sobjects/Lead/{lead}", json=body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code
    assert response.json()[0]["fields"] == fields


def test_unknown_field_on_update_is_invalid_field(api: httpx.Client):
    lead = records(api, "SELECT Id FROM Lead LIMIT 1")[0]["Id"]
    response = api.patch(f"{V}/sobjects/Lead/{lead}", json={"Shoe_Size__c": 9})
    assert response.status_code == 400
    assert error_code(response) == "INVALID_FIELD"


def test_create_without_required_fields_is_refused(api: httpx.Client):
    response = api.post(f"{V}/sobjects/Lead", json={"FirstName": "No"})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert set(response.json()[0]["fields"]) == {"LastName", "Company"}


def test_unknown_record_is_404_not_found(api: httpx.Client):
    response = api.get(f"{V}/sobjects/Lead/00Q000000000000AAA")
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


# -- composite sObject collections -------------------------------------------------------------


def test_collection_create_returns_one_result_per_record_in_order(api: httpx.Client, crm_org: CrmOrg):
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, "LastName": "One", "Company": "K"},
            {"attributes": {"type": "Lead"}, "LastName": "Two"},
            {"attributes": {"type": "Contact"}, "LastName": "Three"},
        ],
    }
    results = api.post(f"{V}/composite/sobjects", json=body).json()
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1] == {
        "id": None,
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
                "fields": ["Company"],
            }
        ],
    }
    assert results[2]["id"].startswith("003")
    assert [w["success"] for w in crm_org.writes()] == [True, False, True]


def test_collection_update_all_or_none_rolls_everything_back(api: httpx.Client, crm_org: CrmOrg):
    a, b = (r["Id"] for r in records(api, "SELECT Id FROM Lead ORDER BY Id LIMIT 2"))
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Lead"}, "Id": a, "Title": "Kept?"},
            {"attributes": {"type": "Lead"}, "Id": b, "Email": "broken"},
        ],
    }
    results = api.patch(f"{V}/composite/sobjects", json=body).json()
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert crm_org.get("Lead", a)["Title"] != "Kept?"


def test_collection_update_applies_the_valid_records_when_not_all_or_none(api: httpx.Client, crm_org: CrmOrg):
    a, b = (r["Id"] for r in records(api, "SELECT Id FROM Lead ORDER BY Id LIMIT 2"))
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, "Id": a, "Marketing_Score__c": 77},
            {"attributes": {"type": "Lead"}, "Id": b, "Email": "broken"},
            {"attributes": {"type": "Lead"}, "Title": "no id"},
        ],
    }
    results = api.patch(f"{V}/composite/sobjects", json=body).json()
    assert [r["success"] for r in results] == [True, False, False]
    assert results[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert crm_org.get("Lead", a)["Marketing_Score__c"] == 77


def test_collection_over_200_records_is_refused(api: httpx.Client):
    body = {"records": [{"attributes": {"type": "Lead"}, "LastName": "x", "Company": "y"}] * 201}
    response = api.post(f"{V}/composite/sobjects", json=body)
    assert response.status_code == 400
    assert error_code(response) == "EXCEEDED_ID_LIMIT"


# -- replication feeds ----------------------------------------------------------------------


def test_updated_feed_lists_ids_changed_in_the_window(api: httpx.Client, crm_org: CrmOrg):
    now = datetime.now(UTC)
    lead = crm_org.create(
        "Lead", {"LastName": "Fresh", "Company": "F"}, system_modstamp=now - timedelta(minutes=5)
    )
    body = api.get(
        f"{V}/sobjects/Lead/updated/",
        params={"start": iso(now - timedelta(minutes=6)), "end": iso(now - timedelta(minutes=4))},
    ).json()
    assert lead in body["ids"]
    assert "latestDateCovered" in body


def test_deleted_feed_lists_deletions_and_reaches_back_15_days(api: httpx.Client, crm_org: CrmOrg):
    now = datetime.now(UTC).replace(microsecond=0)
    lead = crm_org.create("Lead", {"LastName": "Bin", "Company": "R"})
    crm_org.delete("Lead", lead, deleted_at=now - timedelta(days=2))
    body = api.get(
        f"{V}/sobjects/Lead/deleted/", params={"start": iso(now - timedelta(days=3)), "end": iso(now)}
    ).json()
    assert body["deletedRecords"] == [
        {"id": lead, "deletedDate": (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")}
    ]
    assert {"earliestDateAvailable", "latestDateCovered"} <= set(body)
    too_old = api.get(
        f"{V}/sobjects/Lead/deleted/", params={"start": iso(now - timedelta(days=16)), "end": iso(now)}
    )
    assert too_old.status_code == 400
    assert error_code(too_old) == "INVALID_REPLICATION_DATE"


# -- limits -----------------------------------------------------------------------------------


def test_every_api_response_carries_sforce_limit_info(api: httpx.Client):
    first = api.get(f"{V}/sobjects/")
    second = query(api, "SELECT Id FROM Lead LIMIT 1")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/100000"


def test_limits_reports_the_daily_budget(api: httpx.Client, crm_org: CrmOrg):
    crm_org.set_budget(used=10, limit=500)
    body = api.get(f"{V}/limits/").json()
    assert body["DailyApiRequests"] == {"Max": 500, "Remaining": 489}
    assert crm_org.api_usage() == {"used": 11, "limit": 500}


def test_over_budget_calls_get_403_request_limit_exceeded(api: httpx.Client, crm_org: CrmOrg):
    crm_org.set_budget(used=5, limit=5)
    response = api.get(f"{V}/sobjects/")
    assert response.status_code == 403
    assert error_code(response) == "REQUEST_LIMIT_EXCEEDED"
    assert response.headers["Sforce-Limit-Info"] == "api-usage=5/5"


# -- lead conversion, undelete, writes ----------------------------------------------------------


def test_lead_conversion_sets_the_conversion_fields(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Convert", "Company": "Conv Inc", "Email": "c@conv.example"})
    contact = crm_org.convert_lead(lead)
    (row,) = records(
        api,
        f"SELECT IsConverted, ConvertedContactId, ConvertedAccountId, ConvertedDate, Status FROM Lead WHERE Id = '{lead}'",
    )
    assert row["IsConverted"] is True
    assert row["ConvertedContactId"] == contact
    assert row["Status"] == "Closed - Converted"
    assert row["ConvertedDate"] == datetime.now(UTC).strftime("%Y-%m-%d")
    (person,) = records(api, f"SELECT Email, Account.Name FROM Contact WHERE Id = '{contact}'")
    assert person["Email"] == "c@conv.example"
    assert person["Account"]["Name"] == "Conv Inc"
    refused = api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "x"})
    assert refused.status_code == 400
    assert error_code(refused) == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_lead_conversion_into_an_existing_account_at_a_given_instant(api: httpx.Client, crm_org: CrmOrg):
    account = crm_org.create("Account", {"Name": "Existing Co"})
    lead = crm_org.create("Lead", {"LastName": "Joiner", "Company": "Ignored Inc"})
    contact = crm_org.convert_lead(lead, account_id=account, system_modstamp="2026-11-20T08:00:00Z")
    converted = crm_org.get("Lead", lead)
    assert converted["ConvertedAccountId"] == account
    assert converted["SystemModstamp"] == "2026-11-20T08:00:00.000+0000"
    assert converted["ConvertedDate"] == "2026-11-20"
    assert crm_org.get("Contact", contact)["AccountId"] == account
    assert query(api, "SELECT COUNT() FROM Account WHERE Name = 'Ignored Inc'").json()["totalSize"] == 0


def test_lead_conversion_into_an_existing_contact_keeps_the_contact_and_makes_nothing_new(
    api: httpx.Client, crm_org: CrmOrg
):
    account = crm_org.create("Account", {"Name": "Merge Co"})
    existing = crm_org.create(
        "Contact", {"LastName": "Kept", "Email": "kept@merge.example", "AccountId": account}
    )
    before = crm_org.get("Contact", existing)
    lead = crm_org.create(
        "Lead", {"LastName": "Merged", "Company": "Ignored Too", "Email": "lead@merge.example"}
    )
    contacts_before = query(api, "SELECT COUNT() FROM Contact").json()["totalSize"]

    contact = crm_org.convert_lead(lead, contact_id=existing)

    assert contact == existing
    converted = crm_org.get("Lead", lead)
    assert converted["IsConverted"] is True
    assert converted["ConvertedContactId"] == existing
    assert converted["ConvertedAccountId"] == account
    after = crm_org.get("Contact", existing)
    assert (after["LastName"], after["Email"]) == ("Kept", "kept@merge.example")
    assert after["SystemModstamp"] >= before["SystemModstamp"]
    assert query(api, "SELECT COUNT() FROM Contact").json()["totalSize"] == contacts_before
    assert query(api, "SELECT COUNT() FROM Account WHERE Name = 'Ignored Too'").json()["totalSize"] == 0


def test_undelete_brings_a_record_back(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Phoenix", "Company": "U"})
    crm_org.delete("Lead", lead)
    crm_org.undelete("Lead", lead)
    assert records(api, "SELECT Id FROM Lead WHERE Company = 'U'")[0]["Id"] == lead


def test_control_edits_are_not_client_writes(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Quiet", "Company": "W"})
    crm_org.edit("Lead", lead, {"Title": "by a sales user"})
    api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "by the client"})
    (write,) = crm_org.writes()
    assert (write["method"], write["object"], write["id"], write["fields"], write["api"]) == (
        "PATCH", "Lead", lead, {"Title": "by the client"}, "rest"
    )  # fmt: skip


def test_generated_org_has_owners_accounts_and_opportunities(make_crm_org):
    org = make_crm_org(leads=10, contacts=30, seed=5)
    with client_for(org) as client:
        assert query(client, "SELECT COUNT() FROM User").json()["totalSize"] == 5
        assert query(client, "SELECT COUNT() FROM Account").json()["totalSize"] == 10
        opportunities = records(
            client, "SELECT Name, StageName, Amount, CloseDate, Account.Name, ContactId FROM Opportunity"
        )
    assert len(opportunities) == 6
    assert all(o["Name"].startswith(o["Account"]["Name"]) for o in opportunities if o["Account"])


def test_same_seed_gives_the_same_records(make_crm_org):
    first, second = make_crm_org(seed=11), make_crm_org(seed=11)
    text = "SELECT FirstName, LastName, Email, Company, SystemModstamp FROM Lead ORDER BY Email"

    def rows(org: CrmOrg) -> list[dict]:
        with client_for(org) as client:
            return [{k: v for k, v in r.items() if k != "attributes"} for r in records(client, text)]

    assert rows(first) == rows(second)


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("429", 429, "REQUEST_LIMIT_EXCEEDED"),
        ("503", 503, "SERVER_UNAVAILABLE"),
        ("500", 500, "UNKNOWN_EXCEPTION"),
    ],
)
def test_status_faults_fail_the_next_n_calls(
    api: httpx.Client, crm_org: CrmOrg, kind: str, status: int, code: str
):
    crm_org.faults(kind, count=2)
    responses = [api.get(f"{V}/limits") for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert error_code(responses[0]) == code
    assert crm_org.list_faults() == []


def test_429_fault_says_when_to_retry(api: httpx.Client, crm_org: CrmOrg):
    crm_org.faults("429", count=1)
    assert api.get(f"{V}/limits").headers["Retry-After"] == "1"


def test_fault_can_be_narrowed_to_a_path_and_method(api: httpx.Client, crm_org: CrmOrg):
    crm_org.faults("503", count=1, path="/composite/", method="PATCH")
    assert api.get(f"{V}/limits").status_code == 200
    assert api.patch(f"{V}/composite/sobjects", json={"records": []}).status_code == 503


def test_latency_fault_delays_but_answers(api: httpx.Client, crm_org: CrmOrg):
    crm_org.faults("latency", count=1, latency_ms=50)
    assert api.get(f"{V}/limits").status_code == 200
    assert crm_org.list_faults() == []


def test_lock_fault_on_a_single_write(api: httpx.Client, crm_org: CrmOrg):
    lead = records(api, "SELECT Id FROM Lead LIMIT 1")[0]["Id"]
    crm_org.faults("lock", count=1)
    locked = api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "x"})
    assert locked.status_code == 400
    assert error_code(locked) == "UNABLE_TO_LOCK_ROW"
    assert api.patch(f"{V}/sobjects/Lead/{lead}", json={"Title": "x"}).status_code == 204


def test_lock_fault_in_composite_results_per_record(api: httpx.Client, crm_org: CrmOrg):
    a, b, c = (r["Id"] for r in records(api, "SELECT Id FROM Lead ORDER BY Id LIMIT 3"))
    crm_org.faults("lock", count=1)
    body = {"records": [{"attributes": {"type": "Lead"}, "Id": i, "Title": "t"} for i in (a, b, c)]}
    results = api.patch(f"{V}/composite/sobjects", json=body).json()
    assert [r["success"] for r in results] == [False, True, True]
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    assert results[0]["id"] == a


def test_expired_token_fault_makes_the_token_invalid(api: httpx.Client, crm_org: CrmOrg):
    crm_org.faults("expired_token", count=1)
    first, second = api.get(f"{V}/limits"), api.get(f"{V}/limits")
    assert (first.status_code, second.status_code) == (401, 401)
    assert error_code(first) == "INVALID_SESSION_ID"
    with client_for(crm_org) as fresh:
        assert fresh.get(f"{V}/limits").status_code == 200


def test_expire_tokens_invalidates_every_token_of_the_org(api: httpx.Client, crm_org: CrmOrg):
    crm_org.expire_tokens()
    assert api.get(f"{V}/limits").status_code == 401


def test_budget_fault_spends_the_budget(api: httpx.Client, crm_org: CrmOrg):
    crm_org.faults("budget", count=1)
    response = api.get(f"{V}/limits")
    assert response.status_code == 403
    assert error_code(response) == "REQUEST_LIMIT_EXCEEDED"
    assert api.get(f"{V}/limits").status_code == 403


def test_rate_faults_are_deterministic_for_a_seed(make_crm_org):
    def pattern(org: CrmOrg) -> list[int]:
        org.faults("503", rate=0.5)
        with client_for(org) as client:
            return [client.get(f"{V}/limits").status_code for _ in range(20)]

    first, second = pattern(make_crm_org(seed=4)), pattern(make_crm_org(seed=4))
    assert first == second
    assert set(first) == {200, 503}


def test_unknown_fault_kind_is_refused(crm_org: CrmOrg):
    response = crm_org.http.post(f"/__emulator/orgs/{crm_org.org_id}/faults", json={"kind": "gremlins"})
    assert response.status_code == 400


# -- Bulk API 2.0 query jobs ---------------------------------------------------------------------


def bulk_job(api: httpx.Client, text: str, operation: str = "query") -> dict:
    created = api.post(f"{V}/jobs/query", json={"operation": operation, "query": text})
    assert created.status_code == 200, created.text
    return created.json()


def test_bulk_query_job_results_page_with_locator(api: httpx.Client):
    job = bulk_job(api, "SELECT Id, Email, Owner.Email, SystemModstamp FROM Lead")
    assert job["state"] == "UploadComplete"
    assert job["object"] == "Lead"
    status = api.get(f"{V}/jobs/query/{job['id']}").json()
    assert status["state"] == "JobComplete"
    assert status["numberRecordsProcessed"] == 50
    rows, locator, pages = [], None, 0
    while locator != "null":
        params = {"maxRecords": 20, **({"locator": locator} if locator else {})}
        page = api.get(f"{V}/jobs/query/{job['id']}/results", params=params)
        assert page.headers["content-type"].startswith("text/csv")
        batch = list(csv.DictReader(io.StringIO(page.text)))
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(batch)
        rows += batch
        locator = page.headers["Sforce-Locator"]
        pages += 1
    assert pages == 3
    assert len({r["Id"] for r in rows}) == 50
    assert list(rows[0]) == ["Id", "Email", "Owner.Email", "SystemModstamp"]
    assert rows[0]["SystemModstamp"].endswith("Z")
    assert (
        base64.b64decode(
            api.get(f"{V}/jobs/query/{job['id']}/results", params={"maxRecords": 20}).headers[
                "Sforce-Locator"
            ]
        )
        == b"20"
    )


def test_bulk_query_refuses_compound_address_fields(api: httpx.Client):
    response = api.post(
        f"{V}/jobs/query", json={"operation": "query", "query": "SELECT Id, Address FROM Lead"}
    )
    assert response.status_code == 400
    assert response.json()[0]["message"] == "Selecting compound data not supported in Bulk Query"


def test_bulk_query_all_includes_deleted_records(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "BulkGone", "Company": "BG"})
    crm_org.delete("Lead", lead)
    job = bulk_job(api, "SELECT Id, IsDeleted FROM Lead WHERE Company = 'BG'", operation="queryAll")
    api.get(f"{V}/jobs/query/{job['id']}")
    rows = list(csv.DictReader(io.StringIO(api.get(f"{V}/jobs/query/{job['id']}/results").text)))
    assert rows == [{"Id": lead, "IsDeleted": "true"}]


def test_bulk_query_job_can_be_deleted(api: httpx.Client):
    job = bulk_job(api, "SELECT Id FROM Contact")
    assert api.delete(f"{V}/jobs/query/{job['id']}").status_code == 204
    assert api.get(f"{V}/jobs/query/{job['id']}").status_code == 404


def test_bulk_query_job_can_be_aborted_before_it_is_read(api: httpx.Client):
    job = bulk_job(api, "SELECT Id FROM Lead")
    aborted = api.patch(f"{V}/jobs/query/{job['id']}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert api.get(f"{V}/jobs/query/{job['id']}/results").status_code == 400


# -- the rest of the surface ------------------------------------------------------------------


def test_password_grant_returns_a_refresh_token(crm_org: CrmOrg):
    data = {
        "grant_type": "password",
        "client_id": crm_org.client_id,
        "client_secret": crm_org.client_secret,
        "username": "integration@example.com",
        "password": "secret",
    }
    body = httpx.post(crm_org.token_url, data=data).json()
    assert body["refresh_token"] == crm_org.refresh_token


def test_version_resources_and_sobject_info(api: httpx.Client):
    resources = api.get(f"{V}/").json()
    assert resources["query"] == f"{V}/query"
    info = api.get(f"{V}/sobjects/Contact/").json()
    assert info["objectDescribe"]["keyPrefix"] == "003"
    assert info["recentItems"] == []


def test_collection_delete_by_ids(api: httpx.Client, crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Del", "Company": "X"})
    results = api.delete(f"{V}/composite/sobjects", params={"ids": f"{lead},00Q000000000000XYZ"}).json()
    assert [r["success"] for r in results] == [True, False]
    assert crm_org.records("Lead", include_deleted=True)[-1]["IsDeleted"] is True


def test_unknown_path_and_wrong_method_answer_in_salesforce_shape(api: httpx.Client):
    missing = api.get(f"{V}/nowhere")
    assert missing.status_code == 404
    assert error_code(missing) == "NOT_FOUND"
    wrong = api.put(f"{V}/sobjects/Lead/describe")
    assert wrong.status_code == 405
    assert error_code(wrong) == "METHOD_NOT_ALLOWED"


def test_malformed_json_body_is_a_parser_error(api: httpx.Client):
    response = api.post(
        f"{V}/sobjects/Lead", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_code(response) == "JSON_PARSER_ERROR"


_FIELDS = st.sampled_from(
    ["Id", "Email", "LastName", "OwnerId", "Owner.Email", "Marketing_Score__c", "HasOptedOutOfEmail", "SystemModstamp",
     "ConvertedDate", "Address", "Status", "Nope", "Owner.Nope", "Account.Name"]
)  # fmt: skip
_LITERALS = st.sampled_from(
    [
        "'a%'",
        "'00Q000000000001AAA'",
        "null",
        "true",
        "FALSE",
        "42",
        "-1.5",
        "2026-01-01",
        "2026-01-01T00:00:00Z",
        "'x'",
    ]
)
_OPS = st.sampled_from(["=", "!=", "<", ">=", "LIKE", "IN", "NOT IN"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    select=st.lists(_FIELDS, min_size=1, max_size=3), field=_FIELDS, op=_OPS, literal=_LITERALS, order=_FIELDS
)
def test_generated_queries_answer_200_or_a_salesforce_400(
    api: httpx.Client, select, field, op, literal, order
):
    value = f"({literal}, {literal})" if "IN" in op else literal
    text = f"SELECT {', '.join(select)} FROM Lead WHERE {field} {op} {value} ORDER BY {order} LIMIT 5"
    response = query(api, text)
    assert response.status_code in (200, 400), (text, response.text)
    if response.status_code == 400:
        assert error_code(response) in ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_QUERY_FILTER_OPERATOR")


def test_faults_naming_the_token_endpoint_fail_logins(crm_org: CrmOrg):
    crm_org.faults("503", count=1, path="/services/oauth2/token")
    crm_org.faults("429", count=1)  # names no path: REST calls only, never the login
    data = {
        "grant_type": "client_credentials",
        "client_id": crm_org.client_id,
        "client_secret": crm_org.client_secret,
    }
    first, second = httpx.post(crm_org.token_url, data=data), httpx.post(crm_org.token_url, data=data)
    assert (first.status_code, second.status_code) == (503, 200)
    assert first.json()["error"] == "temporarily_unavailable"
    assert [f["kind"] for f in crm_org.list_faults()] == ["429"]


def test_r22_a_control_edit_without_the_fields_envelope_is_refused_and_changes_nothing(crm_org: CrmOrg):
    lead = crm_org.create("Lead", {"LastName": "Exact", "Company": "X", "Title": "Before"})
    stamp = crm_org.get("Lead", lead)["SystemModstamp"]
    response = crm_org.http.patch(f"{crm_org._base}/sobjects/Lead/{lead}", json={"Title": "After"})
    assert response.status_code == 400
    assert "Title" in response.text
    after = crm_org.get("Lead", lead)
    assert (after["Title"], after["SystemModstamp"]) == ("Before", stamp)
