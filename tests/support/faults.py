"""Fault scenarios' accounts and their end state, over a private stack (`private_infra`).

- ``open_tenant(stack, leads=, contacts=, seed=, api_limit=)``: a fresh account wired to a
  fresh emulated org through the admin CLI and the mapping API, its first full sync done.
- ``Tenant``: builds contact-change events (updates of pulled leads, creates of new ones),
  produces them, remembers the value each contact must end with, and checks the end state:
  ``check_end_state()`` = the CRM holds every pushed value, the store equals the CRM for the
  pulled fields after a sync, no CRM record was created twice, and every service is alive
  and ready.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from crmsync.common.messages import ContactChanged
from tests.support.broker import publish
from tests.support.emulator import CrmOrg
from tests.support.private_infra import SERVICES, Stack
from tests.support.processes import wait_until
from tests.support.pusher import crm_to_local, event

# Text fields mapped on both objects: what a pull must leave equal to the CRM.
COMPARED = ("email", "first_name", "last_name", "job_title", "business_phone", "city")
CRM_FIELD = {
    "job_title": "Title", "first_name": "FirstName", "last_name": "LastName", "company": "Company", "city": "City",
}  # fmt: skip


@dataclass
class Tenant:
    stack: Stack
    account: str
    org: CrmOrg
    api: httpx.Client
    leads: list[dict[str, Any]]
    # email (lower case) -> field -> the value the CRM must end with
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ events

    def updates(self, count: int, *, tag: str, field_name: str = "job_title") -> list[ContactChanged]:
        """`count` form changes of one field of pulled leads, several per lead, in order."""
        emailed = [r for r in self.leads if r.get("Email")]
        return [
            event(self.account, email=emailed[i % len(emailed)]["Email"], changes={field_name: f"{tag} {i}"})
            for i in range(count)
        ]

    def creates(self, count: int, *, tag: str) -> list[ContactChanged]:
        """`count` form submissions of new people with Push to CRM (a Lead each)."""
        return [
            event(
                self.account,
                email=f"{tag}-{i}-{uuid.uuid4().hex[:6]}@faults.example",
                changes={
                    "first_name": "Fault",
                    "last_name": f"{tag} {i}",
                    "company": "Faults Inc",
                    "job_title": tag,
                },
                crm_create="Lead",
            )
            for i in range(count)
        ]

    def produce(self, events: Sequence[ContactChanged], *, expect: bool = True) -> None:
        """Produces the events; with `expect`, the CRM must end with their values."""
        asyncio.run(publish(self.stack.settings, events))
        self.event_ids += [e.event_id for e in events]
        if expect:
            self.expect(events)

    def expect(self, events: Iterable[ContactChanged]) -> None:
        for e in events:
            assert e.contact.email is not None
            self.expected.setdefault(e.contact.email.lower(), {}).update(e.changes)

    # ------------------------------------------------------------- CRM's state

    def crm_records(self) -> list[dict[str, Any]]:
        return [{**r, "_object": obj} for obj in ("Lead", "Contact") for r in self.org.records(obj)]

    def missing_in_crm(self) -> dict[str, dict[str, Any]]:
        """Pushed values the CRM does not hold: email -> field -> (wanted, found)."""
        by_email = {r["Email"].lower(): r for r in self.crm_records() if r.get("Email")}
        missing: dict[str, dict[str, Any]] = {}
        for email, values in self.expected.items():
            record = by_email.get(email)
            for name, wanted in values.items():
                found = record.get(CRM_FIELD[name]) if record else "(no record)"
                if found != wanted:
                    missing.setdefault(email, {})[name] = (wanted, found)
        return missing

    def wait_crm_holds_everything(self, timeout: float = 60) -> None:
        missing: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            nonlocal missing
            missing = self.missing_in_crm()
            return not missing

        def what() -> str:
            sample = dict(list(missing.items())[:5])
            return (
                f"the CRM to hold every pushed value: {len(missing)} of {len(self.expected)} contacts differ "
                f"(wanted, found), e.g. {sample}; push log: {self.push_log_counts()}"
            )

        wait_until(done, timeout=timeout, what=what, process=self.stack.processes["pusher"], interval=1)

    def assert_no_record_created_twice(self) -> None:
        emails = Counter(r["Email"].lower() for r in self.crm_records() if r.get("Email"))
        twice = {e: n for e, n in emails.items() if n > 1}
        assert not twice, f"CRM records sharing an e-mail: {twice}"
        creates = Counter(
            str(w["fields"].get("Email", "")).lower()
            for w in self.org.writes()
            if w["method"] == "POST" and w["success"]
        )
        again = {e: n for e, n in creates.items() if n > 1}
        assert not again, f"records created more than once: {again}"

    # ----------------------------------------------------------- store's state

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.stack.postgres.url.replace("+asyncpg", ""), timeout=5)
            try:
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def push_log_counts(self) -> dict[str, int]:
        rows = self.query(
            "select status, coalesce(error_code, '') as code, count(*) as n from push_log"
            " where account_id = $1 group by 1, 2",
            self.account,
        )
        return {f"{r['status']}{':' + r['code'] if r['code'] else ''}": r["n"] for r in rows}

    def pushed(self) -> int:
        """Events produced here whose push is past its first try (logged, and no longer pending)."""
        rows = self.query(
            "select count(*) as n from push_log"
            " where account_id = $1 and event_id = any($2::text[]) and status <> 'pending'",
            self.account,
            self.event_ids,
        )
        return rows[0]["n"]

    def fault_writes(self, kind: str = "503", **options: Any) -> None:
        """Every CRM write (a single record's or a collection's, create or update) meets the fault
        `kind` until `org.clear_faults()`; reads are left alone."""
        for method in ("POST", "PATCH"):
            self.org.faults(kind, rate=1.0, path="/sobjects", method=method, **options)

    def sync(self, *, kind: str | None = None, timeout: float = 90) -> str:
        """Asks for a sync through the API; returns its job id once its run has succeeded."""
        body = {"kind": kind} if kind else None
        job_id = _retrying(lambda: self.api.post("/v1/sync-now", json=body)).json()["job_id"]
        self.wait_run(job_id, timeout=timeout)
        return job_id

    def wait_run(self, job_id: str, *, timeout: float = 90) -> None:
        state: list[asyncpg.Record] = []

        def succeeded() -> bool:
            nonlocal state
            state = self.query(
                "select status, attempts, error, next_attempt_at from sync_runs"
                " where account_id = $1 and job_id = $2",
                self.account,
                job_id,
            )
            return bool(state) and state[0]["status"] == "succeeded"

        wait_until(
            succeeded,
            timeout=timeout,
            what=lambda: f"run {job_id} to succeed: {[dict(r) for r in state]}",
            process=self.stack.processes["puller"],
            interval=0.5,
        )

    def store_differences(self) -> list[tuple[str, str, Any, Any]]:
        """Pulled contacts whose compared fields differ from their CRM record: (id, field, store, CRM)."""
        records = {r["Id"]: r for r in self.crm_records()}
        rows = self.query(
            "select external_id, crm_object, fields from contacts where account_id = $1 and external_id is not null",
            self.account,
        )
        differences = []
        for row in rows:
            record = records.get(row["external_id"])
            if record is None:
                differences.append((row["external_id"], "*", "in the store", "not in the CRM"))
                continue
            crm = crm_to_local(record, crm_object=row["crm_object"])
            stored = _json(row["fields"])
            for name in COMPARED:
                if (stored.get(name) or None) != (crm.get(name) or None):
                    differences.append((row["external_id"], name, stored.get(name), crm.get(name)))
        return differences

    def assert_store_equals_crm(self) -> None:
        self.sync()
        differences = self.store_differences()
        assert not differences, f"{len(differences)} stored values differ from the CRM: {differences[:10]}"

    # --------------------------------------------------------------- services

    def check_end_state(self, *, timeout: float = 60) -> None:
        """R18, R22, R24: every pushed value in the CRM, the store equal to it, no record
        created twice, every service alive and ready."""
        assert_services_healthy(self.stack)
        self.wait_crm_holds_everything(timeout=timeout)
        self.assert_no_record_created_twice()
        self.assert_store_equals_crm()
        assert_services_healthy(self.stack)


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _retrying(call: Callable[[], httpx.Response], timeout: float = 30) -> httpx.Response:
    """An API call repeated while the service cannot answer (a server it needs is restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = call()
            if response.status_code < 500:
                response.raise_for_status()
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the mapping API did not answer within {timeout}s")
        time.sleep(0.5)


def assert_services_healthy(stack: Stack, timeout: float = 60) -> None:
    """Every service process alive and its /readyz answering 200 (within `timeout`)."""
    for name in SERVICES:
        assert stack.alive(name), (
            f"{name} exited with {stack.processes[name].popen.poll()}:\n{stack.processes[name].tail()}"
        )
    wait_until(
        lambda: all(stack.ready(name) for name in SERVICES),
        timeout=timeout,
        what=lambda: f"every service ready: {stack.health()}",
        interval=0.5,
    )
    assert all(stack.alive(name) for name in SERVICES), stack.health()


def open_tenant(
    stack: Stack, *, leads: int = 60, contacts: int = 20, seed: int = 1, api_limit: int | None = None
) -> Tenant:
    """A fresh account on a fresh org (the admin CLI, the mapping API), its first full sync done."""
    assert stack.emulator is not None
    options = {"api_limit": api_limit} if api_limit else {}
    org = stack.emulator.new_org(leads=leads, contacts=contacts, seed=seed, **options)
    account = f"f-{uuid.uuid4().hex[:10]}"
    stack.admin("account", "create", f"Faults {account}", "--id", account)
    key = stack.admin("key", "create", account, "--role", "admin")
    api = stack.api(key)
    api.put(
        "/v1/connection",
        json={
            "login_url": org.login_url,
            "auth_method": "client_credentials",
            "client_id": org.client_id,
            "client_secret": org.client_secret,
        },
    ).raise_for_status()
    tenant = Tenant(stack, account, org, api, leads=org.records("Lead"))
    tenant.sync(kind="full")
    return tenant
