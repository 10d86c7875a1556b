"""Backoff arithmetic (pure): how long to wait before the n-th retry.

The ceiling doubles per retry from `base` and stops at `cap`; the wait itself
is drawn uniformly below the ceiling (full jitter), so replicas or records that
failed together do not come back together.
"""

from __future__ import annotations

import random
from typing import Protocol

# 2.0 ** 1023 is the largest power of two a float holds; beyond it the ceiling is the cap anyway.
_MAX_EXPONENT = 1023


class Uniform(Protocol):
    """A source of jitter: `random`, or a seeded `random.Random`."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_ceiling(retry: int, *, base: float, cap: float) -> float:
    """Returns the longest wait before the n-th retry: base doubling per retry, at most cap."""
    return min(cap, base * 2.0 ** min(max(0, retry - 1), _MAX_EXPONENT))


def backoff_delay(retry: int, *, base: float, cap: float, rng: Uniform | None = None) -> float:
    """Returns a full-jitter wait before the n-th retry, in [0, backoff_ceiling(n)]."""
    return (rng or random).uniform(0, backoff_ceiling(retry, base=base, cap=cap))
