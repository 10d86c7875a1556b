"""End to end, as `make run` runs it: the four services as separate processes, the
real Kafka and PostgreSQL, the Salesforce emulator over HTTP, one change each way."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from crmsync.common.kafka.codec import encode
from crmsync.common.messages import ContactChanged, contact_change_key
from crmsync.common.settings import CommonSettings

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
SERVICES = ("mapping-api", "scheduler", "puller", "pusher")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eventually(check: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.5)


class Product:
    """The four services started as `make run` starts them, stopped with SIGTERM."""

    def __init__(self, settings: CommonSettings, logs: Path) -> None:
        self.env = dict(
            os.environ,
            CRMSYNC_DATABASE_URL=settings.database_url,
            CRMSYNC_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
            CRMSYNC_TOPIC_PREFIX=settings.topic_prefix,
            CRMSYNC_ENVIRONMENT="test",
        )
        self.ports = {name: _free_port() for name in SERVICES}
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for name, port in self.ports.items():
            log = (self.logs / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [str(BIN / f"crmsync-{name}")],
                env=dict(self.env, CRMSYNC_HTTP_PORT=str(port)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for name, port in self.ports.items():
            _eventually(
                lambda port=port: _ready(port), within=90, what=f"{name} /readyz (log {self.logs / name}.log)"
            )

    def admin(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "crmsync-admin"), *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def stop(self) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = None
        return codes


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def _produce(settings: CommonSettings, event: ContactChanged) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("contact-changes"), encode(event), key=contact_change_key(event)
        )
    finally:
        await producer.stop()


@pytest.fixture
def product(settings: CommonSettings, tmp_path: Path) -> Iterator[Product]:
    running = Product(settings, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_one_change_each_way_through_the_four_services(product: Product, settings, crm_org) -> None:
    account = f"e2e-{uuid.uuid4().hex[:8]}"
    product.admin("account", "create", "End to end", "--id", account)
    key = product.admin("key", "create", account, "--role", "admin")
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{product.ports['mapping-api']}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    api.put(
        "/v1/connection",
        json={
            "login_url": crm_org.login_url,
            "auth_method": "client_credentials",
            "client_id": crm_org.client_id,
            "client_secret": crm_org.client_secret,
        },
    ).raise_for_status()
    api.post("/v1/sync-now").raise_for_status()

    def full_sync_done() -> bool:
        runs = api.get("/v1/sync-runs", params={"kind": "full"}).json()["items"]
        assert not [r for r in runs if r["status"] == "failed"], runs
        return any(r["status"] == "succeeded" for r in runs)

    _eventually(full_sync_done, within=120, what="the first full sync")
    leads, contacts = crm_org.records("Lead"), crm_org.records("Contact")
    segments = {s["id"]: s["count"] for s in api.get("/v1/segments").json()}
    assert segments["salesforce-leads"] == len(leads)
    assert segments["salesforce-contacts"] == len(contacts)

    # CRM -> contact store: a CRM user edits a lead; the next sync brings it in.
    lead = next(r for r in leads if r.get("Email"))
    crm_org.edit("Lead", lead["Id"], {"Title": "Head of Reconciliation"})
    api.post("/v1/sync-now").raise_for_status()

    def local_title() -> str | None:
        found = api.get("/v1/contacts", params={"q": lead["Email"]}).json()["items"]
        if not found:
            return None
        contact = api.get(f"/v1/contacts/{found[0]['id']}").json()
        return contact["fields"].get("job_title", {}).get("value")

    _eventually(lambda: local_title() == "Head of Reconciliation", within=120, what="the CRM edit to arrive")

    # Contact store -> CRM: a form submission, produced to Kafka like any producer does.
    event = ContactChanged.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "account_id": account,
            "occurred_at": datetime.now(UTC).isoformat(),
            "source": "form",
            "contact": {"email": lead["Email"].upper()},
            "changes": {"job_title": "Chief Form Filler"},
        }
    )
    asyncio.run(_produce(settings, event))
    _eventually(
        lambda: crm_org.get("Lead", lead["Id"])["Title"] == "Chief Form Filler",
        within=60,
        what="the form change to reach the CRM",
    )
    assert [w for w in crm_org.writes() if w["method"] == "DELETE"] == []

    codes = product.stop()
    assert codes == dict.fromkeys(SERVICES, 0), "every service stops cleanly within 10 s of SIGTERM"
