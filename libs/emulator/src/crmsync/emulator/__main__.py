"""`crmsync-emulator`: serve the Salesforce emulator with one generated org."""

from __future__ import annotations

import argparse
import sys
import time

import uvicorn

from crmsync.emulator.app import build, create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Returns the command line's options."""
    parser = argparse.ArgumentParser(
        prog="crmsync-emulator",
        description=(
            "A Salesforce REST API emulator (OAuth2, describe, SOQL query/queryAll, records, composite "
            "collections, updated/deleted feeds, Bulk API 2.0 query jobs, limits) with generated data. "
            "The org given here accepts the OAuth client given here; more orgs can be created through "
            "POST /__emulator/orgs."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8085, help="port to listen on (default 8085)")
    parser.add_argument(
        "--leads", type=int, default=2000, help="generated leads in the default org (0..2,000,000)"
    )
    parser.add_argument(
        "--contacts", type=int, default=2000, help="generated contacts in the default org (0..2,000,000)"
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="dataset seed: the same seed gives the same records"
    )
    parser.add_argument(
        "--client-id", default="crmsync-local", help="OAuth client id (consumer key) of the default org"
    )
    parser.add_argument(
        "--client-secret", default="crmsync-local-secret", help="OAuth client secret of the default org"
    )
    parser.add_argument(
        "--api-limit",
        type=int,
        default=100_000,
        help="daily API request budget of each org (default 100,000)",
    )
    parser.add_argument(
        "--token-ttl", type=int, default=7200, help="access token lifetime in seconds (default 7200)"
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name in ("leads", "contacts"):
        if not 0 <= getattr(args, name) <= 2_000_000:
            sys.exit(f"--{name} must be between 0 and 2,000,000")
    emulator = build(token_ttl=args.token_ttl, api_limit=args.api_limit)
    started = time.perf_counter()
    org = emulator.create_org(
        leads=args.leads,
        contacts=args.contacts,
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
    )
    print(
        f"crmsync-emulator: org {org.org_id} with {args.leads} leads and {args.contacts} contacts "
        f"ready in {time.perf_counter() - started:.2f}s; http://{args.host}:{args.port}",
        flush=True,
    )
    uvicorn.run(
        create_app(emulator, freeze_heap=True),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http="h11",
        # Let long URIs reach the app so it answers 414 the way Salesforce does.
        h11_max_incomplete_event_size=1 << 20,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
