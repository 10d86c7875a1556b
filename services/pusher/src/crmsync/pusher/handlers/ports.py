"""What the pusher's handlers need from the outside world, as Protocols (adapters implement them).

A handler opens a session of the store (`begin`: one transaction, committed
when the block ends; `autocommit`: each statement on its own; `read`) and
works through its parts: accounts, contacts, the push log. The CRM and the
dead-letter topic are ports of their own. The values that cross them are
`crmsync.pusher.values` and `crmsync.common.domain.push_log`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from collections.abc import Mapping as AnyMapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmRecord
from crmsync.common.crm.roles import RecordRoles
from crmsync.common.domain.mapping import Mapping, PushPolicy
from crmsync.common.domain.push_log import LoggedEntry, PushLogEntry, PushResult
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.common.kafka.consumer import Delivery
from crmsync.pusher.values import ContactRefs, CreatedRecord, Outcome, PlannedWrite, StoredContact

__all__ = [
    "AccountConfiguration",
    "AccountStore",
    "ContactRefs",
    "ContactStore",
    "CrmPort",
    "DeadLetterQueue",
    "DeliveryStore",
    "PushLogStore",
    "Store",
    "StoreSession",
    "StoredContact",
]

T = TypeVar("T")


class AccountConfiguration(Protocol):
    """An account's mapping, push policy and CRM connection (None when none was made)."""

    @property
    def mapping(self) -> Mapping: ...

    @property
    def policy(self) -> PushPolicy: ...

    @property
    def connection(self) -> CrmConnectionInfo | None: ...


class AccountStore(Protocol):
    async def existing(self, account_ids: Iterable[str]) -> set[str]:
        """Returns which of these accounts exist."""
        ...

    async def config(self, account_id: str, *, cached: bool = True) -> AccountConfiguration:
        """Returns the account's configuration; `cached` allows one read a few seconds ago."""
        ...


class ContactStore(Protocol):
    async def find(self, account_id: str, refs: ContactRefs) -> list[StoredContact]:
        """Returns (and locks) the account's contacts that any of `refs` names."""
        ...

    async def save(self, contacts: Iterable[StoredContact], *, now: datetime) -> None:
        """Inserts the new contacts and updates the changed ones (the fields they touched)."""
        ...

    async def link_created(self, records: Sequence[CreatedRecord], *, now: datetime) -> None:
        """Stores created CRM records' ids on their contacts (unless one is stored already)."""
        ...

    async def pending_outbound(
        self, *, account_id: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[StoredContact, datetime]]:
        """Returns the next contacts (by id) whose score or opt-out waits, with when it was flagged."""
        ...

    async def clear_outbound(self, *, seen: Sequence[tuple[uuid.UUID, datetime]]) -> None:
        """Clears the outbound flag of contacts unless it was set again since it was read."""
        ...


class PushLogStore(Protocol):
    async def logged_events(
        self, events: AnyMapping[str, Collection[str]]
    ) -> dict[str, dict[str, LoggedEntry]]:
        """Returns, for each of these accounts that exists, the entries of its events by event id."""
        ...

    async def entries(self, *, account_id: str, event_ids: Sequence[str]) -> dict[str, LoggedEntry]:
        """Returns the entries of these events, by event id."""
        ...

    async def add(self, entries: Sequence[PushLogEntry]) -> None:
        """Inserts entries; an event already logged keeps its entry (R18)."""
        ...

    async def finish(self, results: Sequence[PushResult]) -> None:
        """Records the CRM's answers on their pending entries."""
        ...


class DeliveryStore(Protocol):
    """Pushes waiting for their next attempt (R24). Lock a contact (`ContactStore.find`) before its push."""

    async def waiting_for(
        self, account_id: str, contact_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WaitingPush]:
        """Returns (and locks) the waiting pushes of these contacts, by contact id."""
        ...

    async def claim_due(self, *, now: datetime, limit: int, until: datetime) -> list[WaitingPush]:
        """Returns waiting pushes due by `now` that no other replica holds, moved to `until` meanwhile."""
        ...

    async def locked(self, ids: Sequence[int]) -> dict[int, WaitingPush]:
        """Returns (and locks) these pushes, by id."""
        ...

    async def save(self, pushes: Sequence[WaitingPush], *, now: datetime) -> None:
        """Inserts new pushes, updates the others; one left with no values is deleted."""
        ...


class StoreSession(Protocol):
    """The store as one session sees it."""

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def contacts(self) -> ContactStore: ...

    @property
    def push_log(self) -> PushLogStore: ...

    @property
    def deliveries(self) -> DeliveryStore: ...


class Store(Protocol):
    def begin(self) -> AbstractAsyncContextManager[StoreSession]:
        """One transaction: committed when the block ends, rolled back on an error."""
        ...

    def autocommit(self) -> AbstractAsyncContextManager[StoreSession]:
        """Each statement commits on its own: for steps of one statement, without BEGIN and COMMIT."""
        ...

    def read(self) -> AbstractAsyncContextManager[StoreSession]:
        """Reads only."""
        ...

    async def retry_if_connection_lost(self, attempt: Callable[[], Awaitable[T]], *, step: str) -> T:
        """Returns what `attempt` returns, run once more on fresh connections if the database dropped one."""
        ...


class CrmPort(Protocol):
    """Writes to and reads from an account's CRM, through one long-lived connector per account."""

    @property
    def batch_size(self) -> int:
        """Records per composite request."""
        ...

    async def write(
        self, connection: CrmConnectionInfo, writes: Sequence[PlannedWrite], *, mapping: Mapping
    ) -> list[Outcome]:
        """Returns one outcome per write, in order, after bounded retries of what was transient.

        `mapping` (the account's) names each object's e-mail field, by which a create that may
        have happened is looked up before it is sent again.
        """
        ...

    async def find_created(
        self,
        connection: CrmConnectionInfo,
        *,
        mapping: Mapping,
        crm_object: str,
        emails_lower: set[str],
        since: datetime,
    ) -> dict[str, str]:
        """Returns {lower(email): record id} of records with these e-mails changed since about `since`.

        The e-mail is the object's field the account's `mapping` maps to E-mail Address (R2).
        """
        ...

    def roles(self, connection: CrmConnectionInfo) -> RecordRoles:
        """Returns which fields of the CRM's records carry the id, the modified time and the rest."""
        ...

    async def field_lengths(self, connection: CrmConnectionInfo, crm_object: str) -> dict[str, int]:
        """Returns the most characters each text field of the object holds, from its describe (R22)."""
        ...

    async def recheck_budget(self, connection: CrmConnectionInfo) -> None:
        """Reads the API budget afresh: a connector at its reserve stops calling, so never sees a reset."""
        ...

    async def read(
        self, connection: CrmConnectionInfo, *, crm_object: str, ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, CrmRecord]:
        """Returns the records with these ids that exist, by id (the id field is always read)."""
        ...


class DeadLetterQueue(Protocol):
    async def send(self, delivery: Delivery[Any], *, error: str) -> None:
        """Publishes the event to its topic's dead-letter topic with the reason, acknowledged."""
        ...
