"""`crmsync-dynamics-emulator`: serve the Dataverse Web API emulator over one generated environment."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import uvicorn

from crmsync.dynamics_emulator.app import create_app
from crmsync.dynamics_emulator.dataset import MAX_ROWS
from crmsync.dynamics_emulator.state import Emulator, Settings
from crmsync.emulator.tls import CertPair, generate_pair


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="crmsync-dynamics-emulator",
        description=(
            "A Microsoft Dataverse (Dynamics 365) Web API emulator: the identity platform's client "
            "credentials token endpoint, EntityDefinitions, OData reads with paging and change tracking, "
            "writes, $batch, CreateMultiple/UpdateMultiple, and a control API under /__emulator."
        ),
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8086, help="port to listen on (default 8086)")
    add("--leads", type=int, default=2000, help="generated leads (0..2,000,000)")
    add("--contacts", type=int, default=2000, help="generated contacts (0..2,000,000)")
    add("--seed", type=int, default=7, help="dataset seed: the same seed gives the same records")
    add("--client-id", default="crmsync-local", help="the OAuth client (application) id accepted")
    add("--client-secret", default="crmsync-local-secret", help="its client secret")
    add("--tenant", default="00000000-0000-0000-0000-00000000c0de", help="the directory (tenant) id")
    add("--token-ttl", type=int, default=3599, help="access token lifetime in seconds (default 3599)")
    add("--rate-limit", type=int, help="enforce at most this many requests per --rate-window (429 beyond)")
    add("--rate-window", type=float, default=300.0, help="the sliding window of --rate-limit, seconds")
    tls = parser.add_argument_group("HTTPS", "Dataverse clients refuse plain HTTP; trust the certificate "
                                    "with REQUESTS_CA_BUNDLE / SSL_CERT_FILE")  # fmt: skip
    tls.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a self-signed certificate made at start"
    )
    tls.add_argument(
        "--tls-cert-out", type=Path, help="where --tls writes its certificate (default: a temporary file)"
    )
    add("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    for name in ("leads", "contacts"):
        if not 0 <= getattr(args, name) <= MAX_ROWS:
            parser.error(f"--{name} must be between 0 and 2,000,000")
    if args.tls_cert_out is not None and not args.tls:
        parser.error("--tls-cert-out needs --tls")
    return args


def _config(app: object, args: argparse.Namespace, pair: CertPair | None) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        http="h11",
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=str(pair.certfile) if pair else None,
        ssl_keyfile=str(pair.keyfile) if pair else None,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    settings = Settings(args.leads, args.contacts, args.seed, args.client_id, args.client_secret, args.tenant,
                        token_ttl=args.token_ttl)  # fmt: skip
    emulator = Emulator(settings)
    if args.rate_limit is not None:
        emulator.faults.limit, emulator.faults.window = args.rate_limit, args.rate_window
        emulator.faults.enforced = True
    pair = generate_pair(args.tls_cert_out) if args.tls else None
    app = create_app(emulator)
    config = _config(app, args, pair)
    config.load()  # reads the key into the TLS context, so the generated key file can go now
    if pair is not None:
        pair.remove_key()
        print(f"crmsync-dynamics-emulator: TLS certificate {pair.certfile}", flush=True)
    scheme = "https" if pair else "http"
    print(
        f"crmsync-dynamics-emulator: {args.leads} leads and {args.contacts} contacts (seed {args.seed}) ready in "
        f"{time.perf_counter() - started:.2f}s; {scheme}://{args.host}:{args.port}/api/data/v9.2, "
        f"token endpoint {scheme}://{args.host}:{args.port}/{args.tenant}/oauth2/v2.0/token",
        flush=True,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
