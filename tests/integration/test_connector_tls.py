"""The Salesforce connector against the emulator over HTTPS, trusting its certificate as an operator would.

httpx 0.28 (the connector's client, `trust_env` on) verifies HTTPS against certifi's
CAs, or against the bundle `SSL_CERT_FILE` names when that is set; the services read
no setting of their own for it. A certificate the process does not trust ends the
call at once with a CrmTransientError naming it, not after rounds of retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import certifi
import pytest

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.factory import connector_factory
from crmsync.common.crm.interface import CrmTransientError
from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector, SalesforceCredentials
from crmsync.common.crypto import SecretBox
from tests.support import emulator_tls
from tests.support.emulator import CrmOrg
from tests.support.emulator_tls import TlsEmulatorServer

pytestmark = pytest.mark.integration

tls_emulator = emulator_tls.tls_emulator
emulator = emulator_tls.tls_as_emulator  # crm_org and make_crm_org on HTTPS

LEAD_FIELDS = ["FirstName", "LastName", "Email", "Company", "HasOptedOutOfEmail", "Marketing_Score__c"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET_KEY = "integration-secret-key"


@pytest.fixture(autouse=True)
def trust_the_emulator(tls_emulator: TlsEmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Read when a connector's client is made, so set before any connector exists.
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_emulator.cert))
    yield


def _credentials(org: CrmOrg) -> SalesforceCredentials:
    return SalesforceCredentials(org.login_url, "client_credentials", org.client_id, org.client_secret)


def _connector(org: CrmOrg, **overrides: Any) -> SalesforceConnector:
    # Short backoff, as in the HTTP tests; the untrusted-certificate test uses the default.
    base = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "budget_slowdown_max_delay_s": 0.01}
    return SalesforceConnector(_credentials(org), options=ConnectorOptions(**{**base, **overrides}))


async def test_tls_connector_logs_in_and_reads_the_describe(crm_org: CrmOrg) -> None:
    assert crm_org.login_url.startswith("https://") and crm_org.instance_url.startswith("https://")
    async with _connector(crm_org) as crm:
        lead = await crm.describe("Lead")
    assert lead.fields["Marketing_Score__c"].type == "double"
    assert lead.fields["Email"].type == "email"


async def test_tls_query_pages_follow_next_records_url(make_crm_org: Callable[..., CrmOrg]) -> None:
    org = make_crm_org(leads=450, contacts=0)
    since = datetime.now(UTC) + timedelta(days=1)
    record_id = org.records("Lead", limit=1)[0]["Id"]
    org.edit("Lead", record_id, {"Marketing_Score__c": 9}, system_modstamp=since)
    async with _connector(org) as crm:
        sizes = [len(page) async for page in crm.changed_since("Lead", ["Email"], T0, page_size=200)]
        changed = [page async for page in crm.changed_since("Lead", LEAD_FIELDS, since, page_size=200)]
        assert await crm.count("Lead") == 450
    assert sizes == [200, 200, 50]
    assert [(r["Id"], r["Marketing_Score__c"]) for page in changed for r in page] == [(record_id, 9.0)]


async def test_tls_bulk_query_returns_what_rest_returns(make_crm_org: Callable[..., CrmOrg]) -> None:
    org = make_crm_org(leads=700, contacts=0, seed=5)
    by_id: dict[str, dict[str, dict[str, Any]]] = {"rest": {}, "bulk": {}}
    async with (
        _connector(org, bulk_threshold=10**9) as rest,
        _connector(org, bulk_threshold=0, bulk_max_records=250, page_size=200) as bulk,
    ):
        for name, crm in (("rest", rest), ("bulk", bulk)):
            async for page in crm.export_all("Lead", LEAD_FIELDS):
                by_id[name].update((r["Id"], r) for r in page)
    assert len(by_id["bulk"]) == 700
    assert by_id["bulk"] == by_id["rest"]


async def test_tls_composite_create_and_update(crm_org: CrmOrg) -> None:
    leads = [
        {"LastName": f"Secure{i}", "Company": "Acme", "Email": f"secure{i}@example.com"} for i in range(250)
    ]
    async with _connector(crm_org) as crm:
        created = await crm.create("Lead", leads)  # two collections: 200, then 50
        first, second = created[0].id, created[1].id
        updated = await crm.update(
            "Lead", [{"Id": first, "Marketing_Score__c": 42}, {"Id": second, "Nope__c": 1}]
        )
    assert len(created) == 250 and all(r.success for r in created)
    assert crm_org.get("Lead", created[249].id)["LastName"] == "Secure249"
    assert [r.success for r in updated] == [True, False]
    assert crm_org.get("Lead", first)["Marketing_Score__c"] == 42


async def test_tls_budget_reads_limits(crm_org: CrmOrg) -> None:
    crm_org.set_budget(used=100, limit=5000)
    async with _connector(crm_org) as crm:
        budget = await crm.budget()
    assert (budget.used, budget.limit) == (crm_org.api_usage()["used"], 5000)


async def test_tls_factory_connector_trusting_a_bundle_with_the_public_cas(
    crm_org: CrmOrg, tls_emulator: TlsEmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the services build connectors, trusting what an operator's bundle holds.
    assert tls_emulator.cert is not None
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + tls_emulator.cert.read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    sealed = SecretBox(SECRET_KEY).seal({"client_secret": crm_org.client_secret})
    connection = CrmConnectionInfo(
        "acme", "salesforce", crm_org.login_url, "client_credentials", crm_org.client_id, sealed
    )
    connector = connector_factory(SECRET_KEY)(connection)
    try:
        assert await connector.count("Contact") == 50
    finally:
        await connector.aclose()


async def test_tls_an_untrusted_certificate_fails_at_once_naming_it(
    crm_org: CrmOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    started = time.monotonic()
    # The default backoff: retried, this would take over 15 s.
    async with SalesforceConnector(_credentials(crm_org)) as crm:
        with pytest.raises(CrmTransientError) as caught:
            await crm.describe("Lead")
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.error_code == "CERTIFICATE_UNTRUSTED"
    assert error.retried and not error.maybe_applied
    assert "not trusted" in error.message and "127.0.0.1" in error.message
    assert "SSL_CERT_FILE" in error.message
