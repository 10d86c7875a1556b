"""Validating an event against its account at the edge (R22): the fields it changes, their
values' data types, the contact it names, and the CRM fields' lengths.

The consumer loop has already checked its shape (the message model); what is
left needs the account's mapping, contacts and the CRM's describe. An event
that fails the first three goes to the dead-letter topic with the reason and
nothing of it is stored; a value longer than its CRM field holds is stored
locally and its push is a permanent failure, without a CRM call.
"""

from __future__ import annotations

from collections.abc import Mapping as AnyMapping
from typing import Any

import structlog

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmError
from crmsync.common.domain.fields import STANDARD_FIELDS_BY_KEY
from crmsync.common.domain.mapping import CrmObject, Mapping
from crmsync.common.domain.values import change_problems, too_long
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.ports import CrmPort

log = structlog.get_logger(__name__)

VALUE_TOO_LONG = "VALUE_TOO_LONG"
# The CRM objects a contact's record may be: their text fields' lengths, by object.
FieldLengths = AnyMapping[str, AnyMapping[str, int]]

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


def value_problem(event: ContactChanged, mapping: Mapping) -> str | None:
    """Returns why a changed value does not fit its field's data type (naming both), or None."""
    problems = change_problems(mapping, event.changes)
    if not problems:
        return None
    p = problems[0]
    return f"changes.{p.field}: {p.message} (data type {p.data_type.value})"


async def field_lengths(crm: CrmPort, connection: CrmConnectionInfo | None) -> FieldLengths:
    """Returns the text fields' lengths of the objects a contact may be, from the CRM's describe.

    A describe the CRM does not answer leaves the check to the CRM itself, which
    refuses a value too long for good (STRING_TOO_LONG): nothing is lost.
    """
    if connection is None:
        return {}
    lengths: dict[str, AnyMapping[str, int]] = {}
    for crm_object in CrmObject:
        try:
            lengths[crm_object.value] = await crm.field_lengths(connection, crm_object.value)
        except CrmError as exc:
            log.warning("crm_describe_unavailable", crm_object=crm_object.value, error=exc.message)
    return lengths


def length_problem(
    mapping: Mapping, crm_object: str, values: AnyMapping[str, Any], lengths: FieldLengths
) -> str | None:
    """Returns which value is longer than its CRM field holds (the field and the limit), or None."""
    for crm_field, limit, length in too_long(values, lengths.get(crm_object, {})):
        names = [r.destination for r in mapping.rows if r.source_for(crm_object) == crm_field]
        shown = f"{names[0]} ({crm_object}.{crm_field})" if names else f"{crm_object}.{crm_field}"
        return f"{shown}: {length} characters, longer than the {limit} the CRM field holds"
    return None
