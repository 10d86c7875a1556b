"""The Dynamics 365 connector's reads against a fake Dataverse over httpx.MockTransport: attribute
metadata as describes (types per R4), pages through `@odata.nextLink`, change tracking with delta
links and `$deletedEntity` (R16), owners and accounts filled in, lead qualification (R17), opt-outs (R23)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from crmsync.common.crm.dynamics import (
    ChangeTokenExpired,
    DynamicsConnector,
    DynamicsCredentials,
    DynamicsOptions,
    field_type,
)
from crmsync.common.crm.interface import ChangeCursorExpired
from crmsync.common.crm.roles import role_value
from crmsync.common.domain.fields import DataType

ORG = "https://org.example.test"
API = "/api/data/v9.2"
CREDENTIALS = DynamicsCredentials("https://login.example.test", "t", "app", "secret", ORG)
OWNER = "11111111-0000-0000-0000-000000000001"
ACCOUNT = "22222222-0000-0000-0000-000000000001"
CONTACT = "33333333-0000-0000-0000-000000000001"


def lead_id(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def attribute(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"LogicalName": name, "AttributeType": kind, "IsValidForUpdate": True, "IsValidForCreate": True,
            "IsValidForRead": True, "RequiredLevel": {"Value": "None"},
            "DisplayName": {"UserLocalizedLabel": {"Label": name.title()}}, **extra}  # fmt: skip


LEAD_ATTRIBUTES = [
    attribute("leadid", "Uniqueidentifier", IsValidForUpdate=False),
    attribute("modifiedon", "DateTime", IsValidForUpdate=False, IsValidForCreate=False, Format="DateAndTime"),
    attribute("firstname", "String", MaxLength=50, Format="Text", FormatName={"Value": "Text"}),
    attribute("emailaddress1", "String", MaxLength=100, Format="Email", FormatName={"Value": "Email"}),
    attribute("description", "Memo", MaxLength=2000),
    attribute("donotemail", "Boolean"),
    attribute("donotbulkemail", "Boolean"),
    attribute("birthday", "DateTime", Format="DateOnly", DateTimeBehavior={"Value": "DateOnly"}),
    attribute("numberofemployees", "Integer"),
    attribute("revenue", "Money"),
    attribute("leadsourcecode", "Picklist"),
    attribute("interests", "Virtual", AttributeTypeName={"Value": "MultiSelectPicklistType"}),
    attribute("statecode", "State"),
    attribute("ownerid", "Owner", Targets=["systemuser", "team"]),
    attribute("owneridname", "String", AttributeOf="ownerid"),
    attribute("parentcontactid", "Lookup", Targets=["contact"]),
]


class FakeDataverse:
    """Metadata, pages of leads (two a page), users, and a change feed served from `changes`."""

    def __init__(self, leads: int = 5) -> None:
        self.requests: list[httpx.Request] = []
        self.leads = [
            {"leadid": lead_id(i), "modifiedon": f"2026-11-20T08:0{i}:00Z", "firstname": f"Ada{i}",
             "emailaddress1": f"ada{i}@example.com", "donotemail": i == 1, "donotbulkemail": False,
             "birthday": "1990-05-17", "statecode": 0, "interests": "1,3", "_ownerid_value": OWNER, "_parentcontactid_value": None}
            for i in range(leads)
        ]  # fmt: skip
        self.changed: list[dict[str, Any]] = []
        self.contacts: list[dict[str, Any]] = []
        self.expired = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        self.requests.append(request)
        path = request.url.path.removeprefix(API + "/")
        if path.startswith("EntityDefinitions"):
            return httpx.Response(200, json={"value": LEAD_ATTRIBUTES})
        if path == "systemusers":
            return httpx.Response(200, json={"value": [
                {"systemuserid": OWNER, "fullname": "Grace Hopper", "internalemailaddress": "grace@example.com"}]})  # fmt: skip
        if path == "leads":
            return self._leads(request)
        if path == "contacts":
            return httpx.Response(200, json={"value": self.contacts})
        return httpx.Response(404, json={"error": {"code": "0x80060888", "message": f"no {path}"}})

    def _leads(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        select = query["$select"].split(",")
        if "$deltatoken" in query:
            if self.expired:
                return httpx.Response(400, json={"error": {"code": "0x80044352",
                                                            "message": "Version stamp associated with the client has expired."}})  # fmt: skip
            return httpx.Response(200, json={"value": self.changed,
                                             "@odata.deltaLink": f"{ORG}{API}/leads?$deltatoken=2!11/20/2026"})  # fmt: skip
        start = int(query.get("$skiptoken", 0))
        page = [
            {"@odata.etag": 'W/"1"', **{k: r.get(k) for k in select}} for r in self.leads[start : start + 2]
        ]
        body: dict[str, Any] = {"value": page}
        if start + 2 < len(self.leads):
            body["@odata.nextLink"] = f"{ORG}{API}/leads?$select={query['$select']}&$skiptoken={start + 2}"
        elif "odata.track-changes" in request.headers.get("Prefer", ""):
            body["@odata.deltaLink"] = f"{ORG}{API}/leads?$select={query['$select']}&$deltatoken=1!11/20/2026"
        return httpx.Response(200, json=body)


def connector(fake: FakeDataverse) -> DynamicsConnector:
    return DynamicsConnector(
        CREDENTIALS, options=DynamicsOptions(max_retries=0), transport=httpx.MockTransport(fake)
    )


async def _all(stream: Any) -> list[Any]:
    return [item async for item in stream]


# ------------------------------------------------------------------ describe


async def test_the_describe_maps_attribute_types_onto_crmsync_s_data_types() -> None:
    async with connector(FakeDataverse()) as dynamics:
        lead = await dynamics.describe("Lead")
    expected = {
        "firstname": {DataType.TEXT}, "emailaddress1": {DataType.EMAIL, DataType.TEXT},
        "description": {DataType.TEXT}, "donotemail": {DataType.BOOLEAN}, "modifiedon": {DataType.DATETIME},
        "birthday": {DataType.DATE}, "numberofemployees": {DataType.NUMBER, DataType.SCORE},
        "revenue": {DataType.NUMBER, DataType.SCORE}, "leadsourcecode": {DataType.TEXT},
        "interests": {DataType.MULTI_TEXT},
    }  # fmt: skip
    assert {name: set(lead.fields[name].fills) for name in expected} == expected
    # The role fields fill by the column behind them.
    assert lead.fields["Email"].fills == {DataType.EMAIL, DataType.TEXT}
    assert lead.fields["OptedOut"].fills == {DataType.BOOLEAN}


async def test_the_describe_takes_length_updateability_and_lookups_from_the_metadata() -> None:
    async with connector(FakeDataverse()) as dynamics:
        lead = await dynamics.describe("lead")
    assert lead.name == "Lead"
    assert lead.fields["emailaddress1"].length == 100 and lead.fields["emailaddress1"].updateable
    assert not lead.fields["modifiedon"].updateable and not lead.fields["leadid"].updateable
    owner = lead.fields["_ownerid_value"]
    assert (owner.type, owner.reference_to) == ("reference", ("systemuser", "team"))
    assert "owneridname" not in lead.fields  # a shadow of the lookup
    # role fields beside the attributes, the connector's own names for identity, qualification and opt-out
    assert {"Id", "modifiedon", "OwnerId", "Qualified", "QualifiedContactId", "OptedOut"} <= set(lead.fields)
    assert lead.fields["OptedOut"].updateable and not lead.fields["Qualified"].updateable
    assert not {"SystemModstamp", "IsConverted", "ConvertedContactId"} & set(lead.fields)
    # a role field that renames a column is written as that column; one behind a lookup is not writable
    assert (lead.fields["Email"].type, lead.fields["Email"].updateable) == ("email", True)
    assert not lead.fields["Id"].updateable


def test_type_mapping_of_each_attribute_type() -> None:
    cases = {
        ("BigInt", None): "long", ("Double", None): "double", ("Decimal", None): "double",
        ("Status", None): "picklist", ("String", "Phone"): "phone", ("String", "Url"): "url",
        ("Customer", None): "reference", ("DateTime", "DateAndTime"): "datetime",
    }  # fmt: skip
    for (kind, fmt), expected in cases.items():
        assert field_type({"AttributeType": kind, "Format": fmt}) == expected


# --------------------------------------------------------------------- reads


async def test_a_full_read_pages_through_next_links_with_a_page_size_preference() -> None:
    fake = FakeDataverse(leads=5)
    async with connector(fake) as dynamics:
        pages = await _all(dynamics.export_all("Lead", ["firstname", "emailaddress1"]))
    assert [len(p) for p in pages] == [2, 2, 1]
    reads = [r for r in fake.requests if r.url.path.endswith("/leads")]
    assert all(r.headers["Prefer"] == "odata.maxpagesize=5000" for r in reads)
    first = pages[0][0]
    assert first["Id"] == lead_id(0) and first["firstname"] == "Ada0"
    assert first["modifiedon"] == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert "SystemModstamp" not in first
    assert "@odata.etag" not in first


async def test_records_carry_their_owner_typed_dates_and_multi_select_options() -> None:
    async with connector(FakeDataverse(leads=1)) as dynamics:
        [[lead]] = await _all(
            dynamics.export_all("Lead", ["Owner.Name", "Owner.Email", "birthday", "interests"])
        )
    assert lead["OwnerId"] == OWNER
    assert lead["Owner"] == {"Name": "Grace Hopper", "Email": "grace@example.com"}
    assert lead["birthday"] == date(1990, 5, 17)
    assert lead["interests"] == "1;3"  # options separated as the interface's multi-select values are


async def test_changed_since_filters_and_orders_by_modifiedon() -> None:
    fake = FakeDataverse(leads=1)
    async with connector(fake) as dynamics:
        await _all(
            dynamics.changed_since("Lead", ["firstname"], datetime(2026, 11, 20, 8, 30, 15, 500, tzinfo=UTC))
        )
    query = fake.requests[-1].url.params
    assert query["$filter"] == "modifiedon ge 2026-11-20T08:30:15Z"
    assert query["$orderby"] == "modifiedon asc,leadid asc"


async def test_a_qualified_lead_names_the_contact_it_became() -> None:
    fake = FakeDataverse(leads=2)
    fake.leads[1].update(statecode=1, _parentcontactid_value=CONTACT)
    async with connector(fake) as dynamics:
        [records] = await _all(dynamics.export_all("Lead", ["firstname"]))
    assert [(r["Qualified"], r["QualifiedContactId"]) for r in records] == [(False, None), (True, CONTACT)]
    assert not any("IsConverted" in r or "ConvertedContactId" in r for r in records)


async def test_a_lead_qualified_with_a_new_contact_is_named_by_that_contact_s_originating_lead() -> None:
    fake = FakeDataverse(leads=1)
    fake.leads[0].update(statecode=1)
    fake.contacts = [{"contactid": CONTACT, "_originatingleadid_value": lead_id(0)}]
    async with connector(fake) as dynamics:
        [[lead]] = await _all(dynamics.export_all("Lead", ["firstname"]))
    assert (lead["Qualified"], lead["QualifiedContactId"]) == (True, CONTACT)
    assert fake.requests[-1].url.params["$filter"] == f"_originatingleadid_value eq {lead_id(0)}"


async def test_an_opt_out_is_either_do_not_email_flag() -> None:
    fake = FakeDataverse(leads=3)
    fake.leads[2]["donotbulkemail"] = True
    async with connector(fake) as dynamics:
        [first, second] = await _all(dynamics.export_all("Lead", ["OptedOut"]))
    assert [r["OptedOut"] for r in first + second] == [False, True, True]


async def test_reads_by_id_ask_for_those_ids_only_and_skip_what_is_no_guid() -> None:
    fake = FakeDataverse(leads=1)
    async with connector(fake) as dynamics:
        await dynamics.get_by_ids("Lead", [lead_id(0), "not-a-guid", lead_id(3)], ["firstname"])
    assert fake.requests[-1].url.params["$filter"] == f"leadid eq {lead_id(0)} or leadid eq {lead_id(3)}"


# ---------------------------------------------------------- change tracking


async def test_change_tracking_starts_with_every_record_and_ends_with_a_cursor() -> None:
    fake = FakeDataverse(leads=3)
    async with connector(fake) as dynamics:
        batches = await _all(dynamics.changes("Lead", ["firstname"], None))
    assert [len(b.records) for b in batches] == [2, 1]
    assert [b.cursor for b in batches] == [None, "1!11/20/2026"]
    first = next(r for r in fake.requests if r.url.path.endswith("/leads"))
    assert first.headers["Prefer"] == "odata.track-changes,odata.maxpagesize=5000"


async def test_following_a_cursor_yields_changes_and_deletions() -> None:
    fake = FakeDataverse(leads=1)
    fake.changed = [
        {"leadid": lead_id(0), "modifiedon": "2026-11-21T09:00:00Z", "firstname": "Ada!"},
        {
            "@odata.context": f"{ORG}{API}/$metadata#leads/$deletedEntity",
            "id": lead_id(7),
            "reason": "deleted",
        },
    ]
    async with connector(fake) as dynamics:
        [batch] = await _all(dynamics.changes("Lead", ["firstname"], "1!11/20/2026"))
    assert [r["firstname"] for r in batch.records] == ["Ada!"]
    assert batch.deleted_ids == [lead_id(7)]
    assert batch.cursor == "2!11/20/2026"
    assert fake.requests[-1].url.params["$deltatoken"] == "1!11/20/2026"


async def test_an_expired_cursor_asks_for_a_full_read() -> None:
    fake = FakeDataverse(leads=1)
    fake.expired = True
    async with connector(fake) as dynamics:
        with pytest.raises(ChangeTokenExpired) as caught:
            await _all(dynamics.changes("Lead", ["firstname"], "1!11/20/2026"))
    assert isinstance(caught.value, ChangeCursorExpired)


async def test_the_role_fields_a_connector_declares_are_the_ones_its_records_carry() -> None:
    async with connector(FakeDataverse(leads=2)) as dynamics:
        roles = dynamics.roles
        [records] = await _all(dynamics.export_all("Lead", list(roles.person_fields("Lead"))))
    lead = records[0]
    assert role_value(lead, roles.id) == lead_id(0)
    assert role_value(lead, roles.modified_at) == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert role_value(lead, roles.owner_id) == OWNER
    assert role_value(lead, roles.owner_name) == "Grace Hopper"
    assert role_value(lead, roles.owner_email) == "grace@example.com"
    assert role_value(lead, roles.converted) is False and role_value(lead, roles.converted_to) is None


async def test_a_count_beyond_what_odata_count_counts_pages_through_the_ids() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        if request.url.params.get("$count") == "true":
            return httpx.Response(200, json={"@odata.count": 5000, "value": [{"leadid": lead_id(0)}]})
        page = int(request.url.params.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": [{"leadid": lead_id(i)} for i in range(5000 if page < 2 else 7)]}
        if page < 2:
            body["@odata.nextLink"] = f"{ORG}{API}/leads?$select=leadid&$skiptoken={page + 1}"
        return httpx.Response(200, json=body)

    transport = httpx.MockTransport(handler)
    async with DynamicsConnector(
        CREDENTIALS, options=DynamicsOptions(max_retries=0), transport=transport
    ) as dynamics:
        assert await dynamics.count("Lead") == 10_007
