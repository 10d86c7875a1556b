"""Prometheus metrics shared by the services. One registry per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SERVICE_UP = Gauge("crmsync_service_ready", "1 when the service's dependencies answer", ["service"])
MESSAGES_CONSUMED = Counter(
    "crmsync_messages_consumed_total", "Kafka messages handled, by topic and outcome", ["topic", "outcome"]
)
MESSAGES_DEAD_LETTERED = Counter("crmsync_messages_dead_lettered_total", "Messages sent to a DLQ", ["topic"])
CONSUMER_LAG = Gauge("crmsync_consumer_lag", "Messages behind the partition end", ["topic", "partition"])
JOBS = Counter("crmsync_jobs_total", "Jobs run, by kind and outcome", ["kind", "outcome"])
RECORDS_PULLED = Counter("crmsync_records_pulled_total", "CRM records read by the puller", ["entity"])
CONTACTS_UPSERTED = Counter("crmsync_contacts_upserted_total", "Contacts created or updated by syncs")
CONTACTS_DELETED = Counter("crmsync_contacts_deleted_total", "Contacts removed because the CRM deleted them")
PUSH_RESULTS = Counter("crmsync_push_results_total", "Records written to the CRM, by outcome", ["outcome"])
PUSH_LATENCY = Histogram(
    "crmsync_push_latency_seconds",
    "Time from an event's production to its CRM write",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CRM_CALLS = Counter(
    "crmsync_crm_calls_total", "HTTP calls to the CRM, by operation and status", ["operation", "status"]
)
CRM_API_BUDGET_LEFT = Gauge(
    "crmsync_crm_api_budget_left", "CRM API calls left today, as last reported", ["account"]
)
HISTORY_PURGED = Counter(
    "crmsync_history_purged_total", "Rows of expired history deleted by the scheduler, by table", ["table"]
)
# The puller's run queue (R26), counted on a timer by every replica (read it with max()).
QUEUED_RUNS = Gauge(
    "crmsync_puller_queued_runs", "Sync runs that could start now and wait for a worker, by lane", ["lane"]
)
OLDEST_QUEUED_AGE = Gauge(
    "crmsync_puller_oldest_queued_age_seconds",
    "How long the oldest sync run that could start now has waited for a worker, by lane",
    ["lane"],
)
BUSY_SLOTS = Gauge(
    "crmsync_puller_busy_slots", "Worker slots of this puller running an account's syncs, by lane", ["lane"]
)
