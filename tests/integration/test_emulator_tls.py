"""The emulator over HTTPS: a certificate made at start (or given), trusted by clients the usual ways."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

import httpx
import pytest
import requests

from crmsync.emulator.tls import self_signed
from tests.support import emulator_tls
from tests.support.emulator import CrmOrg
from tests.support.emulator_tls import TlsEmulatorServer, start_tls_emulator, trusting

tls_emulator = emulator_tls.tls_emulator
tls_org = emulator_tls.tls_org


def _port(server: TlsEmulatorServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_certificate_is_valid_for_127_0_0_1_and_localhost(tls_emulator: TlsEmulatorServer, host: str):
    response = requests.get(
        f"https://{host}:{_port(tls_emulator)}/__emulator/health", verify=str(tls_emulator.cert), timeout=10
    )
    assert response.json()["ok"] is True


def test_tls_refuses_a_client_that_does_not_trust_the_certificate(tls_emulator: TlsEmulatorServer):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_emulator.base_url}/__emulator/health", timeout=10)


def test_tls_trusted_through_requests_ca_bundle(tls_emulator: TlsEmulatorServer, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_emulator.cert))
    assert requests.get(f"{tls_emulator.base_url}/__emulator/health", timeout=10).status_code == 200


def test_tls_trusted_through_ssl_cert_file_by_the_default_context(
    tls_emulator: TlsEmulatorServer, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_emulator.cert))
    context = ssl.create_default_context()
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    connection = http.client.HTTPSConnection("127.0.0.1", _port(tls_emulator), context=context, timeout=10)
    try:
        connection.request("GET", "/__emulator/health")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_tls_login_answers_an_https_instance_url(tls_emulator: TlsEmulatorServer, tls_org: CrmOrg):
    response = requests.post(
        f"{tls_emulator.base_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tls_org.client_id,
            "client_secret": tls_org.client_secret,
        },
        verify=str(tls_emulator.cert),
        timeout=10,
    )
    body = response.json()
    assert body["instance_url"] == tls_emulator.base_url
    assert body["id"].startswith(tls_emulator.base_url + "/id/")
    assert tls_org.instance_url == tls_emulator.base_url


def test_tls_plain_http_beside_serves_the_same_orgs_and_tokens(
    tls_emulator: TlsEmulatorServer, tls_org: CrmOrg
):
    assert tls_emulator.plain_url is not None
    token = tls_org.access_token()  # issued over HTTPS
    response = httpx.get(
        f"{tls_emulator.plain_url}/services/data/v60.0/query",
        params={"q": "SELECT COUNT() FROM Lead"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json()["totalSize"] == 50


def test_tls_serves_a_given_certfile_and_keyfile(tmp_path: Path):
    cert_pem, key_pem = self_signed()
    cert, key = tmp_path / "given.pem", tmp_path / "given.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    started = start_tls_emulator(
        tmp_path, tls_args=["--certfile", str(cert), "--keyfile", str(key)], cert=cert, plain=False
    )
    try:
        response = httpx.get(f"{started.base_url}/__emulator/health", verify=trusting(cert))
        assert response.json()["orgs"] == 1
        assert key.exists()  # a given key is the caller's: never removed
    finally:
        started.process.stop()
