"""The Dataverse emulator's writes over ASGI: create, update, upsert rules, validation, *Multiple, $batch."""

from __future__ import annotations

import pytest

from tests.support.dynamics_emulator import InProcess, dataverse

__all__ = ["dataverse"]
API = "/api/data/v9.2"
MISSING = "00000000-0000-4000-8000-0000000000aa"


async def test_create_answers_204_with_the_entity_id_or_201_with_the_record(dataverse: InProcess) -> None:
    plain = await dataverse.client.post(
        f"{API}/leads", json={"firstname": "Kim", "lastname": "Park", "donotbulkemail": True}
    )
    assert plain.status_code == 204 and plain.content == b""
    entity = plain.headers["OData-EntityId"]
    assert entity.startswith("https://dataverse.test/api/data/v9.2/leads(")
    record = (await dataverse.client.get(entity.removeprefix("https://dataverse.test"))).json()
    assert (record["fullname"], record["donotbulkemail"], record["donotemail"], record["statecode"]) == (
        "Kim Park",
        True,
        False,
        0,
    )
    shown = await dataverse.client.post(f"{API}/accounts?$select=name", json={"name": "Shown"},
                                 headers={"Prefer": "return=representation"})  # fmt: skip
    assert shown.status_code == 201 and shown.headers["Preference-Applied"] == "return=representation"
    assert shown.json()["name"] == "Shown" and set(shown.json()) == {
        "@odata.context",
        "@odata.etag",
        "accountid",
        "name",
    }


async def test_lookups_are_bound_through_navigation_properties(dataverse: InProcess) -> None:
    account = (await dataverse.client.get(f"{API}/accounts?$top=1&$select=name")).json()["value"][0][
        "accountid"
    ]
    made = await dataverse.client.post(f"{API}/contacts", json={
        "lastname": "Bound", "parentcustomerid_account@odata.bind": f"/accounts({account})"})  # fmt: skip
    contact = (
        await dataverse.client.get(made.headers["OData-EntityId"].removeprefix("https://dataverse.test"))
    ).json()
    assert contact["_parentcustomerid_value"] == account
    url = made.headers["OData-EntityId"].removeprefix("https://dataverse.test")
    cleared = await dataverse.client.patch(url, json={"parentcustomerid_account@odata.bind": None})
    assert (
        cleared.status_code == 204
        and (await dataverse.client.get(url)).json()["_parentcustomerid_value"] is None
    )
    dangling = await dataverse.client.post(
        f"{API}/contacts", json={"parentcustomerid_account@odata.bind": f"/accounts({MISSING})"}
    )
    assert dangling.status_code == 404 and dangling.json()["error"]["code"] == "0x80040217"


async def test_patch_updates_and_if_match_refuses_an_upsert(dataverse: InProcess) -> None:
    lead = (await dataverse.client.get(f"{API}/leads?$top=1")).json()["value"][0]
    url = f"{API}/leads({lead['leadid']})"
    updated = await dataverse.client.patch(
        url, json={"jobtitle": "CTO", "donotemail": True}, headers={"If-Match": "*"}
    )
    assert updated.status_code == 204
    after = (await dataverse.client.get(url)).json()
    assert (after["jobtitle"], after["donotemail"]) == ("CTO", True)
    assert after["modifiedon"] > lead["modifiedon"] and after["@odata.etag"] != lead["@odata.etag"]
    stale = await dataverse.client.patch(
        url, json={"jobtitle": "CFO"}, headers={"If-Match": lead["@odata.etag"]}
    )
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "0x80060882"
    refused = await dataverse.client.patch(
        f"{API}/leads({MISSING})", json={"lastname": "X"}, headers={"If-Match": "*"}
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "0x80040217"
    upserted = await dataverse.client.patch(f"{API}/leads({MISSING})", json={"lastname": "Upserted"})
    assert upserted.status_code == 204 and MISSING in upserted.headers["OData-EntityId"]
    no_update = await dataverse.client.patch(
        f"{API}/leads({MISSING})", json={"lastname": "Again"}, headers={"If-None-Match": "*"}
    )
    assert no_update.status_code == 412


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (
            {"nosuch": 1},
            "0x80060888",
            "The property 'nosuch' does not exist on type 'Microsoft.Dynamics.CRM.lead'",
        ),
        ({"firstname": "x" * 51}, "0x80044331", "exceeded the maximum allowed length of '50'"),
        ({"numberofemployees": "many"}, "0x80060888", "Edm.Int32"),
        ({"leadsourcecode": 999}, "0x80044331", "outside the valid range"),
        ({"donotemail": "yes"}, "0x80060888", "Edm.Boolean"),
        ({"_parentcontactid_value": MISSING}, "0x80060888", "@odata.bind"),
    ],
)
async def test_invalid_bodies_are_refused(
    dataverse: InProcess, body: dict[str, object], code: str, text: str
) -> None:
    answer = await dataverse.client.post(f"{API}/leads", json=body)
    assert (
        answer.status_code == 400
        and answer.json()["error"]["code"] == code
        and text in answer.json()["error"]["message"]
    )


async def test_create_multiple_and_update_multiple_are_all_or_nothing(dataverse: InProcess) -> None:
    targets = [{"lastname": f"Many{i}", "@odata.type": "Microsoft.Dynamics.CRM.contact"} for i in range(5)]
    made = await dataverse.client.post(
        f"{API}/contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets}
    )
    ids = made.json()["Ids"]
    assert made.status_code == 200 and len(ids) == 5
    bad = await dataverse.client.post(f"{API}/contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                               json={"Targets": [{"lastname": "Kept?"}, {"lastname": "y" * 60}]})  # fmt: skip
    assert bad.status_code == 400
    assert (await dataverse.client.get(f"{API}/contacts?$filter=lastname eq 'Kept?'")).json()["value"] == []
    changes = [{"contactid": i, "jobtitle": "Bulk"} for i in ids] + [
        {"contactid": MISSING, "jobtitle": "Bulk"}
    ]
    failed = await dataverse.client.post(
        f"{API}/contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": changes}
    )
    assert failed.status_code == 404
    assert (await dataverse.client.get(f"{API}/contacts?$filter=jobtitle eq 'Bulk'")).json()["value"] == []
    done = await dataverse.client.post(
        f"{API}/contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": changes[:-1]}
    )
    assert done.status_code == 204
    assert (
        len((await dataverse.client.get(f"{API}/contacts?$filter=jobtitle eq 'Bulk'")).json()["value"]) == 5
    )


def _batch(boundary: str, parts: list[str]) -> bytes:
    return ("".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n").encode()


def _op(method: str, url: str, body: str = "", content_id: int | None = None, extra: str = "") -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    json_head = "Content-Type: application/json; type=entry\r\n" if body else ""
    return f"{head}\r\n{method} {url} HTTP/1.1\r\n{json_head}{extra}\r\n{body}"


def _change_set(boundary: str, ops: list[str]) -> str:
    inner = "".join(f"--{boundary}\r\n{o}\r\n" for o in ops) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}"


async def _post_batch(dataverse: InProcess, body: bytes, prefer: str | None = None) -> str:
    headers = {"Content-Type": "multipart/mixed; boundary=batch_x"}
    if prefer:
        headers["Prefer"] = prefer
    answer = await dataverse.client.post(f"{API}/$batch", content=body, headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "multipart/mixed; boundary=batchresponse_"
    )
    return answer.text


async def test_a_batch_runs_reads_and_change_sets_with_content_id_references(dataverse: InProcess) -> None:
    ops = [
        _change_set("changeset_a", [
            _op("POST", "https://dataverse.test/api/data/v9.2/accounts", '{"name": "Batch Co"}', 1),
            _op("PATCH", "$1", '{"telephone1": "555-0101"}', 2),
        ]),
        _op("GET", "/api/data/v9.2/accounts?$select=name&$filter=name eq 'Batch Co'"),
    ]  # fmt: skip
    text = await _post_batch(dataverse, _batch("batch_x", ops))
    assert "boundary=changesetresponse_" in text and text.count("HTTP/1.1 204 No Content") == 2
    assert "OData-EntityId: https://dataverse.test/api/data/v9.2/accounts(" in text
    assert '"name":"Batch Co"' in text and "HTTP/1.1 200 OK" in text
    found = (
        await dataverse.client.get(f"{API}/accounts?$filter=name eq 'Batch Co'&$select=telephone1")
    ).json()["value"]
    assert [r["telephone1"] for r in found] == ["555-0101"]


async def test_a_failed_change_set_rolls_back_and_stops_the_batch(dataverse: InProcess) -> None:
    ops = [
        _change_set("changeset_b", [
            _op("POST", "leads", '{"lastname": "RolledBack"}', 1),
            _op("PATCH", f"leads({MISSING})", '{"lastname": "x"}', 2, extra="If-Match: *\r\n"),
        ]),
        _op("POST", "leads", '{"lastname": "AfterFailure"}'),
    ]  # fmt: skip
    text = await _post_batch(dataverse, _batch("batch_x", ops))
    assert "HTTP/1.1 404 Not Found" in text and "0x80040217" in text and "changesetresponse" not in text
    assert "AfterFailure" not in text and text.count("HTTP/1.1") == 1
    for name in ("RolledBack", "AfterFailure"):
        assert (await dataverse.client.get(f"{API}/leads?$filter=lastname eq '{name}'")).json()["value"] == []
    log = (await dataverse.control("GET", "/writes")).json()
    assert [(w["method"], w["success"], w["rolled_back"]) for w in log] == [
        ("POST", True, True),
        ("PATCH", False, True),
    ]
    kept_going = await _post_batch(dataverse, _batch("batch_x", ops), prefer="odata.continue-on-error")
    assert kept_going.count("HTTP/1.1") == 2
    assert (
        len((await dataverse.client.get(f"{API}/leads?$filter=lastname eq 'AfterFailure'")).json()["value"])
        == 1
    )


async def test_a_batch_over_a_thousand_operations_is_refused(dataverse: InProcess) -> None:
    ops = [_op("GET", "leads?$top=1") for _ in range(1001)]
    answer = await dataverse.client.post(f"{API}/$batch", content=_batch("batch_x", ops),
                                  headers={"Content-Type": "multipart/mixed; boundary=batch_x"})  # fmt: skip
    assert answer.status_code == 400 and "1000" in answer.json()["error"]["message"]
