"""Segments (R19): All Contacts, and the leads and the contacts of the account's CRM (All
Salesforce Leads, All Dynamics 365 Contacts...). The former ids salesforce-leads and
salesforce-contacts still name the CRM's segments."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path

from crmsync.mapping_api.entrypoints.deps import CurrentAccount, TransactionsDep
from crmsync.mapping_api.entrypoints.routes.contacts import Cursor, Limit, Search, page_out
from crmsync.mapping_api.handlers import contacts as handlers
from crmsync.mapping_api.schemas import ContactPage, SegmentOut

router = APIRouter(prefix="/segments", tags=["segments"])
SegmentId = Literal["all-contacts", "crm-leads", "crm-contacts", "salesforce-leads", "salesforce-contacts"]


@router.get("", response_model=list[SegmentOut], summary="The segments and their counts")
async def list_segments(caller: CurrentAccount, tx: TransactionsDep) -> list[SegmentOut]:
    return [
        SegmentOut(id=segment_id, name=name, count=count)  # type: ignore[arg-type]
        for segment_id, name, count in await handlers.segment_counts(tx, account_id=caller.account_id)
    ]


@router.get("/{segment_id}/contacts", response_model=ContactPage, summary="A segment's members, searchable")
async def segment_members(
    segment_id: Annotated[SegmentId, Path(examples=["crm-leads"])],
    caller: CurrentAccount,
    tx: TransactionsDep,
    q: Search = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ContactPage:
    return page_out(
        await handlers.list_contacts(
            tx, account_id=caller.account_id, segment=segment_id, q=q, cursor=cursor, limit=limit
        )
    )
