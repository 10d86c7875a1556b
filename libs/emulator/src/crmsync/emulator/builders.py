"""Chunk builders of generated columns: seeded pickers, people, phones, addresses, times."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from crmsync.emulator.columns import Build
from crmsync.emulator.names import EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, PLACES, STREET_KINDS, STREETS

DAY_MS = 86_400_000


class Gen:
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


def const(value: Any) -> Build:
    return lambda k, a, b: [value] * (b - a)


class Group:
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


def sparse(rng: random.Random, size: int, rate: float, *, start: int = 0) -> list[int]:
    """Returns a sorted random sample of about `rate` of the positions start..size-1."""
    count = min(size - start, int(size * rate + rng.random()))
    return sorted(rng.sample(range(start, size), count)) if count > 0 else []


def people(g: Gen, *, number_base: int, dup_rate: float = 0.02) -> dict[str, Build]:
    """Returns FirstName, LastName and unique Email builders; some rows look like the row before them."""

    def build(k: int, a: int, b: int) -> dict[str, list[Any]]:
        rng = g.rng("people", k)
        m = b - a
        fi = rng.choices(range(len(FIRST_NAMES)), k=m)
        li = rng.choices(range(len(LAST_NAMES)), k=m)
        domains = rng.choices(EMAIL_DOMAINS, k=m)
        for i in sparse(rng, m, dup_rate, start=1):
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
        for i in sparse(rng, m, 0.01):
            emails[i] = None
        firsts: list[str | None] = [FIRST_NAMES[f] for f in fi]
        for i in sparse(rng, m, 0.01):
            firsts[i] = None
        return {"FirstName": firsts, "LastName": [LAST_NAMES[last] for last in li], "Email": emails}

    group = Group(build)
    return {name: group.part(name) for name in ("FirstName", "LastName", "Email")}


@lru_cache(maxsize=1)
def _phone_pool() -> list[str]:
    rng = random.Random(62)
    return [f"({rng.randrange(200, 1000)}) 555-{rng.randrange(10_000):04d}" for _ in range(50_000)]


@lru_cache(maxsize=1)
def _address_pool() -> list[tuple[str | None, ...]]:
    rng = random.Random(26)
    return [
        (f"{rng.randrange(1, 2000)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}", *rng.choice(PLACES))
        for _ in range(50_000)
    ]


def phone(g: Gen, name: str, blank: float) -> Build:
    def build(k: int, a: int, b: int) -> list[str | None]:
        rng = g.rng(name, k)
        out: list[str | None] = rng.choices(_phone_pool(), k=b - a)
        for i in sparse(rng, b - a, blank):
            out[i] = None
        return out

    return build


def address(g: Gen, prefix: str, blank: float) -> dict[str, Build]:
    names = ("Street", "City", "State", "PostalCode", "Country")

    def build(k: int, a: int, b: int) -> dict[str, list[Any]]:
        rng = g.rng(prefix + "address", k)
        places: list[tuple[str | None, ...]] = rng.choices(_address_pool(), k=b - a)
        empty = (None,) * 5
        for i in sparse(rng, b - a, blank):
            places[i] = empty
        return {f"{prefix}{n}": [p[i] for p in places] for i, n in enumerate(names)}

    group = Group(build)
    return {f"{prefix}{n}": group.part(f"{prefix}{n}") for n in names}


def times(g: Gen, now_ms: int, *, weeks: int) -> dict[str, Build]:
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


def website(names: Build, gaps: Build) -> Build:
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


def scores(g: Gen) -> Build:
    def build(k: int, a: int, b: int) -> list[float | None]:
        r = g.rng("score", k).random
        return [None if r() < 0.2 else round(r() * 100, 1) for _ in range(b - a)]

    return build


def per_row(fn: Callable[[int], Any]) -> Build:
    return lambda k, a, b: [fn(row) for row in range(a, b)]
