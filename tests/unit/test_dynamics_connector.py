"""The Dynamics 365 connector against a fake Dataverse over httpx.MockTransport: sign-in and token
lifetime, what is retried (429 with Retry-After, 5xx), the service-protection budget and its reserve,
and how Dataverse's error bodies are classified."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.dynamics import (
    ChangeTokenExpired,
    DynamicsConnector,
    DynamicsCredentials,
    DynamicsOptions,
    connector_for,
    credentials_from_connection,
)
from crmsync.common.crm.dynamics._auth import TokenCache, request_token
from crmsync.common.crm.interface import (
    CrmAuthError,
    CrmBudgetExhausted,
    CrmRejected,
    CrmTransientError,
)
from crmsync.common.crypto import SecretBox

AUTHORITY = "https://login.example.test"
ORG = "https://org.example.test"
TENANT = "tenant-1"
CREDENTIALS = DynamicsCredentials(AUTHORITY, TENANT, "app-1", "s3cret", ORG)
BOX = SecretBox("a-test-key-of-enough-length-for-the-box")
FAST = DynamicsOptions(max_retries=3, backoff_initial_s=0, backoff_max_s=0.05)

Reply = Callable[[httpx.Request], httpx.Response]


def dataverse_error(status: int, code: str, message: str = "refused", **headers: str) -> Reply:
    return lambda request: httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


class FakeDataverse:
    """Just enough of an environment: the token endpoint and `leads`, with faults served first."""

    def __init__(self) -> None:
        self.tokens = 0
        self.expires_in = 3600
        self.token_fault: Reply | None = None
        self.requests: list[httpx.Request] = []
        self.faults: list[Reply] = []
        self.remaining: int | None = 5000
        self.leads = [{"leadid": f"00000000-0000-0000-0000-00000000000{i}", "modifiedon": "2026-11-20T08:00:00Z"}
                      for i in range(3)]  # fmt: skip

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == f"/{TENANT}/oauth2/v2.0/token":
            return self._token(request)
        if self.faults:
            return self.faults.pop(0)(request)
        if request.headers.get("Authorization") != f"Bearer token-{self.tokens}":
            return httpx.Response(401, json={"error": {"code": "0x80040220", "message": "expired token"}})
        headers = {"x-ms-ratelimit-time-remaining-xrm-requests": "1,200,000.00"}
        if self.remaining is not None:
            headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(self.remaining)
        body: dict[str, Any] = {"value": self.leads}
        if request.url.params.get("$count") == "true":
            body["@odata.count"] = len(self.leads)
        return httpx.Response(200, json=body, headers=headers)

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.token_fault is not None:
            return self.token_fault(request)
        self.tokens += 1
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": self.expires_in,
                                         "access_token": f"token-{self.tokens}"})  # fmt: skip

    def api_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if "/api/data/" in r.url.path]


def connector(fake: FakeDataverse, options: DynamicsOptions = FAST) -> DynamicsConnector:
    return DynamicsConnector(CREDENTIALS, options=options, transport=httpx.MockTransport(fake))


async def _count(dynamics: DynamicsConnector) -> int:
    return await dynamics.count("Lead")


# ------------------------------------------------------------------ sign-in


async def test_the_token_request_is_client_credentials_for_the_environment_scope() -> None:
    fake = FakeDataverse()
    async with connector(fake) as dynamics:
        await _count(dynamics)
    token_request = fake.requests[0]
    assert str(token_request.url) == f"{AUTHORITY}/{TENANT}/oauth2/v2.0/token"
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["client_credentials"], "client_id": ["app-1"], "client_secret": ["s3cret"],
        "scope": [f"{ORG}/.default"],
    }  # fmt: skip
    call = fake.api_calls()[0]
    assert call.url.path == "/api/data/v9.2/leads"
    assert call.headers["Authorization"] == "Bearer token-1"
    assert call.headers["OData-Version"] == "4.0"


async def test_the_token_is_reused_until_shortly_before_it_expires() -> None:
    now = [0.0]
    fake = FakeDataverse()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        tokens = TokenCache(lambda: request_token(client, CREDENTIALS, clock=lambda: now[0]),
                            margin_s=300, clock=lambda: now[0])  # fmt: skip
        first = await tokens.current()
        now[0] = 3600 - 301
        assert await tokens.current() is first
        now[0] = 3600 - 299  # inside the margin: renewed before Dataverse refuses it
        assert (await tokens.current()).value == "token-2"


async def test_a_401_renews_the_token_once_and_repeats_the_call() -> None:
    fake = FakeDataverse()
    async with connector(fake) as dynamics:
        await _count(dynamics)
        fake.faults.append(dataverse_error(401, "0x80040220", "token expired"))
        assert await _count(dynamics) == 3
    assert fake.tokens == 2
    assert [c.headers["Authorization"] for c in fake.api_calls()][-2:] == ["Bearer token-1", "Bearer token-2"]


async def test_a_refused_client_is_an_auth_error_not_retried() -> None:
    fake = FakeDataverse()
    fake.token_fault = lambda request: httpx.Response(
        401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
        },
    )
    async with connector(fake) as dynamics:
        with pytest.raises(CrmAuthError) as refused:
            await _count(dynamics)
    assert refused.value.error_code == "invalid_client"
    assert "AADSTS7000215" in refused.value.message
    assert len(fake.requests) == 1


async def test_an_unavailable_token_endpoint_is_retried() -> None:
    fake = FakeDataverse()
    outages = [httpx.Response(503), httpx.Response(503)]
    fake.token_fault = lambda request: outages.pop(0) if outages else _unset(fake)
    async with connector(fake) as dynamics:
        assert await _count(dynamics) == 3


def _unset(fake: FakeDataverse) -> httpx.Response:
    fake.token_fault = None
    return fake._token(httpx.Request("POST", AUTHORITY))


def test_credentials_keep_the_secret_out_of_repr() -> None:
    assert "s3cret" not in repr(CREDENTIALS)
    with pytest.raises(ValueError, match="client_secret"):
        DynamicsCredentials(AUTHORITY, TENANT, "app-1", "", ORG)


# --------------------------------------------------------- retries and limits


async def test_a_429_waits_the_retry_after_it_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("asyncio.sleep", sleep)
    fake = FakeDataverse()
    fake.faults.append(
        dataverse_error(429, "0x80072322", "Number of requests exceeded", **{"Retry-After": "7"})
    )
    options = DynamicsOptions(max_retries=2, backoff_initial_s=0, backoff_max_s=30)
    async with connector(fake, options) as dynamics:
        assert await _count(dynamics) == 3
    assert waits and waits[0] == 7


async def test_transient_failures_stop_after_the_policy_s_attempts() -> None:
    fake = FakeDataverse()
    fake.faults = [dataverse_error(503, "0x80040216", "unavailable")] * 10
    async with connector(fake) as dynamics:
        with pytest.raises(CrmTransientError) as failed:
            await _count(dynamics)
    assert failed.value.retried and failed.value.status == 503
    assert len(fake.api_calls()) == FAST.max_retries + 1


async def test_the_budget_follows_the_burst_remaining_header() -> None:
    fake = FakeDataverse()
    fake.remaining = 5400
    async with connector(fake) as dynamics:
        await _count(dynamics)
        budget = await dynamics.budget()
    assert (budget.used, budget.limit) == (600, 6000)


async def test_calls_stop_at_the_reserve_kept_for_other_tools() -> None:
    fake = FakeDataverse()
    fake.remaining = 600  # the reserve: 10% of 6,000
    async with connector(fake) as dynamics:
        await _count(dynamics)
        before = len(fake.api_calls())
        with pytest.raises(CrmBudgetExhausted) as exhausted:
            await _count(dynamics)
    assert len(fake.api_calls()) == before
    assert (exhausted.value.used, exhausted.value.limit) == (5400, 6000)


async def test_calls_stop_when_the_window_s_execution_time_is_down_to_the_reserve() -> None:
    fake = FakeDataverse()
    fake.faults.append(lambda request: httpx.Response(
        200, json={"value": []}, headers={"x-ms-ratelimit-time-remaining-xrm-requests": "100,000.00"}))  # fmt: skip
    async with connector(fake) as dynamics:
        await _count(dynamics)
        with pytest.raises(CrmBudgetExhausted, match="execution time"):
            await _count(dynamics)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("reply", "expected", "code"),
    [
        (dataverse_error(400, "0x80044352", "Version stamp associated with the client has expired."),
         ChangeTokenExpired, "0x80044352"),
        (dataverse_error(400, "0x80060888", "Could not find a property named 'nosuch' on type 'lead'."),
         CrmRejected, "0x80060888"),
        (dataverse_error(404, "0x80040217", "Entity 'lead' With Id = x Does Not Exist"), CrmRejected, "0x80040217"),
        (dataverse_error(403, "0x80040220", "no privilege"), CrmRejected, "0x80040220"),
    ],
)  # fmt: skip
async def test_refusals_are_classified_by_the_dataverse_error_body(
    reply: Reply, expected: type[Exception], code: str
) -> None:
    fake = FakeDataverse()
    fake.faults.append(reply)
    async with connector(fake) as dynamics:
        with pytest.raises(expected) as refused:
            await _count(dynamics)
    assert not isinstance(refused.value, CrmTransientError)
    assert getattr(refused.value, "error_code", None) == code
    assert len(fake.api_calls()) == 1


async def test_a_refusal_names_the_property_it_is_about() -> None:
    fake = FakeDataverse()
    fake.faults.append(
        dataverse_error(400, "0x80060888", "Could not find a property named 'nosuch' on type 'lead'.")
    )
    async with connector(fake) as dynamics:
        with pytest.raises(CrmRejected) as refused:
            await _count(dynamics)
    assert refused.value.fields == ("nosuch",)


async def test_a_timeout_is_transient() -> None:
    fake = FakeDataverse()

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    fake.faults = [hang, hang]
    async with connector(fake) as dynamics:
        assert await _count(dynamics) == 3


# ------------------------------------------------------- stored connections


def _connection(**overrides: Any) -> CrmConnectionInfo:
    fields: dict[str, Any] = {
        "account_id": "acme", "provider": "dynamics", "login_url": f"{AUTHORITY}/{TENANT}",
        "auth_method": "client_credentials", "client_id": "app-1",
        "secrets_encrypted": BOX.seal({"client_secret": "s3cret"}), "instance_url": ORG,
    }  # fmt: skip
    return CrmConnectionInfo(**{**fields, **overrides})


def test_a_stored_connection_gives_the_credentials_it_holds() -> None:
    assert (
        credentials_from_connection(_connection(), secret_box=BOX) == CREDENTIALS
    )  # the table's 60.0 means unset
    assert credentials_from_connection(_connection(api_version="9.1"), secret_box=BOX).api_version == "9.1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"provider": "salesforce"},
        {"auth_method": "jwt_bearer"},
        {"login_url": "tenant-only"},
        {"instance_url": None},
    ],
)
def test_an_incomplete_dynamics_connection_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        credentials_from_connection(_connection(**overrides), secret_box=BOX)


async def test_a_connector_for_a_stored_connection_signs_in_with_it() -> None:
    fake = FakeDataverse()
    async with connector_for(_connection(), secret_box=BOX, transport=httpx.MockTransport(fake)) as dynamics:
        assert await _count(dynamics) == 3
    assert str(fake.requests[0].url) == f"{AUTHORITY}/{TENANT}/oauth2/v2.0/token"


async def test_an_untrusted_certificate_at_sign_in_names_it_and_is_not_retried() -> None:
    def untrusted(request: httpx.Request) -> httpx.Response:
        refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
        refused.verify_message = "self-signed certificate"
        raise httpx.ConnectError("handshake failed", request=request) from refused

    async with httpx.AsyncClient(transport=httpx.MockTransport(untrusted)) as client:
        with pytest.raises(CrmTransientError) as caught:
            await request_token(client, CREDENTIALS)
    assert caught.value.error_code == "CERTIFICATE_UNTRUSTED" and caught.value.retried
    assert "self-signed certificate" in caught.value.message
