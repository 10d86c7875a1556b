"""The emulated CRM a benchmark runs against, for either provider, behind one small interface.

`start_crm(provider, leads=, contacts=, seed=)` starts the Salesforce emulator
(`crmsync-emulator`) or the Dataverse one (`crmsync-dynamics-emulator`, plain
HTTP) on a free port, with the same number of leads and contacts, and returns
a `BenchCrm`: the `crm_connections` row an account stores for it, a
connector built straight from its credentials, the first leads (id, e-mail,
job title), and the API calls and record writes the emulator counted
(through its control API, which counts neither).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from crmsync.common.crypto import SecretBox
from tests.support.processes import Process, free_port, start_emulator, start_process, wait_until

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
TENANT = "00000000-0000-0000-0000-00000000be0c"
PROVIDERS = ("salesforce", "dynamics")
LABELS = {"salesforce": "Salesforce", "dynamics": "Dynamics 365"}
# A request window no benchmark fills: the Dataverse emulator then counts every Web API request.
COUNTING_WINDOW = {"kind": "throttle", "limit": 1_000_000_000, "window_seconds": 10_000_000}


@dataclass(frozen=True)
class Lead:
    id: str
    email: str | None
    title: str | None


class BenchCrm(Protocol):
    provider: str
    process: Process | None  # None: an emulator running already, reached at base_url
    base_url: str
    title_field: str  # the leads' job title, in the CRM's own name

    def connection_row(self, account_id: str, box: SecretBox) -> dict[str, Any]: ...
    def connector(self) -> Any: ...
    async def leads(self, limit: int) -> list[Lead]: ...  # the first leads
    async def api_calls(self) -> int: ...
    async def records_written(self) -> int: ...
    async def forget_writes(self) -> None: ...
    def stop(self) -> None: ...


def _control(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{base_url}/__emulator", timeout=600)


@dataclass
class SalesforceCrm:
    process: Process | None
    base_url: str
    org_id: str
    provider: str = "salesforce"
    title_field: str = "Title"

    def connection_row(self, account_id: str, box: SecretBox) -> dict[str, Any]:
        return {
            "account_id": account_id,
            "provider": self.provider,
            "login_url": self.base_url,
            "auth_method": "client_credentials",
            "client_id": CLIENT_ID,
            "secrets_encrypted": box.seal({"client_secret": CLIENT_SECRET}),
        }

    def connector(self) -> Any:
        from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector, SalesforceCredentials

        credentials = SalesforceCredentials(
            login_url=self.base_url,
            auth_method="client_credentials",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        )
        return SalesforceConnector(credentials, options=ConnectorOptions(budget_reserve_fraction=0))

    async def _get(self, path: str, **params: str) -> Any:
        async with _control(self.base_url) as http:
            answer = await http.get(f"/orgs/{self.org_id}{path}", params=params)
            answer.raise_for_status()
            return answer.json()

    async def leads(self, limit: int) -> list[Lead]:
        records = await self._get("/sobjects/Lead", limit=str(limit))
        return [Lead(r["Id"], r.get("Email"), r.get("Title")) for r in records]

    async def api_calls(self) -> int:
        return int((await self._get("/budget"))["used"])

    async def records_written(self) -> int:
        return len(await self._get("/writes"))

    async def forget_writes(self) -> None:
        async with _control(self.base_url) as http:
            (await http.delete(f"/orgs/{self.org_id}/writes")).raise_for_status()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


@dataclass
class DynamicsCrm:
    process: Process | None
    base_url: str
    provider: str = "dynamics"
    title_field: str = "jobtitle"

    def connection_row(self, account_id: str, box: SecretBox) -> dict[str, Any]:
        # The authority ends in the tenant; the environment is the instance (as a stored Dynamics connection).
        return {
            "account_id": account_id,
            "provider": self.provider,
            "login_url": f"{self.base_url}/{TENANT}",
            "instance_url": self.base_url,
            "auth_method": "client_credentials",
            "client_id": CLIENT_ID,
            "api_version": "9.2",
            "secrets_encrypted": box.seal({"client_secret": CLIENT_SECRET}),
        }

    def connector(self) -> Any:
        from crmsync.common.crm.dynamics import DynamicsConnector, DynamicsCredentials

        credentials = DynamicsCredentials(
            authority_url=self.base_url,
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            resource_url=self.base_url,
        )
        return DynamicsConnector(credentials)

    async def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        async with _control(self.base_url) as http:
            answer = await http.request(method, path, **kwargs)
            answer.raise_for_status()
            return answer.json() if answer.content else None

    async def leads(self, limit: int) -> list[Lead]:
        records = await self._control("GET", "/tables/leads", params={"limit": str(limit)})
        return [Lead(r["leadid"], r.get("emailaddress1"), r.get("jobtitle")) for r in records]

    async def api_calls(self) -> int:
        return int((await self._control("GET", "/faults"))["in_window"])

    async def records_written(self) -> int:
        return len(await self._control("GET", "/writes"))

    async def forget_writes(self) -> None:
        await self._control("DELETE", "/writes")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_crm(
    provider: str, *, leads: int, contacts: int, seed: int, extra_args: Sequence[str] = ()
) -> SalesforceCrm | DynamicsCrm:
    """Starts the provider's emulator with these records; returns once it answers."""
    if provider == "salesforce":
        emulator = start_emulator(
            leads=leads,
            contacts=contacts,
            seed=seed,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            extra_args=("--api-limit", "1000000000", *extra_args),
            timeout=600,
        )
        org_id = httpx.get(f"{emulator.base_url}/__emulator/orgs", timeout=60).json()[0]["org_id"]
        return SalesforceCrm(emulator, emulator.base_url, org_id)
    if provider != "dynamics":
        raise ValueError(f"no emulator for CRM provider {provider!r}: {', '.join(PROVIDERS)}")
    port = free_port()
    command = [
        sys.executable, "-m", "crmsync.dynamics_emulator", "--host", "127.0.0.1", "--port", str(port),
        "--leads", str(leads), "--contacts", str(contacts), "--seed", str(seed), "--tenant", TENANT,
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *extra_args,
    ]  # fmt: skip
    process = start_process(command)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(f"{base_url}/__emulator/health"),
            timeout=600,
            what=f"crmsync-dynamics-emulator to start on port {port}",
            process=process,
            interval=0.05,
        )
        httpx.post(f"{base_url}/__emulator/faults", json=COUNTING_WINDOW, timeout=30).raise_for_status()
    except BaseException:
        process.kill()
        raise
    return DynamicsCrm(process, base_url)


def attach_crm(provider: str, base_url: str) -> SalesforceCrm | DynamicsCrm:
    """Returns the emulator already serving at `base_url` (started elsewhere, so not stopped here)."""
    if provider == "salesforce":
        org_id = httpx.get(f"{base_url}/__emulator/orgs", timeout=60).json()[0]["org_id"]
        return SalesforceCrm(None, base_url, org_id)
    return DynamicsCrm(None, base_url)
