"""Servers of a test's own, for tests that kill them: a PostgreSQL cluster, a single-node
KRaft Kafka, the Salesforce emulator and the four services, all as processes on free
loopback ports under one temporary directory.

Killing the machine's shared PostgreSQL (5432) or Kafka (9092) would break every other
test run, so a fault test starts these instead:

- ``PrivatePostgres``: ``initdb`` into a directory owned by the ``postgres`` user (the
  server refuses root), ``postgres`` on a free port, a ``crmsync`` superuser and
  database, migrated to head. ``kill()`` SIGKILLs the postmaster and every backend
  (its process group) as a crash would; ``start()`` again on the same data dir and
  port (crash recovery).
- ``PrivateKafka``: ``deploy/local/infra.sh kafka-up`` with a state directory and ports
  of its own (the jars ``make infra-up`` cached). ``kill()`` SIGKILLs the broker;
  ``start()`` again on the same data dir and port.
- ``Stack``: both, the emulator, and the four services (``python -m crmsync.<name>``),
  each with its log file; ``kill_service``, ``start_service``, ``ready``, ``admin``.
- ``private_stack(root, service_env_extra=)``: a context manager that starts it all and, on
  exit, kills every process it started and removes ``root`` (kept, with every log, when
  ``CRMSYNC_TEST_KEEP_FAULT_DIR=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from crmsync.common.db.migrate import upgrade
from crmsync.common.kafka.topics import ensure_topics
from crmsync.common.settings import CommonSettings
from tests.support.emulator import EmulatorServer
from tests.support.processes import (
    REPO,
    Process,
    answers,
    free_port,
    service_env,
    start_emulator,
    stop_all,
    wait_until,
)
from tests.support.processes import (
    start_service as spawn_service,
)

SERVICES = ("mapping-api", "scheduler", "puller", "pusher")
INFRA_SH = REPO / "deploy" / "local" / "infra.sh"
BIN = Path(sys.executable).parent
USER = "crmsync"
CLIENT_ID, CLIENT_SECRET = "crmsync-faults", "crmsync-faults-secret"


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise RuntimeError(
            "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (make infra-up installs them)"
        )
    return found[-1]


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _group_gone(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return False
    return True


class PrivatePostgres:
    """A PostgreSQL cluster in `root`, on a free loopback port, run as the `postgres` user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.bindir = _pg_bindir()
        self.process: Process | None = None
        # PostgreSQL refuses to run as root: root runs it as the postgres user, anyone else as itself.
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._uid, self._gid = account.pw_uid, account.pw_gid

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}:{USER}@127.0.0.1:{self.port}/crmsync"

    def init(self) -> None:
        """Creates the cluster and its database, migrated to head."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._uid is not None and self._gid is not None:
            os.chown(self.root, self._uid, self._gid)
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
             "--no-sync"],
            cwd=self.root, user=self._uid, group=self._gid, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()
        asyncio.run(self._execute("postgres", "create database crmsync"))
        upgrade(self.url)

    def start(self, timeout: float = 60) -> None:
        """Starts the server on its data dir and port; returns once it answers."""
        command = [
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
            "-c", "max_connections=200", "-c", "shared_buffers=64MB",
            # A killed process loses nothing the OS holds, so fsync only costs time here.
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            popen = subprocess.Popen(
                command, cwd=self.root, user=self._uid, group=self._gid, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.process = Process(popen, self.log)
        wait_until(
            lambda: asyncio.run(self._answers()),
            timeout=timeout,
            what=f"PostgreSQL on 127.0.0.1:{self.port}",
            process=self.process,
            interval=0.2,
        )

    def kill(self) -> None:
        """SIGKILLs the postmaster and every backend at once, as a crash would."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.popen.wait(10)
        wait_until(lambda: _group_gone(pgid), timeout=10, what="PostgreSQL's backends to exit", interval=0.05)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    async def _answers(self) -> bool:
        try:
            await self._execute("postgres", "select 1")
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def _execute(self, database: str, sql: str) -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=USER, database=database, timeout=3
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


class PrivateKafka:
    """A single-node KRaft broker started by `infra.sh kafka-up` with `root` as its state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.controller_port = free_port()
        self.log = root / "kafka" / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CRMSYNC_LOCAL_DIR": str(self.root),
            "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CRMSYNC_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    def pid(self) -> int | None:
        pidfile = self.root / "kafka" / "kafka.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    def start(self, timeout: float = 120) -> None:
        """Starts the broker on its data dir and port (formatted on first start); returns once it listens."""
        done = subprocess.run(
            ["bash", str(INFRA_SH), "kafka-up"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"private Kafka did not start: {done.stdout}{done.stderr}")

    def kill(self) -> None:
        """SIGKILLs the broker."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _gone(pid), timeout=15, what="the Kafka broker to exit", interval=0.05)
        (self.root / "kafka" / "kafka.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass
class Stack:
    """The private servers, the emulator and the four services pointed at them."""

    root: Path
    postgres: PrivatePostgres
    kafka: PrivateKafka
    emulator: EmulatorServer | None = None
    settings: CommonSettings = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = CommonSettings(
            environment="test",
            database_url=self.postgres.url,
            kafka_bootstrap_servers=self.kafka.bootstrap,
            topic_partitions=3,
            log_json=True,
        )

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start_service(self, name: str, *, wait: bool = True, timeout: float = 90) -> None:
        """Starts one service on its port (the same one on a restart); returns once /readyz answers
        (at once when not `wait`)."""
        port = self.ports.setdefault(name, free_port())
        self.processes[name] = spawn_service(
            f"crmsync.{name.replace('-', '_')}",
            env=dict(self.env, CRMSYNC_HTTP_PORT=str(port)),
            log=self.log(name),
        )
        if wait:
            self.wait_ready(name, timeout=timeout)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        wait_until(
            lambda: self.ready(name),
            timeout=timeout,
            what=f"{name} /readyz",
            process=self.processes[name],
            interval=0.2,
        )

    def revive(self) -> list[str]:
        """Starts again whatever a previous scenario left dead; returns the services restarted."""
        if self.postgres.process is None or self.postgres.process.popen.poll() is not None:
            self.postgres.start()
        pid = self.kafka.pid()
        if pid is None or _gone(pid):
            self.kafka.start()
        dead = [name for name in SERVICES if not self.alive(name)]
        for name in dead:
            self.start_service(name, wait=False)
        for name in SERVICES:
            self.wait_ready(name)
        return dead

    def ready(self, name: str) -> bool:
        return answers(f"http://127.0.0.1:{self.ports[name]}/readyz")

    def alive(self, name: str) -> bool:
        return self.processes[name].popen.poll() is None

    def kill_service(self, name: str) -> None:
        """SIGKILL: the service gets no chance to finish what it holds."""
        self.processes[name].kill()

    def admin(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "crmsync-admin"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise AssertionError(f"crmsync-admin {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout.strip()

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.ports['mapping-api']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def health(self) -> dict[str, str]:
        """Each service's state: "ok", or why not (exited with its code, /readyz not 200)."""
        states = {}
        for name in SERVICES:
            code = self.processes[name].popen.poll()
            if code is not None:
                states[name] = f"exited with {code}"
            else:
                states[name] = "ok" if self.ready(name) else "/readyz not 200"
        return states


@contextlib.contextmanager
def private_stack(root: Path | None = None, *, service_env_extra: Mapping[str, str] = ()) -> Iterator[Stack]:
    """Starts the private PostgreSQL and Kafka, the emulator and the four services under `root`
    (a new temporary directory when None); on exit kills them all and removes `root`."""
    root = root or Path(tempfile.mkdtemp(prefix="crmsync-faults-"))
    root.chmod(0o755)  # the postgres user must reach its data dir below
    stack = Stack(root, PrivatePostgres(root / "pg"), PrivateKafka(root))
    emulator: Process | None = None
    try:
        stack.postgres.init()
        stack.kafka.start()
        asyncio.run(ensure_topics(stack.settings))
        emulator = start_emulator(
            leads=0, contacts=0, seed=7, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            log=stack.log("emulator"),
        )  # fmt: skip
        http = httpx.Client(base_url=emulator.base_url, timeout=httpx.Timeout(30.0))
        stack.emulator = EmulatorServer(emulator.base_url, CLIENT_ID, CLIENT_SECRET, emulator, http)
        stack.env = service_env(stack.settings, CRMSYNC_ENVIRONMENT="test", **dict(service_env_extra))
        for name in SERVICES:
            stack.start_service(name, wait=False)
        for name in SERVICES:
            stack.wait_ready(name)
        yield stack
    finally:
        stop_all(stack.processes.values(), timeout=5)
        if emulator is not None:
            emulator.kill()
        if stack.emulator is not None:
            stack.emulator.http.close()
        stack.kafka.kill()
        stack.postgres.kill()
        if os.environ.get("CRMSYNC_TEST_KEEP_FAULT_DIR") == "1":
            print(f"\nfault suite's servers' data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
