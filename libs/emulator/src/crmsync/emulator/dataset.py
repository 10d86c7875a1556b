"""The dataset generator: a deterministic org of any size, built lazily in chunks of columns.

Nothing is built at load time. A column is cut into chunks of 3,844 rows (62²,
so ids of a chunk share their first 16 characters); a chunk is generated the
first time one of its rows is read, from a random generator seeded by (seed,
object, field, chunk), and kept. So an org of two million records is ready at
once, a page of records costs one chunk per column, and the same seed always
gives the same records. References hold the target's row number.
"""

from __future__ import annotations

import functools

from crmsync.emulator.builders import (
    DAY_MS,
    Gen,
    address,
    const,
    people,
    per_row,
    phone,
    scores,
    times,
    website,
)
from crmsync.emulator.clock import day
from crmsync.emulator.columns import CHUNK, Build, Column
from crmsync.emulator.names import COMPANY_A, COMPANY_B, COMPANY_C, PRODUCTS, TITLES
from crmsync.emulator.schema import INDUSTRIES, LEAD_SOURCES, STAGES

__all__ = ["CHUNK", "Column", "day", "generate", "sizes"]

Builds = dict[str, Build]


def sizes(*, leads: int, contacts: int) -> dict[str, int]:
    """Returns how many records of each object an org of that many leads and contacts has."""
    return {
        "User": max(5, min(2000, (leads + contacts) // 1000)),
        "Account": max(3, contacts // 3),
        "Lead": leads,
        "Contact": contacts,
        "Opportunity": contacts // 5,
    }


@functools.cache
def _companies() -> tuple[str, ...]:
    # Built once for every org: a list per org cost 415 KiB, 0.8 GB for 2,000 orgs.
    return tuple(f"{a} {b}" + (f" {c}" if c else "") for a in COMPANY_A for b in COMPANY_B for c in COMPANY_C)


def _users(seed: int, now_ms: int) -> Builds:
    g = Gen(seed, "User")
    names = people(g, number_base=0, dup_rate=0)

    def user_email(k: int, a: int, b: int) -> list[str]:
        firsts, lasts = names["FirstName"](k, a, b), names["LastName"](k, a, b)
        return [
            f"{f or 'user'}.{last}{a + i}@sales.example.com".lower()
            for i, (f, last) in enumerate(zip(firsts, lasts, strict=True))
        ]

    return {
        "FirstName": names["FirstName"],
        "LastName": names["LastName"],
        "Email": user_email,
        "Username": user_email,
        "IsActive": lambda k, a, b: [row % 10 != 9 for row in range(a, b)],
        **times(g, now_ms - 60 * DAY_MS, weeks=8),
    }


def _accounts(seed: int, now_ms: int, n: dict[str, int], companies: tuple[str, ...]) -> Builds:
    g = Gen(seed, "Account")
    a_name = g.pick("Name", companies)
    return {
        "Name": a_name,
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.1),
        "Website": website(a_name, g.blanks("Website", 0.1)),
        "Phone": phone(g, "Phone", 0.05),
        **address(g, "Billing", 0.05),
        "NumberOfEmployees": g.numbers("NumberOfEmployees", 50_000),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsDeleted": const(False),
        **times(g, now_ms, weeks=6),
    }


def _leads(seed: int, now_ms: int, n: dict[str, int], companies: tuple[str, ...]) -> Builds:
    g = Gen(seed, "Lead")
    company = g.pick("Company", companies)
    statuses = ("Open - Not Contacted",) * 6 + ("Working - Contacted",) * 3 + ("Closed - Not Converted",)
    return {
        **people(g, number_base=1),
        "Company": company,
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": phone(g, "Phone", 0.1),
        "MobilePhone": phone(g, "MobilePhone", 0.4),
        **address(g, "", 0.05),
        "Website": website(company, g.blanks("Website", 0.3)),
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.15),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "Status": g.pick("Status", statuses),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": scores(g),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsConverted": const(False),
        "ConvertedContactId": const(None),
        "ConvertedAccountId": const(None),
        "ConvertedDate": const(None),
        "IsDeleted": const(False),
        **times(g, now_ms, weeks=4),
    }


def _contacts(seed: int, now_ms: int, n: dict[str, int], leads: int) -> Builds:
    g = Gen(seed, "Contact")
    return {
        **people(g, number_base=leads + 1),
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": phone(g, "Phone", 0.1),
        "MobilePhone": phone(g, "MobilePhone", 0.4),
        **address(g, "Mailing", 0.05),
        "AccountId": g.numbers("AccountId", n["Account"], blank=0.03),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": scores(g),
        "IsDeleted": const(False),
        **times(g, now_ms, weeks=4),
    }


def _opportunities(
    seed: int, now_ms: int, n: dict[str, int], contacts: int, columns: dict[str, dict[str, Column]]
) -> Builds:
    """Opportunity k belongs to contact 5k (so each contact has at most one) and to that contact's account."""
    g = Gen(seed, "Opportunity")
    accounts_of_contacts, account_names = columns["Contact"]["AccountId"], columns["Account"]["Name"]

    def o_account(row: int) -> int | None:
        return accounts_of_contacts[row * 5] if contacts else row % n["Account"]

    products = g.pick("product", PRODUCTS)
    o_times = times(g, now_ms, weeks=6)

    def o_name(k: int, a: int, b: int) -> list[str]:
        return [
            f"{account_names[acc] if acc is not None else 'Direct'} - {p}"
            for acc, p in zip((o_account(row) for row in range(a, b)), products(k, a, b), strict=True)
        ]

    def close_date(k: int, a: int, b: int) -> list[str]:
        r = g.rng("close", k).random
        return [day(m + int(r() * 90) * DAY_MS) for m in o_times["SystemModstamp"](k, a, b)]

    return {
        "Name": o_name,
        "StageName": g.pick("StageName", STAGES),
        "Amount": lambda k, a, b: [float(x * 500) for x in g.numbers("Amount", 400)(k, a, b)],
        "CloseDate": close_date,
        "AccountId": per_row(o_account),
        "ContactId": per_row(lambda row: row * 5 if contacts else None),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsDeleted": const(False),
        **o_times,
    }


def generate(*, leads: int, contacts: int, seed: int, now_ms: int) -> dict[str, dict[str, Column]]:
    """Returns every object's columns (field → Column) for an org of that many leads and contacts."""
    n = sizes(leads=leads, contacts=contacts)
    companies = _companies()
    builds = {
        "User": _users(seed, now_ms),
        "Account": _accounts(seed, now_ms, n, companies),
        "Lead": _leads(seed, now_ms, n, companies),
        "Contact": _contacts(seed, now_ms, n, leads),
    }
    columns = {
        obj: {name: Column(build, n[obj]) for name, build in cols.items()} for obj, cols in builds.items()
    }
    o_builds = _opportunities(seed, now_ms, n, contacts, columns)
    columns["Opportunity"] = {name: Column(build, n["Opportunity"]) for name, build in o_builds.items()}
    return columns
