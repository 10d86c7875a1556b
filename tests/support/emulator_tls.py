"""Pytest fixtures for the Salesforce emulator over HTTPS (`crmsync-emulator --tls`).

Fixtures (register them by importing them into a test module)
---------------------------------------------------------------
``tls_emulator`` (session)
    One emulator process serving HTTPS on a free loopback port, with a
    self-signed certificate it made at start for 127.0.0.1 and localhost, and
    plain HTTP beside it on a second port (the same orgs and tokens). A
    ``TlsEmulatorServer``: what ``EmulatorServer`` has (``base_url`` is the
    https:// one, ``new_org``, ``remove_org``, ``default_org``), plus ``cert``
    (the certificate file a client trusts) and ``plain_url``.
``tls_org`` (function)
    A fresh org (50 leads, 50 contacts, seed 1) on ``tls_emulator``, removed
    afterwards; its ``login_url`` and ``instance_url`` are https://.

``tls_as_emulator`` (session, named ``emulator``)
    ``tls_emulator`` under the name ``emulator``: a test module that imports it
    gets ``crm_org`` and ``make_crm_org`` on the HTTPS emulator.

``trusting(cert)`` is an ``ssl.SSLContext`` trusting that certificate (for httpx).

``start_tls_emulator(cert_dir, extra_args=...)`` starts one such process
(``--tls --tls-cert-out``), or with ``tls_args`` given (``--certfile/--keyfile``)
serves that certificate instead; it returns once the process answers over HTTPS.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import CrmOrg, EmulatorServer
from tests.support.processes import Emulator, free_port, start_emulator

CLIENT_ID, CLIENT_SECRET = "crmsync-tls", "crmsync-tls-secret"


@dataclass
class TlsEmulatorServer(EmulatorServer):
    cert: Path | None = None
    plain_url: str | None = None


@dataclass
class TlsProcess:
    process: Emulator
    base_url: str
    plain_url: str | None
    cert: Path


def trusting(cert: Path) -> ssl.SSLContext:
    """Returns a client TLS context that trusts the emulator's certificate (and only it)."""
    return ssl.create_default_context(cafile=str(cert))


def _healthy(url: str, cert: Path) -> bool:
    if not cert.exists() or cert.stat().st_size == 0:
        return False
    try:
        return httpx.get(url, verify=trusting(cert), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_tls_emulator(
    cert_dir: Path,
    *,
    tls_args: Sequence[str] | None = None,
    cert: Path | None = None,
    plain: bool = True,
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> TlsProcess:
    """Starts an HTTPS emulator (a generated certificate unless `tls_args` and `cert` are given)."""
    port = free_port()
    if tls_args is None:
        cert = cert_dir / f"emulator-{port}.pem"
        tls_args = ["--tls", "--tls-cert-out", str(cert)]
    assert cert is not None
    trusted = cert
    plain_port = free_port() if plain else None
    process = start_emulator(
        leads=50,
        contacts=50,
        seed=7,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        extra_args=[*tls_args, *(["--plain-port", str(plain_port)] if plain_port else []), *extra_args],
        log=cert_dir / f"emulator-{port}.log",
        timeout=timeout,
        port=port,
        scheme="https",
        healthy=lambda url: _healthy(url, trusted),
    )
    plain_url = f"http://127.0.0.1:{plain_port}" if plain_port else None
    return TlsProcess(process, process.base_url, plain_url, cert)


@pytest.fixture(scope="session")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEmulatorServer]:
    """An HTTPS emulator process (plain HTTP beside it) for the whole run."""
    started = start_tls_emulator(tmp_path_factory.mktemp("emulator-tls"))
    http = httpx.Client(base_url=started.base_url, verify=trusting(started.cert), timeout=httpx.Timeout(30.0))
    server = TlsEmulatorServer(
        started.base_url,
        CLIENT_ID,
        CLIENT_SECRET,
        started.process,
        http,
        cert=started.cert,
        plain_url=started.plain_url,
    )
    try:
        yield server
    finally:
        http.close()
        started.process.stop()


@pytest.fixture
def tls_org(tls_emulator: TlsEmulatorServer) -> Iterator[CrmOrg]:
    """A fresh org on the HTTPS emulator, removed after the test."""
    org = tls_emulator.new_org(leads=50, contacts=50, seed=1)
    try:
        yield org
    finally:
        tls_emulator.remove_org(org)


@pytest.fixture(scope="session", name="emulator")
def tls_as_emulator(tls_emulator: TlsEmulatorServer) -> TlsEmulatorServer:
    """The HTTPS emulator under the name `emulator`: imported into a test module, it puts that
    module's `crm_org` and `make_crm_org` (tests.support.emulator) on HTTPS."""
    return tls_emulator
