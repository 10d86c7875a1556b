"""Lead conversion in the contact store (R17): the Lead's contact is handed over to its Contact."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from crmsync.common.domain.conversion import local_only, merge_converted_lead
from crmsync.common.domain.fields import EMAIL
from crmsync.common.domain.mapping import CrmObject
from crmsync.common.domain.pulled import MappedRecord
from crmsync.puller.adapters.contact_rows import SELECT_FOR_UPDATE, StoredContact

_BECOME_CONTACT = """
    update contacts set external_id = $3, crm_object = $4, converted_from_lead_id = $5,
           last_seen_run_id = $6, fields = $7::jsonb, field_meta = $8::jsonb,
           crm_modstamp = null, updated_at = now()
    where account_id = $1 and id = $2
"""

_DELETE = "delete from contacts where account_id = $1 and id = $2"

_TAKE_LEAD_VALUES = """
    update contacts set fields = $3::jsonb, field_meta = $4::jsonb, converted_from_lead_id = $5,
           email = coalesce(email, $6), updated_at = now()
    where account_id = $1 and id = $2
"""


async def convert_leads(
    pg: asyncpg.Connection, *, account_id: str, run_id: uuid.UUID, leads: Sequence[MappedRecord]
) -> int:
    """Hands each converted Lead's contact over to its Contact: one contact, local fields kept (R17).

    Returns how many local contacts changed.
    """
    lead_ids = [r.external_id for r in leads]
    contact_ids = [r.converted_contact_id for r in leads if r.converted_contact_id]
    rows = await pg.fetch(SELECT_FOR_UPDATE, account_id, lead_ids + contact_ids, [])
    by_external = {row["external_id"]: StoredContact.of(row) for row in rows}
    changed = 0
    for lead in leads:
        assert lead.converted_contact_id is not None
        lead_row = by_external.get(lead.external_id)
        if lead_row is None:
            continue  # nothing local yet, or handed over already
        contact_row = by_external.get(lead.converted_contact_id)
        if contact_row is None:
            await _become_contact(pg, account_id=account_id, run_id=run_id, lead=lead, lead_row=lead_row)
        else:
            await _join_contact(
                pg, account_id=account_id, lead=lead, lead_row=lead_row, contact_row=contact_row
            )
        changed += 1
    return changed


async def _become_contact(
    pg: asyncpg.Connection, *, account_id: str, run_id: uuid.UUID, lead: MappedRecord, lead_row: StoredContact
) -> None:
    """The Lead's contact becomes the Contact's, keeping only its local values.

    The Lead's CRM values are not the Contact's; the Contact's own arrive in the
    Contact pass of this same run.
    """
    kept = local_only(lead_row.values)
    await pg.execute(
        _BECOME_CONTACT,
        account_id,
        lead_row.id,
        lead.converted_contact_id,
        CrmObject.CONTACT.value,
        lead.external_id,
        run_id,
        orjson.dumps(kept.fields).decode(),
        orjson.dumps(kept.stored_meta(None)).decode(),
    )


async def _join_contact(
    pg: asyncpg.Connection,
    *,
    account_id: str,
    lead: MappedRecord,
    lead_row: StoredContact,
    contact_row: StoredContact,
) -> None:
    """The Contact is already here: it takes the Lead's local values where they are newer."""
    merged = merge_converted_lead(contact_row.values, lead_row.values)
    email = merged.fields.get(EMAIL)
    await pg.execute(_DELETE, account_id, lead_row.id)
    await pg.execute(
        _TAKE_LEAD_VALUES,
        account_id,
        contact_row.id,
        orjson.dumps(merged.fields).decode(),
        orjson.dumps(merged.stored_meta(contact_row.crm_modstamp)).decode(),
        lead.external_id,
        email if isinstance(email, str) else None,
    )
