"""What every service process shares: health endpoints, signals, graceful stop.

`run_service` serves /healthz, /readyz and /metrics (or the service's own ASGI
app), runs the service's main coroutine until SIGTERM or SIGINT, then gives it
`shutdown_timeout_s` to finish the work in hand before cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg
import structlog
import uvicorn
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from crmsync.common.domain.backoff import backoff_delay
from crmsync.common.observability.logging import configure_logging
from crmsync.common.observability.metrics import SERVICE_UP
from crmsync.common.settings import CommonSettings

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[object]]
Main = Callable[[asyncio.Event], Awaitable[None]]

# Postgres or Kafka is away (or the network to them): a service's loop logs these and
# tries again at its next round. Anything else is a bug: it ends `main`, and the
# process exits 1 to be restarted, rather than logging the same failure for ever.
# asyncpg's own connection errors come unwrapped from a new connection (a server
# starting up or shutting down) and from statements run on the driver's connection.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    KafkaError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)

# SQLSTATE classes of a statement that may go through when tried again: connection
# exceptions, transaction rollbacks (deadlock, serialization), insufficient resources,
# operator intervention (the server shutting down or starting up).
_PASSING_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})

T = TypeVar("T")


def refused_statement(error: BaseException) -> bool:
    """Returns whether a database error (or the one `error` was raised from) is the server refusing
    the statement itself: a syntax error, a constraint, a type. That is a bug, not an outage;
    trying it again would change nothing. A lost or refused connection is not."""
    db = error if isinstance(error, DBAPIError) else error.__cause__
    if not isinstance(db, DBAPIError):
        return False
    if db.connection_invalidated or isinstance(db, OperationalError | InterfaceError):
        return False
    sqlstate = getattr(db.orig, "sqlstate", None) or ""
    return sqlstate[:2] not in _PASSING_SQLSTATE_CLASSES


@dataclass
class Outage:
    """A loop's consecutive failures for want of a dependency, and how long to wait before the next try.

    The wait doubles from `base_s` up to `cap_s` (full jitter, so replicas that lost
    a server together do not come back together); a success starts again from `base_s`.
    """

    what: str
    base_s: float = 0.5
    cap_s: float = 10.0
    failures: int = 0
    # The wait the last failure asked for (0 when there is no outage).
    wait_s: float = 0.0

    @property
    def ongoing(self) -> bool:
        return self.failures > 0

    def failed(self, error: BaseException, **context: object) -> float:
        """Counts a failure, logs it; returns the wait before the next try."""
        self.failures += 1
        delay = self.wait_s = backoff_delay(self.failures, base=self.base_s, cap=self.cap_s)
        log.warning(
            "dependency_unavailable",
            what=self.what,
            failures=self.failures,
            retry_in_s=round(delay, 2),
            error=f"{type(error).__name__}: {error}"[:300],
            **context,
        )
        return delay

    def recovered(self) -> None:
        """Ends the outage, if there was one."""
        if self.failures:
            log.info("dependency_recovered", what=self.what, failures=self.failures)
        self.failures, self.wait_s = 0, 0.0

    async def wait(self, stop: asyncio.Event, error: BaseException, **context: object) -> bool:
        """Counts a failure and waits before the next try; returns False when `stop` came meanwhile."""
        return not await wait_for_stop(stop, self.failed(error, **context))


async def wait_for_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Waits up to `seconds`; returns whether `stop` was set by then."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def ride_out(
    attempt: Callable[[], Awaitable[T]],
    *,
    stop: asyncio.Event,
    outage: Outage,
    transient: tuple[type[BaseException], ...] = DEPENDENCY_ERRORS,
) -> tuple[bool, T | None]:
    """Runs `attempt` until it succeeds, waiting out `transient` errors with backoff.

    Returns (True, its result), or (False, None) when `stop` was set during an
    outage. Any other error goes on up, and so does a statement the database refused
    (`refused_statement`): a bug is not retried.
    """
    while True:
        try:
            result = await attempt()
        except transient as error:
            if refused_statement(error):
                raise
            if not await outage.wait(stop, error):
                return False, None
            continue
        outage.recovered()
        return True, result


async def check_readiness(
    checks: Mapping[str, ReadinessCheck], *, timeout_s: float = 2.0
) -> tuple[bool, dict[str, str]]:
    """Runs every check; returns (all ok, name -> 'ok' or the error)."""

    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), timeout_s)
            return "ok"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    report = dict(zip(checks, results, strict=True))
    return all(r == "ok" for r in results), report


def health_routes(*, service: str, checks: Mapping[str, ReadinessCheck]) -> list[Route]:
    """Returns /healthz (process alive), /readyz (dependencies answer) and /metrics."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def readyz(_: Request) -> Response:
        ok, report = await check_readiness(checks)
        SERVICE_UP.labels(service).set(1 if ok else 0)
        return JSONResponse({"ready": ok, "checks": report}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def health_app(*, service: str, checks: Mapping[str, ReadinessCheck]) -> Starlette:
    return Starlette(routes=health_routes(service=service, checks=checks))


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: run_service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def tune_collector(*, young_threshold: int) -> None:
    """Sets the garbage collector up for a long-running batch service.

    What is loaded by now (modules, classes, settings) lives as long as the process.
    Frozen, it is left out of the collector's full passes, which otherwise walk it
    all: over 100,000 objects, a pause of 100 ms or more every few seconds.

    The young threshold: measured under the pusher bench at 1,000 events/s, with
    Python's default of 700 a batch's objects survived enough young passes to set
    off a full pass every few seconds, and p99 latency was 290-570 ms instead of
    ~220 ms.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


async def run_service(
    *,
    name: str,
    settings: CommonSettings,
    main: Main,
    checks: Mapping[str, ReadinessCheck],
    app: ASGIApp | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Runs `main(stop)` beside the HTTP server until a signal; returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _request_stop, stop, sig)

    server = _Server(
        uvicorn.Config(
            app or health_app(service=name, checks=checks),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on" if app is not None else "off",
        )
    )
    tune_collector(young_threshold=settings.gc_young_threshold)
    server_task = asyncio.create_task(server.serve(), name=f"{name}-http")
    main_task = asyncio.create_task(main(stop), name=f"{name}-main")
    log.info("service_started", port=settings.http_port)
    exit_code = 0
    stop_wait = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({main_task, server_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        # Waited for, not awaited: a TimeoutError of main's own is a failure, not the shutdown's.
        finished, _ = await asyncio.wait({main_task}, timeout=settings.shutdown_timeout_s)
        if not finished:
            log.warning("shutdown_timeout", timeout_s=settings.shutdown_timeout_s)
            main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await main_task
        else:
            try:
                await main_task
            except Exception:
                log.exception("service_failed")
                exit_code = 1
        if server_task.done() and server_task.exception() is not None:
            log.error("http_server_failed", error=str(server_task.exception()))
            exit_code = 1
    finally:
        server.should_exit = True
        stop_wait.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(server_task, 3)
    log.info("service_stopped", exit_code=exit_code)
    return exit_code


class ServiceApp(Protocol):
    """What a service's composition root returns: its settings, its main and its readiness checks."""

    @property
    def settings(self) -> CommonSettings: ...

    async def main(self, stop: asyncio.Event) -> None: ...

    def checks(self) -> Mapping[str, ReadinessCheck]: ...


def run_app(name: str, build: Callable[[], ServiceApp]) -> int:
    """Builds the app inside the event loop (aiokafka binds to it), runs it; returns the exit code."""

    async def run() -> int:
        app = build()
        configure_logging(service=name, level=app.settings.log_level, json=app.settings.log_json)
        return await run_service(name=name, settings=app.settings, main=app.main, checks=app.checks())

    return asyncio.run(run())


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stop_requested", signal=sig.name)
    stop.set()
