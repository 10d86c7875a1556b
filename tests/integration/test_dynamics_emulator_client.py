"""Microsoft's own Dataverse client (`powerplatform-dataverse-client`) against the emulator, unchanged:
sign-in through azure-identity's ClientSecretCredential pointed at the emulator's token endpoint, metadata
resolution, queries with paging, create, update, CreateMultiple / UpdateMultiple, and $batch change sets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.config import DataverseConfig
from PowerPlatform.Dataverse.core.errors import HttpError

from tests.support.dynamics_emulator import DynamicsEmulator, dynamics, dynamics_emulator

__all__ = ["dynamics", "dynamics_emulator"]
pytestmark = pytest.mark.integration


@pytest.fixture
def client(dynamics: DynamicsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataverseClient]:
    # The emulator's certificate is self-signed: requests (under both the client and azure-identity) trust it here.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dynamics.cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(dynamics.cert))
    credential = ClientSecretCredential(
        dynamics.tenant, dynamics.client_id, dynamics.client_secret,
        authority=dynamics.base_url, disable_instance_discovery=True,
    )  # fmt: skip
    with DataverseClient(dynamics.base_url, credential, DataverseConfig()) as dataverse:
        yield dataverse


def test_a_query_pages_through_every_matching_record(
    client: DataverseClient, dynamics: DynamicsEmulator
) -> None:
    pages = [list(page) for page in client.records.list_pages(
        "lead", select=["firstname", "lastname", "emailaddress1"], filter="statecode eq 0", page_size=40)]  # fmt: skip
    records = [r for page in pages for r in page]
    with dynamics.api() as api:
        expected = api.get("leads", params={"$select": "leadid", "$filter": "statecode eq 0"}).json()["value"]
    assert len(pages) > 1 and all(len(page) <= 40 for page in pages)
    assert [r["leadid"] for r in records] == [r["leadid"] for r in expected]
    assert set(records[0]) >= {"leadid", "firstname", "lastname", "emailaddress1"}
    assert records[0].etag and records[0].etag.startswith('W/"')


def test_create_get_and_update_one_record(client: DataverseClient) -> None:
    lead_id = client.records.create(
        "lead", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )
    client.records.update("lead", lead_id, {"jobtitle": "Analyst", "donotemail": True})
    record = client.records.retrieve("lead", lead_id, select=["fullname", "jobtitle", "donotemail"])
    assert record["leadid"] == lead_id
    assert (record["fullname"], record["jobtitle"], record["donotemail"]) == ("Ada Lovelace", "Analyst", True)


def test_update_of_a_missing_record_is_refused_not_upserted(client: DataverseClient) -> None:
    missing = "00000000-0000-4000-8000-000000000001"
    with pytest.raises(HttpError) as raised:
        client.records.update("contact", missing, {"firstname": "Nobody"})
    assert raised.value.status_code == 404
    assert client.records.retrieve("contact", missing) is None  # the 404 it got


def test_bulk_create_and_update_multiple(client: DataverseClient) -> None:
    ids = client.records.create(
        "contact", [{"firstname": f"Bulk{i}", "lastname": "Person"} for i in range(25)]
    )
    assert len(ids) == 25 and len(set(ids)) == 25
    client.records.update("contact", ids, {"jobtitle": "Buyer"})
    found = list(client.records.list("contact", select=["jobtitle"], filter="lastname eq 'Person'"))
    assert {r["contactid"] for r in found} >= set(ids)
    assert {r["jobtitle"] for r in found if r["contactid"] in ids} == {"Buyer"}


def test_a_batch_with_a_change_set_and_a_failing_one(client: DataverseClient) -> None:
    batch = client.batch.new()
    with batch.changeset() as cs:
        ref = cs.records.create("account", {"name": "Batch Works"})
        cs.records.update("account", ref, {"telephone1": "555-0100"})
    result = batch.execute()
    assert not result.has_errors and len(result.entity_ids) >= 1
    account_id = result.entity_ids[0]
    assert client.records.retrieve("account", account_id, select=["telephone1"])["telephone1"] == "555-0100"

    failing = client.batch.new()
    with failing.changeset() as cs:
        cs.records.create("account", {"name": "Rolled Back"})
        cs.records.update("account", "00000000-0000-4000-8000-000000000002", {"name": "missing"})
    outcome = failing.execute()
    assert outcome.has_errors and outcome.failed[0].status_code == 404
    assert list(client.records.list("account", filter="name eq 'Rolled Back'")) == []


def test_a_wrong_secret_cannot_sign_in(dynamics: DynamicsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dynamics.cert))
    credential = ClientSecretCredential(dynamics.tenant, dynamics.client_id, "wrong",
                                        authority=dynamics.base_url, disable_instance_discovery=True)  # fmt: skip
    with (
        DataverseClient(dynamics.base_url, credential) as dataverse,
        pytest.raises(ClientAuthenticationError) as raised,
    ):
        dataverse.records.retrieve("lead", "00000000-0000-4000-8000-000000000003")
    assert "AADSTS7000215" in str(raised.value)


def test_option_labels_metadata_and_a_delete(client: DataverseClient) -> None:
    # The client turns an option's label into its value from the table's picklist metadata.
    lead_id = client.records.create("lead", {"lastname": "Labelled", "leadsourcecode": "Trade Show"})
    assert client.records.retrieve("lead", lead_id, select=["leadsourcecode"])["leadsourcecode"] == 7
    info = client.tables.get("contact")
    assert (
        info is not None
        and info["entity_set_name"] == "contacts"
        and info["primary_id_attribute"] == "contactid"
    )
    client.records.delete("lead", lead_id)
    assert client.records.retrieve("lead", lead_id) is None
