"""Child processes for tests and benchmarks: services, the emulator, and waiting on them.

- ``service_env(settings, **extra)``: the environment a service process reads its
  settings from (database, broker, topic prefix; HTTP port 0 unless given).
- ``start_service(module, env=, log=)`` / ``start_process(command, env=, log=)``:
  a ``Process`` handle (``popen``, ``pid``, ``log``, ``tail()``, ``kill()``, ``stop()``; a context
  manager that kills what is still running on exit); ``stop_all(processes)`` stops
  several at once.
- ``start_emulator(leads=, contacts=, seed=, client_id=, client_secret=, extra_args=)``:
  an ``Emulator`` (a ``Process`` with ``base_url``) on a free loopback port, healthy
  (``port=``, ``scheme=`` and ``healthy=`` for one serving HTTPS).
- ``wait_for(predicate, timeout=, what=, log=, process=)`` (async) and
  ``wait_until(predicate, timeout=, what=, process=)`` (synchronous): poll until the
  predicate holds; fail with what was awaited, the log's tail, and a process that exited.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # only a type here: a benchmark's child process need not load the settings
    from crmsync.common.settings import CommonSettings

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL = 3000


def service_env(settings: CommonSettings, **extra: str) -> dict[str, str]:
    """Returns this process's environment with the settings a service reads, then `extra`."""
    return {
        **os.environ,
        "CRMSYNC_DATABASE_URL": settings.database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CRMSYNC_TOPIC_PREFIX": settings.topic_prefix,
        "CRMSYNC_HTTP_PORT": "0",
        **extra,
    }


def free_port() -> int:
    """Returns a loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Process:
    """A started child process and the file its output goes to (None: discarded)."""

    popen: subprocess.Popen[bytes] = field(repr=False)
    log: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self) -> str:
        """Returns the end of the log."""
        return _tail(self.log)

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL, and waits for the exit."""
        self.popen.kill()
        self.popen.wait(timeout)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM; returns the exit code, or None when it took longer than `timeout` (then killed)."""
        (code,) = stop_all([self], timeout=timeout)
        return code

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.popen.poll() is None:
            self.kill()


def stop_all(processes: Iterable[Process], *, timeout: float = 10) -> list[int | None]:
    """SIGTERM to every process at once, then each one's exit code (None: killed after `timeout`)."""
    processes = list(processes)
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for process in processes:
        try:
            codes.append(process.popen.wait(timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(None)
    return codes


def start_process(
    command: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None, cwd: Path = REPO
) -> Process:
    """Starts `command` with stdout and stderr appended to `log` (None: discarded)."""
    if log is None:
        popen = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    else:
        # A file, not a pipe nobody reads (a full pipe would stall the child).
        with log.open("ab") as out:
            popen = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Process(popen, log)


def start_service(module: str, *, env: dict[str, str], log: Path | None = None) -> Process:
    """Starts `python -m module` from the repository root."""
    return start_process([sys.executable, "-m", module], env=env, log=log)


@dataclass
class Emulator(Process):
    """A `crmsync-emulator` process; its log is a temporary file unless one was given."""

    base_url: str
    owns_log: bool

    def stop(self, timeout: float = 10) -> int | None:
        code = super().stop(timeout)
        if self.owns_log and self.log is not None:
            self.log.unlink(missing_ok=True)
        return code


def start_emulator(
    *,
    leads: int,
    contacts: int,
    seed: int,
    client_id: str,
    client_secret: str,
    extra_args: Sequence[str] = (),
    log: Path | None = None,
    timeout: float = 30,
    port: int | None = None,
    scheme: str = "http",
    healthy: Callable[[str], bool] = answers,
) -> Emulator:
    """Starts the emulator with one generated org (on a free port unless given); returns once
    `healthy` holds for its health URL (an HTTPS one needs a `healthy` trusting its certificate)."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "crmsync.emulator", "--host", "127.0.0.1", "--port", str(port),
        "--leads", str(leads), "--contacts", str(contacts), "--seed", str(seed),
        "--client-id", client_id, "--client-secret", client_secret, *extra_args,
    ]  # fmt: skip
    owns_log = log is None
    if log is None:
        handle, name = tempfile.mkstemp(prefix="crmsync-emulator-", suffix=".log")
        os.close(handle)
        log = Path(name)
    started = start_process(command, log=log)
    emulator = Emulator(started.popen, log, base_url=f"{scheme}://127.0.0.1:{port}", owns_log=owns_log)
    try:
        wait_until(
            lambda: healthy(f"{emulator.base_url}/__emulator/health"),
            timeout=timeout,
            what=f"crmsync-emulator to start on port {port}",
            process=emulator,
            interval=0.05,
        )
    except BaseException:
        emulator.kill()
        raise
    return emulator


Predicate = Callable[[], bool | Awaitable[bool]]
# What is awaited; a callable is asked at the failure, to say the state reached by then.
Description = str | Callable[[], str]


async def wait_for(
    predicate: Predicate,
    *,
    timeout: float,
    what: Description,
    log: Path | None = None,
    process: Process | None = None,
    interval: float = 0.2,
) -> None:
    """Polls `predicate` (plain or async) until it holds; fails after `timeout` seconds, or at
    once when `process` has exited, naming `what` with the tail of the log."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        _check(deadline, timeout=timeout, what=what, log=log, process=process)
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: Description,
    process: Process | None = None,
    interval: float = 0.2,
) -> None:
    """`wait_for` for synchronous callers (a plain predicate; the log is the process's)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        _check(deadline, timeout=timeout, what=what, log=None, process=process)
        time.sleep(interval)


def _check(
    deadline: float, *, timeout: float, what: Description, log: Path | None, process: Process | None
) -> None:
    if log is None and process is not None:
        log = process.log
    exited = process.popen.poll() if process is not None else None
    if exited is None and time.monotonic() <= deadline:
        return
    if callable(what):
        what = what()
    if exited is not None:
        problem = f"the process exited with {exited} while waiting for {what}"
    else:
        problem = f"timed out after {timeout:g}s waiting for {what}"
    if log is not None:
        problem += f"; log {log}:\n{_tail(log)}"
    raise AssertionError(problem)


def _tail(log: Path | None) -> str:
    if log is None:
        return "(output discarded)"
    return log.read_text(errors="replace")[-LOG_TAIL:] if log.exists() else "(empty)"
