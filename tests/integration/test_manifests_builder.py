"""Each image's builder stage, replayed on this machine (there is no Docker engine here).

The files every Dockerfile COPYs are laid out as the build context would be,
and its `uv sync` steps run with the stage's environment, into a throwaway
virtualenv. What comes out must be what the runtime stage needs: the package
and crmsync-common installed as wheels (not editable), the console scripts,
the Alembic migrations, and none of the dev tools.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_manifests_images import IMAGES, dockerfile, exec_form, package, parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
DEV_TOOLS = ("pytest", "ruff", "hypothesis", "schemathesis", "testcontainers", "kubernetes_validate")


def uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by `make setup`"
    return found


def replay_builder(image: str, context: Path, venv: Path) -> None:
    """Copies what the builder stage COPYs into `context` and runs its uv steps there."""
    builder = parse_dockerfile(dockerfile(image))[1]
    env = {**os.environ}
    for name in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON"):
        env.pop(name, None)
    for instruction in builder:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                env[key] = value
        elif instruction.keyword == "COPY":
            *sources, destination = instruction.args.split()
            for source in sources:
                target = context / destination / Path(source).name if destination.endswith("/") else context / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / source, target)
        elif instruction.keyword == "RUN" and "uv sync" in instruction.args:
            argv = shlex.split(instruction.args.split("uv sync", 1)[1])
            # The image's interpreter path and venv location are the container's; use this machine's.
            # Compiling bytecode only makes the image start faster: skipped here to keep the test quick.
            env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=sys.executable, UV_COMPILE_BYTECODE="0")
            env.pop("UV_LINK_MODE", None)
            done = subprocess.run(
                [uv(), "sync", *argv], cwd=context, env=env, capture_output=True, text=True, timeout=600, check=False
            )
            assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_builder_stage_yields_a_runtime_virtualenv_without_dev_tools(image: str, tmp_path: Path) -> None:
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    replay_builder(image, context, venv)

    runtime = parse_dockerfile(dockerfile(image))[-1]
    (cmd,) = [exec_form(i.args) for i in runtime if i.keyword == "CMD"]
    assert (venv / "bin" / cmd[0]).exists()
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not [tool for tool in DEV_TOOLS if (site / tool).exists()]
    # Installed as wheels: the code lives in site-packages, nothing points back at the source tree.
    assert not [p for p in site.glob("*.pth") if str(context) in p.read_text()]
    module = package(image)["name"].removeprefix("crmsync-").replace("-", "_")
    assert (site / "crmsync" / module / "__init__.py").exists()
    if image != "emulator":
        assert (venv / "bin" / "crmsync-migrate").exists() and (venv / "bin" / "crmsync-topics").exists()
        assert list((site / "crmsync" / "common" / "db" / "migrations" / "versions").glob("*.py"))
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import crmsync.{module}.__main__"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
