"""`crmsync-migrate`: brings the database at CRMSYNC_DATABASE_URL to the newest schema."""

from __future__ import annotations

import argparse
import sys

from alembic import command
from alembic.config import Config

from crmsync.common.settings import CommonSettings


def alembic_config(database_url: str) -> Config:
    """Returns an Alembic config that points at the migrations shipped in this package."""
    config = Config()
    config.set_main_option("script_location", "crmsync.common.db:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crmsync-migrate", description=__doc__)
    parser.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    parser.add_argument("--downgrade", action="store_true", help="downgrade to REVISION instead")
    args = parser.parse_args(argv)
    settings = CommonSettings()
    config = alembic_config(settings.database_url)
    if args.downgrade:
        command.downgrade(config, args.revision)
    else:
        command.upgrade(config, args.revision)
    print(f"crmsync-migrate: database at revision {args.revision}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
