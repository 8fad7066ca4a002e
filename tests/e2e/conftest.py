"""End-to-end tier: the examples run exactly as a user runs them (`make demo`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUB = str(Path(sys.executable).with_name("sub"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Demo:
    env: dict[str, str]
    output: str
    errors: str

    def sub(self, *args: str) -> str:
        return subprocess.run([SUB, *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def status(self, kind: str, name: str) -> dict:
        return dict(json.loads(self.sub("get", kind, name, "-o", "json"))["status"])


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make demo`'s job (scripts/demo.py) in its own $SUBSTRATUS_HOME; torn down afterwards."""
    home = Path(os.environ.get("SUBSTRATUS_E2E_HOME") or tmp_path_factory.mktemp("e2e") / "home")
    env = {**os.environ, "SUBSTRATUS_HOME": str(home)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], env=env, capture_output=True,
                          text=True, timeout=3000, cwd=REPO)
    sys.stderr.write(proc.stderr[-6000:])
    assert proc.returncode == 0, f"make demo failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    d = Demo(env=env, output=proc.stdout, errors=proc.stderr)
    yield d
    subprocess.run([SUB, "delete", "-f", str(REPO / "examples" / "demo")], env=env, capture_output=True)
    subprocess.run([SUB, "down"], env=env, capture_output=True)
