"""Sign-in with an account's API key, sign-out, and the landing page."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.mapping_api.console.deps import CsrfRefused, Poster, codec, services, signed_in
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.console.session import COOKIE, CSRF_FIELD
from crmsync.mapping_api.handlers.accounts import authenticate

router = APIRouter()
# Before a session exists, the sign-in form is protected by a token in a cookie of its own.
PRE_COOKIE = "crmsync_console_signin"


def _safe_next(target: str | None) -> str:
    """Returns a redirect target inside the console (never another site)."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/mapping"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse("/console/mapping", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None, error: str | None = None) -> Response:
    if error is None and await signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", next=_safe_next(next), signin_token=token, error=error)
    response.set_cookie(
        PRE_COOKIE,
        token,
        max_age=900,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console",
    )
    return response


@router.post("/sign-in")
async def sign_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    expected = request.cookies.get(PRE_COOKIE)
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        raise CsrfRefused()
    now = utc_now()
    caller = (
        await authenticate(services(request).tx, key=api_key.strip(), now=now) if api_key.strip() else None
    )
    if caller is None:
        page = sign_in_page(request, next, "That key is unknown or revoked.")
        response = await page
        response.status_code = 401
        return response
    session = codec(request).new(api_key.strip(), now=now)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        codec(request).seal(session),
        max_age=int(codec(request).ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/console",
    )
    response.delete_cookie(PRE_COOKIE, path="/console")
    return response


@router.post("/sign-out")
async def sign_out(_: Poster) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response
