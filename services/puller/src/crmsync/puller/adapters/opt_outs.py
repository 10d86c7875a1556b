"""Opt-outs in the contact store (R23): suppression entries applied to records that come back,
and contacts sent back to the outbound job when the CRM opted them in.

Both run inside the batch's transaction and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from crmsync.common.domain.opt_outs import SUPPRESSION_ORIGIN

_APPLY_SUPPRESSIONS = """
    update contacts c set
        fields = c.fields || '{"opted_out": true}'::jsonb,
        field_meta = c.field_meta
            || jsonb_build_object('opted_out', jsonb_build_object('origin', $3::text, 'at', $4::text)),
        outbound_pending_at = $5, updated_at = now()
    from email_suppressions s
    where c.account_id = $1 and c.external_id = any($2::text[])
      and s.account_id = c.account_id and s.email_lower = c.email_lower
      and c.fields -> 'opted_out' is distinct from 'true'::jsonb
"""

_HAS_SUPPRESSIONS = "select exists (select 1 from email_suppressions where account_id = $1)"

_SEND_AGAIN = """
    update contacts set outbound_pending_at = $3 where account_id = $1 and id = any($2::uuid[])
"""


async def apply_suppressions(
    pg: asyncpg.Connection, *, account_id: str, external_ids: Sequence[str], now: datetime
) -> int:
    """Opts out the contacts of these new CRM records whose e-mail is suppressed; returns how many.

    The opt-out is local (it outlived an earlier record), so the outbound job sends it.
    """
    # Most accounts have none: one probe spares the join for every batch of a full sync.
    if not external_ids or not await pg.fetchval(_HAS_SUPPRESSIONS, account_id):
        return 0
    status = await pg.execute(
        _APPLY_SUPPRESSIONS, account_id, list(external_ids), SUPPRESSION_ORIGIN, now.isoformat(), now
    )
    return int(status.split()[-1])


async def send_opt_outs_again(
    pg: asyncpg.Connection, *, account_id: str, contact_ids: Sequence[uuid.UUID], now: datetime
) -> None:
    """Flags these contacts for the outbound job, which sends their local opt-out again."""
    if contact_ids:
        await pg.execute(_SEND_AGAIN, account_id, list(contact_ids), now)
