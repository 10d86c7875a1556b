"""End to end, as `make run` runs it: the four services as separate processes, the
real Kafka and PostgreSQL, the Salesforce emulator over HTTP, one change each way."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from crmsync.common.kafka.codec import encode
from crmsync.common.messages import ContactChanged, contact_change_key
from crmsync.common.settings import CommonSettings
from tests.support.processes import (
    Process,
    answers,
    free_port,
    service_env,
    start_process,
    stop_all,
    wait_until,
)

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
SERVICES = ("mapping-api", "scheduler", "puller", "pusher")


class Product:
    """The four services started as `make run` starts them, stopped with SIGTERM."""

    def __init__(self, settings: CommonSettings, logs: Path) -> None:
        self.env = service_env(settings, CRMSYNC_ENVIRONMENT="test")
        self.ports = {name: free_port() for name in SERVICES}
        self.logs = logs
        self.processes: dict[str, Process] = {}

    def start(self) -> None:
        for name, port in self.ports.items():
            self.processes[name] = start_process(
                [str(BIN / f"crmsync-{name}")],
                env=dict(self.env, CRMSYNC_HTTP_PORT=str(port)),
                log=self.logs / f"{name}.log",
            )
        for name, port in self.ports.items():
            wait_until(
                lambda port=port: answers(f"http://127.0.0.1:{port}/readyz"),
                timeout=90,
                what=f"{name} /readyz",
                process=self.processes[name],
                interval=0.5,
            )

    def admin(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "crmsync-admin"), *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def stop(self) -> dict[str, int | None]:
        return dict(zip(self.processes, stop_all(self.processes.values(), timeout=10), strict=True))


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

    wait_until(full_sync_done, timeout=120, what="the first full sync", interval=0.5)
    leads, contacts = crm_org.records("Lead"), crm_org.records("Contact")
    segments = {s["id"]: s["count"] for s in api.get("/v1/segments").json()}
    assert segments["crm-leads"] == len(leads)
    assert segments["crm-contacts"] == len(contacts)

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

    wait_until(
        lambda: local_title() == "Head of Reconciliation",
        timeout=120,
        what="the CRM edit to arrive",
        interval=0.5,
    )

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
    wait_until(
        lambda: crm_org.get("Lead", lead["Id"])["Title"] == "Chief Form Filler",
        timeout=60,
        what="the form change to reach the CRM",
        interval=0.5,
    )
    assert [w for w in crm_org.writes() if w["method"] == "DELETE"] == []

    codes = product.stop()
    assert codes == dict.fromkeys(SERVICES, 0), "every service stops cleanly within 10 s of SIGTERM"
