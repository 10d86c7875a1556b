"""The caller's account and the field catalogue."""

from __future__ import annotations

from fastapi import APIRouter

from crmsync.common.domain.fields import RELATED_OBJECT_FIELDS, STANDARD_FIELDS, DataType
from crmsync.mapping_api.entrypoints.deps import CurrentAccount, TransactionsDep
from crmsync.mapping_api.handlers.accounts import read_account as read_account_of
from crmsync.mapping_api.schemas import AccountOut, CatalogueOut, StandardFieldOut

router = APIRouter(tags=["account"])


@router.get("/account", response_model=AccountOut, summary="The account of the API key")
async def read_account(caller: CurrentAccount, tx: TransactionsDep) -> AccountOut:
    account = await read_account_of(tx, account_id=caller.account_id)
    return AccountOut(id=account.id, name=account.name, role=caller.role, created_at=account.created_at)


@router.get("/fields", response_model=CatalogueOut, summary="Standard field catalogue and data types")
async def read_catalogue(_: CurrentAccount) -> CatalogueOut:
    return CatalogueOut(
        standard_fields=[
            StandardFieldOut(
                key=f.key, label=f.label, data_type=f.data_type, related_object=f.key in RELATED_OBJECT_FIELDS
            )
            for f in STANDARD_FIELDS
        ],
        data_types=list(DataType),
    )
