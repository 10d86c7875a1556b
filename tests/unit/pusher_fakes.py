"""In-memory fakes of the pusher's ports: a store, a CRM and a dead-letter queue.

They hold what the handlers write, so a test asserts on state (the push log,
the contacts, the CRM's writes), not on calls.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from collections.abc import Mapping as AnyMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any, TypeVar

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.roles import DealRoles, RecordRoles
from crmsync.common.domain.mapping import Mapping, PushPolicy, default_salesforce_mapping
from crmsync.common.domain.push_log import LoggedEntry, PushLogEntry, PushResult
from crmsync.common.domain.redelivery import WAITING, RedeliveryPolicy, WaitingPush
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.values import ContactRefs, CreatedRecord, Outcome, PlannedWrite, StoredContact

T = TypeVar("T")

# When the fake store's flagged contacts had their score or opt-out flagged for the outbound job.
OUTBOUND_FLAGGED_AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    account_id: str
    mapping: Mapping = field(default_factory=default_salesforce_mapping)
    policy: PushPolicy = field(default_factory=lambda: PushPolicy(default_allow_push=True))
    connection: CrmConnectionInfo | None = None


def connection(account_id: str) -> CrmConnectionInfo:
    return CrmConnectionInfo(
        account_id=account_id,
        provider="salesforce",
        login_url="https://login.example.com",
        auth_method="client_credentials",
        client_id="client",
        secrets_encrypted=b"sealed",
    )


class FakeStore:
    """Accounts, contacts and the push log in dicts; a session is the store itself."""

    def __init__(self) -> None:
        self.configs: dict[str, Config] = {}
        self.rows: dict[uuid.UUID, StoredContact] = {}  # the contacts, by id
        self.log: dict[tuple[str, str], LoggedEntry] = {}
        self.entries: dict[tuple[str, str], PushLogEntry] = {}
        self.pushes: dict[int, WaitingPush] = {}  # waiting and failed pushes, by id
        self._ids = count(1)
        self._push_ids = count(1)

    def add_account(self, account_id: str, *, connected: bool = True) -> None:
        self.configs[account_id] = Config(
            account_id, connection=connection(account_id) if connected else None
        )

    # -- Store
    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeStore]:
        yield self

    autocommit = begin
    read = begin

    async def retry_if_connection_lost(self, attempt: Callable[[], Awaitable[T]], *, step: str) -> T:
        return await attempt()

    # -- StoreSession
    @property
    def accounts(self) -> FakeStore:
        return self

    @property
    def contacts(self) -> _Contacts:
        return _Contacts(self)

    @property
    def push_log(self) -> _PushLog:
        return _PushLog(self)

    @property
    def deliveries(self) -> _Deliveries:
        return _Deliveries(self)

    # -- AccountStore
    async def existing(self, account_ids: Iterable[str]) -> set[str]:
        return {a for a in account_ids if a in self.configs}

    async def config(self, account_id: str, *, cached: bool = True) -> Config:
        return self.configs[account_id]

    def contact(self, *, email: str) -> StoredContact | None:
        return next((c for c in self.rows.values() if c.email_lower == email.lower()), None)


class _Contacts:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def find(self, account_id: str, refs: ContactRefs) -> list[StoredContact]:
        return [
            copy.deepcopy(c)
            for c in self._store.rows.values()
            if c.account_id == account_id
            and (c.id in refs.ids or c.external_id in refs.external_ids or c.email_lower in refs.emails_lower)
        ]

    async def save(self, contacts: Iterable[StoredContact], *, now: datetime) -> None:
        for c in contacts:
            if c.new or c.dirty:
                self._store.rows[c.id] = replace(copy.deepcopy(c), new=False, dirty=False, touched=set())

    async def link_created(self, records: Sequence[CreatedRecord], *, now: datetime) -> None:
        for r in records:
            contact = self._store.rows[r.contact_id]
            if contact.external_id is None:
                contact.crm_object, contact.external_id = r.crm_object, r.crm_id

    async def pending_outbound(
        self, *, account_id: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[StoredContact, datetime]]:
        flagged = sorted(
            (c for c in self._store.rows.values() if c.account_id == account_id and c.outbound_pending),
            key=lambda c: c.id,
        )
        return [(copy.deepcopy(c), OUTBOUND_FLAGGED_AT) for c in flagged if after is None or c.id > after][
            :limit
        ]

    async def clear_outbound(self, *, seen: Sequence[tuple[uuid.UUID, datetime]]) -> None:
        for contact_id, _ in seen:
            self._store.rows[contact_id].outbound_pending = False


class _PushLog:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    async def logged_events(
        self, events: AnyMapping[str, Collection[str]]
    ) -> dict[str, dict[str, LoggedEntry]]:
        return {
            account_id: {
                e: self._store.log[(account_id, e)] for e in ids if (account_id, e) in self._store.log
            }
            for account_id, ids in events.items()
            if account_id in self._store.configs
        }

    async def entries(self, *, account_id: str, event_ids: Sequence[str]) -> dict[str, LoggedEntry]:
        return {e: self._store.log[(account_id, e)] for e in event_ids if (account_id, e) in self._store.log}

    async def add(self, entries: Sequence[PushLogEntry]) -> None:
        for e in entries:
            key = (e.account_id, e.event_id)
            if key in self._store.log:
                continue
            self._store.entries[key] = e
            self._store.log[key] = LoggedEntry(
                id=next(self._store._ids),
                account_id=e.account_id,
                event_id=e.event_id,
                operation=e.operation,
                status=e.status,
                contact_id=e.contact_id,
                crm_object=e.crm_object,
                crm_id=e.crm_id,
                sent_fields=dict(e.sent_fields),
                created_at=datetime.now(UTC),
            )

    async def finish(self, results: Sequence[PushResult]) -> None:
        for r in results:
            key = (r.account_id, r.event_id)
            self._store.log[key] = replace(self._store.log[key], status=r.status, crm_id=r.crm_id)
            entry = self._store.entries[key]
            self._store.entries[key] = replace(
                entry,
                status=r.status,
                crm_id=r.crm_id,
                error_code=r.error_code,
                error_message=r.error_message,
                attempts=entry.attempts + r.attempts,
                decisions={**entry.decisions, **r.decisions},
            )


# Text fields' lengths as Salesforce's describe gives them (Title holds 128 characters).
LENGTHS = {"Title": 128, "FirstName": 40, "LastName": 80, "Email": 80, "Company": 255, "City": 40}


class _Deliveries:
    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def _waiting(self) -> list[WaitingPush]:
        return [p for p in self._store.pushes.values() if p.state == WAITING]

    async def waiting_for(
        self, account_id: str, contact_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WaitingPush]:
        return {
            p.contact_id: p
            for p in self._waiting()
            if p.account_id == account_id and p.contact_id in contact_ids
        }

    async def claim_due(self, *, now: datetime, limit: int, until: datetime) -> list[WaitingPush]:
        due = sorted(
            (p for p in self._waiting() if p.next_attempt_at <= now), key=lambda p: p.next_attempt_at
        )
        for p in due[:limit]:
            assert p.id is not None
            self._store.pushes[p.id] = replace(p, next_attempt_at=until)
        return due[:limit]

    async def locked(self, ids: Sequence[int]) -> dict[int, WaitingPush]:
        return {i: self._store.pushes[i] for i in ids if i in self._store.pushes}

    async def save(self, pushes: Sequence[WaitingPush], *, now: datetime) -> None:
        for p in pushes:
            if p.id is not None and not p.values:
                self._store.pushes.pop(p.id, None)
            elif p.id is not None:
                self._store.pushes[p.id] = p
            elif p.values:
                assert not [
                    w for w in self._waiting() if (w.account_id, w.contact_id) == (p.account_id, p.contact_id)
                ]
                new_id = next(self._store._push_ids)
                self._store.pushes[new_id] = replace(p, id=new_id, created_at=now)


# The fake CRM's record roles: the names of the fields its records carry them in.
ROLES = RecordRoles(
    id="Id",
    modified_at="ModifiedAt",
    owner_id="OwnerId",
    owner_name="Owner.Name",
    owner_email="Owner.Email",
    company_id="CompanyId",
    company_name="Company.Name",
    converted="Converted",
    converted_to="ConvertedTo",
    deal=DealRoles("Id", "ModifiedAt", "Name", "Stage", "Amount", "CloseDate", "CompanyId", "ContactId"),
)


class FakeCrm:
    """Accepts every write (a create gets a new record id), unless it is `down` or its budget `exhausted`."""

    batch_size = 200

    def __init__(self) -> None:
        self.writes: list[PlannedWrite] = []
        self._ids = count(1)
        self.lengths: dict[str, dict[str, int]] = {"Lead": dict(LENGTHS), "Contact": dict(LENGTHS)}
        self.down = False  # every write is answered 503, after the connector's round
        self.exhausted = False  # the API budget is at its reserve
        self.budget_rechecks = 0
        self.refused: list[PlannedWrite] = []  # what reached a CRM that could not take it

    async def field_lengths(self, connection: CrmConnectionInfo, crm_object: str) -> dict[str, int]:
        return self.lengths[crm_object]

    async def recheck_budget(self, connection: CrmConnectionInfo) -> None:
        self.budget_rechecks += 1

    def roles(self, connection: CrmConnectionInfo) -> RecordRoles:
        return ROLES

    async def write(
        self, connection: CrmConnectionInfo, writes: Sequence[PlannedWrite], *, mapping: Mapping
    ) -> list[Outcome]:
        if self.exhausted:
            return [
                Outcome(False, None, 1, "REQUEST_LIMIT_EXCEEDED", "budget at reserve", parked=True)
                for _ in writes
            ]
        if self.down:
            self.refused += [copy.deepcopy(w) for w in writes]
            return [
                Outcome(False, w.crm_id, 6, "SERVER_UNAVAILABLE", "503 Service Unavailable", retryable=True)
                for w in writes
            ]
        self.writes += [copy.deepcopy(w) for w in writes]
        return [
            Outcome(True, w.crm_id if w.operation == "update" else f"00Q{next(self._ids):015d}", 1)
            for w in writes
        ]

    async def find_created(
        self,
        connection: CrmConnectionInfo,
        *,
        mapping: Mapping,
        crm_object: str,
        emails_lower: set[str],
        since: datetime,
    ) -> dict[str, str]:
        return {}

    async def read(
        self, connection: CrmConnectionInfo, *, crm_object: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        return {}


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[str, str]] = []  # (event id, reason)

    async def send(self, delivery: Delivery[Any], *, error: str) -> None:
        self.letters.append((delivery.message.event_id, error))


# Waits of nothing: a waiting push is due again at once, so a test re-delivers it when it likes.
AT_ONCE = RedeliveryPolicy(base=timedelta(0), cap=timedelta(0), min_wait=timedelta(0))


@dataclass
class Pusher:
    """The handlers over the fakes."""

    store: FakeStore = field(default_factory=FakeStore)
    crm: FakeCrm = field(default_factory=FakeCrm)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    redelivery: RedeliveryPolicy = AT_ONCE
    budget_recheck: timedelta = timedelta(minutes=15)

    @property
    def ctx(self) -> PushContext:
        return PushContext(
            store=self.store,  # type: ignore[arg-type]
            crm=self.crm,  # type: ignore[arg-type]
            dead_letters=self.dead_letters,
            redelivery=self.redelivery,
            budget_recheck=self.budget_recheck,
        )

    async def redeliver(self) -> int:
        """Runs one round of re-delivery; returns how many pushes it claimed."""
        from crmsync.pusher.handlers.redeliver import redeliver_due

        return await redeliver_due(self.ctx, limit=100, lease=timedelta(minutes=5))

    async def handle(self, *events: ContactChanged) -> dict[str, PushLogEntry]:
        """Runs the events through steps 1 to 3; returns their push log entries by event id."""
        from crmsync.pusher.handlers.contact_changed import apply_contact_changes

        deliveries = [
            Delivery("crmsync.contact-changes", 0, i, None, e, int(e.occurred_at.timestamp() * 1000))
            for i, e in enumerate(events)
        ]
        applied = await apply_contact_changes(self.ctx, deliveries)
        await applied.push(self.ctx)
        return {k[1]: v for k, v in self.store.entries.items() if k[1] in {e.event_id for e in events}}
