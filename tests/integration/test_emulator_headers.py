"""Response header names as Salesforce spells them, read off the wire (http.client keeps their case)."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from urllib.parse import urlencode, urlsplit

from tests.support import emulator_tls
from tests.support.emulator import CrmOrg, EmulatorServer
from tests.support.emulator_tls import TlsEmulatorServer

tls_emulator = emulator_tls.tls_emulator
tls_org = emulator_tls.tls_org


def _exchange(
    base_url: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Returns (status, header (name, value) pairs as sent, body) of one request."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=10
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def _names(headers: list[tuple[str, str]]) -> set[str]:
    return {name for name, _ in headers}


def _token(base_url: str, org: CrmOrg, context: ssl.SSLContext | None = None) -> str:
    form = urlencode(
        {"grant_type": "client_credentials", "client_id": org.client_id, "client_secret": org.client_secret}
    ).encode()
    status, headers, body = _exchange(
        base_url,
        "POST",
        "/services/oauth2/token",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        context=context,
    )
    assert status == 200
    assert {"Content-Type", "Content-Length", "Date"} <= _names(headers)
    return json.loads(body)["access_token"]


def test_headers_of_an_api_call_are_spelled_as_salesforce_does(emulator: EmulatorServer, crm_org: CrmOrg):
    token = _token(emulator.base_url, crm_org)
    status, headers, _ = _exchange(
        emulator.base_url, "GET", "/services/data/v60.0/limits", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    names = _names(headers)
    assert {"Content-Type", "Content-Length", "Date", "Sforce-Limit-Info"} <= names
    assert not any(name.islower() for name in names)
    assert dict(headers)["Sforce-Limit-Info"].startswith("api-usage=")


def test_headers_of_bulk_results_are_spelled_as_salesforce_does(emulator: EmulatorServer, crm_org: CrmOrg):
    auth = {"Authorization": f"Bearer {_token(emulator.base_url, crm_org)}"}
    status, _, body = _exchange(
        emulator.base_url,
        "POST",
        "/services/data/v60.0/jobs/query",
        body=json.dumps({"operation": "query", "query": "SELECT Id FROM Lead"}).encode(),
        headers={**auth, "Content-Type": "application/json"},
    )
    job = json.loads(body)["id"]
    _exchange(emulator.base_url, "GET", f"/services/data/v60.0/jobs/query/{job}", headers=auth)
    status, headers, _ = _exchange(
        emulator.base_url,
        "GET",
        f"/services/data/v60.0/jobs/query/{job}/results?maxRecords=10",
        headers=auth,
    )
    assert status == 200
    spelled = dict(headers)
    assert spelled["Sforce-NumberOfRecords"] == "10"
    assert spelled["Sforce-Locator"] not in ("", "null")
    assert spelled["Content-Type"] == "text/csv"
    assert "Sforce-Limit-Info" in spelled


def test_headers_of_errors_are_spelled_as_salesforce_does(emulator: EmulatorServer, crm_org: CrmOrg):
    status, headers, _ = _exchange(emulator.base_url, "GET", "/services/data/v60.0/limits")
    assert status == 401
    assert {"Content-Type", "Date"} <= _names(headers)
    status, headers, _ = _exchange(emulator.base_url, "GET", "/no/such/path")
    assert status == 404
    assert "Content-Type" in _names(headers)
    crm_org.faults("429", count=1, path="/limits")
    token = _token(emulator.base_url, crm_org)
    status, headers, _ = _exchange(
        emulator.base_url, "GET", "/services/data/v60.0/limits", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 429
    assert {"Retry-After", "Sforce-Limit-Info"} <= _names(headers)


def test_headers_of_the_control_api_are_spelled_as_salesforce_does(emulator: EmulatorServer):
    status, headers, _ = _exchange(emulator.base_url, "GET", "/__emulator/health")
    assert status == 200
    assert {"Content-Type", "Content-Length", "Date"} <= _names(headers)
    assert "server" not in {name.lower() for name in _names(headers)}


def test_headers_over_https_are_spelled_as_salesforce_does(tls_emulator: TlsEmulatorServer, tls_org: CrmOrg):
    assert tls_emulator.cert is not None
    context = emulator_tls.trusting(tls_emulator.cert)
    token = _token(tls_emulator.base_url, tls_org, context)
    status, headers, _ = _exchange(
        tls_emulator.base_url,
        "GET",
        "/services/data/v60.0/query?q=SELECT+Id+FROM+Lead+LIMIT+1",
        headers={"Authorization": f"Bearer {token}"},
        context=context,
    )
    assert status == 200
    assert {"Content-Type", "Sforce-Limit-Info", "Date"} <= _names(headers)


def test_headers_date_is_an_http_date(emulator: EmulatorServer):
    _, headers, _ = _exchange(emulator.base_url, "GET", "/__emulator/health")
    date = dict(headers)["Date"]
    assert date.endswith(" GMT")
    parsed = time.strptime(date, "%a, %d %b %Y %H:%M:%S GMT")
    assert abs(time.mktime(parsed) - time.mktime(time.gmtime())) < 120
