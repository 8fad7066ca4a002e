"""The runtime contract suite (tests/runtime_contract.py) against the real engine (podman or docker).

The same behaviours the unit tier checks on the fake: if the fake and the
engine ever disagree, one of these two modules fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from substratus.runtimes.engine import EngineRuntime
from tests.runtime_contract import RuntimeContract


class TestEngineRuntime(RuntimeContract):
    @pytest.fixture
    def image_dir(self, tmp_path: Path, busybox: Path) -> Path:
        shutil.copy2(busybox, tmp_path / "busybox")
        (tmp_path / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "WORKDIR /model\n")
        return tmp_path

    @pytest.fixture
    def runtime(self, runtime: EngineRuntime) -> EngineRuntime:  # the session's engine (conftest)
        return runtime
