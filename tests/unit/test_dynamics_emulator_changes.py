"""The Dataverse emulator's change tracking: delta links, changed records, deleted entries, expired tokens."""

from __future__ import annotations

from tests.support.dynamics_emulator import InProcess, dataverse

__all__ = ["dataverse"]
API = "/api/data/v9.2"
TRACK = {"Prefer": "odata.track-changes"}


async def _full(dataverse: InProcess, path: str, prefer: str) -> tuple[list[dict[str, object]], str]:
    answer = await dataverse.client.get(f"{API}/{path}", headers={"Prefer": prefer})
    assert answer.status_code == 200, answer.text
    assert "odata.track-changes" in answer.headers["Preference-Applied"]
    records = []
    while True:
        body = answer.json()
        records += body["value"]
        if "@odata.deltaLink" in body:
            return records, body["@odata.deltaLink"]
        answer = await dataverse.client.get(body["@odata.nextLink"], headers={"Prefer": prefer})


async def test_a_tracked_read_ends_with_a_delta_link_and_the_delta_has_every_change(
    dataverse: InProcess,
) -> None:
    records, delta = await _full(
        dataverse, "contacts?$select=firstname,lastname", "odata.track-changes,odata.maxpagesize=40"
    )
    assert len(records) == 90 and "$deltatoken=" in delta
    nothing = (await dataverse.client.get(delta, headers=TRACK)).json()
    assert nothing["value"] == [] and nothing["@odata.context"].endswith(
        "contacts(contactid,firstname,lastname)/$delta"
    )
    edited, gone = str(records[3]["contactid"]), str(records[4]["contactid"])
    assert (
        await dataverse.control("PATCH", f"/tables/contact/{edited}", {"fields": {"firstname": "Edited"}})
    ).status_code == 200
    assert (await dataverse.control("DELETE", f"/tables/contacts/{gone}")).status_code == 204
    created = await dataverse.client.post(f"{API}/contacts", json={"firstname": "New", "lastname": "Person"})
    new_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    changes = (await dataverse.client.get(delta, headers=TRACK)).json()
    by_id = {c.get("contactid") or c.get("id"): c for c in changes["value"]}
    assert set(by_id) == {edited, gone, new_id}
    assert by_id[edited]["firstname"] == "Edited" and set(by_id[edited]) == {
        "@odata.etag",
        "contactid",
        "firstname",
        "lastname",
    }
    assert by_id[gone] == {"@odata.context": "https://dataverse.test/api/data/v9.2/$metadata#contacts/$deletedEntity",
                           "id": gone, "reason": "deleted"}  # fmt: skip
    later = (await dataverse.client.get(changes["@odata.deltaLink"], headers=TRACK)).json()
    assert later["value"] == []


async def test_many_changes_come_in_pages_then_a_new_delta_link(dataverse: InProcess) -> None:
    records, delta = await _full(dataverse, "leads?$select=lastname", "odata.track-changes")
    for record in records[:30]:
        await dataverse.control(
            "PATCH", f"/tables/lead/{record['leadid']}", {"fields": {"jobtitle": "Buyer"}}
        )
    prefer = {"Prefer": "odata.track-changes,odata.maxpagesize=12"}
    answer = (await dataverse.client.get(delta, headers=prefer)).json()
    seen = []
    while "@odata.nextLink" in answer:
        seen += answer["value"]
        answer = (await dataverse.client.get(answer["@odata.nextLink"], headers=prefer)).json()
    seen += answer["value"]
    assert [r["leadid"] for r in seen] == [r["leadid"] for r in records[:30]]
    assert "@odata.deltaLink" in answer


async def test_an_expired_or_unknown_token_asks_for_a_full_sync(dataverse: InProcess) -> None:
    _, delta = await _full(dataverse, "accounts?$select=name", "odata.track-changes")
    await dataverse.control("POST", "/expire-change-tokens")
    expired = await dataverse.client.get(delta, headers=TRACK)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "0x80044352"
    unknown = await dataverse.client.get(f"{API}/accounts?$select=name&$deltatoken=garbage", headers=TRACK)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "0x80044352"
    _, fresh = await _full(dataverse, "accounts?$select=name", "odata.track-changes")
    assert (await dataverse.client.get(fresh, headers=TRACK)).status_code == 200


async def test_tracking_refuses_query_options_dataverse_refuses(dataverse: InProcess) -> None:
    answer = await dataverse.client.get(f"{API}/leads?$filter=statecode eq 0", headers=TRACK)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "0x80060888"
