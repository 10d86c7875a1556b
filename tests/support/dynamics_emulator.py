"""Pytest fixtures for the Dataverse Web API emulator (`crmsync-dynamics-emulator --tls`).

Fixtures (register them by importing them into a test module)
---------------------------------------------------------------
``dynamics_emulator`` (module)
    One emulator process on a free loopback port serving HTTPS with a
    certificate it made at start, 300 leads and 300 contacts, seed 11: a
    ``DynamicsEmulator`` with ``base_url`` (https://), ``cert`` (the file a
    client trusts), ``tenant``, ``client_id``, ``client_secret``, ``web_api``,
    ``token()`` (a bearer token from the token endpoint), ``api()`` (an httpx
    client of the Web API, signed in) and ``control(method, path, json=)``.
    The control API is reset after each test that uses ``dynamics``.
``dynamics`` (function)
    ``dynamics_emulator``, reset (records as generated, faults cleared) when the test ends.

Control API (``control(method, path, json=)``): ``/tables/{table}`` (GET ``?limit=``, POST
``{"fields", "modifiedon"}``), ``/tables/{table}/{id}`` (GET, PATCH ``{"fields", "modifiedon"}``,
DELETE), ``/leads/{id}/qualify`` (``{"contact_id"}``), ``/faults`` (``{"kind": "429", "count",
"retry_after"}``, ``{"kind": "503", "seconds"}``, ``{"kind": "lock", "count"}`` for the next writes,
``{"kind": "throttle", "limit", "window_seconds"}``; DELETE clears), ``/writes`` (GET, DELETE),
``/expire-tokens``, ``/expire-change-tokens``, ``/reset`` (``{"leads", "contacts", "seed"}`` to
choose another dataset). ``tests.support.crm_backends`` puts it behind the same face as the
Salesforce emulator.

``start_dynamics_emulator(cert_dir, leads=, contacts=, seed=, extra_args=)`` starts one process.

``in_process(leads=, contacts=, seed=)`` is the app without a process, for unit tests: an
``InProcess`` with ``emulator`` (its state), ``client`` (an ``httpx.AsyncClient`` over ASGI at
``https://dataverse.test``), ``sign_in()`` (sets the bearer token on the client) and ``control``.
``dataverse`` (function, async) is one of them, signed in, closed afterwards.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from crmsync.dynamics_emulator.app import create_app
from crmsync.dynamics_emulator.state import Emulator, Settings
from tests.support.processes import Process, free_port, start_process, wait_until

TENANT = "5f0c1e2d-7a3b-4c5d-9e8f-0a1b2c3d4e5f"
CLIENT_ID = "9a8b7c6d-1111-2222-3333-444455556666"
CLIENT_SECRET = "emulated~secret.value"


@dataclass
class DynamicsEmulator(Process):
    base_url: str
    cert: Path
    tenant: str = TENANT
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    @property
    def web_api(self) -> str:
        return f"{self.base_url}/api/data/v9.2"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant}/oauth2/v2.0/token"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def token(self) -> str:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret, "scope": f"{self.base_url}/.default"}  # fmt: skip
        answer = httpx.post(self.token_url, data=form, verify=self.ssl_context(), timeout=10)
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self) -> httpx.Client:
        headers = {
            "Authorization": f"Bearer {self.token()}",
            "OData-Version": "4.0",
            "Accept": "application/json",
        }
        return httpx.Client(
            base_url=f"{self.web_api}/", headers=headers, verify=self.ssl_context(), timeout=30
        )

    def control(self, method: str, path: str, json: object = None) -> httpx.Response:
        url = f"{self.base_url}/__emulator{path}"
        return httpx.request(method, url, json=json, verify=self.ssl_context(), timeout=30)


def _healthy(url: str, context: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, verify=context, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_dynamics_emulator(
    cert_dir: Path, *, leads: int = 300, contacts: int = 300, seed: int = 11, extra_args: Sequence[str] = ()
) -> DynamicsEmulator:
    """Starts the emulator over HTTPS on a free port; returns once it answers."""
    port = free_port()
    cert = cert_dir / "dynamics-emulator.pem"
    command = [
        sys.executable, "-m", "crmsync.dynamics_emulator", "--host", "127.0.0.1", "--port", str(port),
        "--leads", str(leads), "--contacts", str(contacts), "--seed", str(seed), "--tenant", TENANT,
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--tls", "--tls-cert-out", str(cert),
        *extra_args,
    ]  # fmt: skip
    started = start_process(command, log=cert_dir / "dynamics-emulator.log")
    emulator = DynamicsEmulator(started.popen, started.log, base_url=f"https://127.0.0.1:{port}", cert=cert)
    try:
        wait_until(
            lambda: cert.exists() and _healthy(f"{emulator.base_url}/__emulator/health", emulator.ssl_context()),
            timeout=30, what=f"crmsync-dynamics-emulator to start on port {port}", process=emulator, interval=0.05,
        )  # fmt: skip
    except BaseException:
        emulator.kill()
        raise
    return emulator


@pytest.fixture(scope="module")
def dynamics_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsEmulator]:
    emulator = start_dynamics_emulator(tmp_path_factory.mktemp("dynamics"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def dynamics(dynamics_emulator: DynamicsEmulator) -> Iterator[DynamicsEmulator]:
    yield dynamics_emulator
    dynamics_emulator.control("POST", "/reset").raise_for_status()


IN_PROCESS_URL = "https://dataverse.test"


@dataclass
class InProcess:
    emulator: Emulator
    client: httpx.AsyncClient

    async def sign_in(self) -> str:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "scope": f"{IN_PROCESS_URL}/.default"}  # fmt: skip
        answer = await self.client.post(f"/{TENANT}/oauth2/v2.0/token", data=form)
        answer.raise_for_status()
        token = answer.json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"
        return token

    async def control(self, method: str, path: str, json: object = None) -> httpx.Response:
        return await self.client.request(method, f"/__emulator{path}", json=json)


def in_process(*, leads: int = 120, contacts: int = 90, seed: int = 3) -> InProcess:
    """The emulator's app over ASGI, no process and no port: for unit tests."""
    emulator = Emulator(Settings(leads, contacts, seed, CLIENT_ID, CLIENT_SECRET, TENANT))
    transport = httpx.ASGITransport(app=create_app(emulator))
    client = httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL, headers={"OData-Version": "4.0"})
    return InProcess(emulator, client)


@pytest.fixture
async def dataverse() -> AsyncIterator[InProcess]:
    emulator = in_process()
    await emulator.sign_in()
    yield emulator
    await emulator.client.aclose()
