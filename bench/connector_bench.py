"""Connector throughput and memory: pulling N generated Leads through Bulk 2.0 and REST.

`python -m bench.connector_bench [--sizes 100000,1000000]`

For each size an emulator process is started with that many Leads. Each pull
runs in a fresh child process so its peak RSS is its own: first a raw read of
the same pages (bytes only, no parsing: the emulator's serving cost), then the
connector (typed records in batches). The emulator's CPU time is measured
around each pull, so the connector's share is visible beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import time

import httpx
import orjson
import psutil

from bench.machine import machine
from tests.support.processes import start_emulator

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
FIELDS = [
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "Company",
    "Title",
    "Phone",
    "City",
    "State",
    "PostalCode",
    "Country",
    "LeadSource",
    "Status",
    "HasOptedOutOfEmail",
    "Marketing_Score__c",
    "OwnerId",
    "IsConverted",
    "SystemModstamp",
]
API = "/services/data/v60.0"


# ------------------------------------------------------------------ child side


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _token(client: httpx.AsyncClient, base_url: str) -> tuple[str, str]:
    response = await client.post(
        f"{base_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    response.raise_for_status()
    body = response.json()
    return body["access_token"], body["instance_url"]


async def raw_rest(base_url: str) -> int:
    """Reads every query page as bytes; finds nextRecordsUrl with a regex instead of parsing."""
    async with httpx.AsyncClient(timeout=120) as client:
        token, instance = await _token(client, base_url)
        headers = {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=2000"}
        soql = f"SELECT {', '.join(FIELDS)} FROM Lead"
        response = await client.get(f"{instance}{API}/query", params={"q": soql}, headers=headers)
        records = 0
        while True:
            response.raise_for_status()
            body = response.content
            records += body.count(b'"attributes"')
            match = re.search(rb'"nextRecordsUrl"\s*:\s*"([^"]+)"', body)
            if not match:
                return records
            response = await client.get(instance + match.group(1).decode(), headers=headers)


async def raw_bulk(base_url: str) -> int:
    """Runs the same Bulk query job and reads its CSV pages as bytes, counting lines."""
    async with httpx.AsyncClient(timeout=300) as client:
        token, instance = await _token(client, base_url)
        headers = {"Authorization": f"Bearer {token}"}
        job = await client.post(
            f"{instance}{API}/jobs/query",
            json={
                "operation": "query",
                "query": f"SELECT {', '.join(FIELDS)} FROM Lead",
                "contentType": "CSV",
            },
            headers=headers,
        )
        job.raise_for_status()
        job_id = job.json()["id"]
        for _ in range(3000):
            status = await client.get(f"{instance}{API}/jobs/query/{job_id}", headers=headers)
            if status.json()["state"] == "JobComplete":
                break
            await asyncio.sleep(0.2)
        lines, locator = 0, None
        while True:
            params = {"maxRecords": "100000", **({"locator": locator} if locator else {})}
            async with client.stream(
                "GET", f"{instance}{API}/jobs/query/{job_id}/results", params=params, headers=headers
            ) as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    lines += chunk.count(b"\n")
                lines -= 1  # the header
                locator = response.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                return lines


async def through_connector(base_url: str, road: str) -> int:
    from crmsync.common.crm.salesforce import ConnectorOptions, SalesforceConnector, SalesforceCredentials

    credentials = SalesforceCredentials(
        login_url=base_url, auth_method="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    # bulk_threshold decides the road: 0 sends everything to Bulk, a huge one keeps REST.
    options = ConnectorOptions(bulk_threshold=0 if road == "bulk" else 10**12, budget_reserve_fraction=0)
    records = 0
    async with SalesforceConnector(credentials, options=options) as crm:
        async for batch in crm.export_all("Lead", FIELDS):
            records += len(batch)
    return records


def child(mode: str, base_url: str) -> None:
    road = mode.split("-")[1]
    import crmsync.common.crm.salesforce  # noqa: F401  (imports count in the starting footprint)

    start_rss = psutil.Process().memory_info().rss / 2**20
    cpu0, t0 = time.process_time(), time.perf_counter()
    if mode.startswith("raw"):
        records = asyncio.run(raw_bulk(base_url) if road == "bulk" else raw_rest(base_url))
    else:
        records = asyncio.run(through_connector(base_url, road))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        orjson.dumps(
            {
                "records": records,
                "seconds": seconds,
                "cpu": cpu,
                "start_rss": start_rss,
                "peak_rss": _peak_rss_mib(),
            }
        ).decode()
    )


# ----------------------------------------------------------------- parent side


def run_child(mode: str, base_url: str, emulator: psutil.Process) -> dict[str, float]:
    before = emulator.cpu_times()
    output = subprocess.run(
        [sys.executable, "-m", "bench.connector_bench", "--child", mode, "--base-url", base_url],
        check=True,
        capture_output=True,
    ).stdout
    after = emulator.cpu_times()
    result = orjson.loads(output.splitlines()[-1])
    result["emulator_cpu"] = (after.user + after.system) - (before.user + before.system)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base_url)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}")
    print(f"fields per record: {len(FIELDS)}; each pull in a fresh process; emulator on the same machine")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    header = (
        "| records | road | what | records/s (wall) | seconds | puller CPU s | records per puller CPU-s "
        "| emulator CPU s | RSS start MiB | RSS peak MiB |"
    )
    rows = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    peaks: dict[tuple[int, str], float] = {}
    for size in sizes:
        emulator_process = start_emulator(
            leads=size, contacts=0, seed=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, timeout=600
        )
        base_url = emulator_process.base_url
        try:
            emulator = psutil.Process(emulator_process.pid)
            for road in ("bulk", "rest"):
                for what in ("raw", "connector"):
                    result = run_child(f"{what}-{road}", base_url, emulator)
                    if result["records"] != size:
                        raise RuntimeError(f"{what}-{road} read {result['records']} of {size} records")
                    if what == "connector":
                        peaks[(size, road)] = result["peak_rss"]
                    rows.append(
                        f"| {size:,} | {road} | {'raw bytes (baseline)' if what == 'raw' else 'connector'} "
                        f"| {size / result['seconds']:,.0f} | {result['seconds']:.1f} | {result['cpu']:.1f} "
                        f"| {size / max(result['cpu'], 1e-9):,.0f} | {result['emulator_cpu']:.1f} "
                        f"| {result['start_rss']:.0f} | {result['peak_rss']:.0f} |"
                    )
                    print(rows[-1], flush=True)
        finally:
            emulator_process.stop(timeout=30)
    print("\n".join(["", *rows]))
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        for road in ("bulk", "rest"):
            ratio = peaks[(large, road)] / peaks[(small, road)]
            verdict = "within" if ratio <= 1.2 else "NOT within"
            print(f"{road}: peak RSS at {large:,} is {ratio:.2f}x that at {small:,} ({verdict} 20%)")


if __name__ == "__main__":
    main()
