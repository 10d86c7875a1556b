"""Witness of fidelity: the third-party client simple-salesforce, unchanged, against the emulator.

simple-salesforce builds every URL as https://<host>; the requests Session it
accepts (its documented `session=` option) carries a transport adapter that
sends those requests to the emulator's plain-HTTP port. The library itself is
not patched.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.support.emulator import CrmOrg, EmulatorServer


class _ToEmulator(HTTPAdapter):
    """Sends https://*.salesforce.com and https://127.0.0.1:PORT requests to the emulator over HTTP."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.target = urlsplit(base_url)

    def send(self, request, *args, **kwargs):  # type: ignore[override]
        parts = urlsplit(request.url)
        request.url = urlunsplit(
            (self.target.scheme, self.target.netloc, parts.path, parts.query, parts.fragment)
        )
        return super().send(request, *args, **kwargs)


def _session(base_url: str) -> requests.Session:
    session = requests.Session()
    session.mount("https://", _ToEmulator(base_url))
    return session


@pytest.fixture
def sf(crm_org: CrmOrg, emulator: EmulatorServer) -> Salesforce:
    """simple-salesforce logged in with the OAuth client-credentials flow."""
    return Salesforce(
        consumer_key=crm_org.client_id,
        consumer_secret=crm_org.client_secret,
        domain="emulator",
        session=_session(emulator.base_url),
    )


def test_simple_salesforce_logs_in_with_client_credentials(sf: Salesforce, crm_org: CrmOrg):
    assert sf.session_id.startswith(crm_org.org_id[:15] + "!")
    assert sf.sf_instance == crm_org.instance_url.removeprefix("http://")


def test_simple_salesforce_logs_in_with_jwt_bearer(emulator: EmulatorServer, make_crm_org):
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
        domain="emulator",
        session=_session(emulator.base_url),
    )
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 50


def test_simple_salesforce_query_all_follows_next_records_url(sf: Salesforce, make_crm_org, emulator):
    org = make_crm_org(leads=2500, contacts=0)
    big = Salesforce(
        consumer_key=org.client_id,
        consumer_secret=org.client_secret,
        domain="emulator",
        session=_session(emulator.base_url),
    )
    result = big.query_all("SELECT Id, Email, Owner.Email FROM Lead ORDER BY SystemModstamp, Id")
    assert result["totalSize"] == 2500
    assert len(result["records"]) == 2500
    assert len({r["Id"] for r in result["records"]}) == 2500


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
