"""`sub` installed from the built wheel with pipx, run outside the repository: the second way in.

pipx puts the wheel in a venv of its own; from a folder that is not the
repository, `sub examples` writes the examples from the files the wheel carries,
the shell pipeline goes through `sub apply --wait` on the machine's podman, and
`sub images build` builds python-base from the wheel's own images/base (FROM
the Debian root filesystem image that `make setup` leaves, under a tag of this
test's own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from substratus.reconcile.layout import Layout
from substratus.baseimages.decide import ROOTFS
from tests.engines.conftest import REPO, run

TEST_PYTHON_BASE = "localhost/substratus-test/python-base:wheel-tier"
TEST_ROOTFS = "localhost/substratus-test/debian-rootfs:wheel-tier"


class Installed:
    """The pipx-installed `sub`, run from `cwd` with its own SUBSTRATUS_HOME."""

    def __init__(self, bin_dir: Path, venv: Path, cwd: Path) -> None:
        self.sub_path = bin_dir / "sub"
        self.venv = venv
        self.cwd = cwd
        self.home = cwd / "substratus-home"
        # The caller's PATH (podman needs /usr/sbin for iptables as root) without the repository's venv.
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(REPO))]
        self.env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
                    "PATH": os.pathsep.join([str(bin_dir), *path]), "SUBSTRATUS_HOME": str(self.home),
                    "SUBSTRATUS_READY_TIMEOUT": "60"}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([str(self.sub_path), *args], env=self.env, cwd=self.cwd, timeout=timeout)


@pytest.fixture
def installed(built_wheel: Path, wheelhouse: Path, tmp_path: Path) -> Iterator[Installed]:
    pipx_home, bin_dir, cwd = tmp_path / "pipx", tmp_path / "bin", tmp_path / "work"
    cwd.mkdir()
    env = {**os.environ, "PIPX_HOME": str(pipx_home), "PIPX_BIN_DIR": str(bin_dir)}
    # pipx also upgrades its shared pip from the index, so the wheelhouse is an extra source here.
    run([sys.executable, "-m", "pipx", "install", "--pip-args", f"--find-links {wheelhouse}",
         str(built_wheel)], env=env, timeout=600)
    inst = Installed(bin_dir, pipx_home / "venvs" / "substratus-py", cwd)
    yield inst
    subprocess.run([str(inst.sub_path), "down"], env=inst.env, capture_output=True, timeout=60)
    instance = Layout(inst.home.resolve()).instance
    ids = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=substratus.ai/instance={instance}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", *ids], capture_output=True)


def test_the_installed_sub_runs_the_shell_pipeline_from_the_examples_it_writes(installed: Installed) -> None:
    where = run([str(installed.venv / "bin" / "python"), "-c",
                 "import substratus, substratus.bundle as b; print(substratus.__file__); print(b.root())"],
                cwd=installed.cwd)
    module, root = where.stdout.split()
    assert module.startswith(str(installed.venv)) and not module.startswith(str(REPO)), module
    assert root.endswith("substratus/_bundle"), root
    assert (Path(module).parent / "api" / "dashboard" / "static" / "index.html").is_file(), "package data missing"

    installed("examples", "examples")
    shell = installed.cwd / "examples" / "shell"
    assert (shell / "models" / "bigram" / "bin" / "serve.sh").stat().st_mode & 0o111, "wheel lost the exec bit"
    applied = installed("apply", "-f", "examples/shell", "--wait", "--timeout", "400", timeout=500)
    assert "all 5 objects ready" in applied.stderr, applied.stderr[-3000:]
    url = json.loads(installed("get", "server", "bigram-sonnets", "-o", "json").stdout)["status"]["url"]
    reply = httpx.post(f"{url}/generate", json={"prompt": "Shall I compare", "max_new_tokens": 6}, timeout=30)
    assert reply.status_code == 200 and reply.json()["generation"].startswith("Shall I compare"), reply.text
    assert "deleted" in installed("delete", "-f", "examples/shell").stdout
    assert json.loads(installed("get", "-o", "json").stdout) == {"items": []}


def test_the_installed_sub_builds_python_base_from_its_own_files(installed: Installed) -> None:
    if subprocess.run(["podman", "image", "exists", ROOTFS]).returncode != 0:
        pytest.skip(f"{ROOTFS} is absent (python-base was pulled, not made here): nothing to build FROM")
    # A tag of our own pins the shared root file system while we build FROM it.
    run(["podman", "tag", ROOTFS, TEST_ROOTFS])
    try:
        args = ["images", "build", "--only", "python-base", "--pull-timeout", "0", "--python-base",
                TEST_PYTHON_BASE, "--rootfs", TEST_ROOTFS]
        out = installed(*args, timeout=600)
        assert out.stdout.startswith(f"{TEST_PYTHON_BASE} built"), out.stdout
        check = run(["podman", "run", "--rm", TEST_PYTHON_BASE, "python", "-c",
                     "import ssl, sys, os; print(sys.version_info[:2], os.environ['VIRTUAL_ENV'])"])
        assert check.stdout.strip() == "(3, 11) /opt/venv", check.stdout
        again = installed(*args)
        assert again.stdout.startswith(f"{TEST_PYTHON_BASE} unchanged"), again.stdout
    finally:
        subprocess.run(["podman", "rmi", TEST_PYTHON_BASE, TEST_ROOTFS], capture_output=True)
