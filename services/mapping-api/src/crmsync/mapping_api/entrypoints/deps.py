"""Request dependencies: the session, the caller (tenancy, R21) and the wired adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.crypto import SecretBox
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.mapping_api.handlers.accounts import Caller, authenticate
from crmsync.mapping_api.handlers.errors import Forbidden, Unauthenticated
from crmsync.mapping_api.handlers.ports import CrmPort
from crmsync.mapping_api.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `crmsync-admin key create`: `Authorization: Bearer crmsync_…`.",
)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # Use cases commit themselves; anything left uncommitted is rolled back on close.
    async with request.app.state.sessions() as session:
        yield session


async def _caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("send an API key as `Authorization: Bearer <key>`", field="Authorization")
    async with request.app.state.sessions() as session:
        caller = await authenticate(session, key=credentials.credentials)
    if caller is None:
        raise Unauthenticated("unknown or revoked API key", field="Authorization")
    return caller


async def _admin(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs an admin key; reader keys only read", field="Authorization")
    return caller


def _crm(request: Request) -> CrmPort:
    return request.app.state.crm


def _secret_box(request: Request) -> SecretBox:
    return request.app.state.secret_box


def _relay(request: Request) -> OutboxRelay:
    return request.app.state.relay


def _settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[AsyncSession, Depends(_session)]
CurrentAccount = Annotated[Caller, Depends(_caller)]
AdminAccount = Annotated[Caller, Depends(_admin)]
CrmDep = Annotated[CrmPort, Depends(_crm)]
SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]
RelayDep = Annotated[OutboxRelay, Depends(_relay)]
SettingsDep = Annotated[Settings, Depends(_settings)]
