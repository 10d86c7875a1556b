"""Faults caused, never mocked, against the four services running as processes (R13, R18,
R22, R24): the CRM refusing writes for a while, the API budget at its reserve mid-stream,
the Kafka broker killed with events in flight, PostgreSQL killed during pushes, the pusher
killed during a burst, and a local change made while the CRM is down racing a later edit
in the CRM. Whatever fails, at the end the CRM holds every pushed value, the store equals
the CRM for pulled fields, no record was created twice and every service is alive and
ready.

The servers are private (`tests/support/private_infra.py`): killing the shared ones would
break every other run on the machine. They start once for the module; each scenario has
an account and an org of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.faults import open_tenant
from tests.support.private_infra import Stack, private_stack
from tests.support.processes import wait_until
from tests.support.pusher import event

pytestmark = pytest.mark.e2e

# Retries and backoffs shortened so that a scenario takes seconds, not the minutes of production.
FAST = {
    # One try by the pusher: the connector's own retries (5, backoff up to 30 s) then span at
    # most ~16 s, so an outage of 30 s outlasts them as one of minutes outlasts all of them.
    "CRMSYNC_PUSH_MAX_ATTEMPTS": "1",
    "CRMSYNC_PUSH_BACKOFF_S": "0.1",
    "CRMSYNC_PUSH_BACKOFF_MAX_S": "1",
    # A waiting push is sent again after seconds (production: a minute, doubling to 4 h), and one
    # parked by the API budget looks again after seconds (production: 15 minutes).
    "CRMSYNC_PUSH_REDELIVERY_BASE_S": "2",
    "CRMSYNC_PUSH_REDELIVERY_CAP_S": "5",
    "CRMSYNC_PUSH_REDELIVERY_MIN_WAIT_S": "1",
    "CRMSYNC_PUSH_REDELIVERY_INTERVAL_S": "0.5",
    "CRMSYNC_PUSH_BUDGET_RECHECK_S": "3",
    "CRMSYNC_SCHEDULER_TICK_S": "1",
    "CRMSYNC_PULLER_POLL_S": "0.5",
    "CRMSYNC_PULLER_RETRY_BASE_S": "1",
    "CRMSYNC_PULLER_RETRY_MAX_S": "5",
    "CRMSYNC_PULLER_BUDGET_RESUME_S": "5",
    "CRMSYNC_PULLER_BATCH_SIZE": "500",
    "CRMSYNC_DATABASE_POOL_SIZE": "5",
    "CRMSYNC_SHUTDOWN_TIMEOUT_S": "3",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with private_stack(service_env_extra=FAST) as running:
        yield running


@pytest.fixture(autouse=True)
def revived(stack: Stack) -> Stack:
    """Each scenario starts with every server and service up, whatever the one before left."""
    stack.revive()
    return stack


def test_r18_kafka_killed_with_events_in_flight(stack: Stack) -> None:
    tenant = open_tenant(stack, seed=13)
    tenant.fault_writes("latency", latency_ms=300)
    tenant.produce(tenant.updates(300, tag="in flight"))
    tenant.produce(tenant.creates(20, tag="in-flight-create"))
    wait_until(lambda: tenant.pushed() >= 30, timeout=30, what="pushes to begin")
    stack.kafka.kill()
    assert tenant.pushed() < len(tenant.event_ids), "every event was pushed before the broker died"
    time.sleep(2)
    stack.kafka.start()
    tenant.org.clear_faults()
    tenant.produce(tenant.updates(60, tag="after restart"))
    tenant.check_end_state(timeout=90)


def test_r18_pusher_killed_during_a_burst(stack: Stack) -> None:
    tenant = open_tenant(stack, seed=15)
    tenant.fault_writes("latency", latency_ms=200)
    tenant.produce(tenant.updates(300, tag="burst"))
    tenant.produce(tenant.creates(30, tag="burst-create"))
    wait_until(lambda: tenant.pushed() >= 30, timeout=30, what="pushes to begin")
    stack.kill_service("pusher")
    assert tenant.pushed() < len(tenant.event_ids), "the burst was over before the pusher died"
    tenant.org.clear_faults()
    stack.start_service("pusher")
    tenant.check_end_state()


def test_r24_crm_refusing_writes_for_a_while(stack: Stack) -> None:
    # Each event its own contact, all produced while writes are refused: a value lost in the
    # outage is not hidden by a later one for the same contact.
    tenant = open_tenant(stack, leads=200, seed=11)
    tenant.fault_writes()
    refused_until = time.monotonic() + 30
    for chunk in range(10):
        tenant.produce(tenant.updates(200, tag="outage")[chunk * 20 : (chunk + 1) * 20])
        tenant.produce(tenant.creates(10, tag=f"outage-create-{chunk}"))
        time.sleep(1)
    time.sleep(max(0.0, refused_until - time.monotonic()))
    tenant.org.clear_faults()
    tenant.check_end_state()


def test_r24_api_budget_at_the_reserve_mid_stream(stack: Stack) -> None:
    tenant = open_tenant(stack, seed=12, api_limit=1000)
    tenant.produce(tenant.updates(150, tag="before reserve"))
    wait_until(lambda: tenant.pushed() >= 100, timeout=30, what="pushes before the reserve")
    tenant.org.set_budget(used=950)  # the reserve is 10 % of the limit
    tenant.produce(tenant.updates(150, tag="at reserve"))
    tenant.produce(tenant.creates(10, tag="at-reserve-create"))
    time.sleep(5)
    tenant.org.set_budget(used=0)
    tenant.check_end_state()


def test_r13_local_change_while_the_crm_is_down_then_a_newer_crm_edit(stack: Stack) -> None:
    tenant = open_tenant(stack, seed=16)
    lead = next(r for r in tenant.leads if r.get("Email"))
    tenant.fault_writes()
    local = event(
        tenant.account, email=lead["Email"], changes={"job_title": "Local title", "city": "Localville"}
    )
    tenant.produce([local], expect=False)
    wait_until(lambda: tenant.pushed() >= 1, timeout=60, what="the push to give up")
    time.sleep(1)
    tenant.org.edit("Lead", lead["Id"], {"Title": "CRM newer title"})
    tenant.org.clear_faults()
    # The CRM's later edit of the title stays; the city, which only changed locally, arrives.
    tenant.expected[lead["Email"].lower()] = {"job_title": "CRM newer title", "city": "Localville"}
    tenant.check_end_state()


def test_r18_postgres_killed_during_pushes(stack: Stack) -> None:
    tenant = open_tenant(stack, seed=17)
    tenant.fault_writes("latency", latency_ms=200)
    tenant.produce(tenant.updates(300, tag="db crash"))
    tenant.produce(tenant.creates(20, tag="db-crash-create"))
    wait_until(lambda: tenant.pushed() >= 30, timeout=30, what="pushes to begin")
    before = tenant.pushed()
    stack.postgres.kill()
    assert before < len(tenant.event_ids), "the pushes were over before the server died"
    time.sleep(2)
    stack.postgres.start()
    tenant.org.clear_faults()
    tenant.check_end_state(timeout=90)


def test_r18_postgres_killed_during_a_full_sync(stack: Stack) -> None:
    tenant = open_tenant(stack, leads=3000, contacts=1000, seed=14)
    job = tenant.api.post("/v1/sync-now", json={"kind": "full"}).json()["job_id"]

    def pulling() -> bool:
        rows = tenant.query(
            "select status, pulled from sync_runs where account_id = $1 and job_id = $2", tenant.account, job
        )
        return bool(rows) and rows[0]["status"] == "running" and rows[0]["pulled"] > 0

    wait_until(pulling, timeout=60, what="the full sync to be pulling", interval=0.05)
    stack.postgres.restart()
    tenant.wait_run(job, timeout=90)
    tenant.produce(tenant.updates(60, tag="after the crash"))
    tenant.check_end_state()
