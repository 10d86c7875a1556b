"""Request dependencies: the caller (tenancy, R21) and the wired unit of work, CRM port and secrets.

Routes never open transactions or commit: each use case runs in one
transaction of the unit of work it is given (`TransactionsDep`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crmsync.common.clock import utc_now
from crmsync.mapping_api.adapters.allowance import allowance_transactions
from crmsync.mapping_api.handlers.accounts import Caller, authenticate
from crmsync.mapping_api.handlers.allowance import AllowanceTransactions
from crmsync.mapping_api.handlers.errors import Unauthenticated
from crmsync.mapping_api.handlers.ports import CrmPort, Secrets, Transactions
from crmsync.mapping_api.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `crmsync-admin key create`: `Authorization: Bearer crmsync_…`.",
)


def _transactions(request: Request) -> Transactions:
    return request.app.state.services.tx


async def _caller(
    tx: Annotated[Transactions, Depends(_transactions)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("send an API key as `Authorization: Bearer <key>`", field="Authorization")
    caller = await authenticate(tx, key=credentials.credentials, now=utc_now())
    if caller is None:
        raise Unauthenticated("unknown or revoked API key", field="Authorization")
    return caller


async def _admin(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    return caller.require_admin()


def _crm(request: Request) -> CrmPort:
    return request.app.state.services.crm


def _secrets(request: Request) -> Secrets:
    return request.app.state.services.secret_box


def _allowance(request: Request) -> AllowanceTransactions:
    return allowance_transactions(request.app.state.services.sessions)


def _settings(request: Request) -> Settings:
    return request.app.state.services.settings


TransactionsDep = Annotated[Transactions, Depends(_transactions)]
CurrentAccount = Annotated[Caller, Depends(_caller)]
AdminAccount = Annotated[Caller, Depends(_admin)]
CrmDep = Annotated[CrmPort, Depends(_crm)]
SecretsDep = Annotated[Secrets, Depends(_secrets)]
SettingsDep = Annotated[Settings, Depends(_settings)]
AllowanceDep = Annotated[AllowanceTransactions, Depends(_allowance)]
