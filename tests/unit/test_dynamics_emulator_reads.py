"""The Dataverse emulator's sign-in, metadata and reads over ASGI: shapes, headers, paging, errors."""

from __future__ import annotations

import pytest

from tests.support.dynamics_emulator import CLIENT_ID, TENANT, InProcess, dataverse, in_process

__all__ = ["dataverse"]
API = "/api/data/v9.2"


async def test_the_token_endpoint_answers_as_the_identity_platform() -> None:
    fresh = in_process()
    good = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "emulated~secret.value",
            "scope": "https://dataverse.test/.default"}  # fmt: skip
    answer = await fresh.client.post(f"/{TENANT}/oauth2/v2.0/token", data=good)
    assert answer.status_code == 200
    assert (
        set(answer.json()) >= {"token_type", "expires_in", "access_token"}
        and answer.json()["token_type"] == "Bearer"
    )
    cases = [
        ({**good, "client_secret": "nope"}, 401, "invalid_client", "AADSTS7000215"),
        ({**good, "client_id": "other"}, 400, "unauthorized_client", "AADSTS700016"),
        (
            {**good, "scope": "https://dataverse.test/user_impersonation"},
            400,
            "invalid_scope",
            "AADSTS1002012",
        ),
        ({**good, "grant_type": "password"}, 400, "unsupported_grant_type", "AADSTS70003"),
    ]
    for form, status, error, code in cases:
        refused = await fresh.client.post(f"/{TENANT}/oauth2/v2.0/token", data=form)
        assert (refused.status_code, refused.json()["error"]) == (status, error)
        assert refused.json()["error_description"].startswith(code)
    wrong_tenant = await fresh.client.post("/another-tenant/oauth2/v2.0/token", data=good)
    assert wrong_tenant.status_code == 400 and "AADSTS90002" in wrong_tenant.json()["error_description"]
    discovery = await fresh.client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
    assert discovery.json()["token_endpoint"] == f"https://dataverse.test/{TENANT}/oauth2/v2.0/token"


async def test_the_web_api_needs_a_valid_bearer_token(dataverse: InProcess) -> None:
    signed_out = await dataverse.client.get(f"{API}/leads", headers={"Authorization": "Bearer forged"})
    assert signed_out.status_code == 401
    assert signed_out.headers["WWW-Authenticate"].startswith(
        f"Bearer authorization_uri=https://dataverse.test/{TENANT}/"
    )
    assert (await dataverse.client.get(f"{API}/leads?$top=1")).status_code == 200
    await dataverse.control("POST", "/expire-tokens")
    assert (await dataverse.client.get(f"{API}/leads?$top=1")).status_code == 401


async def test_entity_definitions_by_filter_by_key_and_their_attributes(dataverse: InProcess) -> None:
    listed = await dataverse.client.get(f"{API}/EntityDefinitions", params={
        "$select": "LogicalName,EntitySetName,PrimaryIdAttribute", "$filter": "LogicalName eq 'opportunity'"})  # fmt: skip
    (only,) = listed.json()["value"]
    assert (only["EntitySetName"], only["PrimaryIdAttribute"]) == ("opportunities", "opportunityid")
    for logical in ("lead", "contact", "account", "systemuser", "opportunity"):
        one = (
            await dataverse.client.get(
                f"{API}/EntityDefinitions(LogicalName='{logical}')?$select=LogicalName"
            )
        ).json()
        assert one["LogicalName"] == logical and "EntitySetName" not in one
        attributes = (await dataverse.client.get(f"{API}/EntityDefinitions(LogicalName='{logical}')/Attributes",
                                          params={"$select": "LogicalName,AttributeType,MaxLength,IsValidForUpdate"})).json()  # fmt: skip
        names = {a["LogicalName"]: a for a in attributes["value"]}
        assert f"{logical}id" in names and names["createdon"]["IsValidForUpdate"] is False
    lead = (
        await dataverse.client.get(
            f"{API}/EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='firstname')"
        )
    ).json()
    assert (lead["AttributeType"], lead["MaxLength"], lead["IsValidForUpdate"]) == ("String", 50, True)
    email = (
        await dataverse.client.get(
            f"{API}/EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='emailaddress1')"
        )
    ).json()
    assert email["FormatName"] == {"Value": "Email"} and email["RequiredLevel"] == {"Value": "None"}
    picklists = (await dataverse.client.get(f"{API}/EntityDefinitions(LogicalName='lead')/Attributes/"
                                     "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet")).json()  # fmt: skip
    sources = next(p for p in picklists["value"] if p["LogicalName"] == "leadsourcecode")
    assert sources["OptionSet"]["Options"][0]["Value"] == 1
    missing = await dataverse.client.get(f"{API}/EntityDefinitions(LogicalName='invoice')")
    assert missing.status_code == 404 and missing.json()["error"]["code"].startswith("0x")


async def test_a_query_answers_odata_shapes_and_headers(dataverse: InProcess) -> None:
    answer = await dataverse.client.get(f"{API}/contacts", params={
        "$select": "fullname,emailaddress1,_parentcustomerid_value", "$filter": "_parentcustomerid_value ne null",
        "$orderby": "fullname desc", "$top": "5", "$count": "true",
        "$expand": "parentcustomerid_account($select=name),owninguser($select=fullname)"})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["OData-Version"] == "4.0"
    assert int(answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) > 0
    assert "x-ms-ratelimit-time-remaining-xrm-requests" in answer.headers
    body = answer.json()
    assert body["@odata.context"].startswith("https://dataverse.test/api/data/v9.2/$metadata#contacts(")
    assert 0 < len(body["value"]) == 5 and body["@odata.count"] > 5 and "@odata.nextLink" not in body
    names = [r["fullname"] for r in body["value"]]
    assert names == sorted(names, key=str.casefold, reverse=True)
    first = body["value"][0]
    assert first["@odata.etag"].startswith('W/"') and first["contactid"]
    assert first["parentcustomerid_account"]["accountid"] == first["_parentcustomerid_value"]
    assert set(first["owninguser"]) == {"@odata.etag", "systemuserid", "fullname"}
    single = (await dataverse.client.get(f"{API}/contacts({first['contactid']})?$select=fullname")).json()
    assert single["@odata.context"].endswith("$metadata#contacts(contactid,fullname)/$entity")
    assert single["fullname"] == first["fullname"]


async def test_pages_follow_next_links_to_the_end(dataverse: InProcess) -> None:
    prefer = {"Prefer": "odata.maxpagesize=25"}
    answer = await dataverse.client.get(
        f"{API}/leads?$select=lastname&$filter=statecode eq 0", headers=prefer
    )
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=25"
    seen, pages = [], 0
    while True:
        body = answer.json()
        pages += 1
        assert len(body["value"]) <= 25
        seen += [r["leadid"] for r in body["value"]]
        if "@odata.nextLink" not in body:
            break
        answer = await dataverse.client.get(body["@odata.nextLink"], headers=prefer)
    everything = (await dataverse.client.get(f"{API}/leads?$select=lastname&$filter=statecode eq 0")).json()[
        "value"
    ]
    assert seen == [r["leadid"] for r in everything] and pages == -(-len(seen) // 25)
    topped = (await dataverse.client.get(f"{API}/leads?$top=30", headers=prefer)).json()
    following = (await dataverse.client.get(topped["@odata.nextLink"], headers=prefer)).json()
    assert len(topped["value"]) == 25 and len(following["value"]) == 5 and "@odata.nextLink" not in following


async def test_annotations_when_asked_formatted_values_and_lookup_tables(dataverse: InProcess) -> None:
    prefer = {"Prefer": 'odata.include-annotations="*"'}
    answer = await dataverse.client.get(
        f"{API}/contacts?$select=statecode,donotemail,_parentcustomerid_value&$filter=_parentcustomerid_value ne null&$top=1",
        headers=prefer,
    )
    assert answer.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    (contact,) = answer.json()["value"]
    assert contact["statecode@OData.Community.Display.V1.FormattedValue"] == "Active"
    assert contact["donotemail@OData.Community.Display.V1.FormattedValue"] in ("Yes", "No")
    assert contact["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    plain = (await dataverse.client.get(f"{API}/contacts?$select=statecode&$top=1")).json()["value"][0]
    assert not [k for k in plain if "@OData.Community" in k]


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("leads?$select=nosuch", 400, "Could not find a property named 'nosuch'"),
        ("leads?$filter=lastname eq 5", 400, "incompatible types"),
        ("leads?$skip=5", 400, "$skip is not supported"),
        ("leads?sql=SELECT lastname FROM lead", 400, "sql is not supported"),
        ("leads?$expand=nosuchnav", 400, "nosuchnav"),
        ("leads(00000000-0000-4000-8000-000000000009)", 404, "Does Not Exist"),
        ("invoices", 404, "Resource not found for the segment 'invoices'"),
    ],
)
async def test_bad_reads_get_dataverse_errors(
    dataverse: InProcess, path: str, status: int, text: str
) -> None:
    answer = await dataverse.client.get(f"{API}/{path}")
    assert answer.status_code == status
    assert answer.json()["error"]["code"].startswith("0x") and text in answer.json()["error"]["message"]
