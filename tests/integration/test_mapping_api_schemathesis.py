"""Schemathesis against the mapping API's own OpenAPI: no server error, no response that breaks the schema.

The app runs in this process (uvicorn in a thread, one event loop for its
database pool and Kafka producer) on the real PostgreSQL and Kafka, with a CRM
connection to the Salesforce emulator, so the CRM-backed operations answer too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crmsync.common.clock import utc_now
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Contact, PushLog, SyncRun
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.kafka.topics import ensure_topics
from crmsync.mapping_api.adapters.crm import ConnectorPort
from crmsync.mapping_api.bootstrap import bootstrap, transactions
from crmsync.mapping_api.handlers.connection import Credentials, put_connection
from crmsync.mapping_api.settings import Settings
from tests.support.mapping_api import Tenant, new_tenant

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    main: Tenant  # connected to an emulated org, with contacts, runs and push log entries
    scratch: Tenant  # takes the generated connections, so the main one keeps a reachable CRM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _seed(api_settings: Settings, org) -> tuple[Tenant, Tenant]:
    await ensure_topics(api_settings)
    engine = create_engine(api_settings, pool_size=1)
    try:
        sessions = create_sessionmaker(engine)
        main, scratch = await new_tenant(sessions), await new_tenant(sessions)
        box = SecretBox(api_settings.secret_key.get_secret_value())
        await put_connection(
            transactions(sessions),
            account_id=main.account_id,
            credentials=Credentials(
                login_url=org.login_url,
                auth_method="client_credentials",
                client_id=org.client_id,
                username=None,
                api_version="60.0",
                secrets={"client_secret": org.client_secret},
            ),
            secret_box=box,
            crm=ConnectorPort(secret_box=box),
            now=utc_now(),
        )
        async with sessions.begin() as session:
            for i, crm_object in enumerate(("Lead", "Contact", None)):
                contact = Contact(
                    account_id=main.account_id,
                    crm_object=crm_object,
                    external_id=f"00Q{i:015d}" if crm_object else None,
                    email=f"p{i}@example.com",
                    fields={"first_name": f"P{i}", "score": i},
                    field_meta={"first_name": {"origin": "crm", "at": "2026-11-20T10:00:00+00:00"}},
                )
                session.add(contact)
            await session.flush()
            session.add(SyncRun(account_id=main.account_id, job_id="seed", kind="full", reason="sync_now"))
            session.add(
                PushLog(
                    account_id=main.account_id,
                    event_id="seed",
                    contact_id=contact.id,
                    operation="update",
                    status="succeeded",
                )
            )
        return main, scratch
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def live_api(base_settings, emulator, topic_prefixes) -> Iterator[LiveApi]:
    port = _free_port()
    prefix = f"t{uuid.uuid4().hex[:10]}.crmsync."
    topic_prefixes.append(prefix)
    api_settings = Settings(
        **base_settings.model_dump() | {"topic_prefix": prefix, "http_port": port, "database_pool_size": 4}
    )
    org = emulator.new_org(leads=20, contacts=20, seed=5)
    main, scratch = asyncio.run(_seed(api_settings, org))
    server = uvicorn.Server(
        uvicorn.Config(
            bootstrap(api_settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="mapping-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the mapping API did not start")
        time.sleep(0.05)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", main, scratch)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        emulator.remove_org(org)


# The document is the app's own; building the app opens no connection.
schema = schemathesis.openapi.from_dict(bootstrap(Settings(environment="test")).openapi())


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_r22_the_api_never_answers_5xx_or_outside_its_schema(case, live_api: LiveApi) -> None:
    tenant = live_api.scratch if (case.method, case.path) == ("PUT", "/v1/connection") else live_api.main
    case.call_and_validate(base_url=live_api.base_url, headers=tenant.admin, checks=CHECKS)
