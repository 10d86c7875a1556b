"""CPU seconds per process group over a measured run: the services, the emulator, PostgreSQL, Kafka."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import psutil

# The bench process itself is "producer": it produces the events and polls the store.
DEFAULT_GROUPS = ("pusher", "emulator", "postgres", "kafka", "producer", "all")


class CpuMeter:
    """CPU seconds (user + system) spent by each process group between two readings.

    `named` gives pids their group; PostgreSQL backends and the Kafka broker are found by name.
    """

    def __init__(self, named: Mapping[int, str], *, groups: Sequence[str] = DEFAULT_GROUPS) -> None:
        self._groups = {**named, os.getpid(): "producer"}
        self.groups = tuple(groups)

    def _group(self, process: psutil.Process) -> str | None:
        if process.pid in self._groups:
            return self._groups[process.pid]
        try:
            if process.name() == "postgres":
                return "postgres"
            if process.name() == "java" and any("kafka" in part for part in process.cmdline()):
                return "kafka"
        except psutil.Error:
            return None
        return None

    def read(self) -> dict[int, tuple[str, float]]:
        """Returns pid -> (group, CPU seconds so far) for every process of a group."""
        found: dict[int, tuple[str, float]] = {}
        for process in psutil.process_iter():
            group = self._group(process)
            if group is None:
                continue
            try:
                found[process.pid] = (group, sum(process.cpu_times()[:2]))
            except psutil.Error:
                continue
        return found

    def spent_since(self, before: dict[int, tuple[str, float]]) -> dict[str, float]:
        """Returns CPU seconds per group since `before` (a backend that came and went is missed)."""
        spent = dict.fromkeys(self.groups, 0.0)
        for pid, (group, seconds) in self.read().items():
            if group in spent:
                spent[group] += seconds - before.get(pid, (group, 0.0))[1]
        spent["all"] = sum(v for k, v in spent.items() if k != "all")
        return spent
