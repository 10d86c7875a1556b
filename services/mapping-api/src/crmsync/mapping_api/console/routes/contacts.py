"""All Contacts: the segments with counts (R19), search, and a contact with each field's value,
origin and time, and its recent pushes."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from crmsync.mapping_api.console.deps import Tx, User
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import contacts as handlers
from crmsync.mapping_api.handlers import history
from crmsync.mapping_api.handlers.errors import NotFound

router = APIRouter(prefix="/contacts")
PAGE = 50


@router.get("")
async def contacts_page(
    request: Request,
    user: User,
    tx: Tx,
    segment: str = "all-contacts",
    q: str | None = Query(None, max_length=200),
    cursor: str | None = Query(None, max_length=100),
) -> Response:
    segments = await handlers.segment_counts(tx, account_id=user.account_id)
    segment = handlers.segment_id(segment)
    page = await handlers.list_contacts(
        tx, account_id=user.account_id, segment=segment, q=q, cursor=cursor, limit=PAGE
    )
    return render(
        request,
        "contacts.html",
        user=user,
        active="contacts",
        segments=segments,
        segment=segment,
        q=q or "",
        page=page,
    )


@router.get("/{contact_id}")
async def contact_page(request: Request, user: User, tx: Tx, contact_id: str) -> Response:
    try:
        ident = uuid.UUID(contact_id)
    except ValueError as exc:
        raise NotFound("contact not found", field="contact_id") from exc
    detail = await handlers.get_contact(tx, account_id=user.account_id, contact_id=ident)
    pushes = await history.list_push_log(tx, account_id=user.account_id, contact_id=ident, limit=10)
    return render(request, "contact.html", user=user, active="contacts", detail=detail, pushes=pushes.items)
