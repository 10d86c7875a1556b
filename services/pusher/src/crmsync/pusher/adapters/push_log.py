"""The push log in Postgres (the PushLogStore port): entries inserted and answered in one
statement each, over arrays."""

from __future__ import annotations

from collections import abc
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import orjson
from sqlalchemy import Text, and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import Account, PushLog
from crmsync.common.domain.push_log import LoggedEntry, PushLogEntry, PushResult
from crmsync.pusher.adapters.arrays import any_of

_TYPES = {
    "account_id": "text",
    "event_id": "text",
    "source": "text",
    "contact_id": "uuid",
    "crm_object": "text",
    "crm_id": "text",
    "operation": "text",
    "status": "text",
    "sent_fields": "jsonb",
    "decisions": "jsonb",
    "error_code": "text",
    "error_message": "text",
    "attempts": "int",
    "occurred_at": "timestamptz",
    "updated_at": "timestamptz",
}
# Every field of an entry is a column of the insert (a field without a type here fails at import).
_COLUMNS = {f.name: _TYPES[f.name] for f in fields(PushLogEntry)}
# An entry without a time of its own takes the time it is stored, as the column's default would.
_DEFAULTS = {"updated_at": "now()"}


def _select_item(name: str, kind: str) -> str:
    value = f"{name}::jsonb" if kind == "jsonb" else name
    return f"coalesce({value}, {_DEFAULTS[name]})" if name in _DEFAULTS else value


def _unnest_item(name: str, kind: str) -> str:
    return f"cast(:{name} as {'text' if kind == 'jsonb' else kind}[])"


_INSERT = text(
    f"insert into push_log ({', '.join(_COLUMNS)}) "
    f"select {', '.join(_select_item(n, k) for n, k in _COLUMNS.items())} "
    f"from unnest({', '.join(_unnest_item(n, k) for n, k in _COLUMNS.items())}) "
    f"as v({', '.join(_COLUMNS)}) "
    "on conflict (account_id, event_id) do nothing"
)

_FINISH = text(
    "update push_log p set status = v.status, crm_id = v.crm_id, error_code = v.code, "
    "error_message = v.message, attempts = p.attempts + v.attempts, updated_at = v.at, "
    "decisions = p.decisions || v.decisions::jsonb "
    "from unnest(cast(:accounts as text[]), cast(:events as text[]), cast(:statuses as text[]), "
    "cast(:crm_ids as text[]), cast(:codes as text[]), cast(:messages as text[]), "
    "cast(:attempts as int[]), cast(:ats as timestamptz[]), cast(:decisions as text[])) "
    "as v(account_id, event_id, status, crm_id, code, message, attempts, at, decisions) "
    "where p.account_id = v.account_id and p.event_id = v.event_id"
)


def _logged(row: PushLog) -> LoggedEntry:
    return LoggedEntry(**{f.name: getattr(row, f.name) for f in fields(LoggedEntry)})


def _array(entries: Sequence[PushLogEntry], name: str, kind: str) -> list[Any]:
    values = [getattr(e, name) for e in entries]
    if kind == "jsonb":
        return [orjson.dumps(dict(v or {})).decode() for v in values]
    return values


class PgPushLog:
    """The push log through the caller's session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def entries(self, *, account_id: str, event_ids: Sequence[str]) -> dict[str, LoggedEntry]:
        """Returns the push log entries of these events, by event id."""
        if not event_ids:
            return {}
        rows = (
            await self._session.scalars(
                select(PushLog).where(
                    PushLog.account_id == account_id, PushLog.event_id == any_of(event_ids, Text)
                )
            )
        ).all()
        return {row.event_id: _logged(row) for row in rows}

    async def logged_events(
        self, events: abc.Mapping[str, abc.Collection[str]]
    ) -> dict[str, dict[str, LoggedEntry]]:
        """Returns, for each of these accounts that exists, the push log entries of its events by event id.

        One statement for a batch: an account missing from the answer does not exist.
        """
        if not events:
            return {}
        event_ids = sorted({e for ids in events.values() for e in ids})
        rows = (
            await self._session.execute(
                select(Account.id, PushLog)
                .outerjoin(
                    PushLog,
                    and_(PushLog.account_id == Account.id, PushLog.event_id == any_of(event_ids, Text)),
                )
                .where(Account.id == any_of(list(events), Text))
            )
        ).all()
        found: dict[str, dict[str, LoggedEntry]] = {}
        for account_id, entry in rows:
            entries = found.setdefault(account_id, {})
            if entry is not None and entry.event_id in events[account_id]:
                entries[entry.event_id] = _logged(entry)
        return found

    async def add(self, entries: Sequence[PushLogEntry]) -> None:
        """Inserts push log entries; an event already logged keeps its entry (R18)."""
        if not entries:
            return
        # One statement over arrays, as in `finish`.
        await self._session.execute(
            _INSERT, {name: _array(entries, name, kind) for name, kind in _COLUMNS.items()}
        )

    async def finish(self, results: Sequence[PushResult]) -> None:
        """Records the CRM's answer on entries: status, crm_id, error, attempts, updated_at, added decisions."""
        if not results:
            return
        await self._session.execute(
            _FINISH,
            {
                "accounts": [r.account_id for r in results],
                "events": [r.event_id for r in results],
                "statuses": [r.status for r in results],
                "crm_ids": [r.crm_id for r in results],
                "codes": [r.error_code for r in results],
                "messages": [r.error_message for r in results],
                "attempts": [r.attempts for r in results],
                "ats": [r.at for r in results],
                "decisions": [orjson.dumps(dict(r.decisions)).decode() for r in results],
            },
        )
