"""Row ids that grow with time (UUID version 7, RFC 9562).

A random (version 4) id lands anywhere in its B-tree indexes: once a big
table's indexes no longer fit in memory, every insert reads and dirties a
random page of each one. A version 7 id starts with the creation time in
milliseconds, so ids written together sit together at the right edge of the
index, and a sync of a million new contacts appends instead of scattering.
The 74 random bits keep ids unguessable and collision-free.
"""

from __future__ import annotations

import os
import time
import uuid

_MS_BITS = 48
_VERSION = 0x7 << 76  # bits 79..76
_VARIANT = 0x2 << 62  # bits 63..62 (RFC 9562 variant 10)
_VERSION_MASK = 0xF << 76
_VARIANT_MASK = 0x3 << 62


def new_id(*, now_ms: int | None = None) -> uuid.UUID:
    """Returns a fresh version 7 UUID for the current (or the given) Unix time in ms."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms & ((1 << _MS_BITS) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~_VERSION_MASK & ~_VARIANT_MASK) | _VERSION | _VARIANT
    return uuid.UUID(int=value)
