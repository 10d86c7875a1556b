"""The line every benchmark prints first: what machine the figures came from."""

from __future__ import annotations

import os
import platform

import psutil


def machine(*, with_load: bool = False) -> str:
    """Returns cores, CPU model, memory and Python (and the 1-minute load average if asked)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = psutil.virtual_memory().total / 2**30
    load = f"load average {os.getloadavg()[0]:.1f}, " if with_load else ""
    return (
        f"{os.cpu_count()} cores, {model}, {memory:.1f} GiB RAM, {load}"
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}"
    )
