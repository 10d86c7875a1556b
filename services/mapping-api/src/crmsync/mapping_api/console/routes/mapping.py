"""Contact Mapping: standard and custom field rows, Allow Push, the default push setting,
rule checks on the rows and a preview before anything is saved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from crmsync.common.clock import utc_now
from crmsync.common.crm.interface import CrmConnector, CrmField, ObjectDescribe
from crmsync.common.domain.fields import STANDARD_FIELDS, DataType
from crmsync.common.domain.mapping import CrmObject, FieldKind
from crmsync.common.domain.mapping_rules import Violation
from crmsync.mapping_api.console.deps import ConsoleUser, Crm, Poster, Tx, User
from crmsync.mapping_api.console.forms import DraftRow, inputs, parse_rows, violations_by_row
from crmsync.mapping_api.console.render import render
from crmsync.mapping_api.handlers import connection as connection_handlers
from crmsync.mapping_api.handlers import mapping as handlers
from crmsync.mapping_api.handlers import preview as preview_handlers
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, MappingRefused, NoConnection
from crmsync.mapping_api.handlers.ports import CrmPort, Transactions

router = APIRouter(prefix="/mapping")
DESCRIBE_ERRORS = (NoConnection, CrmUnavailable, Conflict)


@dataclass(frozen=True)
class CrmFields:
    """The live describe of Leads and Contacts for the source drop-downs (None: not available)."""

    lead: dict[str, CrmField] | None
    contact: dict[str, CrmField] | None
    problem: str | None = None


async def crm_fields(tx: Transactions, *, account_id: str, crm: CrmPort) -> CrmFields:
    """Returns both describes over one connection, or why they are missing (none, the CRM unreachable)."""

    async def describe(connector: CrmConnector) -> tuple[ObjectDescribe, ObjectDescribe]:
        return await connector.describe(CrmObject.LEAD.value), await connector.describe(
            CrmObject.CONTACT.value
        )

    try:
        lead, contact = await connection_handlers.with_connector(
            tx, account_id=account_id, crm=crm, work=describe
        )
    except DESCRIBE_ERRORS as exc:
        return CrmFields(None, None, exc.message)
    return CrmFields(dict(sorted(lead.fields.items())), dict(sorted(contact.fields.items())))


async def _page(
    request: Request,
    user: ConsoleUser,
    tx: Transactions,
    crm: CrmPort,
    *,
    rows: Sequence[DraftRow],
    violations: Sequence[Violation] | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    view = await handlers.read_mapping(tx, account_id=user.account_id)
    # None: not checked yet (a plain visit); a list, even empty, is the outcome of a check.
    on_rows, general = violations_by_row(rows, violations or (), inputs(rows)[1])
    return render(
        request,
        "mapping.html",
        user=user,
        active="mapping",
        status_code=status_code,
        view=view,
        rows=list(enumerate(rows)),
        on_rows=on_rows,
        general=general,
        checked=violations is not None,
        fields=await crm_fields(tx, account_id=user.account_id, crm=crm),
        standard_fields=STANDARD_FIELDS,
        data_types=list(DataType),
        **context,
    )


@router.get("")
async def mapping_page(request: Request, user: User, tx: Tx, crm: Crm, saved: int | None = None) -> Response:
    view = await handlers.read_mapping(tx, account_id=user.account_id)
    rows = [DraftRow.of(r) for r in view.mapping.rows]
    return await _page(request, user, tx, crm, rows=rows, saved=saved)


@router.post("")
async def mapping_action(request: Request, user: Poster, tx: Tx, crm: Crm) -> Response:
    form = await request.form()
    rows = parse_rows({k: v for k, v in form.items() if isinstance(v, str)})
    action = str(form.get("action", "check"))
    if action == "add_standard":
        rows.append(DraftRow())
    elif action == "add_custom":
        rows.append(DraftRow(kind=FieldKind.CUSTOM.value, data_type=DataType.TEXT.value))
    elif action.startswith("delete-") and action[7:].isdigit() and int(action[7:]) < len(rows):
        del rows[int(action[7:])]
    try:
        if action == "save":
            note = str(form.get("note", ""))[:500] or None
            return await _save(request, user, tx, crm, rows=rows, note=note)
        row_inputs, _ = inputs(rows)
        if action == "preview":
            preview = await preview_handlers.preview_mapping(
                tx, account_id=user.account_id, rows=row_inputs, crm=crm
            )
            return await _page(
                request, user, tx, crm, rows=rows, violations=preview.violations, preview=preview
            )
        violations = await preview_handlers.check_rows(
            tx, account_id=user.account_id, rows=row_inputs, crm=crm
        )
    except (CrmUnavailable, Conflict) as exc:
        # The rows cannot be checked against the CRM now; the edits stay on the page.
        return await _page(request, user, tx, crm, rows=rows, status_code=502, crm_problem=exc.message)
    return await _page(request, user, tx, crm, rows=rows, violations=violations)


async def _save(
    request: Request,
    user: ConsoleUser,
    tx: Transactions,
    crm: CrmPort,
    *,
    rows: list[DraftRow],
    note: str | None,
) -> Response:
    user.caller.require_admin()
    row_inputs, _ = inputs(rows)
    # The console checks as the preview does (a custom row without a type is a violation on its row).
    violations = await preview_handlers.check_rows(tx, account_id=user.account_id, rows=row_inputs, crm=crm)
    if not violations:
        try:
            result = await handlers.save_mapping(
                tx, account_id=user.account_id, rows=row_inputs, note=note, crm=crm, now=utc_now()
            )
        except MappingRefused as exc:
            violations = exc.violations
        else:
            target = f"/console/mapping?saved={result.mapping.version}"
            return RedirectResponse(target, status_code=303)
    return await _page(
        request, user, tx, crm, rows=rows, violations=violations, status_code=422, refused=True
    )


@router.post("/default-push")
async def default_push(request: Request, user: Poster, tx: Tx, crm: Crm) -> Response:
    user.caller.require_admin()
    form = await request.form()
    allow = form.get("default_allow_push") == "allow"
    try:
        await handlers.set_default_push(
            tx, account_id=user.account_id, default_allow_push=allow, crm=crm, now=utc_now()
        )
    except MappingRefused as exc:
        view = await handlers.read_mapping(tx, account_id=user.account_id)
        rows = [DraftRow.of(r) for r in view.mapping.rows]
        refused = {"status_code": 422, "policy_refused": True}
        return await _page(request, user, tx, crm, rows=rows, violations=exc.violations, **refused)
    return RedirectResponse("/console/mapping", status_code=303)
