"""ContactChanged: apply an event to the contact store, then write what the CRM gets.

A batch goes through three steps, per account:

1. One transaction applies every new event to its contact (merge with
   per-field origin and time), decides the CRM write (`decide_push`) and logs
   each event in the push log: `pending` with the intended payload when
   something is to be sent, `skipped` when nothing is, `failed` when the
   account has no CRM connection.
2. The writes go to the CRM, one per contact (its events folded in order),
   in composite batches per object and operation.
3. One transaction records each CRM answer on the push log and stores the id
   of every created record on its contact.

Exactly once: an event whose push log entry is final is skipped on redelivery.
A `pending` entry means the process stopped between steps 1 and 3; its stored
payload is reconciled (see `reconcile`), not decided again.

Step 1 is `apply_contact_changes`; steps 2 and 3 are `AppliedBatch.push`. The
consumer runs the next batch's step 1 while this batch's CRM writes are in
flight (`PipelinedLoop`), except when `AppliedBatch.blocks` says the next
batch must wait: a record being created, or an event seen again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.ids import new_id
from crmsync.common.db.schema import CrmConnection, PushLog
from crmsync.common.domain.contacts import FieldMeta, merge_local_changes
from crmsync.common.domain.fields import EMAIL, STANDARD_FIELDS_BY_KEY
from crmsync.common.domain.push import ContactState, Operation, decide_push
from crmsync.common.kafka.consumer import DeadLetters, Delivery
from crmsync.common.messages import ContactChanged
from crmsync.common.observability.metrics import PUSH_LATENCY
from crmsync.pusher.adapters import store
from crmsync.pusher.adapters.crm import Connectors, CrmWriter, Outcome, find_recent_by_email
from crmsync.pusher.adapters.dead_letters import dead_letter
from crmsync.pusher.handlers.crm_writes import PlannedWrite, log_results, send_writes

log = structlog.get_logger(__name__)

# The external id of a contact whose record is being created in this batch.
_BEING_CREATED = "(being created)"


@dataclass(frozen=True)
class PushContext:
    sessions: async_sessionmaker[AsyncSession]
    # Sessions whose statements each commit on their own, for steps of one statement
    # (or reads): no BEGIN and COMMIT round trips around it.
    autocommit: async_sessionmaker[AsyncSession]
    connectors: Connectors
    writer: CrmWriter
    dead_letters: DeadLetters
    concurrency: int
    reconcile_margin: timedelta
    lanes: int = 1
    configs: store.ConfigCache = field(default_factory=lambda: store.ConfigCache(ttl_s=0))


async def _no_wait() -> None:
    return None


async def apply_contact_changes(
    ctx: PushContext,
    deliveries: Sequence[Delivery[ContactChanged]],
    *,
    before_reconcile: Callable[[], Awaitable[None]] = _no_wait,
) -> AppliedBatch:
    """Step 1 for a batch: returns it applied to the store and logged, its CRM writes still to send.

    Partitions are spread over `ctx.lanes` lanes handled concurrently, each in
    its own transactions: one contact's events share a key, hence a partition
    and a lane, so they stay in order while the lanes overlap their waits on
    the database. `before_reconcile` is awaited before any pending entry is
    reconciled: the batch before may still be writing to the CRM.
    """
    lanes: dict[int, list[Delivery[ContactChanged]]] = {}
    count = lane_count(len(deliveries), ctx.lanes)
    for d in deliveries:
        lanes.setdefault(d.partition % count, []).append(d)
    todo = list(lanes.values())
    pushes: list[_AccountPush] = []
    for attempt in (1, 2):
        # Every lane runs to its end before anything is raised or retried.
        results = await asyncio.gather(
            *(_handle_lane(ctx, lane, before_reconcile) for lane in todo), return_exceptions=True
        )
        pushes += [p for r in results if not isinstance(r, BaseException) for p in r]
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return AppliedBatch(pushes, event_ids=frozenset(d.message.event_id for d in deliveries))
        if attempt == 2 or not _connection_lost(errors):
            raise errors[0]
        # Pooled connections are not pinged before use: one the server dropped fails
        # here. The failed lanes run again: their done events are skipped, their
        # applied ones (logged `pending`) reconciled.
        log.warning("push_batch_retried", reason="database connection lost", error=str(errors[0]))
        todo = [lane for lane, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
    raise AssertionError("unreachable")


def _connection_lost(errors: Sequence[BaseException]) -> bool:
    return all(isinstance(e, DBAPIError) and e.connection_invalidated for e in errors)


@dataclass(frozen=True)
class AppliedBatch:
    """A batch after step 1: in the store and the push log, its CRM writes (steps 2 and 3) to do."""

    pushes: list[_AccountPush]
    event_ids: frozenset[str]

    @property
    def creates(self) -> bool:
        return any(w.operation == "create" for p in self.pushes for w in p.writes)

    def blocks(self, deliveries: Sequence[Delivery[ContactChanged]]) -> bool:
        """True when the next batch must not be applied before this one is pushed.

        A record being created has no CRM id yet: a later event for its contact
        would be decided as for a contact without a record. An event seen again
        would find this batch's `pending` entry and reconcile it while it is
        being written.
        """
        return self.creates or any(d.message.event_id in self.event_ids for d in deliveries)

    async def push(self, ctx: PushContext) -> None:
        """Steps 2 and 3: sends the writes, then records each answer; accounts concurrently."""
        await asyncio.gather(*(p.send(ctx) for p in self.pushes))


# A lane costs its own transactions and CRM requests: below this many events a
# second lane adds round trips rather than overlap.
EVENTS_PER_LANE = 100


def lane_count(events: int, lanes: int) -> int:
    """Returns how many lanes a batch of `events` is spread over, at most `lanes`.

    Any count keeps a partition's events in one lane, hence in order; batches
    are handled one after another.
    """
    return max(1, min(lanes, events // EVENTS_PER_LANE))


async def _handle_lane(
    ctx: PushContext,
    deliveries: Sequence[Delivery[ContactChanged]],
    before_reconcile: Callable[[], Awaitable[None]],
) -> list[_AccountPush]:
    by_account: dict[str, dict[str, Delivery[ContactChanged]]] = {}
    for d in deliveries:
        by_account.setdefault(d.message.account_id, {}).setdefault(d.message.event_id, d)
    # One read for the lane: which accounts exist and which events are already logged.
    async with ctx.autocommit() as session:
        logged = await store.logged_events(session, by_account)
    pushes: list[_AccountPush] = []
    for account_id, events in by_account.items():
        if account_id not in logged:
            for d in events.values():
                await dead_letter(ctx.dead_letters, d, error="account_id: unknown account")
            continue
        entries = logged[account_id]
        pending = [entries[e] for e in events if e in entries and entries[e].status == "pending"]
        fresh = [d for e, d in events.items() if e not in entries]
        if pending:
            await before_reconcile()
            await reconcile(ctx, account_id, pending)
        if fresh and (push := await _apply(ctx, account_id, fresh)) is not None:
            pushes.append(push)
    return pushes


@dataclass
class _AccountPush:
    """One account's part of an applied batch: its planned CRM writes."""

    account_id: str
    connection: CrmConnection
    writes: list[PlannedWrite]
    batch: list[Delivery[ContactChanged]]
    applied_ms: float
    # How long the batch's oldest event waited, from its produce to the start of step 1.
    waited_ms: float

    async def send(self, ctx: PushContext) -> None:
        started = time.perf_counter()
        outcomes = await send_writes(
            connector=ctx.connectors.for_connection(self.connection),
            writer=ctx.writer,
            writes=self.writes,
            concurrency=ctx.concurrency,
            reconcile_margin=ctx.reconcile_margin,
        )
        written = time.perf_counter()
        await _record(ctx, self.account_id, self.writes, outcomes)
        _observe_latency(self.batch)
        log.debug(
            "push_batch",
            account_id=self.account_id,
            events=len(self.batch),
            writes=len(self.writes),
            waited_ms=self.waited_ms,
            apply_ms=self.applied_ms,
            crm_ms=round((written - started) * 1000, 1),
            record_ms=round((time.perf_counter() - written) * 1000, 1),
        )


async def _apply(
    ctx: PushContext, account_id: str, batch: list[Delivery[ContactChanged]]
) -> _AccountPush | None:
    """Applies one account's new events and logs them; returns the CRM writes they call for."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    planned: dict[uuid.UUID, PlannedWrite] = {}
    async with ctx.sessions.begin() as session:
        config = await ctx.configs.get(session, account_id)
        known_fields = set(STANDARD_FIELDS_BY_KEY) | {r.destination for r in config.mapping.rows}
        refs = [d.message.contact for d in batch]
        contacts = await store.find_contacts(
            session,
            account_id=account_id,
            ids=[r.id for r in refs if r.id is not None],
            external_ids=[r.external_id for r in refs if r.external_id is not None],
            emails_lower=[r.email.lower() for r in refs if r.email is not None],
        )
        index = _Index(contacts)
        entries: list[dict[str, Any]] = []
        for d in batch:
            event = d.message
            unknown = sorted(set(event.changes) - known_fields)
            contact = None if unknown else index.find(event)
            error = (
                f"changes.{unknown[0]}: unknown field (neither a standard field nor in the mapping)"
                if unknown
                else _unknown_contact(event)
                if contact is None
                else None
            )
            if error is not None:
                # Logged as skipped too, so a redelivery does not dead-letter it twice.
                await dead_letter(ctx.dead_letters, d, error=error)
                entries.append(
                    _entry(event, contact_id=None, status="skipped", error=("INVALID_EVENT", error))
                )
                continue
            assert contact is not None
            being_created = contact.id in planned and planned[contact.id].operation == "create"
            before = contact.view(event.changes)
            state = (
                ContactState(planned[contact.id].crm_object, _BEING_CREATED, before)
                if being_created
                else ContactState(contact.crm_object, contact.external_id, before)
            )
            merge = merge_local_changes(
                before, event.changes, source=event.source.value, occurred_at=event.occurred_at
            )
            decision = decide_push(
                mapping=config.mapping,
                policy=config.policy,
                contact=state,
                changes=event.changes,
                merge=merge,
                crm_create=event.crm_create.object if event.crm_create else None,
            )
            contact.apply(merge.values, event.changes)
            new_email = merge.values.fields.get(EMAIL)
            if EMAIL in merge.changed and isinstance(new_email, str):
                contact.email = new_email
            if decision.deferred:
                contact.outbound_pending = True
            crm_id = None if decision.crm_id == _BEING_CREATED else decision.crm_id
            entry = _entry(
                event,
                contact_id=contact.id,
                status="skipped",
                operation=decision.operation.value,
                crm_object=decision.crm_object,
                crm_id=crm_id,
                sent_fields=decision.values,
                decisions={k: v.value for k, v in decision.reasons.items()},
            )
            if decision.sends and config.connection is None:
                entry.update(status="failed", error_code="NO_CONNECTION", error_message="no CRM connection")
            elif decision.sends:
                entry["status"] = "pending"
                _plan(
                    planned, contact, decision.operation, decision.crm_object, crm_id, decision.values, event
                )
            entries.append(entry)
        await store.save_contacts(session, index.all(), now=now)
        await store.add_push_log(session, entries)
    if not planned:
        return None
    assert config.connection is not None
    return _AccountPush(
        account_id=account_id,
        connection=config.connection,
        writes=list(planned.values()),
        batch=batch,
        applied_ms=round((time.perf_counter() - started) * 1000, 1),
        waited_ms=round(now.timestamp() * 1000 - min(d.timestamp_ms for d in batch), 1),
    )


def _plan(
    planned: dict[uuid.UUID, PlannedWrite],
    contact: store.StoredContact,
    operation: Operation,
    crm_object: str | None,
    crm_id: str | None,
    values: dict[str, Any],
    event: ContactChanged,
) -> None:
    existing = planned.get(contact.id)
    if existing is not None:
        existing.fold(values, event.event_id)
        return
    assert crm_object is not None
    planned[contact.id] = PlannedWrite(
        contact_id=contact.id,
        operation=operation.value,
        crm_object=crm_object,
        crm_id=crm_id,
        values=dict(values),
        email_lower=contact.email.lower() if contact.email else None,
        event_ids=[event.event_id],
    )


async def _record(
    ctx: PushContext, account_id: str, writes: list[PlannedWrite], outcomes: Sequence[Outcome]
) -> None:
    at = datetime.now(UTC)
    results, links = log_results(account_id=account_id, writes=writes, outcomes=outcomes, at=at)
    for attempt in (1, 2):
        try:
            if links:
                # A created record's id and its entry's success are stored together, or
                # neither: an entry marked done without the id would let a later event create it again.
                async with ctx.sessions.begin() as session:
                    await store.finish_push_log(session, results)
                    await store.link_created(session, links=links, now=at)
            else:
                async with ctx.autocommit() as session:
                    await store.finish_push_log(session, results)
            break
        except DBAPIError as exc:
            # The CRM has answered: what is left is only to record it, on a fresh connection.
            if attempt == 2 or not exc.connection_invalidated:
                raise
            log.warning("push_record_retried", reason="database connection lost", error=str(exc))
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        log.warning("push_failed", account_id=account_id, count=len(failed), first=failed[0])


def _observe_latency(batch: Sequence[Delivery[ContactChanged]]) -> None:
    now_ms = datetime.now(UTC).timestamp() * 1000
    for d in batch:
        PUSH_LATENCY.observe(max(0.0, (now_ms - d.timestamp_ms) / 1000))


def _unknown_contact(event: ContactChanged) -> str:
    ref = event.contact
    return "contact.id: unknown contact" if ref.id is not None else "contact.external_id: unknown CRM record"


def _entry(
    event: ContactChanged,
    *,
    contact_id: uuid.UUID | None,
    status: str,
    operation: str = "none",
    crm_object: str | None = None,
    crm_id: str | None = None,
    sent_fields: dict[str, Any] | None = None,
    decisions: dict[str, Any] | None = None,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "account_id": event.account_id,
        "event_id": event.event_id,
        "source": event.source.value,
        "contact_id": contact_id,
        "crm_object": crm_object,
        "crm_id": crm_id,
        "operation": operation,
        "status": status,
        "sent_fields": sent_fields or {},
        "decisions": decisions or {},
        "error_code": error[0] if error else None,
        "error_message": error[1] if error else None,
        "attempts": 0,
        "occurred_at": event.occurred_at,
    }


class _Index:
    """The batch's contacts by id, external id and e-mail; new ones are added as events need them."""

    def __init__(self, contacts: list[store.StoredContact]) -> None:
        self._all: dict[uuid.UUID, store.StoredContact] = {}
        self._by_external: dict[str, store.StoredContact] = {}
        self._by_email: dict[str, store.StoredContact] = {}
        # Several contacts may share an e-mail (a Lead and a Contact): a CRM Contact
        # is preferred, then a Lead, then a local one; the oldest among equals.
        rank = {"Contact": 0, "Lead": 1, None: 2}
        for c in sorted(contacts, key=lambda c: rank.get(c.crm_object, 2)):
            self._add(c)

    def _add(self, contact: store.StoredContact) -> None:
        self._all[contact.id] = contact
        if contact.external_id:
            self._by_external.setdefault(contact.external_id, contact)
        if contact.email:
            self._by_email.setdefault(contact.email.lower(), contact)

    def all(self) -> list[store.StoredContact]:
        return list(self._all.values())

    def find(self, event: ContactChanged) -> store.StoredContact | None:
        """Returns the event's contact; a new local one for an e-mail nobody has yet."""
        ref = event.contact
        if ref.id is not None:
            return self._all.get(ref.id)
        if ref.external_id is not None:
            return self._by_external.get(ref.external_id)
        assert ref.email is not None
        found = self._by_email.get(ref.email.lower())
        if found is not None:
            return found
        meta = FieldMeta(event.source.value, event.occurred_at)
        contact = store.StoredContact(
            id=new_id(),
            account_id=event.account_id,
            crm_object=None,
            external_id=None,
            email=ref.email,
            fields={EMAIL: ref.email},
            raw_meta={EMAIL: meta.to_json()},
            new=True,
        )
        self._add(contact)
        return contact


# ------------------------------------------------------------------ reconcile


async def reconcile(ctx: PushContext, account_id: str, pending: list[PushLog]) -> None:
    """Finishes events whose CRM write may or may not have happened before a crash.

    Creates: the CRM is searched for a record with the contact's e-mail
    changed since the entry was written; if found, that is the created record,
    else it is created now. Updates: the record is read back; if it already
    holds the intended values nothing is sent, else the values are sent again
    (updates are idempotent by value). Either way the CRM sees one effect.
    """
    async with ctx.sessions() as session:
        config = await store.load_config(session, account_id)
        contacts = {
            c.id: c
            for c in await store.find_contacts(
                session,
                account_id=account_id,
                ids=[p.contact_id for p in pending if p.contact_id is not None],
                external_ids=[],
                emails_lower=[],
            )
        }
    if config.connection is None:
        await _record_all_failed(ctx, account_id, pending, "NO_CONNECTION", "no CRM connection")
        return
    connector = ctx.connectors.for_connection(config.connection)
    pending.sort(key=lambda p: p.id)
    writes: dict[uuid.UUID, PlannedWrite] = {}
    done: list[tuple[PlannedWrite, Outcome]] = []
    creates = [p for p in pending if p.operation == "create" and p.contact_id in contacts]
    by_object: dict[str, list[PushLog]] = {}
    for p in creates:
        by_object.setdefault(p.crm_object or "Lead", []).append(p)
    for crm_object, entries in by_object.items():
        emails = {
            (contacts[p.contact_id].email or "").lower() for p in entries if p.contact_id is not None
        } - {""}
        found = await find_recent_by_email(
            connector,
            crm_object=crm_object,
            emails_lower=emails,
            since=min(p.created_at for p in entries),
            margin=ctx.reconcile_margin,
        )
        for p in entries:
            assert p.contact_id is not None
            contact = contacts[p.contact_id]
            write = PlannedWrite(
                p.contact_id,
                "create",
                crm_object,
                None,
                dict(p.sent_fields),
                (contact.email or "").lower() or None,
                [p.event_id],
            )
            crm_id = found.get(write.email_lower or "")
            if contact.external_id:
                done.append((write, Outcome(True, contact.external_id, 1)))
            elif crm_id is not None:
                done.append((write, Outcome(True, crm_id, 1)))
            else:
                writes[p.contact_id] = write
    for p in pending:
        if p.operation != "update" or p.contact_id not in contacts:
            continue
        contact = contacts[p.contact_id]
        if p.contact_id in writes:
            writes[p.contact_id].fold(dict(p.sent_fields), p.event_id)
            continue
        crm_id = p.crm_id or contact.external_id or _created_id(done, p.contact_id)
        write = PlannedWrite(
            p.contact_id,
            "update",
            p.crm_object or contact.crm_object or "Lead",
            crm_id,
            dict(p.sent_fields),
            None,
            [p.event_id],
        )
        if crm_id is None:
            done.append((write, Outcome(False, None, 1, "NOT_CREATED", "the record was never created")))
            continue
        writes[p.contact_id] = write
    orphans = [p for p in pending if p.contact_id not in contacts]
    updates = [w for w in writes.values() if w.operation == "update"]
    for crm_object in {w.crm_object for w in updates}:
        same = [w for w in updates if w.crm_object == crm_object]
        current = {
            r["Id"]: r
            for r in await connector.get_by_ids(
                crm_object,
                [w.crm_id for w in same if w.crm_id],
                sorted({"Id", *(k for w in same for k in w.values)}),
            )
        }
        for w in same:
            record = current.get(w.crm_id or "")
            if record is None:
                done.append(
                    (w, Outcome(False, w.crm_id, 1, "ENTITY_IS_DELETED", "the record no longer exists"))
                )
                del writes[w.contact_id]
            elif all(record.get(k) == v for k, v in w.values.items()):
                done.append((w, Outcome(True, w.crm_id, 1)))
                del writes[w.contact_id]
    remaining = list(writes.values())
    outcomes = (
        await send_writes(
            connector=connector,
            writer=ctx.writer,
            writes=remaining,
            concurrency=ctx.concurrency,
            reconcile_margin=ctx.reconcile_margin,
        )
        if remaining
        else []
    )
    all_writes = [w for w, _ in done] + remaining
    all_outcomes = [o for _, o in done] + list(outcomes)
    await _record(ctx, account_id, all_writes, all_outcomes)
    if orphans:
        await _record_all_failed(ctx, account_id, orphans, "CONTACT_GONE", "the contact no longer exists")
    log.info("push_reconciled", account_id=account_id, entries=len(pending), resent=len(remaining))


def _created_id(done: list[tuple[PlannedWrite, Outcome]], contact_id: uuid.UUID) -> str | None:
    for write, outcome in done:
        if write.contact_id == contact_id and write.operation == "create" and outcome.success:
            return outcome.crm_id
    return None


async def _record_all_failed(
    ctx: PushContext, account_id: str, entries: list[PushLog], code: str, message: str
) -> None:
    at = datetime.now(UTC)
    results = [
        {
            "account": account_id,
            "event": p.event_id,
            "status": "failed",
            "crm_id": p.crm_id,
            "code": code,
            "message": message,
            "attempts": 0,
            "at": at,
        }
        for p in entries
    ]
    async with ctx.sessions.begin() as session:
        await store.finish_push_log(session, results)
