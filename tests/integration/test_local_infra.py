"""`make infra-up` is idempotent and says why when a server does not come up."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
INFRA = Path(__file__).resolve().parents[2] / "deploy" / "local" / "infra.sh"


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def test_a_second_infra_up_changes_nothing_and_says_so(infrastructure: dict[str, str]) -> None:
    env = dict(
        os.environ,
        CRMSYNC_DATABASE_URL=infrastructure["database_url"],
        CRMSYNC_KAFKA_BOOTSTRAP_SERVERS=infrastructure["kafka_bootstrap_servers"],
    )
    result = subprocess.run([str(INFRA), "up"], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "postgres: already up" in result.stdout
    assert "kafka: already up" in result.stdout


def test_a_broker_that_does_not_come_up_in_time_names_what_failed_and_the_log(tmp_path: Path) -> None:
    port = _free_port_pair()
    env = dict(
        os.environ,
        CRMSYNC_LOCAL_DIR=str(tmp_path),
        CRMSYNC_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        CRMSYNC_KAFKA_START_TIMEOUT="1",
    )
    result = subprocess.run([str(INFRA), "kafka-up"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"kafka: broker did not listen on 127.0.0.1:{port} within 1s" in result.stderr
    assert str(tmp_path / "kafka" / "kafka.log") in result.stderr
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
