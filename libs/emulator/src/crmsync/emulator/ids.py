"""Salesforce-shaped record ids: 3-char key prefix, org tag, base62 row number, 3-char case suffix.

The row number is encoded in the id, so an id finds its row without an index
of a million entries.
"""

from __future__ import annotations

from functools import lru_cache

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_VALUE = {c: i for i, c in enumerate(_BASE62)}
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

KEY_PREFIXES: dict[str, str] = {
    "Lead": "00Q",
    "Contact": "003",
    "Account": "001",
    "User": "005",
    "Opportunity": "006",
    "Organization": "00D",
}
OBJECT_BY_PREFIX = {v: k for k, v in KEY_PREFIXES.items()}


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(reversed(chars))


def case_suffix(id15: str) -> str:
    """Returns the 3 characters that make a 15-char id case-insensitively unique (Salesforce's rule)."""
    out = []
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        out.append(_SUFFIX[bits])
    return "".join(out)


_PAIRS = [(a + b, ("A" <= a <= "Z") | ("A" <= b <= "Z") << 1) for a in _BASE62 for b in _BASE62]
_UPPER_BITS = {c: int("A" <= c <= "Z") for c in _BASE62}


@lru_cache(maxsize=4096)
def _head(prefix: str, org_tag: str, head: int) -> tuple[str, str, int]:
    """Returns what the ids of 3,844 consecutive rows share: 13 chars, 2 suffix chars, bits of the third."""
    id13 = f"{prefix}{org_tag}0{_base62(head, 6)}"
    suffix = case_suffix(id13 + "00")
    bits = sum(_UPPER_BITS[c] << i for i, c in enumerate(id13[10:13]))
    return id13, suffix[:2], bits


def make_id(prefix: str, org_tag: str, row: int) -> str:
    """Returns the 18-char id of a row of an object in an org."""
    id13, suffix, bits = _head(prefix, org_tag, row // 3844)
    pair, mask = _PAIRS[row % 3844]
    return id13 + pair + suffix + _SUFFIX[bits | mask << 3]


def org_tag(org_number: int) -> str:
    """Returns the 3-char tag that sets one org's ids apart from another's."""
    return _base62(org_number, 3)


def normalize(value: str) -> str | None:
    """Returns the 18-char form of a 15- or 18-char id, or None when it is not a well-formed id."""
    if len(value) == 15:
        if any(c not in _BASE62_VALUE for c in value):
            return None
        return value + case_suffix(value)
    if len(value) == 18:
        if any(c not in _BASE62_VALUE for c in value) or case_suffix(value[:15]) != value[15:].upper():
            return None
        return value[:15] + value[15:].upper()
    return None


def parse(value: str) -> tuple[str, str, int] | None:
    """Returns (key prefix, org tag, row) of an id, or None when it is not one of ours."""
    full = normalize(value)
    if full is None:
        return None
    row = 0
    for char in full[7:15]:
        row = row * 62 + _BASE62_VALUE[char]
    return full[:3], full[3:6], row
