"""Faults a test injects into one org: deterministic (the next N calls) or probabilistic (a rate)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

KINDS = ("latency", "429", "503", "500", "lock", "expired_token", "budget")


@dataclass
class Fault:
    kind: str  # one of KINDS
    count: int | None = None  # fail the next `count` matching calls (lock: records)
    rate: float | None = None  # or fail this share of matching calls, drawn from the org's seeded random
    latency_ms: int = 0
    path: str | None = None  # only calls whose path contains this
    method: str | None = None  # only calls with this HTTP method

    def as_json(self) -> dict:
        return asdict(self)


class FaultPlan:
    """The faults of one org, drawn deterministically from its seed."""

    def __init__(self, seed: int) -> None:
        self.faults: list[Fault] = []
        self.random = random.Random(seed)

    def add(self, fault: Fault) -> None:
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; one of {', '.join(KINDS)}")
        if fault.count is None and fault.rate is None:
            fault.count = 1
        if fault.rate is not None and not 0 <= fault.rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults.clear()

    def draw(self, kind: str, *, path: str, method: str, named_only: bool = False) -> Fault | None:
        """Returns the fault of that kind that fires for this call (consuming one of its count), if any.

        `named_only`: only faults whose `path` names this call (the token endpoint is hit that way alone).
        """
        for fault in self.faults:
            if fault.kind != kind:
                continue
            if named_only and not fault.path:
                continue
            if fault.path and fault.path not in path:
                continue
            if fault.method and fault.method.upper() != method.upper():
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
            if self.random.random() < (fault.rate or 0):
                return fault
        return None
