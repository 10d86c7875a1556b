"""Emulator dataset generation: loading an org, building every record, rendering pages.

`python -m bench.emulator_bench [--sizes 100000,1000000]`

For each size (half Leads, half Contacts, with their Accounts, Users and
Opportunities) in one process: the time to load the org (lazy: nothing is
built), to build every field of every record (all chunks of all columns), and
to render every Lead and Contact as REST query JSON (orjson) and as Bulk CSV
values. The baseline, measured in the same run, builds the same number of
plain dicts of constant values and serialises them: what the machine does with
no generation at all. Times are CPU seconds of this process (time.process_time):
other work on a shared machine inflates them far less than wall-clock times.
"""

from __future__ import annotations

import argparse
import time

import orjson
import psutil

from bench.machine import machine
from crmsync.emulator import soql
from crmsync.emulator.dataset import CHUNK
from crmsync.emulator.store import Org

FIELDS = (
    "Id, FirstName, LastName, Email, Title, Phone, MobilePhone, LeadSource, HasOptedOutOfEmail, "
    "Marketing_Score__c, OwnerId, CreatedDate, SystemModstamp"
)


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def bench(size: int) -> dict[str, float]:
    leads = contacts = size // 2
    started = time.process_time()
    org = Org(
        org_id="bench",
        number=1,
        leads=leads,
        contacts=contacts,
        seed=1,
        client_id="b",
        client_secret="b",
        api_limit=1,
    )
    load = time.process_time() - started
    records = sum(t.n for t in org.tables.values())

    started = time.process_time()
    for table in org.tables.values():
        for column in table.cols.values():
            for chunk in range((column.n + CHUNK - 1) // CHUNK):
                column.chunk(chunk)
    build = time.process_time() - started
    rss = rss_mib()

    started = time.process_time()
    size_json = 0
    for obj in ("Lead", "Contact"):
        cursor, _ = org.run_query(f"SELECT {FIELDS} FROM {obj}", include_deleted=False, version="60.0")
        for start in range(0, len(cursor.rows), 2000):
            size_json += len(orjson.dumps(cursor.render_page(cursor.rows[start : start + 2000])))
    rest = time.process_time() - started

    started = time.process_time()
    for obj in ("Lead", "Contact"):
        cursor, _ = org.run_query(
            f"SELECT {FIELDS} FROM {obj}", include_deleted=False, version="60.0", csv=True
        )
        for start in range(0, len(cursor.rows), 2000):
            page = cursor.rows[start : start + 2000]
            [fetch(page) for _, fetch in cursor.columns]
    bulk = time.process_time() - started

    started = time.process_time()
    names = [ref.text for ref in soql.parse(f"SELECT {FIELDS} FROM Lead").fields]
    template = dict.fromkeys(names, "constant value")
    for start in range(0, leads + contacts, 2000):
        orjson.dumps(
            [{"attributes": {"type": "Lead"}, **template} for _ in range(min(2000, leads + contacts - start))]
        )
    baseline = time.process_time() - started
    return {
        "records": records,
        "load": load,
        "build": build,
        "rss": rss,
        "rest": rest,
        "bulk": bulk,
        "baseline": baseline,
        "people": leads + contacts,
        "json_mib": size_json / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="Leads + Contacts per org, comma-separated")
    args = parser.parse_args()
    print(f"machine: {machine(with_load=True)}")
    print(f"fields rendered per Lead/Contact: {len(FIELDS.split(','))}")
    print(
        "| leads+contacts | all records | load CPU s | build all CPU s | built records/CPU s | RSS after build MiB "
        "| REST JSON CPU s (records/CPU s) | Bulk CSV values CPU s (records/CPU s) | baseline CPU s (records/CPU s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = bench(size)
        print(
            f"| {size:,} | {r['records']:,} | {r['load']:.3f} | {r['build']:.1f} | {r['records'] / r['build']:,.0f} "
            f"| {r['rss']:,.0f} | {r['rest']:.1f} ({r['people'] / r['rest']:,.0f}) "
            f"| {r['bulk']:.1f} ({r['people'] / r['bulk']:,.0f}) | {r['baseline']:.1f} ({r['people'] / r['baseline']:,.0f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
