"""Where users are: the docker runtime, rootless podman as a normal user, `sub` from the wheel.

Three tiers, each started and cleaned up by its own fixtures here:

    docker    the repository's `sub` with SUBSTRATUS_ENGINE=docker, against podman's
              Docker API service (`podman system service`, a socket of our own), or a
              real Docker when SUBSTRATUS_TEST_DOCKER_HOST names one
    rootless  the built wheel installed into a venv of a normal user (made by
              scripts/setup-rootless-user.sh), driving that user's rootless podman
    wheel     the built wheel installed with pipx outside the repository, as root

The wheel is built once per session from a copy of the working tree, sdist first
and the wheel from the sdist (what `python -m build` does), so a file missing from
MANIFEST.in or setup.py's bundle shows up here. Its dependencies are collected
into a wheelhouse once, so the installs are quick and need no index.

A missing prerequisite skips with the reason on a developer's machine and fails
in CI (tests/requirements.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.requirements import require

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/engines" in str(item.fspath):
            item.add_marker(pytest.mark.engines)


def run(argv: list[str], *, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run and fail the test with the command's output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, f"{' '.join(argv)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def working_tree_files() -> list[str]:
    """Tracked files plus new ones git does not ignore: what a commit of this tree would hold."""
    out = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel from the sdist, from a copy of the working tree."""
    require(shutil.which("git") is not None, "git is needed to list the working tree (make setup installs it)")
    src = tmp_path_factory.mktemp("source")
    for rel in working_tree_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], timeout=600)
    wheels = sorted(dist.glob("substratus_py-*.whl"))
    assert len(wheels) == 1 and sorted(dist.glob("*.tar.gz")), list(dist.iterdir())
    print(f"built {wheels[0].name} (sdist first) in {time.monotonic() - started:.1f}s")
    return wheels[0]


@pytest.fixture(scope="session")
def wheelhouse(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and its dependencies, for installs with --no-index."""
    house = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(house),
         str(built_wheel)], timeout=600)
    house.chmod(0o755)
    for f in house.iterdir():
        f.chmod(0o644)
    return house


@pytest.fixture(scope="session")
def static_busybox() -> Path:
    path = Path("/bin/busybox")
    require(path.is_file(), "static busybox is missing (apt-get install busybox-static; make setup does)")
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f}s")


@pytest.fixture(scope="session")
def docker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """DOCKER_HOST (and DOCKER_BUILDKIT) for a Docker API: podman's service, started and stopped here."""
    require(shutil.which("docker") is not None, "the docker CLI is not installed (the docker tier drives it)")
    given = os.environ.get("SUBSTRATUS_TEST_DOCKER_HOST")
    if given:
        yield {"DOCKER_HOST": given}
        return
    require(shutil.which("podman") is not None,
            "podman is not installed: no Docker API to test against (or set SUBSTRATUS_TEST_DOCKER_HOST)")
    sock = tmp_path_factory.mktemp("docker-api") / "podman.sock"
    log = open(sock.with_name("service.log"), "w")
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # podman's API serves the legacy builder only: BuildKit would need buildx and a BuildKit daemon.
    env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    try:
        wait_until(lambda: subprocess.run(["docker", "info"], env={**os.environ, **env}, capture_output=True,
                                          timeout=30).returncode == 0, 60, "podman's Docker API did not answer")
        yield env
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()


@pytest.fixture(scope="session")
def docker_only_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This PATH with every podman binary left out: the docker tier must never fall back to podman.

    One folder of links to every other executable on PATH (git, tar, debootstrap...), first found first.
    """
    bindir = tmp_path_factory.mktemp("no-podman-bin")
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bindir / entry.name
            if entry.name.startswith("podman") or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    assert (bindir / "docker").exists() and not (bindir / "podman").exists()
    return str(bindir)
