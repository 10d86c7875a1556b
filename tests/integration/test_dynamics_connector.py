"""The Dynamics 365 connector against the Dataverse emulator over HTTPS: sign-in and token renewal,
describes, paged and incremental reads, change tracking with deletions (R16) and an expired cursor,
lead qualification (R17), opt-outs (R23), `$batch` creates and updates (R9, R10), 429 with
Retry-After and the service-protection reserve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from crmsync.common.clock import utc_now
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.dynamics import (
    ChangeTokenExpired,
    DynamicsConnector,
    DynamicsCredentials,
    DynamicsOptions,
    connector_for,
    default_dynamics_mapping,
)
from crmsync.common.crm.interface import CrmBudgetExhausted
from crmsync.common.crm.providers import provider_named
from crmsync.common.crm.roles import PERSON_KINDS
from crmsync.common.crypto import SecretBox
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import PushPolicy
from crmsync.common.domain.mapping_rules import check_mapping
from crmsync.puller.handlers.crm_records import CONTACT, LEAD, fields_to_read, map_record
from tests.support.dynamics_emulator import DynamicsEmulator, dynamics, dynamics_emulator

__all__ = ["dynamics", "dynamics_emulator"]
pytestmark = pytest.mark.integration

OPTIONS = DynamicsOptions(page_size=40, max_retries=3, backoff_initial_s=0.01, backoff_max_s=3)


def emulator_connector(emulator: DynamicsEmulator, options: DynamicsOptions = OPTIONS) -> DynamicsConnector:
    credentials = DynamicsCredentials(
        authority_url=emulator.base_url, tenant_id=emulator.tenant, client_id=emulator.client_id,
        client_secret=emulator.client_secret, resource_url=emulator.base_url,
    )  # fmt: skip
    transport = httpx.AsyncHTTPTransport(verify=emulator.ssl_context())
    return DynamicsConnector(credentials, options=options, transport=transport, account_id="acme")


@pytest.fixture
async def connector(dynamics: DynamicsEmulator) -> AsyncIterator[DynamicsConnector]:
    async with emulator_connector(dynamics) as dynamics_connector:
        yield dynamics_connector


async def _all(stream: Any) -> list[Any]:
    return [item async for item in stream]


def _records(emulator: DynamicsEmulator, table: str, limit: int = 1000) -> list[dict[str, Any]]:
    answer = emulator.control("GET", f"/tables/{table}?limit={limit}")
    answer.raise_for_status()
    return answer.json()


async def test_the_lead_describe_types_its_columns_per_r4(connector: DynamicsConnector) -> None:
    lead = await connector.describe("Lead")
    assert lead.fields["firstname"].fills == {DataType.TEXT}
    assert lead.fields["donotemail"].fills == {DataType.BOOLEAN}
    assert lead.fields["modifiedon"].fills == {DataType.DATETIME}
    assert DataType.NUMBER in lead.fields["revenue"].fills
    assert lead.fields["firstname"].length == 50 and lead.fields["firstname"].updateable
    assert not lead.fields["modifiedon"].updateable


async def test_r7_the_default_mapping_passes_the_mapping_rules_with_the_solution_s_columns(
    connector: DynamicsConnector,
) -> None:
    lead, contact = await connector.describe("Lead"), await connector.describe("Contact")
    provider = provider_named("dynamics")
    email_fields = {kind: provider.email_field(kind) for kind in PERSON_KINDS}
    violations = check_mapping(
        provider.default_mapping().rows, lead_describe=lead.fields, contact_describe=contact.fields,
        policy=PushPolicy(), email_fields=email_fields,
    )  # fmt: skip
    assert violations == []
    assert lead.fields["crmsync_marketingscore"].fills == {DataType.NUMBER, DataType.SCORE}


async def test_a_full_read_returns_every_lead_in_pages(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    pages = await _all(
        connector.export_all("Lead", ["firstname", "emailaddress1", "Owner.Name", "Owner.Email"])
    )
    records = [r for page in pages for r in page]
    assert len(records) == 300 == await connector.count("Lead")
    assert max(len(p) for p in pages) == 40
    assert len({r["Id"] for r in records}) == 300
    owned = [r for r in records if r["OwnerId"]]
    assert owned and all(r["Owner"]["Name"] for r in owned)


async def test_contacts_carry_their_account_s_name(connector: DynamicsConnector) -> None:
    [*pages] = await _all(connector.export_all("Contact", ["lastname", "Account.Name"]))
    records = [r for page in pages for r in page]
    with_account = [r for r in records if r["AccountId"]]
    assert with_account and all(r["Account"]["Name"] for r in with_account)


async def test_an_incremental_read_returns_what_changed_since(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    before = utc_now() - timedelta(seconds=1)
    lead = _records(dynamics, "lead", 1)[0]
    dynamics.control("PATCH", f"/tables/lead/{lead['leadid']}", json={"fields": {"firstname": "Changed"}})
    records = [r for page in await _all(connector.changed_since("Lead", ["firstname"], before)) for r in page]
    assert [(r["Id"], r["firstname"]) for r in records] == [(lead["leadid"], "Changed")]


async def test_change_tracking_yields_changes_and_deletions_then_a_new_cursor(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    batches = await _all(connector.changes("Lead", ["firstname"], None))
    assert sum(len(b.records) for b in batches) == 300
    cursor = batches[-1].cursor
    assert cursor is not None and all(b.cursor is None for b in batches[:-1])
    changed, gone = _records(dynamics, "lead", 2)
    dynamics.control("PATCH", f"/tables/lead/{changed['leadid']}", json={"fields": {"firstname": "Ada"}})
    dynamics.control("DELETE", f"/tables/lead/{gone['leadid']}").raise_for_status()
    [delta] = await _all(connector.changes("Lead", ["firstname"], cursor))
    assert [(r["Id"], r["firstname"]) for r in delta.records] == [(changed["leadid"], "Ada")]
    assert delta.deleted_ids == [gone["leadid"]]
    assert delta.cursor is not None and delta.cursor != cursor
    [quiet] = await _all(connector.changes("Lead", ["firstname"], delta.cursor))
    assert quiet.records == [] and quiet.deleted_ids == []


async def test_an_expired_cursor_raises_change_token_expired(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    batches = await _all(connector.changes("Contact", ["lastname"], None))
    dynamics.control("POST", "/expire-change-tokens").raise_for_status()
    with pytest.raises(ChangeTokenExpired):
        await _all(connector.changes("Contact", ["lastname"], batches[-1].cursor))


async def test_a_qualified_lead_names_its_contact(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    lead = next(r for r in _records(dynamics, "lead") if r["statecode"] == 0)
    qualified = dynamics.control("POST", f"/leads/{lead['leadid']}/qualify", json={})
    qualified.raise_for_status()
    [record] = await connector.get_by_ids("Lead", [lead["leadid"]], ["firstname"])
    roles = connector.roles
    assert record[roles.converted] is True
    assert record[roles.converted_to] == qualified.json()["contactid"]


async def test_opt_outs_read_and_write_both_flags(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    contact = _records(dynamics, "contact", 1)[0]
    [result] = await connector.update("Contact", [{"Id": contact["contactid"], "OptedOut": True}])
    assert result.success, result.errors
    stored = dynamics.control("GET", f"/tables/contact/{contact['contactid']}").json()
    assert stored["donotemail"] is True and stored["donotbulkemail"] is True
    [record] = await connector.get_by_ids("Contact", [contact["contactid"]], ["OptedOut"])
    assert record["OptedOut"] is True


async def test_creates_and_updates_go_through_batch(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    created = await connector.create("Lead", [{"lastname": "Lovelace", "emailaddress1": "ada@example.com"},
                                              {"lastname": "x" * 60}])  # fmt: skip
    assert [r.success for r in created] == [True, False]
    assert created[1].errors and "lastname" in created[1].errors[0].fields
    new_id = created[0].id
    assert new_id is not None
    updated = await connector.update("Lead", [{"Id": new_id, "firstname": "Ada"}])
    assert updated[0].success
    stored = dynamics.control("GET", f"/tables/lead/{new_id}").json()
    assert (stored["firstname"], stored["lastname"]) == ("Ada", "Lovelace")


async def test_an_update_of_a_vanished_record_creates_nothing(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    before = await connector.count("Lead")
    missing = "12345678-1234-1234-1234-123456789012"
    [result] = await connector.update("Lead", [{"Id": missing, "firstname": "Ghost"}])
    assert not result.success
    assert await connector.count("Lead") == before
    assert dynamics.control("GET", f"/tables/lead/{missing}").status_code == 404


async def test_a_429_is_waited_out_and_the_read_succeeds(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    dynamics.control("POST", "/faults", json={"kind": "429", "count": 2, "retry_after": 1}).raise_for_status()
    assert await connector.count("Contact") == 300


async def test_a_token_the_environment_forgot_is_renewed(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    await connector.count("Lead")
    dynamics.control("POST", "/expire-tokens").raise_for_status()
    assert await connector.count("Lead") == 300


async def test_the_budget_follows_service_protection_and_keeps_the_reserve(
    dynamics: DynamicsEmulator,
) -> None:
    dynamics.control("POST", "/faults", json={"kind": "throttle", "limit": 6000, "window_seconds": 300})
    options = DynamicsOptions(window_requests=6000, budget_reserve_calls=5990, budget_slowdown_fraction=0)
    async with emulator_connector(dynamics, options) as dynamics_connector:
        await dynamics_connector.count("Lead")
        budget = await dynamics_connector.budget()
        assert 0 < budget.used < 10 and budget.limit == 6000
        for _ in range(12):
            try:
                await dynamics_connector.count("Lead")
            except CrmBudgetExhausted:
                break
        else:
            pytest.fail("the connector ate into the reserve")


async def test_sample_values_are_distinct_and_non_empty(connector: DynamicsConnector) -> None:
    values = await connector.sample_values("Lead", "address1_city", limit=5)
    assert 0 < len(values) <= 5 and len(set(values)) == len(values) and all(values)


async def test_a_stored_connection_reaches_the_environment(dynamics: DynamicsEmulator) -> None:
    box = SecretBox("a-test-key-of-enough-length-for-the-box")
    connection = CrmConnectionInfo(
        account_id="acme", provider="dynamics", login_url=f"{dynamics.base_url}/{dynamics.tenant}",
        auth_method="client_credentials", client_id=dynamics.client_id,
        secrets_encrypted=box.seal({"client_secret": dynamics.client_secret}), instance_url=dynamics.base_url,
    )  # fmt: skip
    transport = httpx.AsyncHTTPTransport(verify=dynamics.ssl_context())
    async with connector_for(connection, secret_box=box, transport=transport) as stored:
        assert await stored.count("Contact") == 300


async def test_the_puller_s_record_mapping_reads_dynamics_records_as_they_come(
    connector: DynamicsConnector, dynamics: DynamicsEmulator
) -> None:
    mapping = default_dynamics_mapping()
    lead = next(r for r in _records(dynamics, "lead") if r["statecode"] == 0)
    contact_id = dynamics.control("POST", f"/leads/{lead['leadid']}/qualify", json={}).json()["contactid"]
    for entity in (LEAD, CONTACT):
        described = await connector.describe(entity)
        fields = fields_to_read(
            mapping=mapping, roles=connector.roles, entity=entity, described_fields=set(described.fields)
        )
        ids = [lead["leadid"]] if entity == LEAD else [contact_id]
        [record] = await connector.get_by_ids(entity, ids, fields)
        mapped = map_record(mapping=mapping, roles=connector.roles, entity=entity, record=record)
        assert mapped.external_id == ids[0] and mapped.modstamp.tzinfo is not None
        assert mapped.values["email"] == lead["emailaddress1"]
        assert mapped.values["opted_out"] in (True, False)
        assert "score" in mapped.values
        assert mapped.owner_external_id and mapped.owner_name and mapped.owner_email
        if entity == LEAD:
            assert mapped.converted_contact_id == contact_id
