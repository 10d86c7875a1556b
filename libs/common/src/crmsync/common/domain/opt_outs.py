"""Opt-outs are one-way safe (R23): the rules the puller applies beside the merge (pure).

- A CRM opt-in never clears a local opt-out (`merge_from_crm` keeps it). When the
  local opt-out is the platform's own (not the CRM's), the CRM's record now says
  the opposite of what was sent: the contact goes back to the outbound job, which
  sends the opt-out again (`reasserts_opt_out`).
- A local opt-out outlives the CRM record: the e-mail of an opted-out contact whose
  record is deleted is kept as a suppression entry, and a CRM record that comes back
  with it is opted out at once, with `SUPPRESSION_ORIGIN` as the value's origin so
  the outbound job sends it (a value of CRM origin is never sent back, R12).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.common.domain.contacts import ContactValues, Merge
from crmsync.common.domain.fields import OPTED_OUT

# The origin of an opt-out set by a suppression entry: an event source, as every local origin is.
SUPPRESSION_ORIGIN = "list_maintenance"


def is_opted_out(values: Mapping[str, Any]) -> bool:
    return values.get(OPTED_OUT) is True


def reasserts_opt_out(before: ContactValues, incoming: Mapping[str, Any], merge: Merge) -> bool:
    """True when the CRM opted in a contact the platform opted out: the opt-out must be sent again."""
    if OPTED_OUT not in incoming or is_opted_out(incoming) or OPTED_OUT not in merge.kept_local:
        return False
    meta = before.meta.get(OPTED_OUT)
    return is_opted_out(before.fields) and meta is not None and not meta.from_crm
