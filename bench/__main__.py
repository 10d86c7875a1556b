"""`python -m bench` (`make bench`): runs every benchmark module in turn.

Each `bench/<name>_bench.py` is a standalone program that prints its figures,
the machine, and the baseline it measured beside them in the same run.
`python -m bench connector puller` runs only those. Each runs with its defaults:
`accounts` then means 2,000 accounts at full scale under its one-hour cap
(`python -m bench.accounts_bench --scale 0.05` for a quick run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.stem.removesuffix("_bench") for p in here.glob("*_bench.py"))
    chosen = [n for n in names if not argv or n in argv]
    unknown = sorted(set(argv) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench {name} ===", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}_bench"]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
