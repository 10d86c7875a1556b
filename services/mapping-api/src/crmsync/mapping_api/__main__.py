"""`python -m crmsync.mapping_api` / `crmsync-mapping-api`: serves the API until SIGTERM."""

from __future__ import annotations

from crmsync.mapping_api.entrypoints.server import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
