"""Witness of fidelity: the third-party client simple-salesforce, unchanged, against the emulator over HTTPS.

No adapter and no patch: the emulator serves TLS with a certificate the client
trusts the ordinary way (REQUESTS_CA_BUNDLE, or a requests Session's `verify`).
simple-salesforce logs in at https://{domain}.salesforce.com/services/oauth2/token;
the domain given here names the emulator's token endpoint and leaves the rest of
that URL as a fragment, which an HTTP client never sends. Every later call goes
to the instance_url the login answers (https://127.0.0.1:PORT).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support import emulator_tls
from tests.support.emulator import CrmOrg
from tests.support.emulator_tls import TlsEmulatorServer

tls_emulator = emulator_tls.tls_emulator
emulator = emulator_tls.tls_as_emulator  # crm_org and make_crm_org on HTTPS


@pytest.fixture(autouse=True)
def trust_the_emulator(tls_emulator: TlsEmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_emulator.cert))


def _domain(server: TlsEmulatorServer) -> str:
    return server.base_url.removeprefix("https://") + "/services/oauth2/token#"


def _login(server: TlsEmulatorServer, org: CrmOrg, **options: object) -> Salesforce:
    return Salesforce(
        consumer_key=org.client_id, consumer_secret=org.client_secret, domain=_domain(server), **options
    )


@pytest.fixture
def sf(crm_org: CrmOrg, tls_emulator: TlsEmulatorServer) -> Salesforce:
    """simple-salesforce logged in with the OAuth client-credentials flow."""
    return _login(tls_emulator, crm_org)


def test_simple_salesforce_logs_in_with_client_credentials(sf: Salesforce, crm_org: CrmOrg):
    assert sf.session_id.startswith(crm_org.org_id[:15] + "!")
    assert sf.sf_instance == crm_org.instance_url.removeprefix("https://")
    assert sf.base_url.startswith(crm_org.instance_url + "/services/data/")


def test_simple_salesforce_logs_in_with_a_session_id_and_instance_url(
    crm_org: CrmOrg, tls_emulator: TlsEmulatorServer
):
    sf = Salesforce(session_id=crm_org.access_token(), instance_url=tls_emulator.base_url)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 50


def test_simple_salesforce_trusts_the_emulator_through_a_session_verify_path(
    crm_org: CrmOrg, tls_emulator: TlsEmulatorServer, monkeypatch: pytest.MonkeyPatch
):
    # requests lets these override a Session's verify; a client given a verify path has neither.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    session = requests.Session()
    session.verify = str(tls_emulator.cert)
    sf = _login(tls_emulator, crm_org, session=session)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 50


def test_simple_salesforce_logs_in_with_jwt_bearer(tls_emulator: TlsEmulatorServer, make_crm_org):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    org = make_crm_org(jwt_public_key=public.decode())
    sf = Salesforce(
        username="integration@example.com",
        consumer_key=org.client_id,
        privatekey=private.decode(),
        domain=_domain(tls_emulator),
    )
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 50


def test_simple_salesforce_query_all_follows_next_records_url(
    tls_emulator: TlsEmulatorServer, make_crm_org: Callable[..., CrmOrg]
):
    big = _login(tls_emulator, make_crm_org(leads=2500, contacts=0))
    result = big.query_all("SELECT Id, Email, Owner.Email FROM Lead ORDER BY SystemModstamp, Id")
    assert result["totalSize"] == 2500
    assert len(result["records"]) == 2500
    assert len({r["Id"] for r in result["records"]}) == 2500


def test_simple_salesforce_query_all_with_a_parent_to_child_subquery(sf: Salesforce):
    result = sf.query_all(
        "SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account ORDER BY Name"
    )
    assert result["totalSize"] > 0 and result["done"] is True
    nested = [r["Contacts"] for r in result["records"] if r["Contacts"] is not None]
    assert nested
    assert (
        sum(n["totalSize"] for n in nested)
        == sf.query("SELECT COUNT() FROM Contact WHERE AccountId != null")["totalSize"]
    )
    assert all(n["done"] is True and n["records"][0]["attributes"]["type"] == "Contact" for n in nested)


def test_simple_salesforce_describe_global_and_lead(sf: Salesforce):
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Lead", "Contact", "Account", "User", "Opportunity"} <= names
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert fields["Marketing_Score__c"]["type"] == "double"
    assert fields["Marketing_Score__c"]["custom"] is True
    assert fields["OwnerId"]["referenceTo"] == ["User"]
    assert fields["SystemModstamp"]["updateable"] is False


def test_simple_salesforce_updates_and_creates_records(sf: Salesforce, crm_org: CrmOrg):
    lead_id = sf.query("SELECT Id FROM Lead LIMIT 1")["records"][0]["Id"]
    assert sf.Lead.update(lead_id, {"Title": "Chief Witness", "Marketing_Score__c": 88}) == 204
    assert sf.Lead.get(lead_id)["Title"] == "Chief Witness"
    created = sf.Contact.create({"LastName": "Hopper", "FirstName": "Grace", "Email": "grace@example.com"})
    assert created["success"] is True
    assert crm_org.get("Contact", created["id"])["Email"] == "grace@example.com"
    assert [(w["method"], w["object"]) for w in crm_org.writes()] == [("PATCH", "Lead"), ("POST", "Contact")]


def test_simple_salesforce_composite_collections_create_and_update(sf: Salesforce, crm_org: CrmOrg):
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        data=json.dumps(
            {
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Contact"}, "LastName": "Lamarr", "Email": "hedy@example.com"},
                    {"attributes": {"type": "Contact"}, "LastName": "Lovelace", "Email": "ada@example.com"},
                ],
            }
        ),
    )
    assert [r["success"] for r in created] == [True, True]
    ids = [r["id"] for r in created]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        data=json.dumps(
            {"records": [{"attributes": {"type": "Contact"}, "id": rid, "Title": "Inventor"} for rid in ids]}
        ),
    )
    assert updated == [{"id": rid, "success": True, "errors": []} for rid in ids]
    assert [crm_org.get("Contact", rid)["Title"] for rid in ids] == ["Inventor", "Inventor"]


def test_simple_salesforce_sees_salesforce_errors(sf: Salesforce, crm_org: CrmOrg):
    with pytest.raises(SalesforceMalformedRequest) as error:
        sf.query("SELECT Nope FROM Lead")
    assert error.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_simple_salesforce_logs_in_again_when_the_session_expires(sf: Salesforce, crm_org: CrmOrg):
    first_session = sf.session_id
    crm_org.faults("expired_token", count=1)
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 50
    assert sf.session_id != first_session


def test_simple_salesforce_bulk2_query(sf: Salesforce):
    pages = list(sf.bulk2.Lead.query("SELECT Id, Email, Owner.Name FROM Lead", max_records=20, wait=0))
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(pages) == 3
    assert len(rows) == 50
    assert set(rows[0]) == {"Id", "Email", "Owner.Name"}


def test_simple_salesforce_reads_api_usage(sf: Salesforce):
    sf.query("SELECT Id FROM Lead LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert usage.used >= 1
    assert usage.total == 100_000


def test_simple_salesforce_reads_limits(sf: Salesforce, crm_org: CrmOrg):
    crm_org.set_budget(used=0, limit=100_000)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 100_000, "Remaining": 99_999}
    assert limits["DailyBulkV2QueryJobs"]["Max"] == 10_000
