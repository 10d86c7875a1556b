"""`crmsync-admin`: create accounts and API keys.

    crmsync-admin account create "Acme Corp" [--id acme] [--provider salesforce|dynamics]
    crmsync-admin key create acme --role admin|reader [--name ci]
    crmsync-admin key list acme
    crmsync-admin key revoke acme crmsync_AbCdEf

A key is printed once; only its sha256 hash and its first characters are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from crmsync.common.crm.providers import DEFAULT_PROVIDER, PROVIDERS
from crmsync.mapping_api.bootstrap import build
from crmsync.mapping_api.handlers import admin
from crmsync.mapping_api.handlers.errors import DomainError
from crmsync.mapping_api.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmsync-admin", description="Create crmsync accounts and API keys."
    )
    groups = parser.add_subparsers(dest="group", required=True)
    account = groups.add_parser("account", help="accounts").add_subparsers(dest="action", required=True)
    create = account.add_parser(
        "create", help="create an account with the default mapping, policy and schedule"
    )
    create.add_argument("name", help="display name, e.g. 'Acme Corp'")
    create.add_argument("--id", dest="account_id", help="account id (default: derived from the name)")
    create.add_argument(
        "--provider",
        choices=tuple(PROVIDERS),
        default=DEFAULT_PROVIDER,
        help=f"the CRM it will connect, whose default mapping it starts with (default: {DEFAULT_PROVIDER})",
    )
    key = groups.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    key_create = key.add_parser("create", help="create an API key and print it once")
    key_create.add_argument("account", help="account id")
    key_create.add_argument("--role", choices=("admin", "reader"), required=True)
    key_create.add_argument("--name", default="", help="a label for the key")
    key_list = key.add_parser("list", help="list an account's keys (their first characters, never the key)")
    key_list.add_argument("account", help="account id")
    key_revoke = key.add_parser("revoke", help="revoke a key; calls with it answer 401 from then on")
    key_revoke.add_argument("account", help="account id")
    key_revoke.add_argument("prefix", help="the key's first characters, as `key list` shows them")
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> str:
    services = build(settings, pool_size=1)
    tx = services.tx
    try:
        if args.group == "account":
            account = await admin.create_account(
                tx, name=args.name, account_id=args.account_id, provider=args.provider
            )
            return account.id
        if args.action == "list":
            keys = await admin.list_api_keys(tx, account_id=args.account)
            return "\n".join(
                f"{k.prefix}\t{k.role}\t{k.name or '-'}\tcreated {k.created_at:%Y-%m-%d %H:%M}"
                + (f"\tlast used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "\tnever used")
                + (f"\trevoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
                for k in keys
            )
        if args.action == "revoke":
            revoked = await admin.revoke_api_key(tx, account_id=args.account, prefix=args.prefix)
            return f"revoked {revoked.prefix}"
        return await admin.create_api_key(tx, account_id=args.account, role=args.role, name=args.name)
    finally:
        await services.engine.dispose()


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = asyncio.run(_run(args, settings or Settings()))
    except DomainError as exc:
        print(f"crmsync-admin: {exc.field + ': ' if exc.field else ''}{exc.message}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
