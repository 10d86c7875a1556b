"""The Salesforce connector against the emulator over HTTP: every path and every fault."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crmsync.common.crm.factory import connector_for
from crmsync.common.crm.interface import (
    ChangeCursorExpired,
    CrmAuthError,
    CrmBudgetExhausted,
    CrmRejected,
    CrmTransientError,
)
from crmsync.common.crm.salesforce import (
    ConnectorOptions,
    DeletedFeedWindowExceeded,
    SalesforceConnector,
    SalesforceCredentials,
)
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection
from tests.support.emulator import CrmOrg

pytestmark = pytest.mark.integration

LEAD_FIELDS = [
    "FirstName",
    "LastName",
    "Email",
    "Company",
    "HasOptedOutOfEmail",
    "Marketing_Score__c",
    "IsConverted",
    "ConvertedDate",
    "CreatedDate",
    "Owner.Email",
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _options(**overrides: Any) -> ConnectorOptions:
    # Short backoff so retried faults cost milliseconds in tests.
    base = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "budget_slowdown_max_delay_s": 0.01}
    return ConnectorOptions(**{**base, **overrides})


def _connector(org: CrmOrg, **overrides: Any) -> SalesforceConnector:
    credentials = SalesforceCredentials(
        login_url=org.login_url,
        auth_method="client_credentials",
        client_id=org.client_id,
        client_secret=org.client_secret,
    )
    return SalesforceConnector(credentials, options=_options(**overrides))


@pytest_asyncio.fixture
async def crm(crm_org: CrmOrg) -> AsyncIterator[SalesforceConnector]:
    async with _connector(crm_org) as connector:
        yield connector


async def _all(stream: AsyncIterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record async for batch in stream for record in batch]


# ------------------------------------------------------------------ auth


async def test_client_credentials_grant_reads_the_describe(crm: SalesforceConnector) -> None:
    lead = await crm.describe("Lead")
    assert lead.fields["Marketing_Score__c"].type == "double"
    assert lead.fields["OwnerId"].relationship_name == "Owner"
    assert lead.fields["OwnerId"].reference_to == ("User",)
    assert lead.fields["Email"].updateable


async def test_refresh_token_grant_works(crm_org: CrmOrg) -> None:
    credentials = SalesforceCredentials(
        login_url=crm_org.login_url,
        auth_method="refresh_token",
        client_id=crm_org.client_id,
        client_secret=crm_org.client_secret,
        refresh_token=crm_org.refresh_token,
    )
    async with SalesforceConnector(credentials, options=_options()) as crm:
        assert await crm.count("Lead") == 50


async def test_jwt_bearer_grant_signed_with_the_stored_key_works(make_crm_org: Callable[..., CrmOrg]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    org = make_crm_org(leads=5, contacts=0, jwt_public_key=public.decode())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credentials = SalesforceCredentials(
        login_url=org.login_url,
        auth_method="jwt_bearer",
        client_id=org.client_id,
        username="integration@example.com",
        private_key=private,
    )
    async with SalesforceConnector(credentials, options=_options()) as crm:
        assert await crm.count("Lead") == 5


async def test_a_refused_client_secret_is_an_auth_error(crm_org: CrmOrg) -> None:
    credentials = SalesforceCredentials(
        login_url=crm_org.login_url,
        auth_method="client_credentials",
        client_id=crm_org.client_id,
        client_secret="wrong",
    )
    async with SalesforceConnector(credentials, options=_options()) as crm:
        with pytest.raises(CrmAuthError) as caught:
            await crm.count("Lead")
    assert caught.value.error_code == "invalid_client"


async def test_an_expired_token_is_renewed_once_and_the_call_repeated(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    assert await crm.count("Lead") == 50
    crm_org.expire_tokens()
    assert await crm.count("Lead") == 50
    crm_org.faults("expired_token", count=1)
    assert await crm.count("Contact") == 50


# ------------------------------------------------------------------ reading


async def test_count_counts_records_not_deleted(crm: SalesforceConnector, crm_org: CrmOrg) -> None:
    crm_org.delete("Lead", crm_org.records("Lead", limit=1)[0]["Id"])
    assert await crm.count("Lead") == 49


async def test_changed_since_yields_typed_records_in_systemmodstamp_then_id_order(
    make_crm_org: Callable[..., CrmOrg],
) -> None:
    org = make_crm_org(leads=450, contacts=0)
    since = datetime.now(UTC) + timedelta(days=1)
    tie = since + timedelta(seconds=5)
    ids = [r["Id"] for r in org.records("Lead", limit=20)]
    for record_id in ids[:10]:
        org.edit("Lead", record_id, {"Marketing_Score__c": 7}, system_modstamp=tie)
    org.edit("Lead", ids[10], {"HasOptedOutOfEmail": True}, system_modstamp=since + timedelta(seconds=1))
    async with _connector(org) as crm:
        batches = [b async for b in crm.changed_since("Lead", LEAD_FIELDS, since, page_size=200)]
        everything = [b async for b in crm.changed_since("Lead", ["Email"], T0, page_size=200)]
    records = [r for b in batches for r in b]
    assert [r["Id"] for r in records] == [ids[10], *sorted(ids[:10])]
    first = records[0]
    assert first["HasOptedOutOfEmail"] is True
    assert isinstance(first["SystemModstamp"], datetime) and first["SystemModstamp"].tzinfo is not None
    assert isinstance(first["CreatedDate"], datetime)
    assert records[1]["Marketing_Score__c"] == 7.0
    assert isinstance(records[1]["Owner"]["Email"], str)
    assert "attributes" not in first
    # 450 records in pages of at most 200: streamed, never one big list.
    assert [len(b) for b in everything] == [200, 200, 50]


async def test_rest_and_bulk_exports_return_identical_records(make_crm_org: Callable[..., CrmOrg]) -> None:
    org = make_crm_org(leads=700, contacts=0, seed=5)
    lead_id = org.records("Lead", limit=1)[0]["Id"]
    org.convert_lead(lead_id)
    async with (
        _connector(org, bulk_threshold=10**9) as rest,
        _connector(org, bulk_threshold=0, bulk_max_records=250, page_size=200) as bulk,
    ):
        by_rest = await _all(rest.export_all("Lead", LEAD_FIELDS))
        batches = [b async for b in bulk.export_all("Lead", LEAD_FIELDS)]
    by_bulk = [r for b in batches for r in b]
    assert len(by_rest) == len(by_bulk) == 700
    assert sorted(by_rest, key=lambda r: r["Id"]) == sorted(by_bulk, key=lambda r: r["Id"])
    converted = next(r for r in by_bulk if r["Id"] == lead_id)
    assert converted["IsConverted"] is True and isinstance(converted["ConvertedDate"], date)
    assert max(len(b) for b in batches) <= 200
    jobs = [w for w in org.writes() if "jobs/query" in str(w)]
    assert jobs == []  # Bulk query jobs are reads, never recorded as writes


async def test_export_with_a_compound_address_goes_through_rest(make_crm_org: Callable[..., CrmOrg]) -> None:
    org = make_crm_org(leads=30, contacts=0)
    async with _connector(org, bulk_threshold=0) as crm:
        records = await _all(crm.export_all("Lead", ["Email", "Address"]))
    assert len(records) == 30
    assert all(r["Address"] is None or isinstance(r["Address"], dict) for r in records)


async def test_a_field_list_too_long_for_one_uri_is_split_and_joined_by_id(
    make_crm_org: Callable[..., CrmOrg],
) -> None:
    org = make_crm_org(leads=260, contacts=0)
    fields = [
        *LEAD_FIELDS,
        "SystemModstamp",
        "Title",
        "Phone",
        "MobilePhone",
        "City",
        "State",
        "Country",
        "Industry",
        "Status",
    ]
    async with _connector(org) as whole, _connector(org, max_uri_bytes=900) as split:
        expected = await _all(whole.changed_since("Lead", fields, T0))
        got = await _all(split.changed_since("Lead", fields, T0))
        by_ids = await split.get_by_ids("Lead", [r["Id"] for r in expected[:300]], fields)
    assert got == expected
    assert sorted(by_ids, key=lambda r: r["Id"]) == sorted(expected, key=lambda r: r["Id"])


async def test_get_by_ids_chunks_thousands_of_ids_under_the_uri_limit(
    make_crm_org: Callable[..., CrmOrg],
) -> None:
    org = make_crm_org(leads=1200, contacts=0)
    real = [r["Id"] for r in org.records("Lead", limit=1200)]
    other = make_crm_org(leads=1500, contacts=0, seed=9)
    unknown = [r["Id"] for r in other.records("Lead", limit=1500)]  # valid ids, of another org
    async with _connector(org) as crm:
        records = await crm.get_by_ids("Lead", [*real, *unknown], ["Email", "Owner.Email"])
    assert sorted(r["Id"] for r in records) == sorted(real)


async def test_deleted_since_lists_deletions_in_the_window(crm: SalesforceConnector, crm_org: CrmOrg) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    gone = [r["Id"] for r in crm_org.records("Contact", limit=3)]
    for record_id in gone:
        crm_org.delete("Contact", record_id)
    crm_org.delete(
        "Contact", crm_org.records("Contact", limit=1)[0]["Id"], deleted_at=start - timedelta(days=1)
    )
    deleted = await crm.deleted_since("Contact", start, datetime.now(UTC) + timedelta(minutes=1))
    assert sorted(d.id for d in deleted) == sorted(gone)
    assert all(d.deleted_at.tzinfo is not None for d in deleted)


async def test_deleted_since_beyond_15_days_raises_instead_of_missing_deletions(crm_org: CrmOrg) -> None:
    now = datetime.now(UTC)
    async with _connector(crm_org) as crm:
        with pytest.raises(DeletedFeedWindowExceeded):
            await crm.deleted_since("Lead", now - timedelta(days=16), now)
    # Past the client-side check, Salesforce's own refusal is translated the same way.
    async with _connector(crm_org, deleted_feed_days=30) as lenient:
        with pytest.raises(DeletedFeedWindowExceeded) as caught:
            await lenient.deleted_since("Lead", now - timedelta(days=16), now)
    assert caught.value.error_code == "INVALID_REPLICATION_DATE" and caught.value.status == 400


async def test_sample_values_are_distinct_and_non_empty(crm: SalesforceConnector) -> None:
    sources = await crm.sample_values("Lead", "LeadSource", limit=3)
    assert 0 < len(sources) <= 3 and len(set(sources)) == len(sources)
    assert all(s for s in sources)
    scores = await crm.sample_values("Lead", "Marketing_Score__c", limit=5)
    assert all(isinstance(s, float) for s in scores)


# ------------------------------------------------------------------ writing


async def test_create_writes_through_collections_of_200_with_results_in_order(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    records = [
        {"LastName": f"Writer{i}", "Company": "Acme", "Email": f"writer{i}@example.com"} for i in range(250)
    ]
    records[7] = {"Email": "missing-required@example.com"}
    results = await crm.create("Lead", records)
    assert len(results) == 250
    assert results[7].success is False and results[7].errors[0].status_code == "REQUIRED_FIELD_MISSING"
    assert results[0].success and crm_org.get("Lead", results[0].id)["Email"] == "writer0@example.com"
    assert crm_org.get("Lead", results[249].id)["LastName"] == "Writer249"
    composite = {w["time"] for w in crm_org.writes() if w["api"] == "composite"}
    assert len([w for w in crm_org.writes() if w["api"] == "composite"]) == 250
    assert len(composite) >= 1


async def test_update_reports_per_record_errors_with_code_and_fields(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    first, second = (r["Id"] for r in crm_org.records("Lead", limit=2))
    results = await crm.update(
        "Lead",
        [
            {"Id": first, "Marketing_Score__c": 88, "HasOptedOutOfEmail": True},
            {"Id": second, "No_Such_Field__c": 1},
        ],
    )
    assert results[0].success and results[0].id == first
    assert not results[1].success and results[1].errors[0].status_code
    stored = crm_org.get("Lead", first)
    assert stored["Marketing_Score__c"] == 88 and stored["HasOptedOutOfEmail"] is True


async def test_records_locked_during_a_write_are_retried_until_written(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    ids = [r["Id"] for r in crm_org.records("Lead", limit=5)]
    crm_org.faults("lock", count=2)
    results = await crm.update("Lead", [{"Id": i, "Title": "Locked once"} for i in ids])
    assert all(r.success for r in results)
    assert all(crm_org.get("Lead", i)["Title"] == "Locked once" for i in ids)


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("kind", ["429", "503", "500"])
async def test_transient_server_faults_are_retried(
    kind: str, crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    crm_org.faults(kind, count=2)
    assert await crm.count("Lead") == 50
    assert crm_org.list_faults() == []


async def test_a_slow_answer_times_out_and_is_retried(crm_org: CrmOrg) -> None:
    async with _connector(crm_org, timeout_s=0.3) as crm:
        await crm.count("Lead")
        crm_org.faults("latency", count=1, latency_ms=1500)
        assert await crm.count("Lead") == 50


async def test_faults_that_never_stop_end_in_a_transient_error_after_bounded_retries(crm_org: CrmOrg) -> None:
    async with _connector(crm_org, max_retries=2) as crm:
        await crm.count("Lead")
        used = crm_org.api_usage()["used"]
        crm_org.faults("503", rate=1.0)
        with pytest.raises(CrmTransientError) as caught:
            await crm.count("Lead")
    assert caught.value.status == 503 and caught.value.error_code == "SERVER_UNAVAILABLE"
    assert crm_org.api_usage()["used"] - used == 3


async def test_a_bad_query_is_rejected_at_once_with_the_salesforce_code(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    await crm.describe("Lead")
    used = crm_org.api_usage()["used"]
    with pytest.raises(CrmRejected) as caught:
        await _all(crm.changed_since("Lead", ["No_Such_Field__c"], T0))
    assert caught.value.error_code == "INVALID_FIELD"
    assert crm_org.api_usage()["used"] - used == 1


async def test_a_bulk_job_survives_faults_on_its_calls(make_crm_org: Callable[..., CrmOrg]) -> None:
    org = make_crm_org(leads=300, contacts=0)
    async with _connector(org, bulk_threshold=0, bulk_max_records=100) as crm:
        await crm.count("Lead")
        org.faults("503", count=1, path="/jobs/query", method="POST")
        org.faults("429", count=2, path="/results")
        records = await _all(crm.export_all("Lead", ["Email"]))
    assert len({r["Id"] for r in records}) == len(records) == 300


# ------------------------------------------------------------------ budget


async def test_budget_reads_limits_first_then_the_sforce_limit_info_header(crm_org: CrmOrg) -> None:
    crm_org.set_budget(used=100, limit=5000)
    async with _connector(crm_org) as crm:
        first = await crm.budget()
        assert (first.limit, first.used) == (5000, crm_org.api_usage()["used"])
        await crm.count("Lead")
        after = await crm.budget()
    assert (after.used, after.limit) == (crm_org.api_usage()["used"], 5000)


async def test_the_connector_stops_before_spending_the_reserve(crm_org: CrmOrg) -> None:
    crm_org.set_budget(used=0, limit=1000)
    async with _connector(crm_org, budget_reserve_fraction=0.2) as crm:
        await crm.count("Lead")
        crm_org.set_budget(used=795)
        await crm.count("Lead")  # answers 796/1000: 4 calls left above the reserve of 200
        for _ in range(4):
            await crm.count("Lead")
        with pytest.raises(CrmBudgetExhausted) as caught:
            await crm.count("Lead")
    assert crm_org.api_usage()["used"] == 800  # the reserve of 200 is untouched
    assert caught.value.limit == 1000


async def test_an_org_out_of_budget_raises_budget_exhausted(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    await crm.count("Lead")
    crm_org.faults("budget", count=1)
    with pytest.raises(CrmBudgetExhausted) as caught:
        await crm.count("Lead")
    assert caught.value.error_code == "REQUEST_LIMIT_EXCEEDED"


# ------------------------------------------------------------------ factory


async def test_connector_for_a_stored_connection_reaches_the_org(crm_org: CrmOrg) -> None:
    box = SecretBox("integration-secret-key")
    connection = CrmConnection(
        account_id="acme",
        provider="salesforce",
        login_url=crm_org.login_url,
        auth_method="client_credentials",
        client_id=crm_org.client_id,
        secrets_encrypted=box.seal({"client_secret": crm_org.client_secret}),
        api_version="60.0",
    )
    async with connector_for(connection, secret_box=box, options=_options()) as crm:
        assert await crm.count("Contact") == 50


async def test_a_create_that_timed_out_is_not_sent_again(crm_org: CrmOrg) -> None:
    async with _connector(crm_org, timeout_s=0.3) as crm:
        await crm.count("Lead")
        crm_org.clear_writes()
        crm_org.faults("latency", count=1, latency_ms=800, path="/composite/sobjects", method="POST")
        with pytest.raises(CrmTransientError, match="may have been applied"):
            await crm.create("Lead", [{"LastName": "Once", "Company": "Acme", "Email": "once@example.com"}])
        await asyncio.sleep(1.0)  # let the slow call end on the emulator's side
    # Sent once: a repeat (the fault was for one call only) would have created the Lead.
    assert crm_org.writes() == []
    assert crm_org.list_faults() == []


async def test_an_update_that_timed_out_is_repeated(crm_org: CrmOrg) -> None:
    lead = crm_org.records("Lead", limit=1)[0]["Id"]
    async with _connector(crm_org, timeout_s=0.3) as crm:
        await crm.count("Lead")
        crm_org.faults("latency", count=1, latency_ms=800, path="/composite/sobjects", method="PATCH")
        results = await crm.update("Lead", [{"Id": lead, "Title": "Twice is harmless"}])
    assert results[0].success and crm_org.get("Lead", lead)["Title"] == "Twice is harmless"


async def test_a_bulk_job_salesforce_refuses_is_rejected_with_its_code(crm_org: CrmOrg) -> None:
    async with _connector(crm_org, bulk_threshold=0) as crm:
        with pytest.raises(CrmRejected) as caught:
            await _all(crm.export_all("Lead", ["Email", "No_Such_Field__c"]))
    assert caught.value.error_code == "API_ERROR" and caught.value.status == 400


async def test_sample_values_of_a_parent_field_follow_the_relationship(crm: SalesforceConnector) -> None:
    owners = await crm.sample_values("Lead", "Owner.Email", limit=3)
    assert owners and all("@" in o for o in owners)


# ------------------------------------------------------------------ changes through a cursor


async def _changes(crm: SalesforceConnector, obj: str, cursor: str | None, **kw: Any) -> list[Any]:
    return [batch async for batch in crm.changes(obj, ["Email"], cursor, **kw)]


async def test_r18_a_full_read_yields_every_record_and_ends_with_a_cursor_from_its_start(
    crm: SalesforceConnector, crm_org: CrmOrg
) -> None:
    before = datetime.now(UTC)
    batches = await _changes(crm, "Lead", None)
    assert sorted(r["Id"] for b in batches for r in b.records) == sorted(
        r["Id"] for r in crm_org.records("Lead", limit=1000)
    )
    assert all(b.cursor is None for b in batches[:-1]) and batches[-1].cursor is not None
    assert all(b.deleted_ids == [] for b in batches)
    cursor = orjson.loads(batches[-1].cursor)
    began = datetime.fromisoformat(cursor["modified_since"])
    assert cursor["v"] == 1 and before <= began <= datetime.now(UTC)
    assert cursor["deleted_since"] == cursor["modified_since"]


async def test_r16_r18_a_cursor_yields_what_changed_and_what_was_deleted_since(crm_org: CrmOrg) -> None:
    async with _connector(crm_org, change_lookback_s=0) as crm:
        cursor = (await _changes(crm, "Lead", None))[-1].cursor
        changed, gone = (r["Id"] for r in crm_org.records("Lead", limit=2))
        crm_org.edit("Lead", changed, {"Email": "new@example.com"}, system_modstamp=datetime.now(UTC))
        crm_org.delete("Lead", gone)
        batches = await _changes(crm, "Lead", cursor)
        records = [r for b in batches for r in b.records]
        assert [r["Id"] for r in records] == [changed] and records[0]["Email"] == "new@example.com"
        assert batches[-1].records == [] and batches[-1].deleted_ids == [gone]
        assert all(b.cursor is not None for b in batches)
        # Without a lookback the next read starts where this one ended: the change is read again
        # only at its own SystemModstamp (>=); none of the records before it.
        after = await _changes(crm, "Lead", batches[-1].cursor)
    assert [r["Id"] for b in after for r in b.records] == [changed]


async def test_r18_each_batch_of_changes_carries_the_cursor_resuming_after_it(
    make_crm_org: Callable[..., CrmOrg],
) -> None:
    org = make_crm_org(leads=450, contacts=0)
    since = datetime.now(UTC) + timedelta(days=1)
    for i, record in enumerate(org.records("Lead", limit=450)):
        org.edit(
            "Lead", record["Id"], {"Marketing_Score__c": i}, system_modstamp=since + timedelta(seconds=i)
        )
    cursor = SalesforceConnector.cursor_from_watermarks(since, datetime.now(UTC))
    async with _connector(org, change_lookback_s=0) as crm:
        batches = await _changes(crm, "Lead", cursor, page_size=200)
    assert [len(b.records) for b in batches] == [200, 200, 50, 0]
    for batch in batches[:-1]:
        resume = orjson.loads(batch.cursor)
        newest = max(r["SystemModstamp"] for r in batch.records)
        assert datetime.fromisoformat(resume["modified_since"]) == newest


async def test_r16_a_cursor_beyond_the_deleted_feed_expires_before_any_call(crm_org: CrmOrg) -> None:
    now = datetime.now(UTC)
    cursor = SalesforceConnector.cursor_from_watermarks(now, now - timedelta(days=16))
    async with _connector(crm_org) as crm:
        await crm.count("Lead")
        used = crm_org.api_usage()["used"]
        with pytest.raises(ChangeCursorExpired) as caught:
            await _changes(crm, "Lead", cursor)
    assert isinstance(caught.value, DeletedFeedWindowExceeded)
    assert crm_org.api_usage()["used"] == used


async def test_r18_a_full_read_hands_over_each_page_before_reading_the_next(
    make_crm_org: Callable[..., CrmOrg],
) -> None:
    org = make_crm_org(leads=450, contacts=0)
    async with _connector(org, page_size=200) as crm:
        reads = crm.changes("Lead", ["Email"], None)
        first = await anext(reads)
        # The first page is handed over while the next is still unread: a failure further on keeps it.
        org.faults("budget", count=1, path="/query/")
        with pytest.raises(CrmBudgetExhausted):
            await anext(reads)
    assert len(first.records) == 200 and first.cursor is None
