"""Integration tier: a real container engine (podman here, docker elsewhere).

Skipped, with the reason, when no engine answers. Every test control plane
gets its own $SUBSTRATUS_HOME, so its containers carry their own instance
label and are removed at the end.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus.errors import EngineError
from substratus.runtimes.engine import EngineRuntime, detect_engine
from tests.requirements import require

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "contract"
SUB = str(Path(sys.executable).with_name("sub"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine() -> str:
    try:
        return detect_engine(os.environ.get("SUBSTRATUS_ENGINE") or None)
    except EngineError as err:
        require(False, f"no container engine: {err.message} (run `make setup`)")
        raise


@pytest.fixture(scope="session")
def runtime(engine: str) -> EngineRuntime:
    return EngineRuntime(engine)


@pytest.fixture(scope="session")
def busybox() -> Path:
    path = Path(shutil.which("busybox") or "/bin/busybox")
    require(path.exists(), "static busybox is missing (apt-get install busybox-static, done by `make setup`)")
    return path


def copy_fixture(name: str, dest: Path, busybox: Path) -> Path:
    """A contract fixture dir plus the static busybox it is built FROM scratch with."""
    shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("busybox"))
    shutil.copy2(busybox, dest / "busybox")
    return dest


class Sub:
    """Runs the real `sub` CLI against one $SUBSTRATUS_HOME."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = {**os.environ, "SUBSTRATUS_HOME": str(home), "SUBSTRATUS_READY_TIMEOUT": "60", **env}

    def __call__(self, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SUB, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 600) -> str:
        proc = self(*args, timeout=timeout)
        assert proc.returncode == 0, f"sub {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout


def cleanup(sub: Sub, engine: str) -> None:
    from substratus.reconcile.layout import Layout

    sub("down", timeout=60)
    instance = Layout(sub.home.resolve()).instance
    ids = subprocess.run([engine, "ps", "-aq", "--filter", f"label=substratus.ai/instance={instance}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run([engine, "rm", "-f", *ids], capture_output=True)


@pytest.fixture
def sub(tmp_path: Path, engine: str) -> Iterator[Sub]:
    s = Sub(tmp_path / "home")
    yield s
    cleanup(s, engine)


class Lines:
    """A process's stdout, line by line, read by a thread (select() cannot see Python's read buffer)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.queue = proc, queue.Queue[str]()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str:
        return self.queue.get(timeout=timeout)

    def until(self, want: str, timeout: float = 60) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            lines.append(line)
            if want in line:
                return lines
        raise AssertionError(f"{want!r} never came; got {lines}")
