"""`python -m bench.profiled FILE MODULE`: runs `python -m MODULE` with a CPU-time profiler that a
benchmark switches on and off from outside, so only the measured run is profiled.

SIGUSR1 starts profiling; SIGUSR2 stops it and writes the statistics to FILE
(pstats format). The profiler's clock is the process's CPU time, so waiting
on sockets does not count as time spent.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time


def main(argv: list[str]) -> None:
    out, module = argv
    profiler = cProfile.Profile(time.process_time)

    def start(_signum: int, _frame: object) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
