"""Both emulated CRMs behind one face, so a rule's test body runs against each (Salesforce, Dynamics 365).

Fixtures (import them into a test module)
-----------------------------------------
``crm_backend`` (module, parametrised ``salesforce`` | ``dynamics``): a ``CrmBackend``, an emulator
    of that kind started for the module (Salesforce: the run's emulator, an org per CRM; Dynamics:
    its own HTTPS process, reset to each CRM's dataset, its certificate trusted through the bundle
    ``SSL_CERT_FILE`` names while the module runs, so in-process services reach it; child
    processes get it from ``service_env()``).
``make_crm`` (function): ``make_crm(leads=, contacts=, seed=)`` a fresh ``Crm`` of the backend.
``module_settings`` (module): common settings with a topic prefix of the module's own, for a
    service shared by the module's tests.

A ``Crm`` speaks the product's terms: people are of kind ``Lead`` or ``Contact`` and their values
are named by the backend's default mapping (``values["job_title"]``); related records by role
(company, owner, deals). Control: ``people``, ``get``, ``edit``, ``create``, ``delete``,
``convert``, ``set_opted_out``, ``refuse("429" | "503" | "lock", count)``, ``clear_refusals``;
what API clients wrote: ``writes()`` (``Write``: op create/update/delete, kind, id, values by
destination), ``clear_writes``; ``expected_store()`` (what the puller's store must hold);
``add_connection(session, settings=, account_id=)`` stores the account's connection to it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.crm.providers import provider_named
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Contact, CrmConnection
from crmsync.common.domain.mapping import Mapping
from crmsync.common.kafka.topics import ensure_topics
from crmsync.common.settings import CommonSettings
from tests.support.dynamics_emulator import DynamicsEmulator, start_dynamics_emulator
from tests.support.emulator import CrmOrg, EmulatorServer

BACKENDS = ("salesforce", "dynamics")
LEAD, CONTACT = "Lead", "Contact"


@dataclass(frozen=True)
class Person:
    """A lead or contact of the CRM, its values named by the default mapping (as the puller maps them)."""

    id: str
    kind: str
    values: dict[str, Any]
    modified_at: datetime
    company_id: str | None = None
    owner_id: str | None = None
    converted: bool = False
    converted_to: str | None = None


@dataclass(frozen=True)
class Write:
    """One write an API client made, its fields named by the default mapping's destinations."""

    op: str  # create | update | delete
    kind: str | None
    id: str | None
    values: dict[str, Any]


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("+0000", "+00:00"))


class Crm:
    """One test's CRM; subclasses speak to one emulator."""

    provider: str
    mapping: Mapping

    # ---------------------------------------------------------------- to implement
    def add_connection(self, session: AsyncSession, *, settings: CommonSettings, account_id: str) -> None:
        raise NotImplementedError

    def people(self, kind: str) -> list[Person]:
        raise NotImplementedError

    def get(self, kind: str, record_id: str) -> Person | None:
        raise NotImplementedError

    def edit(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def create(self, kind: str, values: dict[str, Any], *, company_id: str | None = None) -> str:
        raise NotImplementedError

    def delete(self, kind: str, record_id: str) -> None:
        raise NotImplementedError

    def convert(self, lead_id: str, *, contact_id: str | None = None) -> str:
        raise NotImplementedError

    def refuse(self, kind: str, *, count: int = 1) -> None:
        """Makes the CRM refuse the next `count` writes: 429 (throttled), 503 (unavailable) or lock."""
        raise NotImplementedError

    def clear_refusals(self) -> None:
        raise NotImplementedError

    def refusals_left(self) -> int:
        """How many counted refusals have not met a request yet."""
        raise NotImplementedError

    def raw_writes(self) -> list[Write]:
        raise NotImplementedError

    def clear_writes(self) -> None:
        raise NotImplementedError

    def companies(self) -> dict[str, str]:
        """Every company (account) id -> its name."""
        raise NotImplementedError

    def owners(self) -> dict[str, tuple[str | None, str | None]]:
        """Every owner (user) id -> (name, email)."""
        raise NotImplementedError

    def deals(self) -> dict[str, str | None]:
        """Every deal (opportunity) id -> the contact it is linked to."""
        raise NotImplementedError

    def close(self) -> None:
        """Removes what the CRM holds once the test is over."""

    async def expire_change_cursors(
        self, sessions: async_sessionmaker[AsyncSession], account_id: str
    ) -> None:
        """Makes the CRM no longer follow the change cursors the account's syncs keep."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    def set_opted_out(self, kind: str, record_id: str, opted_out: bool) -> None:
        """A CRM user opts the person out of (or back into) e-mail."""
        self.edit(kind, record_id, {"opted_out": opted_out})

    def writes(self) -> list[Write]:
        """What API clients wrote that took effect, in order."""
        return self.raw_writes()

    def ids(self, kind: str) -> list[str]:
        return [p.id for p in self.people(kind)]

    def first(self, kind: str, n: int = 0, *, with_email: bool = True) -> Person:
        """The n-th open person of the kind (with an e-mail unless told otherwise)."""
        found = [
            p for p in self.people(kind) if not p.converted and (p.values.get("email") or not with_email)
        ]
        return found[n]

    def source(self, kind: str, destination: str) -> str | None:
        row = self.mapping.row(destination)
        return row.source_for(kind) if row is not None else None

    def expected_store(self) -> dict[str, dict[str, Any]]:
        """What the contact store must hold: external id -> type and values (R5)."""
        companies, owners = self.companies(), self.owners()
        out: dict[str, dict[str, Any]] = {}
        for kind in (LEAD, CONTACT):
            for person in self.people(kind):
                if person.converted:
                    continue
                values = dict(person.values)
                if kind == CONTACT:
                    values["company"] = companies.get(person.company_id or "")
                name, email = owners.get(person.owner_id or "", (None, None))
                values["sales_owner_name"], values["sales_owner_email"] = name, email
                out[person.id] = {"type": kind, "values": values}
        return out


# ====================================================================== Salesforce


@dataclass
class SalesforceCrm(Crm):
    org: CrmOrg
    server: EmulatorServer
    provider: str = "salesforce"
    mapping: Mapping = field(default_factory=lambda: provider_named("salesforce").default_mapping())

    def add_connection(self, session: AsyncSession, *, settings: CommonSettings, account_id: str) -> None:
        box = SecretBox(settings.secret_key.get_secret_value())
        session.add(
            CrmConnection(
                account_id=account_id, provider=self.provider, login_url=self.org.login_url,
                instance_url=self.org.instance_url, auth_method="client_credentials",
                client_id=self.org.client_id, secrets_encrypted=box.seal({"client_secret": self.org.client_secret}),
                status="connected",
            )
        )  # fmt: skip

    def _fields(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        fields = {}
        for destination, value in values.items():
            source = self.source(kind, destination)
            assert source is not None, f"{destination} has no {kind} source in the default mapping"
            fields[source] = value
        return fields

    def _person(self, kind: str, record: dict[str, Any]) -> Person:
        values = {}
        for row in self.mapping.rows:
            source = row.source_for(kind)
            if source:
                values[row.destination] = record.get(source)
        return Person(
            id=record["Id"], kind=kind, values=values, modified_at=_stamp(record["SystemModstamp"]),
            company_id=record.get("AccountId") if kind == CONTACT else None, owner_id=record.get("OwnerId"),
            converted=bool(record.get("IsConverted")), converted_to=record.get("ConvertedContactId"),
        )  # fmt: skip

    def people(self, kind: str) -> list[Person]:
        return [self._person(kind, r) for r in self.org.records(kind)]

    def get(self, kind: str, record_id: str) -> Person | None:
        record = self.org.get(kind, record_id)
        return None if record.get("IsDeleted") else self._person(kind, record)

    def edit(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        self.org.edit(kind, record_id, self._fields(kind, values))

    def create(self, kind: str, values: dict[str, Any], *, company_id: str | None = None) -> str:
        fields = self._fields(kind, values)
        if kind == LEAD:
            fields.setdefault("Company", "Unknown")
        fields.setdefault("LastName", "Unknown")
        if company_id is not None:
            fields["AccountId"] = company_id
        return self.org.create(kind, fields)

    def delete(self, kind: str, record_id: str) -> None:
        # A moment ago: the deleted feed is read in whole seconds.
        self.org.delete(kind, record_id, deleted_at=datetime.now(UTC) - timedelta(seconds=2))

    def convert(self, lead_id: str, *, contact_id: str | None = None) -> str:
        return self.org.convert_lead(lead_id, contact_id=contact_id)

    def refuse(self, kind: str, *, count: int = 1) -> None:
        if kind == "lock":
            self.org.faults("lock", count=count)
        else:
            self.org.faults(kind, count=count, path="composite")

    def clear_refusals(self) -> None:
        self.org.clear_faults()

    def refusals_left(self) -> int:
        return sum(f.get("count") or 0 for f in self.org.list_faults())

    def raw_writes(self) -> list[Write]:
        ops = {"POST": "create", "PATCH": "update", "DELETE": "delete"}
        out = []
        for w in self.org.writes():
            if not w["success"]:
                continue
            kind = w["object"]
            values = {}
            for name, value in (w.get("fields") or {}).items():
                row = next((r for r in self.mapping.rows if r.source_for(kind) == name), None)
                if row is not None:
                    values[row.destination] = value
            out.append(Write(ops.get(w["method"], w["method"]), kind, w.get("id"), values))
        return out

    def clear_writes(self) -> None:
        self.org.clear_writes()

    def companies(self) -> dict[str, str]:
        return {a["Id"]: a["Name"] for a in self.org.records("Account")}

    def owners(self) -> dict[str, tuple[str | None, str | None]]:
        return {u["Id"]: (u["Name"], u["Email"]) for u in self.org.records("User")}

    def deals(self) -> dict[str, str | None]:
        return {o["Id"]: o.get("ContactId") for o in self.org.records("Opportunity")}

    def close(self) -> None:
        self.server.remove_org(self.org)

    async def expire_change_cursors(
        self, sessions: async_sessionmaker[AsyncSession], account_id: str
    ) -> None:
        # The deleted feed reaches 15 days back: a cursor whose deletions start before that has expired.
        long_ago = (datetime.now(UTC) - timedelta(days=16)).isoformat()
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "update sync_state set change_cursor = jsonb_set(change_cursor::jsonb, '{deleted_since}', "
                    "to_jsonb(cast(:at as text)))::text where account_id = :a and change_cursor is not null"
                ),
                {"at": long_ago, "a": account_id},
            )


# ====================================================================== Dynamics 365

TABLES = {LEAD: "lead", CONTACT: "contact"}
KINDS = {"leads": LEAD, "contacts": CONTACT, "lead": LEAD, "contact": CONTACT}
ROLE_ATTRIBUTES = {"Email": "emailaddress1"}  # role fields the default mapping names, and their columns
OPTED_OUT_ROLE, OPT_OUTS = "OptedOut", ("donotemail", "donotbulkemail")
QUALIFIED = 1


@dataclass
class DynamicsCrm(Crm):
    emulator: DynamicsEmulator
    provider: str = "dynamics"
    mapping: Mapping = field(default_factory=lambda: provider_named("dynamics").default_mapping())

    def _control(self, method: str, path: str, json: object = None) -> Any:
        answer = self.emulator.control(method, path, json=json)
        if answer.status_code >= 400:
            raise AssertionError(f"control API {method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def add_connection(self, session: AsyncSession, *, settings: CommonSettings, account_id: str) -> None:
        box = SecretBox(settings.secret_key.get_secret_value())
        e = self.emulator
        session.add(
            CrmConnection(
                account_id=account_id, provider=self.provider, login_url=f"{e.base_url}/{e.tenant}",
                instance_url=e.base_url, auth_method="client_credentials", client_id=e.client_id,
                secrets_encrypted=box.seal({"client_secret": e.client_secret}), api_version="9.2",
                status="connected",
            )
        )  # fmt: skip

    def _value(self, record: dict[str, Any], source: str) -> Any:
        if source == OPTED_OUT_ROLE:
            flags = [record.get(a) for a in OPT_OUTS]
            return any(flags) if any(f is not None for f in flags) else None
        return record.get(ROLE_ATTRIBUTES.get(source, source))

    def _body(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for destination, value in values.items():
            source = self.source(kind, destination)
            assert source is not None, f"{destination} has no {kind} source in the default mapping"
            if source == OPTED_OUT_ROLE:
                # An opt-out as a CRM user sets it: no bulk e-mail; an opt-in lifts both.
                body["donotbulkemail"] = bool(value)
                if not value:
                    body["donotemail"] = False
            else:
                body[ROLE_ATTRIBUTES.get(source, source)] = value
        return body

    def _person(self, kind: str, record: dict[str, Any]) -> Person:
        values = {}
        for row in self.mapping.rows:
            source = row.source_for(kind)
            if source:
                values[row.destination] = self._value(record, source)
        converted = kind == LEAD and record.get("statecode") == QUALIFIED
        return Person(
            id=record[f"{TABLES[kind]}id"], kind=kind, values=values, modified_at=_stamp(record["modifiedon"]),
            company_id=record.get("_parentcustomerid_value") if kind == CONTACT else None,
            owner_id=record.get("_ownerid_value"), converted=converted,
            converted_to=record.get("_parentcontactid_value") if converted else None,
        )  # fmt: skip

    def _records(self, table: str) -> list[dict[str, Any]]:
        return self._control("GET", f"/tables/{table}?limit=1000000")

    def people(self, kind: str) -> list[Person]:
        return [self._person(kind, r) for r in self._records(TABLES[kind])]

    def get(self, kind: str, record_id: str) -> Person | None:
        answer = self.emulator.control("GET", f"/tables/{TABLES[kind]}/{record_id}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return self._person(kind, answer.json())

    def edit(self, kind: str, record_id: str, values: dict[str, Any]) -> None:
        self._control("PATCH", f"/tables/{TABLES[kind]}/{record_id}", {"fields": self._body(kind, values)})

    def create(self, kind: str, values: dict[str, Any], *, company_id: str | None = None) -> str:
        body = self._body(kind, values)
        if company_id is not None:
            body["parentcustomerid_account@odata.bind"] = f"/accounts({company_id})"
        return self._control("POST", f"/tables/{TABLES[kind]}", {"fields": body})[f"{TABLES[kind]}id"]

    def delete(self, kind: str, record_id: str) -> None:
        self._control("DELETE", f"/tables/{TABLES[kind]}/{record_id}")

    def convert(self, lead_id: str, *, contact_id: str | None = None) -> str:
        return self._control("POST", f"/leads/{lead_id}/qualify", {"contact_id": contact_id})["contactid"]

    def refuse(self, kind: str, *, count: int = 1) -> None:
        faults = {"429": {"kind": "429", "count": count, "retry_after": 1},
                  "503": {"kind": "503", "seconds": count}, "lock": {"kind": "lock", "count": count}}  # fmt: skip
        self._control("POST", "/faults", faults[kind])

    def clear_refusals(self) -> None:
        self._control("DELETE", "/faults")

    def refusals_left(self) -> int:
        faults = self._control("GET", "/faults")
        return faults["throttle_next"] + faults["lock_next"]

    def _write_values(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        by_attribute = {}
        for row in self.mapping.rows:
            source = row.source_for(kind)
            if source and source != OPTED_OUT_ROLE:
                by_attribute[ROLE_ATTRIBUTES.get(source, source)] = row.destination
        values = {by_attribute[k]: v for k, v in body.items() if k in by_attribute}
        if any(a in body for a in OPT_OUTS):
            values["opted_out"] = any(bool(body.get(a)) for a in OPT_OUTS)
        return values

    def raw_writes(self) -> list[Write]:
        ops = {"POST": "create", "PATCH": "update", "DELETE": "delete"}
        out = []
        for w in self._control("GET", "/writes"):
            if not w["success"] or w.get("rolled_back"):
                continue
            kind = KINDS.get(str(w.get("table")))
            values = self._write_values(kind, w.get("fields") or {}) if kind else {}
            out.append(Write(ops.get(w["method"], w["method"]), kind, w.get("id"), values))
        return out

    def clear_writes(self) -> None:
        self._control("DELETE", "/writes")

    def companies(self) -> dict[str, str]:
        return {a["accountid"]: a["name"] for a in self._records("account")}

    def owners(self) -> dict[str, tuple[str | None, str | None]]:
        return {
            u["systemuserid"]: (u["fullname"], u["internalemailaddress"]) for u in self._records("systemuser")
        }

    def deals(self) -> dict[str, str | None]:
        return {o["opportunityid"]: o.get("_parentcontactid_value") for o in self._records("opportunity")}

    def close(self) -> None:
        self.clear_refusals()

    async def expire_change_cursors(
        self, sessions: async_sessionmaker[AsyncSession], account_id: str
    ) -> None:
        self._control("POST", "/expire-change-tokens")  # every delta token given so far


# ====================================================================== backends and fixtures


@dataclass
class CrmBackend:
    """A started emulator of one kind, making a fresh CRM for each test."""

    name: str
    new: Callable[..., Crm]
    ca_file: Path | None = None  # the certificate a client trusts (None: plain HTTP)

    @property
    def mapping(self) -> Mapping:
        return provider_named(self.name).default_mapping()

    def service_env(self) -> dict[str, str]:
        """What a child process needs in its environment to reach the emulator."""
        return {"SSL_CERT_FILE": str(self.ca_file)} if self.ca_file else {}


def _salesforce(request: pytest.FixtureRequest) -> Iterator[CrmBackend]:
    server: EmulatorServer = request.getfixturevalue("emulator")

    def new(*, leads: int = 20, contacts: int = 20, seed: int = 1) -> Crm:
        return SalesforceCrm(server.new_org(leads=leads, contacts=contacts, seed=seed), server)

    yield CrmBackend("salesforce", new)


# The certificates of the Dataverse emulators running in this process, trusted through one bundle
# SSL_CERT_FILE names (httpx reads it for each client it makes); what it named before comes first.
_TRUSTED: list[Path] = []
_BEFORE: list[str | None] = []


def _trust(cert: Path, bundle: Path) -> None:
    if not _TRUSTED:
        _BEFORE[:] = [os.environ.get("SSL_CERT_FILE")]
    _TRUSTED.append(cert)
    _write_bundle(bundle)


def _untrust(cert: Path, bundle: Path) -> None:
    _TRUSTED.remove(cert)
    if _TRUSTED:
        _write_bundle(bundle)
    elif _BEFORE[0] is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = _BEFORE[0]


def _write_bundle(bundle: Path) -> None:
    before = [Path(_BEFORE[0])] if _BEFORE and _BEFORE[0] else []
    bundle.write_text("".join(p.read_text() for p in [*before, *_TRUSTED]))
    os.environ["SSL_CERT_FILE"] = str(bundle)


def _dynamics() -> Iterator[CrmBackend]:
    # Its own directory, outside pytest's numbered ones that other runs on the machine may rotate away.
    directory = Path(tempfile.mkdtemp(prefix="crmsync-dynamics-"))
    emulator = start_dynamics_emulator(directory, leads=20, contacts=20)
    bundle = directory / "trusted.pem"
    _trust(emulator.cert, bundle)

    def new(*, leads: int = 20, contacts: int = 20, seed: int = 1) -> Crm:
        answer = emulator.control("POST", "/reset", json={"leads": leads, "contacts": contacts, "seed": seed})
        answer.raise_for_status()
        return DynamicsCrm(emulator)

    try:
        yield CrmBackend("dynamics", new, ca_file=emulator.cert)
    finally:
        _untrust(emulator.cert, bundle)
        emulator.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def crm_backend(request: pytest.FixtureRequest) -> Iterator[CrmBackend]:
    started = _salesforce(request) if request.param == "salesforce" else _dynamics()
    yield from started


@pytest.fixture
def make_crm(crm_backend: CrmBackend) -> Iterator[Callable[..., Crm]]:
    """A factory of fresh CRMs of the backend: make_crm(leads=, contacts=, seed=)."""
    made: list[Crm] = []

    def make(**options: int) -> Crm:
        crm = crm_backend.new(**options)
        made.append(crm)
        return crm

    yield make
    for crm in made:
        crm.close()


@pytest_asyncio.fixture(scope="module")
async def module_settings(base_settings: CommonSettings, topic_prefixes: list[str]) -> CommonSettings:
    """Settings with a topic prefix of the module's own, the design's topics created."""
    prefix = f"m{uuid.uuid4().hex[:10]}.crmsync."
    topic_prefixes.append(prefix)
    shared = base_settings.model_copy(update={"topic_prefix": prefix})
    await ensure_topics(shared)
    return shared


# ====================================================================== the store side


async def connect(
    sessions: async_sessionmaker[AsyncSession], settings: CommonSettings, account_id: str, crm: Crm
) -> None:
    """Stores the account's connection to the CRM (its provider's default mapping applies)."""
    async with sessions.begin() as session:
        crm.add_connection(session, settings=settings, account_id=account_id)


async def seed_person(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, person: Person, at: datetime | None = None
) -> uuid.UUID:
    """Stores a person as the puller does (every value the CRM's, at `at` or its modified time)."""
    contact = Contact(
        account_id=account_id, crm_object=person.kind, external_id=person.id, email=person.values.get("email"),
        fields=dict(person.values), field_meta={}, crm_modstamp=at or person.modified_at,
    )  # fmt: skip
    async with sessions.begin() as session:
        session.add(contact)
    return contact.id


async def seed_people(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, people: list[Person], at: datetime
) -> None:
    """Stores many people as pulled contacts in one transaction."""
    rows = [
        {"id": uuid.uuid4(), "account_id": account_id, "crm_object": p.kind, "external_id": p.id,
         "email": p.values.get("email"), "fields": dict(p.values), "field_meta": {}, "crm_modstamp": at}
        for p in people
    ]  # fmt: skip
    async with sessions.begin() as session:
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Contact), rows[start : start + 2000])
