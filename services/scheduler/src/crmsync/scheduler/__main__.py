"""`python -m crmsync.scheduler` / `crmsync-scheduler`: runs the scheduler until SIGTERM."""

from __future__ import annotations

from crmsync.common.service import run_app
from crmsync.scheduler.bootstrap import bootstrap


def main() -> None:
    raise SystemExit(run_app("scheduler", bootstrap))


if __name__ == "__main__":
    main()
