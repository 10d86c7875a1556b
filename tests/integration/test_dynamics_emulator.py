"""The Dataverse emulator as a process (`python -m crmsync.dynamics_emulator`): its command line, a
million records at start, HTTPS and plain HTTP, change tracking and faults over the wire, and the
Microsoft client's view of a throttled request."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from tests.support.dynamics_emulator import (
    DynamicsEmulator,
    dynamics,
    dynamics_emulator,
    start_dynamics_emulator,
)
from tests.support.processes import answers, free_port, start_process, wait_until

__all__ = ["dynamics", "dynamics_emulator"]
pytestmark = pytest.mark.integration


def test_the_command_line_explains_itself_and_refuses_bad_sizes() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "crmsync.dynamics_emulator", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    for flag in "--host --port --leads --contacts --seed --client-id --client-secret --tenant --tls".split():
        assert flag in shown.stdout
    refused = subprocess.run([sys.executable, "-m", "crmsync.dynamics_emulator", "--leads", "2000001"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "2,000,000" in refused.stderr


def test_a_million_records_start_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    emulator = start_dynamics_emulator(tmp_path, leads=1_000_000, contacts=1_000_000)
    try:
        assert time.monotonic() - started < 20
        (environment,) = emulator.control("GET", "/environments").json()
        assert environment["records"]["lead"] == 1_000_000 and environment["records"]["contact"] == 1_000_000
        with emulator.api() as api:
            page = api.get(
                "leads", params={"$select": "lastname"}, headers={"Prefer": "odata.maxpagesize=5000"}
            )
            assert len(page.json()["value"]) == 5000 and "@odata.nextLink" in page.json()
    finally:
        # uvicorn shuts down on SIGTERM and then re-raises it: a clean stop ends by the signal.
        assert emulator.stop() in (0, -15)


def test_tracked_changes_and_deletions_over_https(dynamics: DynamicsEmulator) -> None:
    with dynamics.api() as api:
        assert api.get(f"{dynamics.base_url}/api/data/v8.0/leads").status_code == 404
        full = api.get(
            "accounts", params={"$select": "name"}, headers={"Prefer": "odata.track-changes"}
        ).json()
        delta = full["@odata.deltaLink"]
        first, second = full["value"][0]["accountid"], full["value"][1]["accountid"]
        dynamics.control(
            "PATCH", f"/tables/account/{first}", json={"fields": {"name": "Renamed Ltd"}}
        ).raise_for_status()
        dynamics.control("DELETE", f"/tables/account/{second}").raise_for_status()
        changes = api.get(delta, headers={"Prefer": "odata.track-changes"}).json()["value"]
        assert [c.get("name") for c in changes] == ["Renamed Ltd", None]
        assert changes[1]["reason"] == "deleted" and changes[1]["id"] == second
    assert httpx.get(f"{dynamics.web_api}/accounts", verify=dynamics.ssl_context()).status_code == 401


def test_the_microsoft_client_sees_a_throttled_request_as_transient(
    dynamics: DynamicsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dynamics.cert))
    credential = ClientSecretCredential(dynamics.tenant, dynamics.client_id, dynamics.client_secret,
                                        authority=dynamics.base_url, disable_instance_discovery=True)  # fmt: skip
    with DataverseClient(dynamics.base_url, credential) as client:
        assert list(client.records.list("systemuser", select=["fullname"], top=2))
        dynamics.control(
            "POST", "/faults", json={"kind": "429", "count": 1, "retry_after": 3}
        ).raise_for_status()
        with pytest.raises(HttpError) as raised:
            list(client.records.list("lead", select=["lastname"], top=1))
        error = raised.value
        assert (error.status_code, error.details["retry_after"], error.is_transient) == (429, 3, True)
        assert error.details["service_error_code"] == "0x80072322"
        assert list(client.records.list("lead", select=["lastname"], top=1))


def test_a_rate_limit_from_the_command_line(tmp_path: Path) -> None:
    emulator = start_dynamics_emulator(
        tmp_path, leads=10, contacts=10, extra_args=["--rate-limit", "2", "--rate-window", "30"]
    )
    try:
        with emulator.api() as api:
            statuses = [api.get("leads", params={"$top": "1"}).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
    finally:
        emulator.stop()


def test_without_tls_it_serves_plain_http(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "crmsync.dynamics_emulator",
        "--port",
        str(port),
        "--leads",
        "5",
        "--contacts",
        "5",
    ]
    with start_process(command, log=tmp_path / "plain.log") as process:
        health = f"http://127.0.0.1:{port}/__emulator/health"
        wait_until(lambda: answers(health), timeout=30, what="the plain HTTP emulator", process=process)
        process.stop()
