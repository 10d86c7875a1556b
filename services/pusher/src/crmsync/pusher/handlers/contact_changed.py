"""ContactChanged: apply an event to the contact store, then write what the CRM gets.

A batch goes through three steps, per account:

1. One transaction applies every new event to its contact (merge with
   per-field origin and time), decides the CRM write (`decide_push`) and logs
   each event in the push log: `pending` with the intended payload when
   something is to be sent, `skipped` when nothing is, `failed` when the
   account has no CRM connection or a value is longer than its CRM field
   holds. A contact whose push waits for re-delivery gets no write: the
   event's values join that push and its entry is `waiting` (R24).
2. The writes go to the CRM, one per contact (its events folded in order),
   in composite batches per object and operation.
3. One transaction records each CRM answer on the push log and stores the id
   of every created record on its contact. A write still transient after the
   connector's round, or parked by the API budget, waits in the store for
   the re-delivery loop (`hold`, `redeliver`); its entries are `waiting`.

Exactly once: an event whose push log entry is final is skipped on redelivery.
A `pending` entry means the process stopped between steps 1 and 3; its stored
payload is reconciled (see `reconcile`), not decided again.

Step 1 is `apply_contact_changes`; steps 2 and 3 are `AppliedBatch.push`. The
consumer runs the next batch's step 1 while this batch's CRM writes are in
flight (`PipelinedLoop`), except when `AppliedBatch.blocks` says the next
batch must wait: a record being created, or an event seen again.

The parts, in the order an event meets them: `validate` (its fields, its
contact), `resolve` (the contacts a batch names), `decide` (merge, CRM write,
entry), `apply` (step 1 for an account), `batch` (lanes), `push` (steps 2
and 3), `reconcile` (pending entries), `record` (the push log), `hold` and
`redeliver` (waiting pushes).
"""

from __future__ import annotations

from crmsync.pusher.handlers.batch import (
    EVENTS_PER_LANE,
    AppliedBatch,
    apply_contact_changes,
    lane_count,
)
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.reconcile import reconcile

__all__ = [
    "EVENTS_PER_LANE",
    "AppliedBatch",
    "PushContext",
    "apply_contact_changes",
    "lane_count",
    "reconcile",
]
