"""The Dataverse emulator's generator: deterministic from the seed, lazy, bounded in memory, ids carry rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from crmsync.dynamics_emulator.dataset import CHUNK, Dataset, sizes
from crmsync.dynamics_emulator.schema import TABLES
from crmsync.dynamics_emulator.store import CACHED_CHUNKS, Environment

EPOCH = datetime(2026, 11, 2, tzinfo=UTC)


def _env(leads: int = 2500, contacts: int = 1500, seed: int = 5) -> Environment:
    return Environment(Dataset(seed, sizes(leads=leads, contacts=contacts), EPOCH))


def test_the_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    one, again, other = _env(), _env(), _env(seed=6)
    rows = [0, 999, 1000, 2499]
    assert [one.rows("lead").get(r) for r in rows] == [again.rows("lead").get(r) for r in rows]
    assert one.rows("lead").get(7) != other.rows("lead").get(7)


def test_every_record_has_every_column_of_its_table() -> None:
    env = _env()
    for logical, table in TABLES.items():
        record = env.rows(logical).get(0)
        assert record is not None
        assert set(record) == {a.field for a in table.attributes}, logical
        assert record["createdon"] <= record["modifiedon"] <= "2026-11-02T00:00:00Z"


def test_generated_ids_carry_their_row_and_order_like_creation() -> None:
    rows = _env().rows("contact")
    ids = [str(rows.get(r)["contactid"]) for r in range(0, 1500, 97)]  # type: ignore[index]
    assert [rows.row_of(i) for i in ids] == list(range(0, 1500, 97))
    assert ids == sorted(ids)
    assert rows.row_of("00000000-0000-4000-8000-000000000000") is None


def test_references_point_at_records_that_exist() -> None:
    env = _env()
    for row in range(0, 300, 7):
        contact = env.rows("contact").get(row)
        account = contact["_parentcustomerid_value"]  # type: ignore[index]
        assert account is None or env.rows("account").find(str(account)) is not None
        owner = contact["_owninguser_value"]  # type: ignore[index]
        assert env.rows("systemuser").find(str(owner)) is not None


def test_data_looks_real_emails_unique_some_blank_some_opted_out() -> None:
    records = [r for _, r in _env().rows("lead").scan()]
    emails = [r["emailaddress1"] for r in records if r["emailaddress1"]]
    assert len(emails) == len(set(emails)) and 0 < len(records) - len(emails) < len(records) * 0.05
    assert all(str(e).isascii() and "@" in str(e) for e in emails)
    assert 0 < sum(bool(r["donotemail"]) for r in records) < len(records) * 0.2
    assert 0 < sum(bool(r["donotbulkemail"]) for r in records) < len(records) * 0.25
    assert {r["statecode"] for r in records} == {0, 2}


def test_a_million_records_are_ready_at_once_and_memory_stays_bounded() -> None:
    started = time.perf_counter()
    env = _env(leads=1_000_000, contacts=1_000_000)
    assert env.rows("lead").live_count() == 1_000_000
    last = env.rows("lead").get(999_999)
    assert time.perf_counter() - started < 2
    assert last is not None and env.rows("lead").row_of(str(last["leadid"])) == 999_999
    rows = env.rows("contact")
    for row in range(0, (CACHED_CHUNKS + 20) * CHUNK, CHUNK):
        rows.get(row)
    assert len(rows._cache) == CACHED_CHUNKS
    assert rows.get(0) == _env(leads=1_000_000, contacts=1_000_000).rows("contact").get(0)


def test_a_transaction_undoes_every_change_when_it_raises() -> None:
    env = _env()
    before = env.rows("lead").get(3)
    try:
        with env.transaction():
            env.replace("lead", 3, {**before, "firstname": "Changed", "versionnumber": env.next_version()})  # type: ignore[dict-item]
            env.insert(
                "lead",
                {
                    **before,
                    "leadid": "11111111-2222-4333-8444-555555555555",
                    "versionnumber": env.next_version(),
                },
            )  # type: ignore[dict-item]
            env.remove("lead", 4)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    rows = env.rows("lead")
    assert rows.get(3) == before and rows.get(4) is not None
    assert rows.find("11111111-2222-4333-8444-555555555555") is None
    assert rows.live_count() == 2500 and not rows.versions
