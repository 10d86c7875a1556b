"""The Dataverse emulator's crmsync solution columns (a whole-number score, a multi-select choice),
RetrieveTotalRecordCount, the lock fault and a reset to another dataset."""

from __future__ import annotations

import httpx

from crmsync.common.crm.dynamics import DynamicsConnector, DynamicsCredentials
from crmsync.common.crm.providers import provider_named
from crmsync.common.crm.roles import PERSON_KINDS
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import PushPolicy
from crmsync.common.domain.mapping_rules import check_mapping
from tests.support.dynamics_emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    IN_PROCESS_URL,
    TENANT,
    InProcess,
    dataverse,
)

__all__ = ["dataverse"]
API = "/api/data/v9.2"
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


async def _attribute(dataverse: InProcess, table: str, name: str, **params: str) -> dict:
    answer = await dataverse.client.get(
        f"{API}/EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{name}')", params=params
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_leads_and_contacts_have_the_solution_s_score_and_interests_columns(
    dataverse: InProcess,
) -> None:
    for table in ("lead", "contact"):
        score = await _attribute(dataverse, table, "crmsync_marketingscore")
        assert (score["AttributeType"], score["IsCustomAttribute"], score["IsValidForUpdate"]) == (
            "Integer", True, True,
        )  # fmt: skip
        assert score["SchemaName"] == "crmsync_MarketingScore" and score["MaxValue"] == 2_147_483_647
        interests = await _attribute(dataverse, table, "crmsync_interests", **{"$expand": "OptionSet"})
        assert interests["@odata.type"] == "#Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
        assert (interests["AttributeType"], interests["AttributeTypeName"]["Value"]) == (
            "Virtual", "MultiSelectPicklistType",
        )  # fmt: skip
        assert {o["Value"] for o in interests["OptionSet"]["Options"]} >= {100000000, 100000005}
    cast = await dataverse.client.get(
        f"{API}/EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
    )
    assert [a["LogicalName"] for a in cast.json()["value"]] == ["crmsync_interests"]


async def test_the_default_dynamics_mapping_passes_the_mapping_rules_against_the_emulator(
    dataverse: InProcess,
) -> None:
    credentials = DynamicsCredentials(
        authority_url=IN_PROCESS_URL, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        resource_url=IN_PROCESS_URL,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=dataverse.client._transport.app)  # type: ignore[attr-defined]
    async with DynamicsConnector(credentials, transport=transport) as connector:
        lead, contact = await connector.describe("Lead"), await connector.describe("Contact")
    assert lead.fields["crmsync_interests"].fills == {DataType.MULTI_TEXT}
    assert contact.fields["crmsync_marketingscore"].fills >= {DataType.SCORE}
    dynamics = provider_named("dynamics")
    violations = check_mapping(
        dynamics.default_mapping().rows, lead_describe=lead.fields, contact_describe=contact.fields,
        policy=PushPolicy(), email_fields={kind: dynamics.email_field(kind) for kind in PERSON_KINDS},
    )  # fmt: skip
    assert violations == []


async def test_generated_people_carry_scores_and_interests_of_the_option_set(dataverse: InProcess) -> None:
    answer = await dataverse.client.get(
        f"{API}/contacts", params={"$select": "crmsync_marketingscore,crmsync_interests"}
    )
    records = answer.json()["value"]
    scores = [r["crmsync_marketingscore"] for r in records]
    assert any(s is None for s in scores) and all(0 <= s <= 100 for s in scores if s is not None)
    chosen = [r["crmsync_interests"] for r in records if r["crmsync_interests"]]
    assert chosen and all({int(v) for v in c.split(",")} <= set(range(100000000, 100000006)) for c in chosen)


async def test_a_multi_select_choice_is_written_and_read_as_comma_separated_option_values(
    dataverse: InProcess,
) -> None:
    created = await dataverse.client.post(
        f"{API}/leads", json={"lastname": "Chooser", "crmsync_interests": "100000003,100000000,100000003",
                              "crmsync_marketingscore": 42},
        headers={"Prefer": "return=representation"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    lead_id = created.json()["leadid"]
    read = await dataverse.client.get(
        f"{API}/leads({lead_id})?$select=crmsync_interests,crmsync_marketingscore",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = read.json()
    assert (body["crmsync_interests"], body["crmsync_marketingscore"]) == ("100000000,100000003", 42)
    assert body[f"crmsync_interests{FORMATTED}"] == "Analytics; Events"
    outside = await dataverse.client.patch(f"{API}/leads({lead_id})", json={"crmsync_interests": "7"})
    assert outside.status_code == 400 and "outside the valid range" in outside.json()["error"]["message"]
    wrong = await dataverse.client.patch(f"{API}/leads({lead_id})", json={"crmsync_interests": [100000000]})
    assert wrong.status_code == 400
    cleared = await dataverse.client.patch(f"{API}/leads({lead_id})", json={"crmsync_interests": ""})
    assert cleared.status_code == 204
    after = await dataverse.client.get(f"{API}/leads({lead_id})?$select=crmsync_interests")
    assert after.json()["crmsync_interests"] is None


async def test_retrieve_total_record_count_counts_each_table_named(dataverse: InProcess) -> None:
    lead = (await dataverse.client.get(f"{API}/leads?$top=1&$select=leadid")).json()["value"][0]
    await dataverse.control("DELETE", f"/tables/lead/{lead['leadid']}")
    aliased = await dataverse.client.get(
        f"{API}/RetrieveTotalRecordCount(EntityNames=@p1)", params={"@p1": '["lead","contact"]'}
    )
    assert aliased.status_code == 200, aliased.text
    counts = aliased.json()["EntityRecordCountCollection"]
    assert (counts["Keys"], counts["Values"], counts["Count"]) == (["lead", "contact"], [119, 90], 2)
    inline = await dataverse.client.get(f"{API}/RetrieveTotalRecordCount(EntityNames=['account'])")
    assert inline.json()["EntityRecordCountCollection"]["Values"] == [30]
    unknown = await dataverse.client.get(f"{API}/RetrieveTotalRecordCount(EntityNames=['invoice'])")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "0x80040217"


async def test_a_lock_fault_fails_the_next_writes_with_the_deadlock_and_reads_go_on(
    dataverse: InProcess,
) -> None:
    lead = (await dataverse.client.get(f"{API}/leads?$top=1&$select=leadid")).json()["value"][0]
    assert (await dataverse.control("POST", "/faults", {"kind": "lock", "count": 1})).status_code == 200
    assert (await dataverse.client.get(f"{API}/leads({lead['leadid']})")).status_code == 200
    locked = await dataverse.client.patch(f"{API}/leads({lead['leadid']})", json={"jobtitle": "Locked"})
    assert locked.status_code == 500
    assert locked.json()["error"]["code"] == "0x80044150" and "1205" in locked.json()["error"]["message"]
    again = await dataverse.client.patch(f"{API}/leads({lead['leadid']})", json={"jobtitle": "Written"})
    assert again.status_code == 204
    writes = (await dataverse.control("GET", "/writes")).json()
    assert [w["status"] for w in writes] == [500, 204]


async def test_a_reset_may_choose_another_dataset(dataverse: InProcess) -> None:
    before = (await dataverse.client.get(f"{API}/leads?$top=1&$select=leadid")).json()["value"][0]
    assert (
        await dataverse.control("POST", "/reset", {"leads": 7, "contacts": 4, "seed": 2})
    ).status_code == 204
    (environment,) = (await dataverse.control("GET", "/environments")).json()
    assert (environment["records"]["lead"], environment["records"]["contact"], environment["seed"]) == (
        7,
        4,
        2,
    )
    after = (await dataverse.client.get(f"{API}/leads?$top=1&$select=leadid,lastname")).json()["value"][0]
    assert after["leadid"] != before["leadid"]
    refused = await dataverse.control("POST", "/reset", {"leads": -1})
    assert refused.status_code == 400
