"""The dataset generator: a deterministic org of any size, built lazily in chunks of columns.

Nothing is built at load time. A column is cut into chunks of 3,844 rows (62²,
so ids of a chunk share their first 16 characters); a chunk is generated the
first time one of its rows is read, from a random generator seeded by (seed,
object, field, chunk), and kept. So an org of two million records is ready at
once, a page of records costs one chunk per column, and the same seed always
gives the same records. References hold the target's row number.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from crmsync.emulator.schema import INDUSTRIES, LEAD_SOURCES, STAGES

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Alice",
    "Amara",
    "Amelia",
    "Ana",
    "Andrea",
    "Arjun",
    "Ben",
    "Bianca",
    "Carla",
    "Carlos",
    "Chen",
    "Chloe",
    "Daniel",
    "Diego",
    "Elena",
    "Eli",
    "Emma",
    "Ethan",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Hannah",
    "Hugo",
    "Ibrahim",
    "Ingrid",
    "Isaac",
    "Ivy",
    "Jack",
    "James",
    "Jana",
    "Javier",
    "Jin",
    "Julia",
    "Kai",
    "Karen",
    "Kenji",
    "Lara",
    "Leo",
    "Liam",
    "Lina",
    "Lucas",
    "Luis",
    "Maya",
    "Mei",
    "Mia",
    "Miguel",
    "Nadia",
    "Nathan",
    "Nina",
    "Noah",
    "Olga",
    "Omar",
    "Paul",
    "Priya",
    "Rafael",
    "Rosa",
    "Ruth",
    "Sam",
    "Sara",
    "Sofia",
    "Tariq",
    "Theo",
    "Tom",
    "Uma",
    "Victor",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoe",
    "Zara",
    "Marta",
    "Pedro",
    "Helga",
    "Oskar",
    "Aisha",
    "Kofi",
    "Lea",
    "Jonas",
    "Eva",
    "Mateo",
    "Nora",
    "Ravi",
)
LAST_NAMES = (
    "Adams",
    "Ahmed",
    "Alvarez",
    "Andersen",
    "Baker",
    "Bianchi",
    "Brown",
    "Chen",
    "Clarke",
    "Costa",
    "Dubois",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Gomez",
    "Gupta",
    "Hall",
    "Hansen",
    "Hughes",
    "Ito",
    "Jensen",
    "Johnson",
    "Kim",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lee",
    "Lopez",
    "Lovelace",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Perez",
    "Petrov",
    "Quinn",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Sato",
    "Tanaka",
    "Taylor",
    "Turing",
    "Wagner",
    "Walker",
    "Wang",
    "Weber",
    "Williams",
    "Wilson",
    "Yamamoto",
    "Young",
    "Zhang",
    "Hopper",
    "Noether",
    "Curie",
    "Ramanujan",
    "Okoye",
    "Mensah",
    "Berg",
    "Lindqvist",
    "Moretti",
)
_COMPANY_A = (
    "Blue",
    "Bright",
    "Cedar",
    "Clear",
    "Copper",
    "Crimson",
    "Delta",
    "Eagle",
    "First",
    "Golden",
    "Granite",
    "Green",
    "Harbor",
    "Iron",
    "Lake",
    "Maple",
    "North",
    "Nova",
    "Oak",
    "Pacific",
    "Pine",
    "Quantum",
    "Red",
    "River",
    "Silver",
    "Summit",
    "Sun",
    "True",
    "United",
    "West",
)
_COMPANY_B = (
    "Analytics",
    "Bakery",
    "Biotech",
    "Capital",
    "Cloud",
    "Dynamics",
    "Energy",
    "Foods",
    "Freight",
    "Health",
    "Labs",
    "Logistics",
    "Media",
    "Motors",
    "Networks",
    "Partners",
    "Pharma",
    "Robotics",
    "Software",
    "Solutions",
    "Studios",
    "Systems",
    "Textiles",
    "Works",
)
_COMPANY_C = ("Inc", "LLC", "Ltd", "GmbH", "SA", "Group", "Co", "")
TITLES = (
    "CEO",
    "CTO",
    "CFO",
    "VP Marketing",
    "VP Sales",
    "Marketing Manager",
    "Sales Director",
    "Account Executive",
    "Product Manager",
    "Engineer",
    "Data Analyst",
    "Operations Manager",
    "Office Manager",
    "Buyer",
    "Consultant",
    "Head of Growth",
    "Developer",
    "Designer",
    "Procurement Lead",
    "Founder",
)
PLACES = (
    ("San Francisco", "CA", "94105", "United States"),
    ("New York", "NY", "10001", "United States"),
    ("Austin", "TX", "73301", "United States"),
    ("Chicago", "IL", "60601", "United States"),
    ("Seattle", "WA", "98101", "United States"),
    ("Boston", "MA", "02108", "United States"),
    ("Toronto", "ON", "M5H 2N2", "Canada"),
    ("London", None, "EC1A 1BB", "United Kingdom"),
    ("Paris", None, "75001", "France"),
    ("Berlin", None, "10115", "Germany"),
    ("Madrid", None, "28001", "Spain"),
    ("Lisbon", None, "1100-148", "Portugal"),
    ("Dublin", None, "D02 X285", "Ireland"),
    ("Sydney", "NSW", "2000", "Australia"),
    ("Tokyo", None, "100-0001", "Japan"),
    ("Sao Paulo", "SP", "01000-000", "Brazil"),
)
_STREETS = (
    "Main",
    "Oak",
    "Market",
    "Mission",
    "High",
    "King",
    "Queen",
    "Elm",
    "Park",
    "Lake",
    "Hill",
    "Station",
)
_STREET_KINDS = ("St", "Ave", "Blvd", "Road", "Way", "Lane")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "corp.example.com")
_PRODUCTS = ("Platform", "Renewal", "Expansion", "Pilot", "Services", "Licenses")
DAY_MS = 86_400_000
CHUNK = 62 * 62
_MISSING = object()
Build = Callable[[int, int, int], list[Any]]  # (chunk number, first row, end row) → values


class Column:
    """A column of `n` generated rows, built a chunk at a time, plus what was written over them."""

    __slots__ = ("build", "chunks", "n", "over")

    def __init__(self, build: Build, n: int) -> None:
        self.build = build
        self.n = n
        self.chunks: dict[int, list[Any]] = {}
        self.over: dict[int, Any] = {}

    def chunk(self, number: int) -> list[Any]:
        """Returns the generated values of one chunk (building it the first time)."""
        values = self.chunks.get(number)
        if values is None:
            start = number * CHUNK
            values = self.chunks[number] = self.build(number, start, min(self.n, start + CHUNK))
        return values

    def __getitem__(self, row: int) -> Any:
        if self.over:
            value = self.over.get(row, _MISSING)
            if value is not _MISSING:
                return value
        if row >= self.n:
            return None
        values = self.chunks.get(row // CHUNK)
        if values is None:
            values = self.chunk(row // CHUNK)
        return values[row % CHUNK]

    def __setitem__(self, row: int, value: Any) -> None:
        self.over[row] = value

    def take(self, rows: list[int] | range) -> list[Any]:
        """Returns the values of many rows at once (slices of chunks when the rows are consecutive)."""
        if not rows:
            return []
        first, last, n = rows[0], rows[-1], self.n
        consecutive = last - first == len(rows) - 1 and (
            (isinstance(rows, range) and rows.step == 1) or rows == list(range(first, last + 1))
        )
        if last < n and consecutive:
            out: list[Any] = []
            for number in range(first // CHUNK, last // CHUNK + 1):
                start = number * CHUNK
                out += self.chunk(number)[max(first, start) - start : min(last + 1, start + CHUNK) - start]
        else:
            chunks, chunk = self.chunks, self.chunk
            out = [(chunks.get(r // CHUNK) or chunk(r // CHUNK))[r % CHUNK] if r < n else None for r in rows]
        over = self.over
        if over:
            for i, r in enumerate(rows):
                if r in over:
                    out[i] = over[r]
        return out


class _Gen:
    """Chunk builders of one object, seeded by (seed, object, field, chunk) so columns are independent."""

    def __init__(self, seed: int, obj: str) -> None:
        self.seed = seed
        self.obj = obj

    def rng(self, name: str, chunk: int) -> random.Random:
        return random.Random(zlib.crc32(f"{self.seed}:{self.obj}:{name}".encode()) * 1_000_003 + chunk)

    def blanks(self, name: str, rate: float) -> Build:
        """Returns a builder of True where a value is left blank."""
        if not rate:
            return lambda k, a, b: [False] * (b - a)

        def build(k: int, a: int, b: int) -> list[bool]:
            r = self.rng(name + "/blank", k).random
            return [r() < rate for _ in range(b - a)]

        return build

    def pick(self, name: str, values: tuple[Any, ...] | list[Any], *, blank: float = 0.0) -> Build:
        gaps = self.blanks(name, blank)

        def build(k: int, a: int, b: int) -> list[Any]:
            out = self.rng(name, k).choices(values, k=b - a)
            if blank:
                out = [None if gap else v for v, gap in zip(out, gaps(k, a, b), strict=True)]
            return out

        return build

    def numbers(self, name: str, size: int, *, blank: float = 0.0) -> Build:
        return self.pick(name, range(size), blank=blank)  # type: ignore[arg-type]

    def chance(self, name: str, rate: float) -> Build:
        def build(k: int, a: int, b: int) -> list[bool]:
            r = self.rng(name, k).random
            return [r() < rate for _ in range(b - a)]

        return build


def _const(value: Any) -> Build:
    return lambda k, a, b: [value] * (b - a)


class _Group:
    """Several columns built together (names and emails, address parts); each takes its part once."""

    def __init__(self, build: Callable[[int, int, int], dict[str, list[Any]]]) -> None:
        self.build = build
        self.pending: dict[int, dict[str, list[Any]]] = {}

    def part(self, name: str) -> Build:
        def take(k: int, a: int, b: int) -> list[Any]:
            parts = self.pending.get(k)
            if parts is None or name not in parts:
                parts = self.pending[k] = self.build(k, a, b)
            values = parts.pop(name)
            if not parts:
                del self.pending[k]
            return values

        return take


_FIRST_LOWER = [n.lower() for n in FIRST_NAMES]
_LAST_LOWER = [n.lower() for n in LAST_NAMES]


def _sparse(rng: random.Random, size: int, rate: float, *, start: int = 0) -> list[int]:
    """Returns a sorted random sample of about `rate` of the positions start..size-1."""
    count = min(size - start, int(size * rate + rng.random()))
    return sorted(rng.sample(range(start, size), count)) if count > 0 else []


def _people(g: _Gen, *, number_base: int, dup_rate: float = 0.02) -> dict[str, Build]:
    """Returns FirstName, LastName and unique Email builders; some rows look like the row before them."""

    def build(k: int, a: int, b: int) -> dict[str, list[Any]]:
        rng = g.rng("people", k)
        m = b - a
        fi = rng.choices(range(len(FIRST_NAMES)), k=m)
        li = rng.choices(range(len(LAST_NAMES)), k=m)
        domains = rng.choices(EMAIL_DOMAINS, k=m)
        for i in _sparse(rng, m, dup_rate, start=1):
            # A duplicate-looking person: the previous row's name, another address shape (below).
            fi[i], li[i] = fi[i - 1], li[i - 1]
        fl, ll = _FIRST_LOWER, _LAST_LOWER
        # The row number keeps every address unique across leads and contacts.
        emails: list[str | None] = [
            f"{fl[f]}.{ll[last]}{number_base + a + i}@{d}"
            for i, (f, last, d) in enumerate(zip(fi, li, domains, strict=True))
        ]
        for i in range(1, m):
            if fi[i] == fi[i - 1] and li[i] == li[i - 1]:
                emails[i] = f"{fl[fi[i]][0]}{ll[li[i]]}{number_base + a + i}@{domains[i]}"
        for i in _sparse(rng, m, 0.01):
            emails[i] = None
        firsts: list[str | None] = [FIRST_NAMES[f] for f in fi]
        for i in _sparse(rng, m, 0.01):
            firsts[i] = None
        return {"FirstName": firsts, "LastName": [LAST_NAMES[last] for last in li], "Email": emails}

    group = _Group(build)
    return {name: group.part(name) for name in ("FirstName", "LastName", "Email")}


@lru_cache(maxsize=1)
def _phone_pool() -> list[str]:
    rng = random.Random(62)
    return [f"({rng.randrange(200, 1000)}) 555-{rng.randrange(10_000):04d}" for _ in range(50_000)]


@lru_cache(maxsize=1)
def _address_pool() -> list[tuple[str | None, ...]]:
    rng = random.Random(26)
    return [
        (f"{rng.randrange(1, 2000)} {rng.choice(_STREETS)} {rng.choice(_STREET_KINDS)}", *rng.choice(PLACES))
        for _ in range(50_000)
    ]


def _phone(g: _Gen, name: str, blank: float) -> Build:
    def build(k: int, a: int, b: int) -> list[str | None]:
        rng = g.rng(name, k)
        out: list[str | None] = rng.choices(_phone_pool(), k=b - a)
        for i in _sparse(rng, b - a, blank):
            out[i] = None
        return out

    return build


def _address(g: _Gen, prefix: str, blank: float) -> dict[str, Build]:
    names = ("Street", "City", "State", "PostalCode", "Country")

    def build(k: int, a: int, b: int) -> dict[str, list[Any]]:
        rng = g.rng(prefix + "address", k)
        places: list[tuple[str | None, ...]] = rng.choices(_address_pool(), k=b - a)
        empty = (None,) * 5
        for i in _sparse(rng, b - a, blank):
            places[i] = empty
        return {f"{prefix}{n}": [p[i] for p in places] for i, n in enumerate(names)}

    group = _Group(build)
    return {f"{prefix}{n}": group.part(f"{prefix}{n}") for n in names}


def _times(g: _Gen, now_ms: int, *, weeks: int) -> dict[str, Build]:
    """Returns CreatedDate and modstamp builders: changed within the past weeks, whole seconds."""
    span_s, top_s = weeks * 7 * 86_400, now_ms // 1000 - 60

    @lru_cache(maxsize=4)
    def modified(k: int, a: int, b: int) -> list[int]:
        r = g.rng("modified", k).random
        return [(top_s - int(r() * span_s)) * 1000 for _ in range(b - a)]

    def created(k: int, a: int, b: int) -> list[int]:
        r = g.rng("created", k).random
        return [m - int(r() * 60) * DAY_MS for m in modified(k, a, b)]

    return {"CreatedDate": created, "LastModifiedDate": modified, "SystemModstamp": modified}


def _website(names: Build, gaps: Build) -> Build:
    def build(k: int, a: int, b: int) -> list[str | None]:
        out = []
        for name, gap in zip(names(k, a, b), gaps(k, a, b), strict=True):
            if name is None or gap:
                out.append(None)
                continue
            words = name.split()
            out.append(f"www.{words[0].lower()}{words[1].lower()}.example.com")
        return out

    return build


def _scores(g: _Gen) -> Build:
    def build(k: int, a: int, b: int) -> list[float | None]:
        r = g.rng("score", k).random
        return [None if r() < 0.2 else round(r() * 100, 1) for _ in range(b - a)]

    return build


def sizes(*, leads: int, contacts: int) -> dict[str, int]:
    """Returns how many records of each object an org of that many leads and contacts has."""
    return {
        "User": max(5, min(2000, (leads + contacts) // 1000)),
        "Account": max(3, contacts // 3),
        "Lead": leads,
        "Contact": contacts,
        "Opportunity": contacts // 5,
    }


def _per_row(fn: Callable[[int], Any]) -> Build:
    return lambda k, a, b: [fn(row) for row in range(a, b)]


def generate(*, leads: int, contacts: int, seed: int, now_ms: int) -> dict[str, dict[str, Column]]:
    """Returns every object's columns (field → Column) for an org of that many leads and contacts."""
    n = sizes(leads=leads, contacts=contacts)
    companies = [
        f"{a} {b}" + (f" {c}" if c else "") for a in _COMPANY_A for b in _COMPANY_B for c in _COMPANY_C
    ]
    builds: dict[str, dict[str, Build]] = {}

    g = _Gen(seed, "User")
    people = _people(g, number_base=0, dup_rate=0)

    def user_email(k: int, a: int, b: int) -> list[str]:
        firsts, lasts = people["FirstName"](k, a, b), people["LastName"](k, a, b)
        return [
            f"{f or 'user'}.{last}{a + i}@sales.example.com".lower()
            for i, (f, last) in enumerate(zip(firsts, lasts, strict=True))
        ]

    builds["User"] = {
        "FirstName": people["FirstName"],
        "LastName": people["LastName"],
        "Email": user_email,
        "Username": user_email,
        "IsActive": lambda k, a, b: [row % 10 != 9 for row in range(a, b)],
        **_times(g, now_ms - 60 * DAY_MS, weeks=8),
    }

    g = _Gen(seed, "Account")
    a_name = g.pick("Name", companies)
    builds["Account"] = {
        "Name": a_name,
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.1),
        "Website": _website(a_name, g.blanks("Website", 0.1)),
        "Phone": _phone(g, "Phone", 0.05),
        **_address(g, "Billing", 0.05),
        "NumberOfEmployees": g.numbers("NumberOfEmployees", 50_000),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=6),
    }

    g = _Gen(seed, "Lead")
    company = g.pick("Company", companies)
    statuses = ("Open - Not Contacted",) * 6 + ("Working - Contacted",) * 3 + ("Closed - Not Converted",)
    builds["Lead"] = {
        **_people(g, number_base=1),
        "Company": company,
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": _phone(g, "Phone", 0.1),
        "MobilePhone": _phone(g, "MobilePhone", 0.4),
        **_address(g, "", 0.05),
        "Website": _website(company, g.blanks("Website", 0.3)),
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.15),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "Status": g.pick("Status", statuses),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": _scores(g),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsConverted": _const(False),
        "ConvertedContactId": _const(None),
        "ConvertedAccountId": _const(None),
        "ConvertedDate": _const(None),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=4),
    }

    g = _Gen(seed, "Contact")
    contact_account = g.numbers("AccountId", n["Account"], blank=0.03)
    builds["Contact"] = {
        **_people(g, number_base=leads + 1),
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": _phone(g, "Phone", 0.1),
        "MobilePhone": _phone(g, "MobilePhone", 0.4),
        **_address(g, "Mailing", 0.05),
        "AccountId": contact_account,
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": _scores(g),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=4),
    }
    columns = {
        obj: {name: Column(build, n[obj]) for name, build in cols.items()} for obj, cols in builds.items()
    }

    # Opportunity k belongs to contact 5k (so each contact has at most one) and to that contact's account.
    g = _Gen(seed, "Opportunity")
    accounts_of_contacts, account_names = columns["Contact"]["AccountId"], columns["Account"]["Name"]

    def o_account(row: int) -> int | None:
        return accounts_of_contacts[row * 5] if contacts else row % n["Account"]

    products = g.pick("product", _PRODUCTS)
    o_times = _times(g, now_ms, weeks=6)

    def o_name(k: int, a: int, b: int) -> list[str]:
        return [
            f"{account_names[acc] if acc is not None else 'Direct'} - {p}"
            for acc, p in zip((o_account(row) for row in range(a, b)), products(k, a, b), strict=True)
        ]

    def close_date(k: int, a: int, b: int) -> list[str]:
        r = g.rng("close", k).random
        return [day(m + int(r() * 90) * DAY_MS) for m in o_times["SystemModstamp"](k, a, b)]

    o_builds: dict[str, Build] = {
        "Name": o_name,
        "StageName": g.pick("StageName", STAGES),
        "Amount": lambda k, a, b: [float(x * 500) for x in g.numbers("Amount", 400)(k, a, b)],
        "CloseDate": close_date,
        "AccountId": _per_row(o_account),
        "ContactId": _per_row(lambda row: row * 5 if contacts else None),
        "OwnerId": g.numbers("OwnerId", n["User"]),
        "IsDeleted": _const(False),
        **o_times,
    }
    columns["Opportunity"] = {name: Column(build, n["Opportunity"]) for name, build in o_builds.items()}
    return columns


def day(ms: int) -> str:
    """Returns the YYYY-MM-DD (UTC) of an epoch-ms instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
