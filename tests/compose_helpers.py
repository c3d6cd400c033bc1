"""What the docker-compose test (tests/test_compose.py) and the stack test (tests/swarm/test_stack.py) share:
Claret's image built from docker-compose.yml as a user builds it without a registry, the compose file's
variables for a deployment of its own, and waiting for its containers to be healthy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ROOT

BASE_IMAGE = "claret-base:bookworm"
COMPOSE_FILE = ROOT / "docker-compose.yml"
"""Claret's services: what docker-compose and `docker stack deploy` both read."""
PROFILES_FILE = ROOT / "docker-compose.override.yml"
"""The profiles, which docker-compose reads by default and `docker stack deploy` cannot."""
HEALTHY_WITHIN = 120.0


def missing(reason: str) -> None:
    """Skipped on a developer's machine, failed in CI, where these tests must run."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def compose_program() -> list[str]:
    """Debian's docker-compose 1.29, or Compose v2 as a Docker CLI plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    missing("neither docker-compose nor `docker compose` is installed (scripts/install installs docker-compose)")
    raise AssertionError("unreachable")


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a command in the repository; its stdout, or an AssertionError with what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def build_base_image() -> None:
    present = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode == 0
    if not present and (os.geteuid() != 0 or not shutil.which("debootstrap")):
        missing(f"no {BASE_IMAGE} image, and building it needs root and debootstrap (scripts/install)")
    run("bash", str(ROOT / "scripts" / "base-image"), BASE_IMAGE, timeout=600)


def compose_environment(image: str, root: Path | None = None, instance: str = "", **variables: str) -> dict[str, str]:
    """The compose file's variables for the image; with ``root``, for a deployment of its own: a settings file
    naming its platform instance (so it owns only its operators on a shared engine), its data folder
    ``root/data`` (made here), 1 s health checks; then ``variables``. None of the caller's COMPOSE_* settings."""
    env = {**os.environ, "CLARET_BASE_IMAGE": BASE_IMAGE, "CLARET_IMAGE": image}
    for name in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        env.pop(name, None)
    if root is not None:
        (root / "data").mkdir(parents=True)
        settings = (ROOT / "claret.env").read_text()
        env_file = root / "claret.env"
        env_file.write_text(f"{settings}\nCLARET_INSTANCE={instance}\nCLARET_GPUS=\nCLARET_STOP_GRACE=1\n")
        env |= {
            "CLARET_ENV_FILE": str(env_file),
            "CLARET_DATA_HOST": str(root / "data"),
            "CLARET_HEALTH_INTERVAL": "1s",
        }
    return env | variables


@contextmanager
def claret_image_built() -> Iterator[str]:
    """Claret's image under a tag of its own, built by `docker-compose build` without any registry (the
    debootstrapped base, Claret and its dependencies from wheels built here); removed afterwards."""
    build_base_image()
    run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(ROOT / "dist"), str(ROOT), timeout=600)
    image = f"claret:test-{uuid.uuid4().hex[:10]}"
    try:
        run(*compose_program(), "-f", str(COMPOSE_FILE), "build", env=compose_environment(image), timeout=600)
        yield image
    finally:
        subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)


def wait_healthy(containers: Callable[[], list[str]], expected: int, logs: Callable[[], str]) -> None:
    """Until ``containers()`` lists ``expected`` ids, each healthy, or running where its image has no health
    check; the AssertionError carries their states and ``logs()``."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        ids = containers()
        if len(ids) == expected:
            health = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
            inspect = ["docker", "inspect", "-f", "{{.Name}} " + health, *ids]
            out = subprocess.run(inspect, capture_output=True, text=True).stdout  # one may be gone: a restart
            states = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
            if len(states) == expected and all(state in ("healthy", "running") for state in states.values()):
                return
        time.sleep(0.5)
    raise AssertionError(f"not healthy within {HEALTHY_WITHIN} s: {states}\n{logs()}")


def console_page(address: str, path: str) -> str:
    """A console page's HTML (its tokens off), read as a browser would."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return str(response.read().decode())
