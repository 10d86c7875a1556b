"""Puller throughput: full sync of N CRM records into Postgres, incremental syncs and a full re-sync over that store.

    .venv/bin/python -m bench.puller_bench [--records 1000000] [--changes 100,1000,10000]

The CRM side is an in-process connector that generates Salesforce-shaped
records (half Leads, half Contacts, the default mapping's fields, Owner and
Account relationships) as fast as they are asked for, so the figures are the
puller's own cost (mapping, merge rules, batched upserts in their
transactions) and not the CRM's. The baseline is the machine's limit for the
same work: PostgreSQL COPY of the same mapped rows (same JSON values and
per-field metadata) into the contacts table as it was before search moved out
of it (a stored search column with its trigram index, the account foreign key),
measured in the same run. A second COPY goes into the contacts table with no
search at all (the floor), a third into the store's contacts table as a first
load writes it, followed by the build of the account's search entries (what
the design costs without the puller). Search latency is the mapping-api's
contact query (name, e-mail, company) over All Contacts, right after the full
sync and again at the end, term by term in turn with the query as it was over
the same rows in the old table.
Peak memory is the process's maximum resident set while the puller runs.

A scratch database is created beside DATABASE_URL's, migrated, and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text

from bench.machine import machine
from crmsync.common.crm.interface import ApiBudget, ChangeBatch, CrmField, ObjectDescribe
from crmsync.common.crm.roles import RecordRoles
from crmsync.common.crm.salesforce._roles import SALESFORCE_ROLES
from crmsync.common.db.ids import new_id
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.domain.contacts import ContactValues, merge_from_crm
from crmsync.common.domain.mapping import default_salesforce_mapping
from crmsync.common.messages import RunSync, SyncKind, SyncReason
from crmsync.common.service import tune_collector
from crmsync.mapping_api.adapters.contacts import PostgresContacts
from crmsync.mapping_api.values import ContactQuery
from crmsync.puller.adapters import contact_rows
from crmsync.puller.adapters.contact_store import COPY_COLUMNS, build_search
from crmsync.puller.adapters.runs import claim_next_run, record_job
from crmsync.puller.bootstrap import sync_runner
from crmsync.puller.handlers.crm_records import map_record
from crmsync.puller.settings import Settings
from tests.support.databases import asyncpg_dsn, scratch_database

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LEAD_FIELDS = (
    "Email FirstName LastName Company Title Phone MobilePhone Street City State PostalCode Country "
    "Website Industry LeadSource Status HasOptedOutOfEmail Marketing_Score__c"
).split()
CONTACT_FIELDS = (
    "Email FirstName LastName Title Phone MobilePhone MailingStreet MailingCity MailingState "
    "MailingPostalCode MailingCountry LeadSource HasOptedOutOfEmail Marketing_Score__c AccountId"
).split()
CITIES = ("Lisbon", "Austin", "Osaka", "Lagos", "Lima", "Oslo", "Pune", "Perth")


def record(entity: str, n: int, *, stamp: datetime, version: int = 0) -> dict[str, Any]:
    """Returns the n-th generated record of the entity, as the connector would yield it."""
    prefix = "00Q" if entity == "Lead" else "003"
    base: dict[str, Any] = {
        "Id": f"{prefix}{n:015d}",
        "SystemModstamp": stamp,
        "Email": f"person{n}.{entity.lower()}@example.com",
        "FirstName": f"First{n}",
        "LastName": f"Last{n}v{version}",
        "Title": "Engineer",
        "Phone": f"(555) 555-{n % 10000:04d}",
        "MobilePhone": None,
        "LeadSource": "Web",
        "HasOptedOutOfEmail": n % 17 == 0,
        "Marketing_Score__c": float(n % 100),
        "OwnerId": f"005{n % 20:015d}",
        "Owner": {"Name": f"Owner {n % 20}", "Email": f"owner{n % 20}@example.com"},
    }
    city = CITIES[n % len(CITIES)]
    if entity == "Lead":
        base |= {
            "Company": f"Company {n % 5000}",
            "Street": f"{n} Main St",
            "City": city,
            "State": None,
            "PostalCode": f"{n % 99999:05d}",
            "Country": "Portugal",
            "Website": f"www.company{n % 5000}.example.com",
            "Industry": "Energy",
            "Status": "Open - Not Contacted",
            "IsConverted": False,
            "ConvertedContactId": None,
        }
    else:
        base |= {
            "MailingStreet": f"{n} Hill St",
            "MailingCity": city,
            "MailingState": None,
            "MailingPostalCode": f"{n % 99999:05d}",
            "MailingCountry": "Portugal",
            "AccountId": f"001{n % 5000:015d}",
            "Account": {"Name": f"Account {n % 5000}"},
        }
    return base


class GeneratedCrm:
    """A CrmConnector over generated records: `size` per entity, `changed` ids changed after the full."""

    def __init__(self, *, per_entity: int, changed: Sequence[int] = (), change_stamp: datetime | None = None):
        self.per_entity = per_entity
        self.changed = changed
        self.change_stamp = change_stamp or T0

    async def describe(self, object_name: str) -> ObjectDescribe:
        names = {
            "Lead": [*LEAD_FIELDS, "Id", "SystemModstamp", "OwnerId", "IsConverted", "ConvertedContactId"],
            "Contact": [*CONTACT_FIELDS, "Id", "SystemModstamp", "OwnerId"],
        }.get(object_name)
        if names is None:
            from crmsync.common.crm.interface import CrmRejected

            raise CrmRejected(f"sObject type '{object_name}' is not supported", error_code="NOT_FOUND")
        return ObjectDescribe(object_name, object_name, {n: CrmField(n, n, "string") for n in names})

    async def count(self, object_name: str) -> int:
        return self.per_entity

    @property
    def roles(self) -> RecordRoles:
        return SALESFORCE_ROLES

    async def changes(
        self, object_name: str, fields: Sequence[str], cursor: str | None, *, page_size: int = 2000
    ) -> AsyncIterator[ChangeBatch]:
        """cursor None: every record; a cursor: the `changed` ids. The last batch carries a cursor."""
        if object_name not in ("Lead", "Contact"):
            yield ChangeBatch([], [], "end")
            return
        if cursor is None:
            ids: Sequence[int] = range(self.per_entity)
            stamp = None
        else:
            ids, stamp = sorted(self.changed), self.change_stamp
        for start in range(0, len(ids), page_size):
            chunk = ids[start : start + page_size]
            records = [
                record(
                    object_name, n, stamp=stamp or T0 + timedelta(seconds=n % 3600), version=int(bool(stamp))
                )
                for n in chunk
            ]
            yield ChangeBatch(records, [], "end" if start + page_size >= len(ids) else None)
        if not ids:
            yield ChangeBatch([], [], "end")

    async def get_by_ids(
        self, object_name: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        return []

    async def budget(self) -> ApiBudget:
        return ApiBudget(used=0, limit=1_000_000)

    async def aclose(self) -> None:
        return None


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _wal_position(sessions) -> int:
    """Returns the server's WAL position in bytes: the difference of two is the WAL written between."""
    async with sessions() as session:
        return int(await session.scalar(text("select pg_current_wal_lsn() - '0/0'::pg_lsn")))


# The bench process's CPU seconds (the puller, and the generated CRM in it) during the last sync.
LAST_CPU_S = [0.0]


async def _run(
    sessions, settings: Settings, crm: GeneratedCrm, account_id: str, kind: str
) -> tuple[float, Any, float]:
    """Runs one sync; returns its seconds, its sync_runs row and the WAL it wrote (MiB)."""
    job = RunSync(
        job_id=f"{account_id}:{kind}:{uuid.uuid4().hex[:8]}",
        account_id=account_id,
        kind=SyncKind(kind),
        reason=SyncReason.SYNC_NOW,
        requested_at=datetime.now(UTC),
    )
    async with sessions.begin() as session:
        await record_job(session, job=job)
    runner = sync_runner(sessions=sessions, crm_factory=lambda _: crm, settings=settings)
    async with sessions.begin() as session:
        run = await claim_next_run(session, account_id=account_id)
    wal_before = await _wal_position(sessions)
    started, cpu_before = time.perf_counter(), time.process_time()
    status = await runner.execute(run)
    elapsed = time.perf_counter() - started
    LAST_CPU_S[0] = time.process_time() - cpu_before
    wal_mib = (await _wal_position(sessions) - wal_before) / 2**20
    assert status == "succeeded", status
    async with sessions() as session:
        row = (
            (await session.execute(text("select * from sync_runs where id = :id"), {"id": run.id}))
            .mappings()
            .one()
        )
    return elapsed, row, wal_mib


# The contacts table as it was before search moved out of it: a stored search column with
# its trigram index (migration 0001). The baseline is COPY into that table.
TODAY = (
    "create table contacts_today (like contacts including all)",
    "alter table contacts_today add column search_text text generated always as "
    "(lower(coalesce(email, '') || ' ' || coalesce(fields->>'first_name', '') || ' ' || "
    "coalesce(fields->>'last_name', '') || ' ' || coalesce(fields->>'company', ''))) stored",
    "create index on contacts_today using gin (search_text gin_trgm_ops)",
    # LIKE copies no foreign key; the contacts table checks its account on every row.
    "alter table contacts_today add foreign key (account_id) references accounts (id) on delete cascade",
)
# The contacts table without any search: the floor.
UNINDEXED = (
    "create table contacts_unindexed (like contacts including all)",
    "alter table contacts_unindexed add foreign key (account_id) references accounts (id) on delete cascade",
)


async def _copy_baseline(
    dsn: str, account_id: str, per_entity: int, *, table: str = "contacts", build: bool = False
) -> float:
    """Returns the seconds PostgreSQL COPY takes for the same mapped rows (preparing them is not timed).

    `build`: into the store's contacts table as a first load writes them (no search entry
    per row), then the account's search entries built as the end of that sync builds them.
    """
    mapping = default_salesforce_mapping()
    run_id = uuid.uuid4()

    def chunk(entity: str, start: int, stop: int) -> list[tuple[Any, ...]]:
        out = []
        for n in range(start, stop):
            mapped = map_record(
                mapping=mapping,
                roles=SALESFORCE_ROLES,
                entity=entity,
                record=record(entity, n, stamp=T0 + timedelta(seconds=n % 3600)),
            )
            merged = merge_from_crm(ContactValues(), mapped.values, modstamp=mapped.modstamp).values
            out.append(
                (
                    new_id(),
                    account_id,
                    entity,
                    mapped.external_id,
                    mapped.values.get("email"),
                    orjson.dumps(merged.fields).decode(),
                    orjson.dumps(merged.stored_meta(mapped.modstamp)).decode(),
                    mapped.modstamp,
                    mapped.account_external_id,
                    mapped.owner_external_id,
                    None,
                    run_id,
                )
            )
        return out

    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda value: b"\x01" + value.encode(),
            decoder=lambda value: value[1:].decode(),
            schema="pg_catalog",
            format="binary",
        )
        elapsed = 0.0
        step = 20_000
        for entity in ("Lead", "Contact"):
            for start in range(0, per_entity, step):
                rows = chunk(entity, start, min(start + step, per_entity))
                began = time.perf_counter()
                async with conn.transaction():
                    if build:
                        await conn.execute(contact_rows.SEARCH_PENDING, account_id)
                        await conn.execute(contact_rows.SEARCH_DEFERRED, "on")
                    await conn.copy_records_to_table(table, records=rows, columns=COPY_COLUMNS)
                elapsed += time.perf_counter() - began
        if build:
            began = time.perf_counter()
            async with conn.transaction():
                assert await build_search(conn, account_id)
            elapsed += time.perf_counter() - began
        return elapsed
    finally:
        await conn.close()


SEARCH_REPEATS = 40


def _terms(per_entity: int) -> dict[str, list[str]]:
    step = max(1, per_entity // SEARCH_REPEATS)
    return {
        "name": [f"last{n}v" for n in range(7, per_entity, step)][:SEARCH_REPEATS],
        "email": [f"person{n}.contact@" for n in range(11, per_entity, step)][:SEARCH_REPEATS],
        "company": [f"company {n % 5000}" for n in range(13, per_entity, step)][:SEARCH_REPEATS],
    }


def _percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=100, method="inclusive")[-1]


async def _search_latency(sessions, account_id: str, per_entity: int) -> dict[str, tuple[float, float, int]]:
    """Returns p50 and p99 ms (and the rows found) of the mapping-api's search over All Contacts, by kind of term."""
    out = {}
    async with sessions() as session:
        store = PostgresContacts(session)
        for kind, queries in _terms(per_entity).items():
            await store.page(account_id, ContactQuery(None, queries[0], None, 50))  # warm-up
            times, found = [], 0
            for q in queries:
                began = time.perf_counter()
                found += len(await store.page(account_id, ContactQuery(None, q, None, 50)))
                times.append((time.perf_counter() - began) * 1000)
            out[kind] = (*_percentiles(times), found // len(times))
    return out


# The search as it was: the stored column of the contacts table and its trigram index.
SEARCH_AS_IT_WAS = (
    "select * from contacts_today where account_id = $1 and search_text like '%' || $2 || '%' "
    "order by id limit 50"
)


async def _search_paired(sessions, dsn: str, per_entity: int) -> dict[str, tuple[float, float, float, float]]:
    """Returns p50 and p99 ms of the store's search ('bench') and of the search as it was over the same
    rows ('copy' in contacts_today), term by term in turn, so that both meet the same machine."""
    conn = await asyncpg.connect(dsn)
    out = {}
    try:
        async with sessions() as session:
            store = PostgresContacts(session)
            for kind, queries in _terms(per_entity).items():
                await store.page("bench", ContactQuery(None, queries[0], None, 50))
                await conn.fetch(SEARCH_AS_IT_WAS, "copy", queries[0])
                now, then = [], []
                for q in queries:
                    began = time.perf_counter()
                    await store.page("bench", ContactQuery(None, q, None, 50))
                    now.append((time.perf_counter() - began) * 1000)
                    began = time.perf_counter()
                    await conn.fetch(SEARCH_AS_IT_WAS, "copy", q)
                    then.append((time.perf_counter() - began) * 1000)
                out[kind] = (*_percentiles(now), *_percentiles(then))
    finally:
        await conn.close()
    return out


async def bench(records: int, changes: list[int]) -> None:
    async with scratch_database(Settings().database_url, label="puller", prefix="crmsync_bench") as url:
        settings = Settings(database_url=url, log_json=False)
        engine = create_engine(settings, pool_size=4)
        sessions = create_sessionmaker(engine)
        async with engine.begin() as conn:
            for account in ("bench", "copy"):
                await conn.execute(text("insert into accounts (id, name) values (:a, :a)"), {"a": account})
            await conn.execute(
                text(
                    "insert into crm_connections (account_id, login_url, auth_method, client_id, secrets_encrypted) "
                    "values ('bench', 'http://crm.invalid', 'client_credentials', 'c', '\\x00')"
                )
            )
        per_entity = records // 2
        tune_collector(young_threshold=settings.gc_young_threshold)  # as the puller service does
        sys.setswitchinterval(settings.puller_switch_interval_ms / 1000)  # and this too
        print(f"machine: {machine()}")
        print(f"records: {records:,} ({per_entity:,} Leads + {per_entity:,} Contacts), batch 2000")

        full_s, full_run, full_wal = await _run(
            sessions, settings, GeneratedCrm(per_entity=per_entity), "bench", "full"
        )
        full_rss = peak_rss_mib()
        print(
            f"full sync:        {full_s:8.2f} s  {records / full_s:10,.0f} records/s  "
            f"(created {full_run['created']:,}, peak RSS {full_rss:.0f} MiB, WAL {full_wal:,.0f} MiB, "
            f"bench process CPU {LAST_CPU_S[0]:.1f} s)"
        )
        for kind, (p50, p99, found) in (await _search_latency(sessions, "bench", per_entity)).items():
            print(
                f"search {kind:8s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                f"({SEARCH_REPEATS} terms, {found} rows each on average, limit 50, over {records:,} contacts)"
            )
        for count in changes:
            stamp = datetime.now(UTC) + timedelta(minutes=len(changes))
            ids = range(0, per_entity, max(1, per_entity // max(1, count // 2)))[: count // 2]
            crm = GeneratedCrm(per_entity=per_entity, changed=list(ids), change_stamp=stamp)
            inc_s, inc_run, inc_wal = await _run(sessions, settings, crm, "bench", "incremental")
            print(
                f"incremental {count:>6,}: {inc_s:8.3f} s  {count / inc_s:10,.0f} changes/s  "
                f"(updated {inc_run['updated']:,} over a store of {records:,}, WAL {inc_wal:,.1f} MiB)"
            )
        # The full sync that comes every 14 days: every record again, over a store
        # that has them all, nearly all unchanged; then the sweep for deletions (R16).
        resync_s, resync_run, resync_wal = await _run(
            sessions, settings, GeneratedCrm(per_entity=per_entity), "bench", "full"
        )
        print(
            f"full re-sync:     {resync_s:8.2f} s  {records / resync_s:10,.0f} records/s  "
            f"(over the full store: updated {resync_run['updated']:,}, unchanged "
            f"{resync_run['skipped']:,}, deleted {resync_run['deleted']:,}, WAL {resync_wal:,.0f} MiB)"
        )
        puller_rss = peak_rss_mib()
        async with engine.begin() as conn:
            for statement in (*TODAY, *UNINDEXED):
                await conn.execute(text(statement))
        dsn = asyncpg_dsn(url)
        copy_s = await _copy_baseline(dsn, "copy", per_entity, table="contacts_today")
        print(
            f"baseline COPY:    {copy_s:8.2f} s  {records / copy_s:10,.0f} records/s  "
            "(same mapped rows, into the contacts table as it was, with its trigram search index)"
        )
        async with engine.begin() as conn:
            await conn.execute(text("analyze contacts_today"))  # for the search as it was, below
        bare_s = await _copy_baseline(dsn, "copy", per_entity, table="contacts_unindexed")
        print(
            f"COPY, no search:  {bare_s:8.2f} s  {records / bare_s:10,.0f} records/s  "
            "(same rows, the contacts table, no search entries at all)"
        )
        built_s = await _copy_baseline(dsn, "copy", per_entity, build=True)
        print(
            f"COPY + build:     {built_s:8.2f} s  {records / built_s:10,.0f} records/s  "
            "(same rows into the store's contacts, then the account's search entries built)"
        )
        for kind, (p50, p99, was50, was99) in (await _search_paired(sessions, dsn, per_entity)).items():
            print(
                f"search {kind:8s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                f"(as it was, over the same rows, in turn: p50 {was50:.1f} ms, p99 {was99:.1f} ms)"
            )
        print(f"full sync / COPY: {full_s / copy_s:.2f}x")
        print(f"puller peak RSS:  {puller_rss:.0f} MiB")
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.puller_bench", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changes", default="100,1000,10000")
    args = parser.parse_args()
    asyncio.run(bench(args.records, [int(c) for c in args.changes.split(",")]))


if __name__ == "__main__":
    main()
