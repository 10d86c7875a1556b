"""`crmsync-emulator`: serve the Salesforce emulator with one generated org, over HTTP or HTTPS."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import uvicorn

from crmsync.emulator.app import build, create_app
from crmsync.emulator.tls import CertPair, generate_pair

MAX_GENERATED = 2_000_000


def _many_orgs_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--orgs",
        type=int,
        default=0,
        help=(
            "also make this many orgs, sized by --org-records, org i (from 1) accepting the OAuth "
            "client {--client-id}-i with --client-secret (generated lazily: thousands start at once)"
        ),
    )
    parser.add_argument(
        "--org-records",
        type=_record_range,
        default=(500, 20_000),
        metavar="MIN:MAX",
        help="records (half Leads, half Contacts) of each --orgs org, drawn from --seed (default 500:20000)",
    )


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
    _many_orgs_flags(parser)
    tls = parser.add_argument_group(
        "HTTPS", "serve --port over TLS; a client trusts the certificate (REQUESTS_CA_BUNDLE, SSL_CERT_FILE)"
    )
    tls.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a self-signed certificate for 127.0.0.1 and localhost made at start",
    )
    tls.add_argument(
        "--tls-cert-out",
        type=Path,
        help="where --tls writes its certificate (default: a temporary file; the path is printed)",
    )
    tls.add_argument("--certfile", type=Path, help="serve HTTPS with this certificate (PEM; with --keyfile)")
    tls.add_argument("--keyfile", type=Path, help="the private key of --certfile (PEM)")
    tls.add_argument(
        "--plain-port",
        type=int,
        help="with HTTPS, also serve plain HTTP on this port (the same orgs and tokens)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    if args.orgs < 0:
        parser.error("--orgs cannot be negative")
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    if args.tls and args.certfile is not None:
        parser.error("--tls makes its own certificate; give either --tls or --certfile/--keyfile")
    if args.tls_cert_out is not None and not args.tls:
        parser.error("--tls-cert-out needs --tls")
    if args.plain_port is not None and not (args.tls or args.certfile):
        parser.error("--plain-port needs HTTPS (--tls or --certfile/--keyfile)")
    return args


def _record_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text!r}") from None
    if not 0 <= lo <= hi <= 2 * MAX_GENERATED:
        raise argparse.ArgumentTypeError("0 <= MIN <= MAX <= 4,000,000 is needed")
    return lo, hi


def _cert_pair(args: argparse.Namespace) -> CertPair | None:
    if args.tls:
        return generate_pair(args.tls_cert_out)
    if args.certfile is not None:
        return CertPair(args.certfile, args.keyfile, generated=False)
    return None


def _config(app: object, args: argparse.Namespace, port: int, pair: CertPair | None) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=args.host,
        port=port,
        log_level=args.log_level,
        http="h11",
        # Let long URIs reach the app so it answers 414 the way Salesforce does.
        h11_max_incomplete_event_size=1 << 20,
        lifespan="on",
        # The app writes Date itself (in Salesforce's spelling); Salesforce names no server.
        server_header=False,
        date_header=False,
        # A TLS connection a client left open waits for its close_notify; don't let it hold the exit.
        timeout_graceful_shutdown=2,
        ssl_certfile=str(pair.certfile) if pair else None,
        ssl_keyfile=str(pair.keyfile) if pair else None,
    )


async def _serve(configs: list[uvicorn.Config]) -> None:
    """Serves every config until one server stops (a signal stops them all)."""
    servers = [uvicorn.Server(config) for config in configs]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name in ("leads", "contacts"):
        if not 0 <= getattr(args, name) <= MAX_GENERATED:
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
    more = emulator.create_orgs(
        count=args.orgs,
        min_records=args.org_records[0],
        max_records=args.org_records[1],
        seed=args.seed,
        client_id_prefix=args.client_id,
        client_secret=args.client_secret,
    )
    pair = _cert_pair(args)
    scheme = "https" if pair else "http"
    urls = f"{scheme}://{args.host}:{args.port}"
    if args.plain_port is not None:
        urls += f" and http://{args.host}:{args.plain_port}"
    print(
        f"crmsync-emulator: org {org.org_id} with {args.leads} leads and {args.contacts} contacts"
        + (
            f" and {len(more)} more orgs of {args.org_records[0]}..{args.org_records[1]} records"
            if more
            else ""
        )
        + f" ready in {time.perf_counter() - started:.2f}s; {urls}",
        flush=True,
    )
    if pair is not None:
        print(f"crmsync-emulator: TLS certificate {pair.certfile}", flush=True)
    app = create_app(emulator, freeze_heap=True)
    configs = [_config(app, args, args.port, pair)]
    if args.plain_port is not None:
        configs.append(_config(app, args, args.plain_port, None))
    for config in configs:
        config.load()  # reads the key into the TLS context, so a generated key file can go now
    if pair is not None:
        pair.remove_key()
    asyncio.run(_serve(configs))


if __name__ == "__main__":
    main()
