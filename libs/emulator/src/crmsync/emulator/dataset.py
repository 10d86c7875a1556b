"""The dataset generator: a deterministic org of any size, computed lazily column by column.

A generated value is a pure function of (seed, field, row): nothing is built at
load time, so an org of two million records is ready at once and costs memory
only for what was written since. References hold the target's row number; ids
are derived from row numbers when records are read.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import UTC, datetime
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
_MASK = (1 << 64) - 1
_MISSING = object()


class Column:
    """A column of `n` generated values plus what was written over them (and rows added after)."""

    __slots__ = ("fn", "n", "over")

    def __init__(self, fn: Callable[[int], Any], n: int) -> None:
        self.fn = fn
        self.n = n
        self.over: dict[int, Any] = {}

    def __getitem__(self, row: int) -> Any:
        value = self.over.get(row, _MISSING)
        if value is _MISSING:
            return self.fn(row) if row < self.n else None
        return value

    def __setitem__(self, row: int, value: Any) -> None:
        self.over[row] = value


def mix(row: int, salt: int) -> int:
    """Returns a well-spread 64-bit hash of a row number (splitmix64)."""
    h = (row * 0x9E3779B97F4A7C15 + salt) & _MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


class _Gen:
    """Value functions of one object, salted by seed and field name so columns are independent."""

    def __init__(self, seed: int, obj: str) -> None:
        self.seed = seed
        self.obj = obj

    def salt(self, name: str) -> int:
        return zlib.crc32(f"{self.seed}:{self.obj}:{name}".encode()) * 0x100000001B3

    def pick(
        self, name: str, values: tuple[Any, ...] | list[Any], *, blank: float = 0.0
    ) -> Callable[[int], Any]:
        salt, blank_salt, size, cut = (
            self.salt(name),
            self.salt(name + "/blank"),
            len(values),
            int(blank * 10_000),
        )

        def value(row: int) -> Any:
            if cut and mix(row, blank_salt) % 10_000 < cut:
                return None
            return values[mix(row, salt) % size]

        return value

    def chance(self, name: str, rate: float) -> Callable[[int], bool]:
        salt, cut = self.salt(name), int(rate * 10_000)
        return lambda row: mix(row, salt) % 10_000 < cut

    def number(self, name: str, size: int) -> Callable[[int], int]:
        salt = self.salt(name)
        return lambda row: mix(row, salt) % size


def _const(value: Any) -> Callable[[int], Any]:
    return lambda row: value


def _people(g: _Gen, *, number_base: int, dup_rate: float = 0.02) -> dict[str, Callable[[int], Any]]:
    """Returns first name, last name and unique email functions; some rows look like the row before them."""
    first_of = g.pick("FirstName", FIRST_NAMES)
    last_of = g.pick("LastName", LAST_NAMES)
    dup = g.chance("dup", dup_rate)
    no_first = g.chance("FirstName/blank", 0.01)
    no_email = g.chance("Email/blank", 0.01)
    domain = g.pick("Email/domain", EMAIL_DOMAINS)

    def origin(row: int) -> int:
        while row and dup(row):
            row -= 1
        return row

    def first(row: int) -> str | None:
        return None if no_first(row) else first_of(origin(row))

    def last(row: int) -> str:
        return last_of(origin(row))

    def email(row: int) -> str | None:
        if no_email(row):
            return None
        source = origin(row)
        fn, ln = first_of(source).lower(), last_of(source).lower()
        # The row number keeps every address unique; duplicates-looking rows differ only in shape.
        local = f"{fn[0]}{ln}" if source != row else f"{fn}.{ln}"
        return f"{local}{number_base + row}@{domain(row)}"

    return {"FirstName": first, "LastName": last, "Email": email}


def _phone(g: _Gen, name: str, blank: float) -> Callable[[int], str | None]:
    number, gap = g.number(name, 10_000_000), g.chance(name + "/blank", blank)

    def phone(row: int) -> str | None:
        if gap(row):
            return None
        x = number(row)
        return f"({200 + x // 100_000 % 800}) 555-{x % 10_000:04d}"

    return phone


def _address(g: _Gen, prefix: str, blank: float) -> dict[str, Callable[[int], Any]]:
    place, gap, num = (
        g.number(prefix + "place", len(PLACES)),
        g.chance(prefix + "gap", blank),
        g.number(prefix + "n", 1999),
    )
    street_of = g.number(prefix + "street", len(_STREETS) * len(_STREET_KINDS))

    def street(row: int) -> str | None:
        if gap(row):
            return None
        s = street_of(row)
        return f"{num(row) + 1} {_STREETS[s % len(_STREETS)]} {_STREET_KINDS[s // len(_STREETS)]}"

    def part(k: int) -> Callable[[int], Any]:
        return lambda row: None if gap(row) else PLACES[place(row)][k]

    names = ("City", "State", "PostalCode", "Country")
    return {f"{prefix}Street": street, **{f"{prefix}{n}": part(k) for k, n in enumerate(names)}}


def _times(g: _Gen, now_ms: int, *, weeks: int) -> dict[str, Callable[[int], int]]:
    """Returns CreatedDate and modstamp functions: modified in the past weeks, whole seconds."""
    span_s, top_s = weeks * 7 * 86_400, now_ms // 1000 - 60
    offset, age = g.number("modified", span_s), g.number("age", 60)

    def modified(row: int) -> int:
        return (top_s - offset(row)) * 1000

    def created(row: int) -> int:
        return modified(row) - age(row) * DAY_MS

    return {"CreatedDate": created, "LastModifiedDate": modified, "SystemModstamp": modified}


def _website(name_of: Callable[[int], str | None], gap: Callable[[int], bool]) -> Callable[[int], str | None]:
    def website(row: int) -> str | None:
        name = name_of(row)
        if name is None or gap(row):
            return None
        words = name.split()
        return f"www.{words[0].lower()}{words[1].lower()}.example.com"

    return website


def _score(g: _Gen) -> Callable[[int], float | None]:
    value, gap = g.number("score", 1001), g.chance("score/blank", 0.2)
    return lambda row: None if gap(row) else value(row) / 10


def sizes(*, leads: int, contacts: int) -> dict[str, int]:
    """Returns how many records of each object an org of that many leads and contacts has."""
    return {
        "User": max(5, min(2000, (leads + contacts) // 1000)),
        "Account": max(3, contacts // 3),
        "Lead": leads,
        "Contact": contacts,
        "Opportunity": contacts // 5,
    }


def generate(*, leads: int, contacts: int, seed: int, now_ms: int) -> dict[str, dict[str, Column]]:
    """Returns every object's columns (field → Column) for an org of that many leads and contacts."""
    n = sizes(leads=leads, contacts=contacts)
    companies = [
        f"{a} {b}" + (f" {c}" if c else "") for a in _COMPANY_A for b in _COMPANY_B for c in _COMPANY_C
    ]
    fns: dict[str, dict[str, Callable[[int], Any]]] = {}

    g = _Gen(seed, "User")
    people = _people(g, number_base=0, dup_rate=0)
    def u_email(row: int) -> str:
        first = people["FirstName"](row) or "user"
        return f"{first}.{people['LastName'](row)}{row}@sales.example.com".lower()

    fns["User"] = {
        "FirstName": people["FirstName"],
        "LastName": people["LastName"],
        "Email": u_email,
        "Username": u_email,
        "IsActive": lambda row: row % 10 != 9,
        **_times(g, now_ms - 60 * DAY_MS, weeks=8),
    }

    def owner(gen: _Gen) -> Callable[[int], int]:
        return gen.number("OwnerId", n["User"])

    g = _Gen(seed, "Account")
    a_name = g.pick("Name", companies)
    fns["Account"] = {
        "Name": a_name,
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.1),
        "Website": _website(a_name, g.chance("Website/blank", 0.1)),
        "Phone": _phone(g, "Phone", 0.05),
        **_address(g, "Billing", 0.05),
        "NumberOfEmployees": g.number("NumberOfEmployees", 50_000),
        "OwnerId": owner(g),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=6),
    }

    g = _Gen(seed, "Lead")
    company = g.pick("Company", companies)
    fns["Lead"] = {
        **_people(g, number_base=1),
        "Company": company,
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": _phone(g, "Phone", 0.1),
        "MobilePhone": _phone(g, "MobilePhone", 0.4),
        **_address(g, "", 0.05),
        "Website": _website(company, g.chance("Website/blank", 0.3)),
        "Industry": g.pick("Industry", INDUSTRIES, blank=0.15),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "Status": g.pick(
            "Status",
            ("Open - Not Contacted",) * 6 + ("Working - Contacted",) * 3 + ("Closed - Not Converted",),
        ),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": _score(g),
        "OwnerId": owner(g),
        "IsConverted": _const(False),
        "ConvertedContactId": _const(None),
        "ConvertedAccountId": _const(None),
        "ConvertedDate": _const(None),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=4),
    }

    g = _Gen(seed, "Contact")
    account_of = g.number("AccountId", n["Account"])
    no_account = g.chance("AccountId/blank", 0.03)
    fns["Contact"] = {
        **_people(g, number_base=leads + 1),
        "Title": g.pick("Title", TITLES, blank=0.08),
        "Phone": _phone(g, "Phone", 0.1),
        "MobilePhone": _phone(g, "MobilePhone", 0.4),
        **_address(g, "Mailing", 0.05),
        "AccountId": lambda row: None if no_account(row) else account_of(row),
        "OwnerId": owner(g),
        "LeadSource": g.pick("LeadSource", LEAD_SOURCES, blank=0.1),
        "HasOptedOutOfEmail": g.chance("HasOptedOutOfEmail", 0.03),
        "Marketing_Score__c": _score(g),
        "IsDeleted": _const(False),
        **_times(g, now_ms, weeks=4),
    }

    g = _Gen(seed, "Opportunity")
    # Opportunity k belongs to contact 5k, so each contact has at most one.
    contact_of = (lambda row: row * 5) if contacts else _const(None)
    product = g.pick("product", _PRODUCTS)
    o_times = _times(g, now_ms, weeks=6)
    close_in = g.number("close", 90)
    o_account = lambda row: account_of(row * 5) if contacts else row % n["Account"]  # noqa: E731
    fns["Opportunity"] = {
        "Name": lambda row: f"{a_name(o_account(row))} - {product(row)}",
        "StageName": g.pick("StageName", STAGES),
        "Amount": lambda row: float((close_in(row) + 1) * 500),
        "CloseDate": lambda row: day(o_times["SystemModstamp"](row) + close_in(row) * DAY_MS),
        "AccountId": o_account,
        "ContactId": contact_of,
        "OwnerId": owner(g),
        "IsDeleted": _const(False),
        **o_times,
    }
    return {obj: {name: Column(fn, n[obj]) for name, fn in cols.items()} for obj, cols in fns.items()}


def day(ms: int) -> str:
    """Returns the YYYY-MM-DD (UTC) of an epoch-ms instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
