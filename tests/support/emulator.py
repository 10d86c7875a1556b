"""Pytest fixtures for the Salesforce emulator (`crmsync-emulator`), over real HTTP.

Fixtures
--------
``emulator`` (session)
    One emulator process on a free loopback port for the whole run. Handle:
    ``base_url``, ``client_id``, ``client_secret`` (those of its default org,
    200 leads / 200 contacts, seed 7), ``default_org`` (a ``CrmOrg``), and
    ``new_org(leads=, contacts=, seed=, api_limit=, token_ttl=, jwt_public_key=)``.
``crm_org`` (function)
    A FRESH org for one test (50 leads, 50 contacts, seed 1), removed afterwards.
    Orgs are isolated: the access token says which org a call belongs to, so
    every org shares the same ``instance_url``.
``make_crm_org`` (function)
    A factory: ``make_crm_org(leads=10_000, contacts=0, seed=3, api_limit=500)``;
    every org it made is removed after the test.

``CrmOrg`` (what ``crm_org`` yields)
------------------------------------
Identity: ``org_id``, ``login_url`` (``{login_url}/services/oauth2/token`` is
the token endpoint), ``token_url``, ``instance_url``, ``client_id``,
``client_secret``, ``refresh_token`` (for the refresh_token grant), ``user_id``
(the API user, the default owner of records created through the API).

Acting as a CRM user (never counted in the API budget nor in ``writes()``):
  - ``create(obj, fields, system_modstamp=None) -> id``
  - ``edit(obj, id, fields, system_modstamp=None)``; ``system_modstamp`` (a
    datetime or ISO string) sets SystemModstamp and LastModifiedDate, e.g. in
    the past as if the transaction committed late, or the same instant on
    several records. Read-only fields (IsConverted, CreatedDate…) may be set.
  - ``delete(obj, id, deleted_at=None)``, ``undelete(obj, id)``
  - ``convert_lead(lead_id, account_id=None, system_modstamp=None) -> contact_id``
    (the lead gets IsConverted, ConvertedContactId, ConvertedAccountId,
    ConvertedDate; an Account is created from Company unless one is given)
  - ``get(obj, id) -> dict`` (every field, REST shape, deleted records too)
  - ``records(obj, include_deleted=False, limit=100_000) -> list[dict]``
Inspecting clients:
  - ``writes() -> list[dict]``: what API clients wrote, in order, each
    ``{method, object, id, fields, api: rest|composite, success, time}``;
    ``clear_writes()``.
  - ``api_usage() -> {"used", "limit"}``; ``set_budget(used=, limit=)``.
Faults (``faults(kind, count=None, rate=None, latency_ms=0, path=None, method=None)``):
  ``kind`` is ``latency``, ``429``, ``503``, ``500``, ``lock``
  (UNABLE_TO_LOCK_ROW on single writes, and per record in composite
  collections, where ``count`` counts records), ``expired_token`` (that call
  and later ones with the same token get 401 INVALID_SESSION_ID) or ``budget``
  (the budget is spent: 403 REQUEST_LIMIT_EXCEEDED). ``count=N`` fails the
  next N matching calls; ``rate=0.3`` fails that share, drawn from the org's
  seed (deterministic). ``path`` (a substring) and ``method`` narrow which calls
  match. Logins are hit only by faults whose ``path`` names the token endpoint
  (``path="/services/oauth2/token"``: latency, 429, 503, 500). ``clear_faults()``, ``list_faults()``, ``expire_tokens()``.
  Helper: ``access_token()`` runs the client_credentials grant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.processes import Emulator, start_emulator


def _stamp(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class CrmOrg:
    """One emulated org and a small synchronous control client for it."""

    org_id: str
    login_url: str
    instance_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    user_id: str
    http: httpx.Client = field(repr=False)

    @property
    def token_url(self) -> str:
        return f"{self.login_url}/services/oauth2/token"

    @property
    def _base(self) -> str:
        return f"/__emulator/orgs/{self.org_id}"

    def _ok(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise AssertionError(
                f"control API {response.request.method} {response.request.url}: {response.status_code} {response.text}"
            )
        return response

    def create(
        self, obj: str, fields: dict[str, Any], *, system_modstamp: datetime | str | None = None
    ) -> str:
        """Returns the id of a record created as a CRM user would."""
        body = {"fields": fields, "system_modstamp": _stamp(system_modstamp)}
        return self._ok(self.http.post(f"{self._base}/sobjects/{obj}", json=body)).json()["id"]

    def edit(
        self,
        obj: str,
        record_id: str,
        fields: dict[str, Any],
        *,
        system_modstamp: datetime | str | None = None,
    ) -> None:
        body = {"fields": fields, "system_modstamp": _stamp(system_modstamp)}
        self._ok(self.http.patch(f"{self._base}/sobjects/{obj}/{record_id}", json=body))

    def delete(self, obj: str, record_id: str, *, deleted_at: datetime | str | None = None) -> None:
        self._ok(
            self.http.request(
                "DELETE", f"{self._base}/sobjects/{obj}/{record_id}", json={"deleted_at": _stamp(deleted_at)}
            )
        )

    def undelete(self, obj: str, record_id: str) -> None:
        self._ok(self.http.post(f"{self._base}/sobjects/{obj}/{record_id}/undelete"))

    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        system_modstamp: datetime | str | None = None,
    ) -> str:
        """Returns the id of the Contact the lead became (`contact_id`: merged into that one)."""
        body = {
            "account_id": account_id,
            "contact_id": contact_id,
            "system_modstamp": _stamp(system_modstamp),
        }
        return self._ok(self.http.post(f"{self._base}/leads/{lead_id}/convert", json=body)).json()[
            "contact_id"
        ]

    def get(self, obj: str, record_id: str) -> dict[str, Any]:
        """Returns every field of a record (deleted ones too), in the REST shape."""
        return self._ok(self.http.get(f"{self._base}/sobjects/{obj}/{record_id}")).json()

    def records(
        self, obj: str, *, include_deleted: bool = False, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        params = {"limit": str(limit), "deleted": "true" if include_deleted else "false"}
        return self._ok(self.http.get(f"{self._base}/sobjects/{obj}", params=params)).json()

    def writes(self) -> list[dict[str, Any]]:
        """Returns what API clients wrote, in order."""
        return self._ok(self.http.get(f"{self._base}/writes")).json()

    def clear_writes(self) -> None:
        self._ok(self.http.delete(f"{self._base}/writes"))

    def faults(
        self,
        kind: str,
        *,
        count: int | None = None,
        rate: float | None = None,
        latency_ms: int = 0,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        body = {
            "kind": kind,
            "count": count,
            "rate": rate,
            "latency_ms": latency_ms,
            "path": path,
            "method": method,
        }
        self._ok(self.http.post(f"{self._base}/faults", json=body))

    def list_faults(self) -> list[dict[str, Any]]:
        return self._ok(self.http.get(f"{self._base}/faults")).json()

    def clear_faults(self) -> None:
        self._ok(self.http.delete(f"{self._base}/faults"))

    def expire_tokens(self) -> None:
        self._ok(self.http.post(f"{self._base}/expire-tokens"))

    def set_budget(self, *, used: int | None = None, limit: int | None = None) -> None:
        body = {k: v for k, v in (("used", used), ("limit", limit)) if v is not None}
        self._ok(self.http.put(f"{self._base}/budget", json=body))

    def api_usage(self) -> dict[str, int]:
        """Returns {"used": N, "limit": M} of the daily API budget."""
        return self._ok(self.http.get(f"{self._base}/budget")).json()

    def access_token(self) -> str:
        """Returns a fresh access token from the client_credentials grant."""
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        return self._ok(self.http.post("/services/oauth2/token", data=data)).json()["access_token"]


@dataclass
class EmulatorServer:
    base_url: str
    client_id: str
    client_secret: str
    process: Emulator = field(repr=False)
    http: httpx.Client = field(repr=False)
    default_org: CrmOrg | None = None

    def new_org(self, **options: Any) -> CrmOrg:
        """Returns a fresh org (options: leads, contacts, seed, api_limit, token_ttl, client_id, client_secret, jwt_public_key)."""
        response = self.http.post("/__emulator/orgs", json=options)
        if response.status_code != 201:
            raise AssertionError(f"creating an org failed: {response.status_code} {response.text}")
        return _org(response.json(), self.http)

    def remove_org(self, org: CrmOrg) -> None:
        self.http.delete(f"/__emulator/orgs/{org.org_id}")


def _org(data: dict[str, Any], http: httpx.Client) -> CrmOrg:
    return CrmOrg(
        org_id=data["org_id"],
        login_url=data["login_url"],
        instance_url=data["instance_url"],
        client_id=data["client_id"],
        client_secret=data["client_secret"],
        refresh_token=data["refresh_token"],
        user_id=data["user_id"],
        http=http,
    )


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """A `crmsync-emulator` process on a free loopback port for the whole run."""
    client_id, client_secret = "crmsync-test", "crmsync-test-secret"
    process = start_emulator(
        leads=200, contacts=200, seed=7, client_id=client_id, client_secret=client_secret
    )
    http = httpx.Client(base_url=process.base_url, timeout=httpx.Timeout(30.0))
    server = EmulatorServer(process.base_url, client_id, client_secret, process, http)
    try:
        server.default_org = _org(http.get("/__emulator/orgs").json()[0], http)
        yield server
    finally:
        http.close()
        process.stop()


@pytest.fixture
def make_crm_org(emulator: EmulatorServer) -> Iterator[Callable[..., CrmOrg]]:
    """A factory of fresh orgs: make_crm_org(leads=, contacts=, seed=, api_limit=, token_ttl=)."""
    made: list[CrmOrg] = []

    def make(*, leads: int = 50, contacts: int = 50, seed: int = 1, **options: Any) -> CrmOrg:
        org = emulator.new_org(leads=leads, contacts=contacts, seed=seed, **options)
        made.append(org)
        return org

    yield make
    for org in made:
        emulator.remove_org(org)


@pytest.fixture
def crm_org(make_crm_org: Callable[..., CrmOrg]) -> CrmOrg:
    """A fresh org (50 leads, 50 contacts, seed 1) for one test."""
    return make_crm_org()
