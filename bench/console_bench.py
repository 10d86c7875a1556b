"""Admin console latency: every console page at 200,000 contacts, beside /healthz and the JSON API.

    .venv/bin/python -m bench.console_bench [--contacts 200000] [--requests 40] [--explain]

In a scratch database beside CRMSYNC_DATABASE_URL's, one account gets
`--contacts` contacts (45 % Leads, 45 % Contacts, 10 % local-only, names,
companies and e-mails drawn from small pools so a search finds a realistic
share), a few hundred sync runs and 20,000 push log entries, written with
COPY, then vacuumed and analyzed as autovacuum leaves a table after a bulk
insert (so counts may read the index alone). The mapping-api runs as its own process (`crmsync-mapping-api`, as in
production) against a 50 + 50 record emulator org; the bench signs in to the
console once and requests each page `--requests` times in turn, one request at
a time, after one warm-up request each. The baseline, measured in the same
run the same way: `/healthz` (no database) and the JSON API's call reading the
same rows as each contacts page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from bench.machine import machine
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.settings import CommonSettings
from crmsync.mapping_api.bootstrap import transactions
from crmsync.mapping_api.handlers.admin import create_account, create_api_key
from crmsync.puller.adapters.contact_store import COPY_COLUMNS
from tests.support.connections import add_connection
from tests.support.databases import asyncpg_dsn, scratch_database
from tests.support.emulator import CrmOrg
from tests.support.emulator import _org as emulator_org
from tests.support.processes import answers, free_port, service_env, start_emulator, start_service, wait_until

ACCOUNT = "bench-console"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
T0 = datetime(2026, 11, 1, tzinfo=UTC)
FIRST = "Ada Grace Alan Edsger Barbara Donald Frances Ken Margaret Linus Radia Tim Hedy Claude John".split()
LAST = [
    f"{stem}{suffix}"
    for stem in "Lovelace Hopper Turing Dijkstra Liskov Knuth Allen Thompson".split()
    for suffix in ("", "son", "berg", "ford", "ley")
]
COMPANIES = [
    f"{word} {kind}"
    for word in "Acme Globex Initech Umbrella Hooli Soylent Vandelay Wonka Stark".split()
    for kind in ("Labs", "Corp", "Systems", "Foods", "Logistics", "Media", "Bank", "Energy")
]
CITIES = ("Lisbon", "Austin", "Osaka", "Lagos", "Lima", "Oslo", "Pune", "Perth")


def contact_row(n: int) -> tuple[Any, ...]:
    """Returns contact n as the puller's COPY writes it (CRM values: the modstamp implies their metadata)."""
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
    company = COMPANIES[(n * 7) % len(COMPANIES)]
    email = f"{first}.{last}.{n}@{company.split()[0].lower()}.example.com".lower()
    crm_object = (None, "Lead", "Contact")[0 if n % 10 == 0 else 1 + n % 2]
    fields = {
        "email": email,
        "first_name": first,
        "last_name": last,
        "company": company,
        "job_title": ("Engineer", "Director", "Analyst", "Buyer")[n % 4],
        "business_phone": f"+1 555 {n:07d}",
        "city": CITIES[n % len(CITIES)],
        "country": "US",
        "score": n % 100,
        "opted_out": n % 37 == 0,
    }
    external_id = None if crm_object is None else f"{'00Q' if crm_object == 'Lead' else '003'}{n:015d}"
    modstamp = None if crm_object is None else T0 + timedelta(seconds=n)
    meta = {} if crm_object else {"email": {"origin": "form", "at": T0.isoformat()}}
    owner = None if crm_object is None else f"005{n % 20:015d}"
    return (
        uuid.uuid4(),
        ACCOUNT,
        crm_object,
        external_id,
        email,
        orjson.dumps(fields).decode(),
        orjson.dumps(meta).decode(),
        modstamp,
        None,
        owner,
        None,
        None,
    )


async def seed(dsn: str, contacts: int) -> dict[str, str]:
    """Writes the contacts, owners, runs and push log; returns search terms and one contact's id."""
    conn = await asyncpg.connect(dsn)
    try:
        step = 20_000
        ids: list[uuid.UUID] = []
        for start in range(0, contacts, step):
            rows = [contact_row(n) for n in range(start, min(start + step, contacts))]
            ids += [r[0] for r in rows[::97]]
            await conn.copy_records_to_table("contacts", records=rows, columns=COPY_COLUMNS)
        await conn.copy_records_to_table(
            "crm_owners",
            records=[(ACCOUNT, f"005{i:015d}", f"Owner {i}", f"owner{i}@example.com") for i in range(20)],
            columns=("account_id", "external_id", "name", "email"),
        )
        await conn.execute(
            """
            insert into sync_runs (id, account_id, job_id, kind, reason, status, requested_at, started_at,
                                   finished_at, created_at, pulled)
            select gen_random_uuid(), $1, 'done-' || n, case when n % 50 = 0 then 'full' else 'incremental' end,
                   'schedule', case when n % 40 = 0 then 'failed' else 'succeeded' end, at, at,
                   at + interval '1 minute', at, 100
            from (select n, now() - n * interval '15 minutes' as at from generate_series(1, 500) n) s
            """,
            ACCOUNT,
        )
        statuses = ["succeeded"] * 16 + ["waiting", "failed", "skipped", "pending"]
        await conn.copy_records_to_table(
            "push_log",
            records=[
                (
                    ACCOUNT,
                    f"event-{i}",
                    "form",
                    ids[i % len(ids)],
                    "update",
                    statuses[i % len(statuses)],
                    orjson.dumps({"job_title": "Engineer"}).decode(),
                    "UNABLE_TO_LOCK_ROW" if statuses[i % len(statuses)] in ("waiting", "failed") else None,
                    T0 + timedelta(seconds=i),
                    T0 + timedelta(seconds=i),
                )
                for i in range(20_000)
            ],
            columns=(
                "account_id",
                "event_id",
                "source",
                "contact_id",
                "operation",
                "status",
                "sent_fields",
                "error_code",
                "created_at",
                "updated_at",
            ),
        )
        for table in ("contacts", "crm_owners", "sync_runs", "push_log"):
            await conn.execute(f"vacuum (analyze) {table}")
        middle = contact_row(contacts // 2)
        return {
            "contact": str(ids[len(ids) // 2]),
            "name": LAST[3].lower(),
            "email": middle[4],
            "company": COMPANIES[5],
        }
    finally:
        await conn.close()


EXPLAINED = {
    "segment counts": "select crm_object, count(*) from contacts where account_id = $1 group by crm_object",
    "search": (
        "select * from contacts where account_id = $1 and search_text like '%' || $2 || '%' "
        "order by id limit 51"
    ),
}


async def explain(dsn: str, terms: dict[str, str]) -> None:
    """Prints the plans of the contacts pages' queries, as the contact store's adapter sends them."""
    conn = await asyncpg.connect(dsn)
    try:
        for label, sql in EXPLAINED.items():
            for term in [terms[k] for k in ("name", "email", "company")] if "$2" in sql else [None]:
                args = (ACCOUNT, term.lower()) if term else (ACCOUNT,)
                plan = await conn.fetch(f"explain (analyze, buffers) {sql}", *args)
                print(f"\n-- {label}{f' {term!r}' if term else ''}")
                print("\n".join(row[0] for row in plan))
    finally:
        await conn.close()


def timed(client: httpx.Client, path: str, requests: int) -> list[float]:
    """Returns the milliseconds of each GET of `path` after one warm-up (every answer must be 200)."""
    times = []
    for i in range(requests + 1):
        began = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}: {response.text[-500:]}")
        if i:
            times.append(elapsed)
    return times


def sign_in(client: httpx.Client, key: str) -> None:
    token = CSRF.search(client.get("/console/sign-in").text)
    assert token is not None, "the sign-in page has no CSRF token"
    done = client.post("/console/sign-in", data={"api_key": key, "csrf_token": token.group(1)})
    if done.status_code != 303:
        raise SystemExit(f"sign-in answered {done.status_code}: {done.text[-500:]}")


def pages(terms: dict[str, str]) -> Iterator[tuple[str, str, str | None]]:
    """Yields (label, console path, the JSON API's path reading the same rows or None)."""
    q = {k: httpx.QueryParams({"q": v}) for k, v in terms.items()}
    yield "mapping", "/console/mapping", "/v1/mapping"
    yield "schedule", "/console/schedule", "/v1/schedule"
    yield "contacts list", "/console/contacts", "/v1/contacts?limit=50"
    for by in ("name", "email", "company"):
        yield f"search by {by}", f"/console/contacts?{q[by]}", f"/v1/contacts?limit=50&{q[by]}"
    yield "contact page", f"/console/contacts/{terms['contact']}", f"/v1/contacts/{terms['contact']}"
    yield "connection", "/console/connection", "/v1/connection"
    yield "entities", "/console/entities", None
    yield "sync health", "/console/health", "/v1/sync-runs?limit=20"


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.1f} {p95:7.1f} {ordered[-1]:7.1f}"


async def prepare(
    url: str, settings: CommonSettings, org: CrmOrg, contacts: int, explain_plans: bool
) -> tuple[str, dict[str, str]]:
    """Creates the account, its admin key and connection, and seeds; returns the key and search terms."""
    engine = create_engine(settings.model_copy(update={"database_url": url}), pool_size=2)
    try:
        sessions = create_sessionmaker(engine)
        tx = transactions(sessions)
        await create_account(tx, name="Console bench", account_id=ACCOUNT)
        key = await create_api_key(tx, account_id=ACCOUNT, role="admin")
        async with sessions.begin() as session:
            add_connection(session, settings=settings, account_id=ACCOUNT, org=org, status="connected")
    finally:
        await engine.dispose()
    began = time.perf_counter()
    terms = await seed(asyncpg_dsn(url), contacts)
    print(
        f"seeded {contacts:,} contacts, 500 runs, 20,000 push log entries in {time.perf_counter() - began:.1f} s"
    )
    if explain_plans:
        await explain(asyncpg_dsn(url), terms)
    return key, terms


def measure(base_url: str, key: str, terms: dict[str, str], requests: int) -> None:
    print(f"{requests} requests per page, one at a time, after one warm-up; ms")
    print(
        f"{'page':<17} {'p50':>7} {'p95':>7} {'max':>7}   {'JSON API call (same rows)':<44} {'p50':>7} {'p95':>7} {'max':>7}"
    )
    with httpx.Client(base_url=base_url, timeout=30) as api:
        health = timed(api, "/healthz", requests)
        print(f"{'/healthz':<17} {summary(health)}   (baseline: no database)")
        api.headers["Authorization"] = f"Bearer {key}"
        with httpx.Client(base_url=base_url, timeout=30) as console:
            sign_in(console, key)
            over = []
            for label, path, json_path in pages(terms):
                page = timed(console, path, requests)
                line = f"{label:<17} {summary(page)}"
                if json_path is not None:
                    line += f"   {json_path[:44]:<44} {summary(timed(api, json_path, requests))}"
                print(line, flush=True)
                if max(page) > 300:
                    over.append(label)
    print(f"pages with a request over 300 ms: {', '.join(over) or 'none'}")


def bench(contacts: int, requests: int, explain_plans: bool) -> None:
    settings = CommonSettings(log_json=False)
    print(f"machine: {machine(with_load=True)}")
    client_id, client_secret = "crmsync-bench", "crmsync-bench-secret"
    emulator = start_emulator(leads=50, contacts=50, seed=7, client_id=client_id, client_secret=client_secret)
    with emulator, httpx.Client(base_url=emulator.base_url, timeout=30) as http:
        org = emulator_org(http.get("/__emulator/orgs").json()[0], http)

        async def scratch() -> None:
            async with scratch_database(
                settings.database_url, label="console", prefix="crmsync_bench"
            ) as url:
                key, terms = await prepare(url, settings, org, contacts, explain_plans)
                await asyncio.to_thread(serve_and_measure, url, settings, key, terms, requests)

        asyncio.run(scratch())
    print(f"machine after: {machine(with_load=True)}")


def serve_and_measure(
    url: str, settings: CommonSettings, key: str, terms: dict[str, str], requests: int
) -> None:
    port = free_port()
    env = service_env(
        settings.model_copy(update={"database_url": url, "topic_prefix": f"bench-console-{os.getpid()}."}),
        CRMSYNC_HTTP_PORT=str(port),
        CRMSYNC_LOG_JSON="false",
    )
    with start_service("crmsync.mapping_api", env=env) as api:
        base_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: answers(f"{base_url}/readyz"), timeout=60, what="the mapping-api to be ready", process=api
        )
        measure(base_url, key, terms, requests)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console_bench", description=__doc__)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--explain", action="store_true", help="print the contacts queries' plans first")
    args = parser.parse_args()
    bench(args.contacts, args.requests, args.explain)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
