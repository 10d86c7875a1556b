"""Many orgs of different sizes in one emulator: the command line, the control call, their cost."""

from __future__ import annotations

import time
import tracemalloc

import httpx
import pytest

from crmsync.emulator.__main__ import parse_args
from crmsync.emulator.app import build, create_app
from crmsync.emulator.state import DuplicateClientId


def test_sizes_are_drawn_from_the_range_by_the_seed_and_split_into_leads_and_contacts():
    emulator = build()
    orgs = emulator.create_orgs(
        count=40, min_records=500, max_records=20_000, seed=3, client_id_prefix="acme"
    )
    sizes = [org.tables["Lead"].n + org.tables["Contact"].n for org in orgs]
    assert all(500 <= n <= 20_000 for n in sizes) and len(set(sizes)) > 30
    assert all(abs(org.tables["Lead"].n - org.tables["Contact"].n) <= 1 for org in orgs)
    assert [org.client_id for org in orgs[:3]] == ["acme-1", "acme-2", "acme-3"]
    assert [org.seed for org in orgs[:3]] == [4, 5, 6]
    again = build().create_orgs(count=40, min_records=500, max_records=20_000, seed=3)
    assert [o.tables["Lead"].n for o in again] == [o.tables["Lead"].n for o in orgs]
    assert len({org.org_id for org in orgs}) == 40 and len(emulator.orgs) == 40


def test_a_taken_client_id_or_a_bad_range_creates_no_org():
    emulator = build()
    emulator.create_org(leads=1, contacts=1, seed=1, client_id="acme-2")
    with pytest.raises(DuplicateClientId):
        emulator.create_orgs(count=3, min_records=1, max_records=2, seed=1, client_id_prefix="acme")
    with pytest.raises(ValueError):
        emulator.create_orgs(count=3, min_records=5, max_records=2, seed=1)
    assert len(emulator.orgs) == 1


def test_thousands_of_orgs_are_ready_at_once_and_small():
    """Nothing is generated until read, and the orgs share what does not depend on the seed."""
    emulator = build()
    tracemalloc.start()
    started = time.process_time()
    emulator.create_orgs(count=1000, min_records=500, max_records=20_000, seed=1)
    spent = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak / 1000 < 100 * 1024, f"{peak / 1000 / 1024:.0f} KiB per org"
    assert spent < 10, f"{spent:.1f} CPU s for 1,000 orgs"


async def test_the_control_call_answers_each_orgs_credentials_and_they_log_in():
    emulator = build()
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        made = await http.post(
            "/__emulator/orgs/many",
            json={"count": 5, "min_records": 10, "max_records": 30, "seed": 9, "client_id_prefix": "t",
                  "client_secret": "s", "api_limit": 77},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        orgs = made.json()
        assert [o["client_id"] for o in orgs] == [f"t-{i}" for i in range(1, 6)]
        assert all(
            o["api_limit"] == 77 and 10 <= o["counts"]["Lead"] + o["counts"]["Contact"] <= 30 for o in orgs
        )
        token = await http.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": "t-4", "client_secret": "s"},
        )
        assert token.status_code == 200, token.text
        count = await http.get(
            "/services/data/v60.0/query",
            params={"q": "SELECT COUNT() FROM Lead"},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert count.json()["totalSize"] == orgs[3]["counts"]["Lead"]
        again = await http.post(
            "/__emulator/orgs/many",
            json={"count": 2, "min_records": 1, "max_records": 1, "seed": 1, "client_id_prefix": "t"},
        )
        assert again.status_code == 409 and again.json()[0]["errorCode"] == "DUPLICATE_VALUE"
        bad = await http.post("/__emulator/orgs/many", json={"count": 2})
        assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_SIZE"
        assert len((await http.get("/__emulator/orgs")).json()) == 5


def test_the_command_line_makes_the_orgs_beside_the_default_one():
    args = parse_args(["--orgs", "2000", "--org-records", "500:20000"])
    assert (args.orgs, args.org_records) == (2000, (500, 20_000))
    assert parse_args([]).orgs == 0 and parse_args([]).org_records == (500, 20_000)
    assert parse_args(["--org-records", "700"]).org_records == (700, 700)
    for bad in (["--org-records", "9:3"], ["--org-records", "x"], ["--orgs", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
