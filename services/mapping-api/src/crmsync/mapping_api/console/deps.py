"""Who is using the console: the session cookie, re-authenticated with the API's own use case,
and the CSRF check every POST passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from crmsync.common.clock import utc_now
from crmsync.mapping_api.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, ConsoleSession, SessionCodec
from crmsync.mapping_api.handlers.accounts import Caller, authenticate
from crmsync.mapping_api.handlers.ports import CrmPort, Secrets, Transactions

if TYPE_CHECKING:
    from crmsync.mapping_api.bootstrap import Services


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A POST without this session's CSRF token (or without a session): refused with 403."""


@dataclass(frozen=True)
class ConsoleUser:
    caller: Caller
    session: ConsoleSession

    @property
    def account_id(self) -> str:
        return self.caller.account_id

    @property
    def can_write(self) -> bool:
        return self.caller.is_admin


def services(request: Request) -> Services:
    return request.app.state.services


def codec(request: Request) -> SessionCodec:
    return request.app.state.codec


async def signed_in(request: Request) -> ConsoleUser | None:
    """Returns the user of a valid session whose key is still active, else None."""
    session = codec(request).open(request.cookies.get(COOKIE), now=utc_now())
    if session is None:
        return None
    caller = await authenticate(services(request).tx, key=session.api_key, now=utc_now())
    return ConsoleUser(caller, session) if caller is not None else None


async def current_user(request: Request) -> ConsoleUser:
    user = await signed_in(request)
    if user is None:
        raise SignInRequired()
    return user


async def _check_csrf(request: Request, session: ConsoleSession) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not session.csrf_ok(sent):
        raise CsrfRefused()


async def posting_user(request: Request) -> ConsoleUser:
    """The user of a POST: a missing session is refused like a forged token, never redirected."""
    user = await signed_in(request)
    if user is None:
        raise CsrfRefused()
    await _check_csrf(request, user.session)
    return user


def _tx(request: Request) -> Transactions:
    return services(request).tx


def _crm(request: Request) -> CrmPort:
    return services(request).crm


def _secrets(request: Request) -> Secrets:
    return services(request).secret_box


User = Annotated[ConsoleUser, Depends(current_user)]
Poster = Annotated[ConsoleUser, Depends(posting_user)]
Tx = Annotated[Transactions, Depends(_tx)]
Crm = Annotated[CrmPort, Depends(_crm)]
SecretBoxDep = Annotated[Secrets, Depends(_secrets)]
