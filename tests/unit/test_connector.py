"""The Salesforce connector against an in-process fake over httpx.MockTransport.

Covers what needs no real server: token lifecycle, which failures are retried,
the API budget reserve, URI splitting, Bulk CSV streaming and write results.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.common.crm import factory
from crmsync.common.crm.interface import (
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
from crmsync.common.crm.salesforce import credentials_from_connection as salesforce_credentials
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection

LOGIN = "https://login.example.test"
INSTANCE = "https://org.example.test"
API = "/services/data/v60.0"
T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
WIDE = [f"Wide_Custom_Field_Number_{i:03d}__c" for i in range(600)]

Reply = Callable[[httpx.Request], httpx.Response]


def _error(status: int, code: str, message: str = "no", fields: list[str] | None = None) -> Reply:
    body = [{"errorCode": code, "message": message, "fields": fields or []}]
    return lambda request: httpx.Response(status, json=body)


class FakeSalesforce:
    """Just enough Salesforce to drive the connector: Leads, queries by Id, composite, Bulk."""

    def __init__(self, leads: int = 5) -> None:
        self.grants = 0
        self.refuse_grant = False
        self.grant_fault: Reply | None = None
        self.token = "t1"
        self.used, self.limit = 10, 15_000
        self.send_limit_header = True
        self.requests: list[httpx.Request] = []
        self.faults: list[Reply] = []  # served in order before the real answer
        self.leads = {
            f"00Q{i:015d}": {
                "Id": f"00Q{i:015d}",
                "Email": f"lead{i}@example.com",
                "SystemModstamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                "IsConverted": False,
                "Marketing_Score__c": i,
                **{name: f"{name[:4]}{i}" for name in WIDE},
            }
            for i in range(leads)
        }
        self.write_answers: list[list[dict[str, Any]]] = []
        self.bulk_pages: list[str] = []
        self.bulk_break_after: int | None = None  # bytes of the first results body before the wire drops

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/services/oauth2/token":
            self.grants += 1
            if self.grant_fault is not None:
                return self.grant_fault(request)
            if self.refuse_grant:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired"})
            self.token = f"t{self.grants}"
            return httpx.Response(200, json={"access_token": self.token, "instance_url": INSTANCE})
        if self.faults:
            return self.faults.pop(0)(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")(request)
        self.used += 1
        response = self.route(request, path)
        if self.send_limit_header:
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.used}/{self.limit}"
        return response

    def route(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == f"{API}/limits":
            return httpx.Response(200, json={"DailyApiRequests": {"Max": self.limit, "Remaining": 14_000}})
        if path == f"{API}/sobjects/Lead/describe":
            fields = [
                {"name": "Id", "type": "id"},
                {"name": "Email", "type": "email"},
                {"name": "SystemModstamp", "type": "datetime"},
                {"name": "IsConverted", "type": "boolean"},
                {"name": "Marketing_Score__c", "type": "double"},
                {"name": "Address", "type": "address"},
                *({"name": n, "type": "string"} for n in WIDE),
            ]
            return httpx.Response(200, json={"name": "Lead", "label": "Lead", "fields": fields})
        if path == f"{API}/query":
            return self.query(request)
        if path == f"{API}/composite/sobjects":
            return httpx.Response(200, json=self.write_answers.pop(0))
        if path == f"{API}/jobs/query":
            return httpx.Response(200, json={"id": "750J", "state": "UploadComplete"})
        if path == f"{API}/jobs/query/750J":
            return httpx.Response(200, json={"id": "750J", "state": "JobComplete"})
        if path == f"{API}/jobs/query/750J/results":
            return self.bulk_results(request)
        return _error(404, "NOT_FOUND", path)(request)

    def query(self, request: httpx.Request) -> httpx.Response:
        statement = request.url.params["q"]
        if statement.startswith("SELECT COUNT()"):
            return httpx.Response(200, json={"totalSize": len(self.leads), "done": True, "records": []})
        selected = [f.strip() for f in statement[len("SELECT ") : statement.index(" FROM ")].split(",")]
        match = re.search(r"Id IN \(([^)]*)\)", statement)
        rows = list(self.leads.values())
        if match:
            wanted = set(re.findall(r"'([^']*)'", match.group(1)))
            rows = [r for r in rows if r["Id"] in wanted]
        records = [{"attributes": {"type": "Lead"}, **{f: r.get(f) for f in selected}} for r in rows]
        return httpx.Response(200, json={"totalSize": len(records), "done": True, "records": records})

    def bulk_results(self, request: httpx.Request) -> httpx.Response:
        locator = request.url.params.get("locator")
        index = int(locator) if locator else 0
        body = self.bulk_pages[index].encode()
        next_locator = str(index + 1) if index + 1 < len(self.bulk_pages) else "null"
        headers = {"Sforce-Locator": next_locator, "Content-Type": "text/csv"}
        if self.bulk_break_after is not None:
            cut, self.bulk_break_after = self.bulk_break_after, None
            return httpx.Response(200, headers=headers, stream=_Breaking(body[:cut]))
        return httpx.Response(200, headers=headers, content=body)

    def calls_to(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == path)


class _Breaking(httpx.AsyncByteStream):
    """A body that stops mid-way as a dropped connection does."""

    def __init__(self, head: bytes) -> None:
        self._head = head

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._head
        raise httpx.ReadError("connection reset by peer")


def _connector(fake: FakeSalesforce, **options: Any) -> SalesforceConnector:
    creds = SalesforceCredentials(
        login_url=LOGIN, auth_method="client_credentials", client_id="cid", client_secret="secret"
    )
    opts = ConnectorOptions(backoff_initial_s=0, budget_slowdown_max_delay_s=0, **options)
    return SalesforceConnector(creds, options=opts, transport=fake.transport())


async def _collect(stream: AsyncIterator[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [batch async for batch in stream]


# ------------------------------------------------------------------ tokens


async def test_token_is_obtained_once_and_reused_across_calls() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        for _ in range(3):
            assert await crm.count("Lead") == 5
    assert fake.grants == 1
    grant = parse_qs(fake.requests[0].content.decode())
    assert grant["grant_type"] == ["client_credentials"] and grant["client_id"] == ["cid"]


async def test_invalid_session_id_renews_the_token_once_and_repeats_the_call() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.token = "rotated-by-salesforce"  # the cached token is now expired
        assert await crm.count("Lead") == 5
    assert fake.grants == 2


async def test_a_token_refused_after_renewal_is_an_auth_error() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_error(401, "INVALID_SESSION_ID")] * 2
        with pytest.raises(CrmAuthError) as caught:
            await crm.count("Lead")
    assert caught.value.error_code == "INVALID_SESSION_ID"
    assert fake.grants == 2


async def test_a_refused_grant_is_an_auth_error_and_is_not_retried() -> None:
    fake = FakeSalesforce()
    fake.refuse_grant = True
    async with _connector(fake) as crm:
        with pytest.raises(CrmAuthError) as caught:
            await crm.count("Lead")
    assert caught.value.error_code == "invalid_grant"
    assert fake.grants == 1


async def test_the_jwt_bearer_grant_sends_a_signed_assertion() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    fake = FakeSalesforce()
    creds = SalesforceCredentials(
        login_url=LOGIN,
        auth_method="jwt_bearer",
        client_id="cid",
        username="ada@example.com",
        private_key=pem,
    )
    async with SalesforceConnector(creds, transport=fake.transport()) as crm:
        await crm.count("Lead")
    import jwt

    form = parse_qs(fake.requests[0].content.decode())
    claims = jwt.decode(form["assertion"][0], key.public_key(), algorithms=["RS256"], audience=LOGIN)
    assert claims["iss"] == "cid" and claims["sub"] == "ada@example.com"


# ----------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "fault",
    [
        _error(503, "SERVER_UNAVAILABLE"),
        _error(500, "UNKNOWN_EXCEPTION"),
        _error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests"),
        _error(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
        _error(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
    ],
    ids=["503", "500", "429", "403_concurrent_limit", "UNABLE_TO_LOCK_ROW", "timeout", "connection_error"],
)
async def test_transient_failures_are_retried_until_the_call_succeeds(fault: Reply) -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [fault, fault]
        assert await crm.count("Lead") == 5
    assert fake.calls_to(f"{API}/query") == 4


async def test_retries_are_bounded_and_end_in_a_transient_error() -> None:
    fake = FakeSalesforce()
    async with _connector(fake, max_retries=3) as crm:
        await crm.count("Lead")
        fake.faults = [_error(503, "SERVER_UNAVAILABLE")] * 10
        with pytest.raises(CrmTransientError) as caught:
            await crm.count("Lead")
    assert caught.value.status == 503
    assert fake.calls_to(f"{API}/query") == 1 + 4


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_an_unreachable_login_fails_a_call_after_one_round_of_retries() -> None:
    # The token request is retried inside the call; the call must not retry that whole
    # round again (6 x 6 tries took ~50 s to fail a run whose CRM was down).
    fake = FakeSalesforce()
    fake.grant_fault = _refused
    async with _connector(fake, max_retries=3) as crm:
        with pytest.raises(CrmTransientError):
            await crm.count("Lead")
    assert fake.grants == 1 + 3


async def test_calls_waiting_for_a_token_share_the_failure_of_the_attempt_they_waited_for() -> None:
    fake = FakeSalesforce()
    fake.grant_fault = _refused
    async with _connector(fake, max_retries=3) as crm:
        results = await asyncio.gather(*(crm.count("Lead") for _ in range(4)), return_exceptions=True)
        assert all(isinstance(r, CrmTransientError) for r in results)
        assert fake.grants == 1 + 3  # one round of tries for all four calls, not one each
        # A call made after the failure tries again, and gets through once the login answers.
        fake.grant_fault = None
        assert await crm.count("Lead") == 5
    assert fake.grants == 1 + 3 + 1


async def test_a_permanent_error_is_not_retried_and_carries_the_salesforce_code_and_fields() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_error(400, "INVALID_FIELD", "No such column 'Nope'", ["Nope"])]
        with pytest.raises(CrmRejected) as caught:
            await crm.count("Lead")
    assert (caught.value.error_code, caught.value.fields, caught.value.status) == (
        "INVALID_FIELD",
        ("Nope",),
        400,
    )
    assert not isinstance(caught.value, CrmTransientError)
    assert fake.calls_to(f"{API}/query") == 2


# ------------------------------------------------------------------ budget


async def test_budget_comes_from_the_last_sforce_limit_info_header() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        budget = await crm.budget()
    assert (budget.used, budget.limit) == (11, 15_000)
    assert fake.calls_to(f"{API}/limits") == 0


async def test_budget_asks_limits_when_no_header_was_seen_yet() -> None:
    fake = FakeSalesforce()
    fake.send_limit_header = False
    async with _connector(fake) as crm:
        budget = await crm.budget()
    assert (budget.used, budget.limit, budget.remaining) == (1000, 15_000, 14_000)


async def test_calls_stop_before_the_reserve_for_other_tools_is_spent() -> None:
    fake = FakeSalesforce()
    async with _connector(fake, budget_reserve_fraction=0.10) as crm:
        await crm.count("Lead")
        fake.used = 13_499  # the next answer reports 13,500 used: 1,500 left, all reserve
        await crm.count("Lead")
        sent = len(fake.requests)
        with pytest.raises(CrmBudgetExhausted) as caught:
            await crm.count("Lead")
    assert len(fake.requests) == sent  # refused before sending anything
    assert (caught.value.used, caught.value.limit) == (13_500, 15_000)


async def test_calls_slow_down_as_the_budget_nears_the_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    from crmsync.common.crm.salesforce import _limits as module

    pauses: list[float] = []

    async def record(delay: float) -> None:
        pauses.append(delay)

    fake = FakeSalesforce()
    creds = SalesforceCredentials(
        login_url=LOGIN, auth_method="client_credentials", client_id="c", client_secret="s"
    )
    opts = ConnectorOptions(
        budget_reserve_fraction=0.1, budget_slowdown_fraction=0.05, budget_slowdown_max_delay_s=2
    )
    async with SalesforceConnector(creds, options=opts, transport=fake.transport()) as crm:
        await crm.count("Lead")
        monkeypatch.setattr(module.asyncio, "sleep", record)
        await crm.count("Lead")
        assert pauses == []  # far from the reserve: full speed
        fake.used = 13_000  # 500 left above the 1,500 reserve, inside the 750-call window
        await crm.count("Lead")
        await crm.count("Lead")
    assert len(pauses) == 1 and 0.6 < pauses[0] < 0.7


async def test_request_limit_exceeded_from_salesforce_is_budget_exhausted_and_not_retried() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]
        with pytest.raises(CrmBudgetExhausted):
            await crm.count("Lead")
    assert fake.calls_to(f"{API}/query") == 2


# --------------------------------------------------------- reading, URI limit


async def test_wide_field_lists_are_split_under_the_uri_limit_and_joined_by_id() -> None:
    fake = FakeSalesforce(leads=700)
    fields = ["Email", "Marketing_Score__c", *WIDE]
    async with _connector(fake) as crm:
        batches = await _collect(crm.changed_since("Lead", fields, T0))
    queries = [r for r in fake.requests if r.url.path == f"{API}/query"]
    assert len(queries) > 2
    assert all(len(str(r.url).encode()) <= 16_384 for r in fake.requests)
    records = [r for b in batches for r in b]
    assert len(records) == 700
    assert all(set(fields) <= set(r) for r in records)
    assert records[3]["Wide_Custom_Field_Number_599__c"] == "Wide3"
    assert records[3]["Marketing_Score__c"] == 3.0


async def test_get_by_ids_chunks_the_id_list_under_the_uri_limit_and_leaves_out_missing_ids() -> None:
    fake = FakeSalesforce(leads=50)
    ids = [f"00Q{i:015d}" for i in range(1200)]
    async with _connector(fake) as crm:
        records = await crm.get_by_ids("Lead", ids, ["Email"])
    assert sorted(r["Id"] for r in records) == sorted(ids[:50])
    queries = [r for r in fake.requests if r.url.path == f"{API}/query"]
    assert len(queries) >= 2
    assert all(len(str(r.url).encode()) <= 16_384 for r in queries)


async def test_deleted_since_refuses_a_start_beyond_the_15_day_feed_without_calling() -> None:
    fake = FakeSalesforce()
    now = datetime.now(UTC)
    async with _connector(fake) as crm:
        with pytest.raises(DeletedFeedWindowExceeded) as caught:
            await crm.deleted_since("Lead", now - timedelta(days=16), now)
    assert caught.value.error_code == "INVALID_REPLICATION_DATE"
    assert isinstance(caught.value, CrmRejected)
    assert fake.requests == []


def _bulk_csv(rows: list[dict[str, Any]], columns: list[str], *, header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows(
        [
            [str(r.get(c, "")).lower() if isinstance(r.get(c), bool) else r.get(c, "") for c in columns]
            for r in rows
        ]
    )
    return out.getvalue()


async def test_export_above_the_threshold_streams_bulk_csv_across_locators() -> None:
    fake = FakeSalesforce(leads=10)
    columns = ["Id", "Email", "IsConverted"]
    leads = list(fake.leads.values())
    fake.bulk_pages = [_bulk_csv(leads[:6], columns), _bulk_csv(leads[6:], columns)]
    async with _connector(fake, bulk_threshold=5) as crm:
        batches = await _collect(crm.export_all("Lead", ["Email", "IsConverted"]))
    records = [r for b in batches for r in b]
    assert [r["Id"] for r in records] == list(fake.leads)
    assert records[0] == {"Id": leads[0]["Id"], "Email": leads[0]["Email"], "IsConverted": False}
    assert fake.calls_to(f"{API}/jobs/query/750J/results") == 2
    job = orjson.loads(next(r for r in fake.requests if r.url.path == f"{API}/jobs/query").content)
    assert job["query"] == "SELECT Id, Email, IsConverted FROM Lead" and job["contentType"] == "CSV"
    # The job and its results are deleted once read, not left in the org for a week.
    assert fake.requests[-1].method == "DELETE" and fake.requests[-1].url.path == f"{API}/jobs/query/750J"


async def test_a_bulk_body_cut_mid_way_resumes_without_duplicates_or_gaps() -> None:
    fake = FakeSalesforce(leads=300)
    columns = ["Id", "Email"]
    fake.bulk_pages = [_bulk_csv(list(fake.leads.values()), columns)]
    fake.bulk_break_after = len(fake.bulk_pages[0]) // 2
    async with _connector(fake, bulk_threshold=5, page_size=200) as crm:
        batches = await _collect(crm.export_all("Lead", ["Email"]))
    assert [r["Id"] for b in batches for r in b] == list(fake.leads)
    assert fake.calls_to(f"{API}/jobs/query/750J/results") == 2


async def test_export_with_a_compound_address_field_goes_through_rest() -> None:
    fake = FakeSalesforce(leads=10)
    async with _connector(fake, bulk_threshold=5) as crm:
        batches = await _collect(crm.export_all("Lead", ["Email", "Address"]))
    assert sum(len(b) for b in batches) == 10
    assert fake.calls_to(f"{API}/jobs/query") == 0


# ------------------------------------------------------------------ writing


async def test_create_sends_200_records_a_call_and_answers_in_order() -> None:
    fake = FakeSalesforce()
    ok = {"success": True, "errors": []}
    bad = {
        "success": False,
        "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "bad", "fields": ["Email"]}],
    }
    fake.write_answers = [
        [{**ok, "id": f"new{i}"} for i in range(200)],
        [{**ok, "id": f"new{200 + i}"} for i in range(199)] + [bad],
        [{**ok, "id": f"new{400 + i}"} for i in range(50)],
    ]
    records = [{"LastName": f"L{i}", "Email": f"e{i}@x.com"} for i in range(450)]
    async with _connector(fake) as crm:
        results = await crm.create("Lead", records)
    calls = [orjson.loads(r.content) for r in fake.requests if r.url.path == f"{API}/composite/sobjects"]
    assert [len(c["records"]) for c in calls] == [200, 200, 50]
    assert all(c["allOrNone"] is False for c in calls)
    assert calls[0]["records"][0]["attributes"] == {"type": "Lead"}
    assert [r.id for r in results[:3]] == ["new0", "new1", "new2"]
    assert results[399].success is False
    assert results[399].errors[0].status_code == "INVALID_EMAIL_ADDRESS"
    assert results[399].errors[0].fields == ("Email",)


async def test_records_refused_with_unable_to_lock_row_are_sent_again_alone() -> None:
    fake = FakeSalesforce()
    locked = {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]}
    fake.write_answers = [
        [{"id": "a", "success": True, "errors": []}, {"id": "b", **locked}],
        [{"id": "b", "success": True, "errors": []}],
    ]
    async with _connector(fake) as crm:
        results = await crm.update("Lead", [{"Id": "a", "Email": "a@x.com"}, {"Id": "b", "Email": "b@x.com"}])
    assert [r.success for r in results] == [True, True]
    second = [orjson.loads(r.content) for r in fake.requests if r.url.path == f"{API}/composite/sobjects"][1]
    assert [r["Id"] for r in second["records"]] == ["b"]


async def test_update_refuses_a_record_without_an_id_before_sending() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        with pytest.raises(ValueError, match="no Id"):
            await crm.update("Lead", [{"Email": "x@y.com"}])
    assert fake.requests == []


# ------------------------------------------------------------------ factory


def test_connector_for_builds_credentials_from_a_stored_connection() -> None:
    box = SecretBox("unit-test-key")
    row = CrmConnection(
        account_id="acme",
        provider="salesforce",
        login_url=LOGIN,
        auth_method="refresh_token",
        client_id="cid",
        secrets_encrypted=box.seal({"client_secret": "s", "refresh_token": "r"}),
        api_version="61.0",
    )
    creds = salesforce_credentials(row, secret_box=box)
    assert (creds.auth_method, creds.refresh_token, creds.client_secret, creds.api_version) == (
        "refresh_token",
        "r",
        "s",
        "61.0",
    )
    connector = factory.connector_for(row, secret_box=box)
    assert isinstance(connector, SalesforceConnector)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(min_value=100, max_value=1_000_000),
    fraction=st.floats(min_value=0, max_value=0.5),
    calls=st.integers(min_value=0, max_value=2000),
    data=st.data(),
)
async def test_budget_exhausted_exactly_when_used_reaches_limit_minus_reserve(
    limit: int, fraction: float, calls: int, data: st.DataObject
) -> None:
    options = ConnectorOptions(budget_reserve_fraction=fraction, budget_reserve_calls=calls)
    reserve = options.reserve_for(limit)
    used = data.draw(st.integers(min_value=0, max_value=limit))
    fake = FakeSalesforce()
    fake.limit, fake.used = limit, used - 1  # the first answer reports `used`
    async with _connector(
        fake, budget_reserve_fraction=fraction, budget_reserve_calls=calls, budget_slowdown_fraction=0
    ) as crm:
        await crm.count("Lead")
        if used >= limit - reserve:
            with pytest.raises(CrmBudgetExhausted):
                await crm.count("Lead")
        else:
            assert await crm.count("Lead") == 5


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


async def test_a_create_that_may_have_been_applied_is_not_sent_twice() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_timeout]
        with pytest.raises(CrmTransientError) as caught:
            await crm.create("Lead", [{"LastName": "Once", "Company": "Acme"}])
    assert fake.calls_to(f"{API}/composite/sobjects") == 1
    assert "may have been applied" in caught.value.message


async def test_a_create_refused_before_processing_is_retried() -> None:
    fake = FakeSalesforce()
    fake.write_answers = [[{"id": "new", "success": True, "errors": []}]]
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_error(503, "SERVER_UNAVAILABLE"), _error(429, "REQUEST_LIMIT_EXCEEDED")]
        results = await crm.create("Lead", [{"LastName": "Once", "Company": "Acme"}])
    assert results[0].id == "new"


async def test_an_update_is_repeated_after_a_timeout_since_it_is_idempotent() -> None:
    fake = FakeSalesforce()
    fake.write_answers = [[{"id": "a", "success": True, "errors": []}]]
    async with _connector(fake) as crm:
        await crm.count("Lead")
        fake.faults = [_timeout]
        results = await crm.update("Lead", [{"Id": "a", "Title": "x"}])
    assert results[0].success


async def test_a_describe_is_reused_within_its_ttl_and_asked_again_after() -> None:
    fake = FakeSalesforce()
    async with _connector(fake) as cached, _connector(fake, describe_ttl_s=0) as fresh:
        for crm in (cached, fresh):
            await crm.describe("Lead")
            await crm.describe("Lead")
    assert fake.calls_to(f"{API}/sobjects/Lead/describe") == 1 + 2
