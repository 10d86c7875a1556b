"""The Dataverse emulator's control API: environments, edits, deletes, lead qualification, faults, reset."""

from __future__ import annotations

from tests.support.dynamics_emulator import TENANT, InProcess, dataverse

__all__ = ["dataverse"]
API = "/api/data/v9.2"


async def test_environments_list_the_one_served(dataverse: InProcess) -> None:
    (environment,) = (await dataverse.control("GET", "/environments")).json()
    assert (
        environment["web_api"] == "https://dataverse.test/api/data/v9.2" and environment["tenant"] == TENANT
    )
    assert environment["records"]["lead"] == 120 and environment["records"]["contact"] == 90


async def test_a_user_edit_and_delete_show_through_the_web_api(dataverse: InProcess) -> None:
    lead = (await dataverse.client.get(f"{API}/leads?$top=1")).json()["value"][0]
    edited = await dataverse.control(
        "PATCH", f"/tables/lead/{lead['leadid']}", {"fields": {"donotemail": True, "lastname": "Renamed"}}
    )
    assert edited.status_code == 200 and edited.json()["fullname"].endswith("Renamed")
    read = (await dataverse.client.get(f"{API}/leads({lead['leadid']})?$select=donotemail,lastname")).json()
    assert (read["donotemail"], read["lastname"]) == (True, "Renamed")
    assert (await dataverse.control("DELETE", f"/tables/lead/{lead['leadid']}")).status_code == 204
    assert (await dataverse.client.get(f"{API}/leads({lead['leadid']})")).status_code == 404
    assert (await dataverse.control("DELETE", f"/tables/lead/{lead['leadid']}")).status_code == 404
    assert (await dataverse.control("GET", "/tables/invoice/x")).status_code == 404


async def test_qualifying_a_lead_makes_a_contact_and_links_both_ways(dataverse: InProcess) -> None:
    lead = (
        await dataverse.client.get(f"{API}/leads?$filter=statecode eq 0 and emailaddress1 ne null&$top=1")
    ).json()["value"][0]
    qualified = await dataverse.control("POST", f"/leads/{lead['leadid']}/qualify")
    assert qualified.status_code == 200
    contact_id = qualified.json()["contactid"]
    after = (
        await dataverse.client.get(
            f"{API}/leads({lead['leadid']})?$select=statecode,statuscode,_parentcontactid_value"
        )
    ).json()
    assert (after["statecode"], after["statuscode"], after["_parentcontactid_value"]) == (1, 3, contact_id)
    contact = (await dataverse.client.get(f"{API}/contacts({contact_id})")).json()
    assert (
        contact["emailaddress1"] == lead["emailaddress1"]
        and contact["_originatingleadid_value"] == lead["leadid"]
    )
    assert contact["donotemail"] == lead["donotemail"]
    again = await dataverse.control("POST", f"/leads/{lead['leadid']}/qualify")
    assert again.status_code == 400
    other = (
        await dataverse.client.get(f"{API}/leads?$filter=statecode eq 0&$top=1&$select=lastname")
    ).json()["value"][0]
    linked = await dataverse.control("POST", f"/leads/{other['leadid']}/qualify", {"contact_id": contact_id})
    assert linked.json()["contactid"] == contact_id


async def test_the_next_requests_can_be_answered_429_with_retry_after(dataverse: InProcess) -> None:
    await dataverse.control("POST", "/faults", {"kind": "429", "count": 2, "retry_after": 7})
    for _ in range(2):
        refused = await dataverse.client.get(f"{API}/leads?$top=1")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
        assert refused.json()["error"]["code"] == "0x80072322"
    assert (await dataverse.client.get(f"{API}/leads?$top=1")).status_code == 200


async def test_503_for_some_seconds_then_service_again(dataverse: InProcess) -> None:
    await dataverse.control("POST", "/faults", {"kind": "503", "seconds": 30})
    refused = await dataverse.client.get(f"{API}/leads?$top=1")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    await dataverse.control("DELETE", "/faults")
    assert (await dataverse.client.get(f"{API}/leads?$top=1")).status_code == 200


async def test_a_sliding_window_limit_throttles_and_reports_what_is_left(dataverse: InProcess) -> None:
    await dataverse.control("POST", "/faults", {"kind": "throttle", "limit": 3, "window_seconds": 60})
    remaining = []
    for _ in range(3):
        answer = await dataverse.client.get(f"{API}/leads?$top=1")
        assert answer.status_code == 200
        remaining.append(int(answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]))
    assert remaining == [2, 1, 0]
    refused = await dataverse.client.get(f"{API}/leads?$top=1")
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert "limit of 3 over time window of 60 seconds" in refused.json()["error"]["message"]
    assert (await dataverse.control("GET", "/faults")).json()["in_window"] == 3
    assert (
        await dataverse.control("GET", "/health")
    ).status_code == 200  # the control API is never throttled


async def test_reset_brings_back_the_generated_records(dataverse: InProcess) -> None:
    lead = (await dataverse.client.get(f"{API}/leads?$top=1")).json()["value"][0]
    await dataverse.control("DELETE", f"/tables/lead/{lead['leadid']}")
    await dataverse.client.post(f"{API}/leads", json={"lastname": "Extra"})
    assert (await dataverse.control("POST", "/reset")).status_code == 204
    assert (await dataverse.client.get(f"{API}/leads({lead['leadid']})")).json()["leadid"] == lead["leadid"]
    assert (await dataverse.client.get(f"{API}/leads?$filter=lastname eq 'Extra'")).json()["value"] == []


async def test_the_writes_log_says_what_clients_wrote_and_what_was_rolled_back(dataverse: InProcess) -> None:
    made = await dataverse.client.post(f"{API}/leads", json={"lastname": "Logged"})
    lead_id = made.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    await dataverse.client.patch(
        f"{API}/leads({lead_id})", json={"jobtitle": "CEO"}, headers={"If-Match": "*"}
    )
    await dataverse.client.post(f"{API}/leads/Microsoft.Dynamics.CRM.CreateMultiple",
                                json={"Targets": [{"lastname": "Kept"}, {"lastname": "z" * 99}]})  # fmt: skip
    await dataverse.control(
        "PATCH", f"/tables/lead/{lead_id}", {"fields": {"jobtitle": "CFO"}}
    )  # not a client's
    log = (await dataverse.control("GET", "/writes")).json()
    assert [(w["method"], w["table"], w["status"]) for w in log] == [
        ("POST", "leads", 204), ("PATCH", "leads", 204), ("POST", "leads", 400)]  # fmt: skip
    assert log[0]["id"] == lead_id and log[1]["fields"] == {"jobtitle": "CEO"} and not log[2]["success"]
    assert (await dataverse.control("DELETE", "/writes")).status_code == 204
    assert (await dataverse.control("GET", "/writes")).json() == []


async def test_a_user_edit_may_carry_a_modified_time_and_change_tracking_still_sees_it(
    dataverse: InProcess,
) -> None:
    tracked = await dataverse.client.get(
        f"{API}/leads?$select=lastname", headers={"Prefer": "odata.track-changes"}
    )
    delta = tracked.json()["@odata.deltaLink"]
    lead = tracked.json()["value"][0]
    late = "2026-01-02T03:04:05Z"
    edited = await dataverse.control(
        "PATCH", f"/tables/lead/{lead['leadid']}", {"fields": {"lastname": "Late"}, "modifiedon": late}
    )
    assert edited.status_code == 200 and edited.json()["modifiedon"] == late
    read = (await dataverse.client.get(f"{API}/leads({lead['leadid']})?$select=modifiedon")).json()
    assert read["modifiedon"] == late
    changes = (await dataverse.client.get(delta)).json()["value"]
    assert [(c["leadid"], c["lastname"]) for c in changes] == [(lead["leadid"], "Late")]
    created = await dataverse.control("POST", "/tables/contact", {"fields": {"lastname": "Old"},
                                                                  "modifiedon": "2025-12-31T23:00:00+00:00"})  # fmt: skip
    assert created.status_code == 201 and created.json()["modifiedon"] == "2025-12-31T23:00:00Z"
    wrong = await dataverse.control("PATCH", f"/tables/lead/{lead['leadid']}", {"modifiedon": "yesterday"})
    assert wrong.status_code == 400
