"""What the use cases need from the outside world, as Protocols (adapters implement them).

Every use case runs in one transaction: `async with tx.begin() as stores:` (or
`tx.read()` when it only reads) and reaches the database through `stores` alone.
Values crossing these ports are frozen (`crmsync.mapping_api.values`, the
domain's, `CrmConnectionInfo`), never ORM rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmConnector
from crmsync.common.domain.account import StoredMapping
from crmsync.common.domain.mapping import MappingRow, PushPolicy
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.common.domain.schedule import Schedule
from crmsync.common.messages import ContactChanged, RunOutbound, RunSync
from crmsync.mapping_api.field_fill import FieldFill
from crmsync.mapping_api.operator_values import DeadLetterInfo, PushSummary
from crmsync.mapping_api.values import (
    AccountInfo,
    ApiKeyInfo,
    ContactInfo,
    ContactQuery,
    OwnerInfo,
    PushLogEntry,
    PushLogQuery,
    RunHistory,
    RunQuery,
    StoredSchedule,
    SyncRunInfo,
    VersionSummary,
)


class AccountStore(Protocol):
    async def get(self, account_id: str) -> AccountInfo | None: ...

    async def add(self, *, account_id: str, name: str) -> AccountInfo: ...

    async def add_key(self, *, account_id: str, name: str, prefix: str, key_hash: str, role: str) -> None: ...

    async def keys(self, account_id: str) -> list[ApiKeyInfo]:
        """Returns the account's keys, oldest first."""
        ...

    async def revoke_key(self, key_id: uuid.UUID, *, at: datetime) -> None: ...

    async def active_key(self, key_hash: str) -> ApiKeyInfo | None:
        """Returns the unrevoked key with that hash, of whichever account it is."""
        ...

    async def mark_key_used(self, key_id: uuid.UUID, *, at: datetime, unless_used_since: datetime) -> None:
        """Sets the key's last use to `at`, unless a concurrent call set it after `unless_used_since`."""
        ...


class ConnectionStore(Protocol):
    async def get(self, account_id: str) -> CrmConnectionInfo | None: ...

    async def store(self, connection: CrmConnectionInfo, *, updated_at: datetime) -> None:
        """Writes new credentials (inserting the connection if it is new)."""
        ...

    async def record_check(self, connection: CrmConnectionInfo) -> None:
        """Writes the outcome of a test: status, message, budget, instance URL, when checked."""
        ...


class MappingStore(Protocol):
    async def get(self, account_id: str, version: int | None = None) -> StoredMapping | None:
        """Returns that version (the newest when None), or None."""
        ...

    async def add(
        self, *, account_id: str, version: int, note: str | None, rows: Sequence[MappingRow]
    ) -> StoredMapping: ...

    async def versions(self, account_id: str) -> list[VersionSummary]:
        """Returns every version with its row count, newest first."""
        ...


class PolicyStore(Protocol):
    async def get(self, account_id: str) -> PushPolicy:
        """Returns the stored policy, two-way when none was stored (R8)."""
        ...

    async def put(self, account_id: str, policy: PushPolicy, *, updated_at: datetime) -> None: ...


class ScheduleStore(Protocol):
    async def get(self, account_id: str) -> StoredSchedule | None: ...

    async def put(self, account_id: str, schedule: Schedule, *, updated_at: datetime) -> None: ...

    async def request_full_sync(self, account_id: str, *, at: datetime) -> None:
        """Flags a full sync (R15), storing the automatic schedule if the account has none."""
        ...


class SyncRunStore(Protocol):
    async def history(self, account_id: str) -> RunHistory: ...

    async def page(self, account_id: str, query: RunQuery) -> list[SyncRunInfo]: ...

    async def get(self, account_id: str, run_id: uuid.UUID) -> SyncRunInfo | None: ...


class ContactStore(Protocol):
    async def page(self, account_id: str, query: ContactQuery) -> list[ContactInfo]: ...

    async def count_by_object(self, account_id: str) -> dict[str | None, int]: ...

    async def get(self, account_id: str, contact_id: uuid.UUID) -> ContactInfo | None: ...

    async def owner(self, account_id: str, external_id: str) -> OwnerInfo | None: ...

    async def field_counts(self, account_id: str, fields: Sequence[str]) -> dict[str | None, FieldFill]:
        """Returns, per crm_object, the contact count and how many hold a value of each field."""
        ...


class PushLogStore(Protocol):
    async def page(self, account_id: str, query: PushLogQuery) -> list[PushLogEntry]: ...

    async def get(self, account_id: str, entry_id: int) -> PushLogEntry | None: ...


class Outbox(Protocol):
    """Queues messages in the transaction; they are published once it has committed."""

    def sync_job(self, job: RunSync) -> None: ...

    def outbound_job(self, job: RunOutbound) -> None: ...

    def contact_change(self, event: ContactChanged) -> None: ...


class Stores(Protocol):
    """Everything one transaction reaches."""

    @property
    def accounts(self) -> AccountStore: ...
    @property
    def connections(self) -> ConnectionStore: ...
    @property
    def mappings(self) -> MappingStore: ...
    @property
    def policies(self) -> PolicyStore: ...
    @property
    def schedules(self) -> ScheduleStore: ...
    @property
    def sync_runs(self) -> SyncRunStore: ...
    @property
    def contacts(self) -> ContactStore: ...
    @property
    def push_log(self) -> PushLogStore: ...
    @property
    def outbox(self) -> Outbox: ...


class Transactions(Protocol):
    """The unit of work: `begin()` commits when the block ends without an error, `read()` never does."""

    def begin(self) -> AbstractAsyncContextManager[Stores]: ...

    def read(self) -> AbstractAsyncContextManager[Stores]: ...


class CrmPort(Protocol):
    """Opens a connector to the CRM of one stored connection; closed when the block ends."""

    def connect(self, connection: CrmConnectionInfo) -> AbstractAsyncContextManager[CrmConnector]: ...

    async def check(self, connection: CrmConnectionInfo) -> None:
        """Raises ValueError, naming what is wrong, when no connector can be built for the
        connection (its provider needs something it lacks); calls nothing."""
        ...


class Secrets(Protocol):
    """Seals credentials at rest (`crmsync.common.crypto.SecretBox`); `open` raises ValueError."""

    def seal(self, secrets: dict[str, Any]) -> bytes: ...

    def open(self, token: bytes) -> dict[str, Any]: ...


class DeliveryStore(Protocol):
    """Waiting and failed pushes (`push_deliveries`) and dead-lettered events, for operators (R24)."""

    async def page(
        self,
        account_id: str,
        *,
        state: str | None,
        error_code: str | None,
        after_id: int | None,
        limit: int,
    ) -> list[WaitingPush]:
        """Returns the account's pushes of a state and error code, oldest first, after `after_id`."""
        ...

    async def get(self, account_id: str, push_id: int) -> WaitingPush | None: ...

    async def summary(self, account_id: str) -> PushSummary: ...

    async def retry_failed(
        self,
        account_id: str,
        *,
        now: datetime,
        ids: Sequence[int] | None = None,
        error_code: str | None = None,
    ) -> int:
        """Puts failed pushes (these, or all; of an error code) back in line with a fresh horizon."""
        ...

    async def dead_letters(
        self,
        account_id: str,
        *,
        after_id: int | None = None,
        limit: int = 100,
        event_ids: Sequence[str] | None = None,
    ) -> list[DeadLetterInfo]:
        """Returns the account's dead-lettered events with their reasons, oldest first."""
        ...

    async def release_for_replay(self, account_id: str, event_ids: Sequence[str]) -> list[str]:
        """Forgets these dead letters' push log entries, so their replay is handled anew; returns those."""
        ...


class DeadLetterTopic(Protocol):
    """The contact-change dead-letter topic, where the events themselves are kept."""

    async def originals(self, account_id: str, event_ids: Collection[str]) -> dict[str, ContactChanged]:
        """Returns the account's events with these ids as last dead-lettered (absent: not on the topic).

        Raises the Kafka client's error, or TimeoutError, when the topic cannot be read.
        """
        ...


class OperatorStores(Stores, Protocol):
    """The stores of one transaction, with the pushes and dead letters operators act on."""

    @property
    def deliveries(self) -> DeliveryStore: ...


class OperatorTransactions(Protocol):
    """`Transactions` whose stores include the deliveries."""

    def begin(self) -> AbstractAsyncContextManager[OperatorStores]: ...

    def read(self) -> AbstractAsyncContextManager[OperatorStores]: ...
