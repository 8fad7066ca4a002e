"""The runtime contract suite (tests/runtime_contract.py) against the real engine (podman or docker).

The unit tier runs the same suite against the fake; here a static-busybox
image stands in for a contract image, so every verb (build, run, exec, stop,
remove) is checked against what podman really does.
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
    def runtime(self, runtime: EngineRuntime) -> EngineRuntime:
        return runtime
