"""Unbound functions of the Web API: `RetrieveTotalRecordCount(EntityNames=[...])`, the record
count of each table named (Dataverse's from a snapshot of the last day; the emulator's is live)."""

from __future__ import annotations

import re

import orjson

from crmsync.dynamics_emulator.errors import NOT_FOUND, DataverseError, invalid
from crmsync.dynamics_emulator.http import Call, Reply
from crmsync.dynamics_emulator.schema import TABLES
from crmsync.dynamics_emulator.store import Environment

TOTAL_COUNT = re.compile(r"^RetrieveTotalRecordCount\(EntityNames=(?P<names>.*)\)$")


def _names(call: Call, text: str) -> list[str]:
    """The logical names of the parameter: inline (`['lead']`) or an alias (`@p1`) in the query."""
    raw = call.query.get(text, "") if text.startswith("@") else text
    try:
        names = orjson.loads(raw.replace("'", '"'))
    except orjson.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid(f'EntityNames must be a collection of logical names, as ["account"], not {raw!r}.')
    return names


def handle(env: Environment, call: Call) -> Reply | None:
    """Answers a function call (None: not one)."""
    match = TOTAL_COUNT.match(call.path)
    if match is None:
        return None
    if call.method != "GET":
        raise invalid(f"The HTTP method '{call.method}' is not allowed for a function.", status=405)
    names = _names(call, match["names"])
    for name in names:
        if name not in TABLES:
            raise DataverseError(
                404, NOT_FOUND,
                f"The entity with a name = '{name}' with namemapping = 'Logical' was not found in the MetadataCache.",
            )  # fmt: skip
    counts = [env.rows(name).live_count() for name in names]
    return Reply.json(200, {
        "@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse",
        "EntityRecordCountCollection": {"Count": len(names), "IsReadOnly": False, "Keys": names, "Values": counts},
    })  # fmt: skip
