"""The database mechanisms every service shares, against the real PostgreSQL.

The session advisory lock (scheduler leadership, one puller per account), the
one loader of an account's configuration (R7, R8), and the unit of work that
owns commit and wakes the outbox.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from crmsync.common.crypto import SecretBox
from crmsync.common.db.account_config import load_account_config, load_mapping
from crmsync.common.db.locks import SessionAdvisoryLock
from crmsync.common.db.schema import (
    Account,
    CrmConnection,
    MappingRowRecord,
    MappingVersion,
    OutboxMessage,
    PushPolicy,
)
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.domain.mapping import default_salesforce_mapping
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.messages import RunSync, SyncKind, SyncReason

pytestmark = pytest.mark.integration


def _unique_key() -> int:
    return uuid.uuid4().int % (2**62)


async def test_session_lock_is_held_by_one_holder_at_a_time(engine) -> None:
    key = _unique_key()
    first, second = SessionAdvisoryLock(engine, key=key), SessionAdvisoryLock(engine, key=key)
    try:
        assert await first.try_acquire()
        assert first.held
        assert not await second.try_acquire()
        assert not second.held
        await first.release()
        assert not first.held
        assert await second.try_acquire()
    finally:
        await first.release()
        await second.release()


async def test_session_lock_by_space_and_name_separates_names(engine) -> None:
    space = _unique_key() % (2**31)
    ada = SessionAdvisoryLock(engine, space=space, name="ada")
    ada_again = SessionAdvisoryLock(engine, space=space, name="ada")
    grace = SessionAdvisoryLock(engine, space=space, name="grace")
    try:
        assert await ada.try_acquire()
        assert await grace.try_acquire()
        assert not await ada_again.try_acquire()
    finally:
        for lock in (ada, ada_again, grace):
            await lock.release()


async def test_session_lock_is_lost_with_its_connection_and_free_for_another(engine) -> None:
    key = _unique_key()
    holder, other = SessionAdvisoryLock(engine, key=key), SessionAdvisoryLock(engine, key=key)
    try:
        assert await holder.try_acquire()
        assert await holder.check()
        # The server ends the holder's backend, as when the process dies or the network drops it.
        async with engine.connect() as admin:
            await admin.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_locks"
                    " where locktype = 'advisory' and objid = (:key & 4294967295) and granted"
                ),
                {"key": key},
            )
            await admin.commit()
        assert not await holder.check()
        assert not holder.held
        assert await other.try_acquire()
    finally:
        await holder.release()
        await other.release()


def test_session_lock_needs_a_key_or_a_space_and_name(engine) -> None:
    with pytest.raises(ValueError):
        SessionAdvisoryLock(engine)
    with pytest.raises(ValueError):
        SessionAdvisoryLock(engine, key=1, space=2, name="x")
    with pytest.raises(ValueError):
        SessionAdvisoryLock(engine, space=2)


async def test_r7_r8_an_account_with_nothing_saved_gets_the_default_mapping_and_two_way_policy(
    sessions, account_id
) -> None:
    async with sessions() as session:
        config = await load_account_config(session, account_id=account_id)
        assert await load_mapping(session, account_id=account_id) is None
    assert config.mapping == default_salesforce_mapping()
    assert config.policy.default_allow_push is True
    assert config.connection is None


async def test_the_loader_returns_the_newest_saved_mapping_policy_and_connection(
    sessions, account_id, settings
) -> None:
    async with sessions.begin() as session:
        for version, title_source in ((1, "Title"), (2, "Department")):
            record = MappingVersion(account_id=account_id, version=version, note=f"v{version}")
            session.add(record)
            await session.flush()
            session.add(
                MappingRowRecord(
                    account_id=account_id, mapping_version_id=record.id, position=0,
                    destination="job_title", kind="standard", data_type="text",
                    lead_source=title_source, contact_source=None, allow_push=False,
                )
            )
        session.add(PushPolicy(account_id=account_id, default_allow_push=False))
        session.add(
            CrmConnection(
                account_id=account_id, login_url="http://127.0.0.1:1", auth_method="client_credentials",
                client_id="client",
                secrets_encrypted=SecretBox(settings.secret_key.get_secret_value()).seal({"client_secret": "s"}),
            )
        )
    async with sessions() as session:
        config = await load_account_config(session, account_id=account_id)
        first = await load_mapping(session, account_id=account_id, version=1)
    assert config.mapping.version == 2
    assert [(r.destination, r.lead_source, r.allow_push) for r in config.mapping.rows] == [
        ("job_title", "Department", False)
    ]
    assert first is not None and first.note == "v1" and first.rows[0].lead_source == "Title"
    assert config.policy.default_allow_push is False
    assert config.connection is not None
    assert (config.connection.account_id, config.connection.client_id) == (account_id, "client")


def _job(account_id: str) -> RunSync:
    return RunSync(
        job_id=f"{account_id}:{uuid.uuid4().hex}", account_id=account_id, kind=SyncKind.FULL,
        reason=SyncReason.SYNC_NOW, requested_at="2026-12-01T10:00:00Z",
    )


async def test_unit_of_work_commits_and_wakes_the_outbox_only_after_writing_to_it(sessions) -> None:
    wakes: list[int] = []
    uow = UnitOfWork(sessions, wake_outbox=lambda: wakes.append(1))
    account = f"t-{uuid.uuid4().hex[:12]}"
    async with uow.begin() as session:
        session.add(Account(id=account, name="no outbox"))
    assert wakes == []
    async with uow.begin() as session:
        enqueue(session, account_id=account, topic="sync-jobs", key=account, message=_job(account))
        assert wakes == []  # not before the commit
    assert wakes == [1]
    async with uow.read() as session:
        assert await session.scalar(select(Account.id).where(Account.id == account)) == account
        assert len((await session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account))).all()) == 1


async def test_unit_of_work_rolls_back_on_error_and_wakes_nothing(sessions) -> None:
    wakes: list[int] = []
    uow = UnitOfWork(sessions, wake_outbox=lambda: wakes.append(1))
    account = f"t-{uuid.uuid4().hex[:12]}"
    with pytest.raises(RuntimeError):
        async with uow.begin() as session:
            session.add(Account(id=account, name="rolled back"))
            enqueue(session, account_id=account, topic="sync-jobs", key=account, message=_job(account))
            await session.flush()
            raise RuntimeError("the use case failed")
    assert wakes == []
    async with uow.read() as session:
        assert await session.scalar(select(Account.id).where(Account.id == account)) is None
