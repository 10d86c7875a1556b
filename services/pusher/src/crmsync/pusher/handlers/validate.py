"""Validating an event against its account: the fields it changes and the contact it names (R22).

The consumer loop has already checked its shape (the message model); what is
left needs the account's mapping and contacts. An event that fails goes to the
dead-letter topic with the reason.
"""

from __future__ import annotations

from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY
from crmsync.common.domain.mapping import Mapping
from crmsync.common.messages import ContactChanged

UNKNOWN_ACCOUNT = "account_id: unknown account"


def known_fields(mapping: Mapping) -> set[str]:
    """Returns the fields an event may change: the standard ones and the mapping's destinations."""
    return set(STANDARD_FIELDS_BY_KEY) | {r.destination for r in mapping.rows}


def unknown_field(event: ContactChanged, known: set[str]) -> str | None:
    """Returns why the event's changes cannot be applied, or None."""
    unknown = sorted(set(event.changes) - known)
    if not unknown:
        return None
    return f"changes.{unknown[0]}: unknown field (neither a standard field nor in the mapping)"
