"""The design's topics by their short names; `CommonSettings.topic(name)` gives the full name.

Kept apart from the Kafka admin code, so use cases can name a topic without
depending on a Kafka client.
"""

from __future__ import annotations

SYNC_JOBS = "sync-jobs"
OUTBOUND_JOBS = "outbound-jobs"
CONTACT_CHANGES = "contact-changes"
CONTACT_CHANGES_DLQ = "contact-changes.dlq"
DESIGN_TOPICS = (SYNC_JOBS, OUTBOUND_JOBS, CONTACT_CHANGES, CONTACT_CHANGES_DLQ)
