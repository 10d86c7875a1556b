"""The demo account of `make run`: created once, connected to the emulator, synced.

CRMSYNC_CRM says which CRM: salesforce (account "demo") or dynamics (account
"demo-dynamics", connected with provider dynamics to the Dataverse emulator).
Idempotent: a second `make run` reuses the account and its key (kept in
.local/run/<account>.key, readable by the owner only).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

RUN_DIR = Path(os.environ["CRMSYNC_LOCAL_RUN_DIR"])
BIN = Path(sys.executable).parent
API = f"http://127.0.0.1:{os.environ.get('CRMSYNC_API_PORT', '8000')}"
EMULATOR_PLAIN = f"http://127.0.0.1:{os.environ.get('CRMSYNC_EMULATOR_PORT', '8085')}"
TLS = os.environ.get("CRMSYNC_EMULATOR_TLS") == "1"
# With TLS the account logs in over HTTPS; the services trust the emulator's certificate.
EMULATOR = (
    f"https://127.0.0.1:{os.environ.get('CRMSYNC_EMULATOR_TLS_PORT', '8443')}" if TLS else EMULATOR_PLAIN
)
CRM = os.environ.get("CRMSYNC_CRM", "salesforce")
DYNAMICS = CRM == "dynamics"
TENANT = os.environ.get("CRMSYNC_DEMO_TENANT", "00000000-0000-0000-0000-00000000c0de")
# The Dataverse emulator has no plain port beside its HTTPS one: its control API is on EMULATOR.
CONTROL = EMULATOR if DYNAMICS else EMULATOR_PLAIN
ACCOUNT = "demo-dynamics" if DYNAMICS else "demo"
LABEL = "Dynamics 365" if DYNAMICS else "Salesforce"
SYNC_TIMEOUT_S = 300


def say(text: str) -> None:
    print(f"[run] {text}", flush=True)


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "crmsync-admin"), *args], capture_output=True, text=True)


def demo_key() -> str:
    key_file = RUN_DIR / f"{ACCOUNT}.key"
    provider = ("--provider", CRM) if DYNAMICS else ()  # Salesforce is the default provider
    created = admin(
        "account", "create", f"Demo ({LABEL})" if DYNAMICS else "Demo", "--id", ACCOUNT, *provider
    )
    if created.returncode == 0:
        say(f"account {ACCOUNT!r} created with {LABEL}'s default mapping (R7)")
    elif key_file.exists():
        key = key_file.read_text().strip()
        if httpx.get(f"{API}/v1/account", headers=_auth(key)).status_code == 200:
            return key
    key_run = admin("key", "create", ACCOUNT, "--role", "admin", "--name", "make-run")
    if key_run.returncode != 0:
        sys.exit(f"[run] ERROR: crmsync-admin key create failed: {key_run.stderr.strip()}")
    key = key_run.stdout.strip()
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def emulator_line() -> str:
    what = "the Dataverse emulator, Web API under /api/data/v9.2" if DYNAMICS else "the emulator"
    if not TLS:
        return f"{EMULATOR}   ({what}; control API under /__emulator)"
    return (
        f"{EMULATOR}   ({what} over HTTPS; certificate {os.environ.get('SSL_CERT_FILE')}, trusted by\n"
        f"                 the services through SSL_CERT_FILE; control API under {CONTROL}/__emulator)"
    )


def connection_body() -> dict[str, str]:
    """The demo account's connection: the Salesforce emulator, or the Dataverse one as an Entra ID
    authority ending in the tenant beside the environment's URL."""
    secrets = {
        "auth_method": "client_credentials",
        "client_id": os.environ["CRMSYNC_DEMO_CLIENT_ID"],
        "client_secret": os.environ["CRMSYNC_DEMO_CLIENT_SECRET"],
    }
    if DYNAMICS:
        return {
            "provider": "dynamics",
            "login_url": f"{EMULATOR}/{TENANT}",
            "instance_url": EMULATOR,
            **secrets,
        }
    return {"login_url": EMULATOR, **secrets}


def main() -> int:
    key = demo_key()
    client = httpx.Client(base_url=API, headers=_auth(key), timeout=30)
    connection = client.put("/v1/connection", json=connection_body())
    if connection.status_code >= 400:
        sys.exit(f"[run] ERROR: the connection was refused: {connection.status_code} {connection.text}")
    test = client.post("/v1/connection/test")
    test.raise_for_status()
    tested = test.json()
    say(f"CRM connection: {tested.get('status')} ({EMULATOR}, the {LABEL} emulator)")
    if tested.get("status") != "connected":
        sys.exit(f"[run] ERROR: the CRM connection failed: {tested.get('status_message')}")
    mapping = client.get("/v1/mapping").json()
    say(f"mapping version {mapping.get('version')}: {len(mapping.get('rows', []))} fields mapped")

    succeeded = client.get("/v1/sync-runs", params={"kind": "full", "status": "succeeded", "limit": 1}).json()
    if not succeeded["items"]:
        job = client.post("/v1/sync-now")
        job.raise_for_status()
        say(f"Sync Now: job {job.json()['job_id']}; waiting for the first full sync")
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while True:
            runs = client.get("/v1/sync-runs", params={"limit": 5}).json()["items"]
            done = [r for r in runs if r["status"] in ("succeeded", "failed")]
            if done:
                run = done[0]
                if run["status"] == "failed":
                    sys.exit(f"[run] ERROR: the first sync failed: {run['error']}; read {RUN_DIR}/puller.log")
                say(
                    f"first {run['kind']} sync: {run['pulled']} records pulled, {run['created']} contacts "
                    f"created in {run['duration_s']:.1f}s"
                )
                break
            if time.monotonic() > deadline:
                sys.exit(f"[run] ERROR: no sync finished within {SYNC_TIMEOUT_S}s; read {RUN_DIR}/puller.log")
            time.sleep(1)
    segments = client.get("/v1/segments").json()
    counts = ", ".join(f"{s['name']}: {s['count']}" for s in segments)
    say(f"segments: {counts}")

    print(
        f"""
crmsync is running.

  API            {API}   (OpenAPI docs: {API}/docs)
  API key        {key}   (admin, account "{ACCOUNT}"; also in {RUN_DIR}/{ACCOUNT}.key)
  {LABEL:<14} {emulator_line()}
  Logs           {RUN_DIR}/*.log   (mapping-api, scheduler, puller, pusher, emulator)

Try:

  curl -s "{API}/v1/contacts?limit=3" -H "Authorization: Bearer {key}"
  curl -s {API}/v1/segments -H "Authorization: Bearer {key}"
  curl -s "{API}/v1/sync-runs?limit=3" -H "Authorization: Bearer {key}"

Stop everything (services, emulator, Kafka, PostgreSQL): make stop
""",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
