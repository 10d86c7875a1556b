"""The dataset generator: deterministic rows of any table, made a chunk at a time when first read.

Nothing is generated at start: a row's chunk (1,000 rows) is generated from a
random generator seeded by (seed, table, chunk) when one of its rows is read, so
a table of two million rows is ready at once and the same seed always gives the
same records. References point at rows of other tables by their generated ids.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from crmsync.dynamics_emulator import names
from crmsync.dynamics_emulator.ids import RowIds
from crmsync.dynamics_emulator.schema import INDUSTRIES, INTERESTS, LEAD_SOURCES, TABLES

CHUNK = 1000
MAX_ROWS = 2_000_000
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Version numbers of generated rows: each table a block of its own below every later change.
VERSION_BLOCK = 2_100_000
ORDER = ("systemuser", "account", "contact", "lead", "opportunity")

Record = dict[str, object]


def sizes(*, leads: int, contacts: int) -> dict[str, int]:
    """How many rows of each table an environment of that many leads and contacts has."""
    return {
        "systemuser": max(5, min(2000, (leads + contacts) // 1000)),
        "account": max(3, contacts // 3),
        "contact": contacts,
        "lead": leads,
        "opportunity": contacts // 5,
    }


DAY = 86_400


@functools.cache
def _row_ids(seed: int, logical: str) -> RowIds:
    return RowIds(seed, logical)


@functools.cache
def _blank(logical: str) -> Record:
    return {a.field: None for a in TABLES[logical].attributes}


@functools.cache
def _day_text(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


def _stamp_text(seconds: int) -> str:
    """`iso` of a Unix time, without a datetime per record (the generator's hot path)."""
    day, rest = divmod(seconds, DAY)
    return f"{_day_text(day)}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}Z"


T = TypeVar("T")


def _int(rng: random.Random, low: int, high: int) -> int:
    """`randint` from one C call: the generator draws millions of these."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, options: Sequence[T]) -> T:
    return options[int(rng.random() * len(options))]


def ascii_address(text: str) -> str:
    """An e-mail local part or domain in ASCII: accents dropped, apostrophes gone, lower case."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().replace("'", "").lower()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


@dataclass(frozen=True)
class Dataset:
    seed: int
    counts: dict[str, int]
    epoch: datetime  # the day the data was made for: dates fall in the weeks before it

    def ids(self, logical: str) -> RowIds:
        return _row_ids(self.seed, logical)

    def chunk(self, logical: str, index: int) -> list[Record]:
        """The generated records of one chunk of a table."""
        rng = random.Random(f"{self.seed}:{logical}:{index}")
        start = index * CHUNK
        stop = min(start + CHUNK, self.counts[logical])
        make = _MAKERS[logical]
        ids = self.ids(logical)
        # The solution's columns draw from a generator of their own: the other columns stay as they were.
        solution = (
            random.Random(f"{self.seed}:{logical}:{index}:solution") if logical in SOLUTION_TABLES else None
        )
        out: list[Record] = []
        for row in range(start, stop):
            values = make(self, rng, row)
            if solution is not None:
                values.update(_solution_columns(solution))
            if out and "lastname" in values and logical != "systemuser" and rng.random() < 0.02:
                # A duplicate-looking person: the name of the record before, another address.
                values["firstname"], values["lastname"] = out[-1]["firstname"], out[-1]["lastname"]
            out.append(self._stamp(logical, row, ids.guid(row), values, rng))
        return out

    def _stamp(self, logical: str, row: int, guid: str, values: Record, rng: random.Random) -> Record:
        table = TABLES[logical]
        base = int(self.epoch.timestamp())
        created = base - _int(rng, 30, 400) * DAY - _int(rng, 0, DAY - 1)
        modified = max(created, base - _int(rng, 0, 27) * DAY - _int(rng, 0, DAY - 1))
        record: Record = dict(_blank(logical))
        record.update(values)
        record[table.primary_id] = guid
        record["createdon"] = _stamp_text(created)
        record["modifiedon"] = _stamp_text(modified)
        record["versionnumber"] = ORDER.index(logical) * VERSION_BLOCK + row + 1
        if "_ownerid_value" in record:
            owner = self.ref("systemuser", row * 7 + 3)
            record["_ownerid_value"] = record["_owninguser_value"] = owner
        if "fullname" in record:
            record["fullname"] = " ".join(str(p) for p in (record["firstname"], record["lastname"]) if p)
        return record

    def ref(self, logical: str, row: int) -> str | None:
        count = self.counts[logical]
        return self.ids(logical).guid(row % count) if count else None


def _person(rng: random.Random, row: int) -> Record:
    first = _pick(rng, names.FIRST) if rng.random() > 0.03 else None
    last = _pick(rng, names.LAST)
    email = None if rng.random() < 0.01 else f"{(first or 'info')}.{last}{row}@{_pick(rng, names.DOMAINS)}"
    city, state, country = _pick(rng, names.CITIES)
    return {
        "firstname": first,
        "lastname": last,
        "emailaddress1": ascii_address(email) if email else None,
        "telephone1": f"+1 {_int(rng, 200, 989)} 555 {_int(rng, 0, 9999):04d}"
        if rng.random() > 0.1
        else None,
        "mobilephone": f"+1 {_int(rng, 200, 989)} 555 {_int(rng, 0, 9999):04d}"
        if rng.random() > 0.5
        else None,
        "jobtitle": _pick(rng, names.TITLES),
        "address1_line1": f"{_int(rng, 1, 9999)} {_pick(rng, names.STREETS)}" if rng.random() > 0.2 else None,
        "address1_city": city,
        "address1_stateorprovince": state,
        "address1_postalcode": f"{_int(rng, 10000, 99999)}" if rng.random() > 0.2 else None,
        "address1_country": country,
        "donotemail": rng.random() < 0.05,
        "donotbulkemail": rng.random() < 0.1,
        "donotphone": rng.random() < 0.03,
    }


SOLUTION_TABLES = frozenset({"lead", "contact"})


def _solution_columns(rng: random.Random) -> Record:
    """The crmsync solution's columns: a score on most people, a few interests on some."""
    score = _int(rng, 0, 100) if rng.random() > 0.2 else None
    chosen = sorted({_pick(rng, INTERESTS)[0] for _ in range(_int(rng, 1, 3))}) if rng.random() > 0.5 else []
    return {"crmsync_marketingscore": score, "crmsync_interests": ",".join(map(str, chosen)) or None}


def _company(rng: random.Random) -> str:
    return f"{_pick(rng, names.COMPANY_A)} {_pick(rng, names.COMPANY_B)}"


def _lead(data: Dataset, rng: random.Random, row: int) -> Record:
    record = _person(rng, row)
    disqualified = rng.random() < 0.05
    record.update(
        subject=f"Interested in {_pick(rng, names.PRODUCTS)}",
        companyname=_company(rng) if rng.random() > 0.1 else None,
        leadsourcecode=_pick(rng, LEAD_SOURCES)[0] if rng.random() > 0.3 else None,
        industrycode=_pick(rng, INDUSTRIES)[0] if rng.random() > 0.4 else None,
        numberofemployees=_int(rng, 1, 50_000) if rng.random() > 0.5 else None,
        revenue=round(rng.uniform(10_000, 50_000_000), 2) if rng.random() > 0.6 else None,
        statecode=2 if disqualified else 0,
        statuscode=_pick(rng, (4, 5, 6, 7)) if disqualified else _pick(rng, (1, 2)),
    )
    return record


def _contact(data: Dataset, rng: random.Random, row: int) -> Record:
    record = _person(rng, row)
    record.update(
        _parentcustomerid_value=data.ref("account", row) if rng.random() > 0.1 else None,
        statecode=0,
        statuscode=1,
    )
    return record


def _account(data: Dataset, rng: random.Random, row: int) -> Record:
    city, state, country = _pick(rng, names.CITIES)
    name = _company(rng)
    return {
        "name": name,
        "telephone1": f"+1 {_int(rng, 200, 989)} 555 {_int(rng, 0, 9999):04d}",
        "websiteurl": f"https://www.{name.split()[0].lower().replace(chr(39), '')}{row}.example.com",
        "address1_city": city,
        "address1_stateorprovince": state,
        "address1_country": country,
        "industrycode": _pick(rng, INDUSTRIES)[0] if rng.random() > 0.1 else None,
        "numberofemployees": _int(rng, 1, 50_000),
        "revenue": round(rng.uniform(100_000, 900_000_000), 2),
        "statecode": 0,
        "statuscode": 1,
    }


def _user(data: Dataset, rng: random.Random, row: int) -> Record:
    first, last = _pick(rng, names.FIRST), _pick(rng, names.LAST)
    email = ascii_address(f"{first}.{last}{row}@crm.example.com")
    return {
        "firstname": first,
        "lastname": last,
        "internalemailaddress": email,
        "domainname": email,
        "title": _pick(rng, names.TITLES),
        "isdisabled": row % 10 == 9,
    }


def _opportunity(data: Dataset, rng: random.Random, row: int) -> Record:
    state = _pick(rng, (0, 0, 0, 1, 2))
    return {
        "name": f"{_int(rng, 5, 500)} units of {_pick(rng, names.PRODUCTS)}",
        "estimatedvalue": round(rng.uniform(1_000, 2_000_000), 2),
        "estimatedclosedate": iso(data.epoch + timedelta(days=_int(rng, -60, 180))),
        "closeprobability": _int(rng, 0, 100),
        "statecode": state,
        "statuscode": {0: 1, 1: 3, 2: 4}[state],
        "_parentcontactid_value": data.ref("contact", row * 5),
        "_parentaccountid_value": data.ref("account", row * 5),
    }


_MAKERS: dict[str, Callable[[Dataset, random.Random, int], Record]] = {
    "lead": _lead,
    "contact": _contact,
    "account": _account,
    "systemuser": _user,
    "opportunity": _opportunity,
}
