"""Rootless podman as a normal user, with `sub` installed from the built wheel into the user's venv.

scripts/setup-rootless-user.sh (run by `make test-rootless`, or here when the
user is missing) makes the user: subordinate ids, a runtime dir, overlay storage,
/dev/net/tun for slirp4netns. Everything after that runs as the user through
`runuser`: a fresh venv, `pip install` of the wheel, `sub examples`, the shell
pipeline with `sub apply --wait`, `sub verify`, a control-plane restart that
adopts the running server, delete. The test checks from outside that the server
really runs as the user (its process belongs to the user's uid on the host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from substratus.reconcile.layout import Layout
from tests.engines.conftest import REPO
from tests.requirements import require

USER = os.environ.get("SUBSTRATUS_TEST_USER", "substratus-rootless")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: Path

    @property
    def substratus_home(self) -> Path:
        return self.home / ".substratus-tier"

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                "PATH": f"{self.home}/venv/bin:/usr/local/bin:/usr/bin:/bin",
                "XDG_RUNTIME_DIR": f"/run/user/{self.uid}", "SUBSTRATUS_HOME": str(self.substratus_home),
                "SUBSTRATUS_ENGINE": "podman", "SUBSTRATUS_READY_TIMEOUT": "60"}

    def run(self, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """argv as this user, with a login-like environment and nothing of ours."""
        full = ["runuser", "-u", self.name, "--", "env", "-i", *[f"{k}={v}" for k, v in self.env().items()], *argv]
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=self.home,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, \
                f"as {self.name}: {' '.join(argv)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def sub(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.home / "venv" / "bin" / "sub"), *args, timeout=timeout)

    def containers(self, *filters: str) -> list[str]:
        instance = Layout(self.substratus_home).instance
        args = [a for f in (f"label=substratus.ai/instance={instance}", *filters) for a in ("--filter", f)]
        return self.run("podman", "ps", "-aq", "--no-trunc", *args).stdout.split()


@pytest.fixture(scope="session")
def rootless_user() -> User:
    require(os.geteuid() == 0, "the rootless tier creates a user: run it as root (make test-rootless)")
    require(shutil.which("runuser") is not None and shutil.which("podman") is not None,
            "runuser and podman are needed (make setup installs podman)")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "setup-rootless-user.sh"), USER], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    import pwd

    entry = pwd.getpwnam(USER)
    return User(name=USER, uid=entry.pw_uid, home=Path(entry.pw_dir))


@pytest.fixture
def user(rootless_user: User, wheelhouse: Path, built_wheel: Path) -> Iterator[User]:
    """The user with a fresh venv holding the built wheel, and a clean SUBSTRATUS_HOME."""
    u = rootless_user
    house = u.home / "wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    shutil.copytree(wheelhouse, house)
    shutil.chown(house, u.name, u.name)
    for f in house.iterdir():
        shutil.chown(f, u.name, u.name)
    if (u.home / "venv" / "bin" / "sub").exists():
        u.run(str(u.home / "venv" / "bin" / "sub"), "down", check=False)
    u.run("rm", "-rf", str(u.home / "venv"), str(u.substratus_home))
    u.run("python3", "-m", "venv", str(u.home / "venv"))
    u.run(str(u.home / "venv" / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(house),
          str(house / built_wheel.name), timeout=600)
    yield u
    u.run(str(u.home / "venv" / "bin" / "sub"), "down", check=False)
    left = u.containers()
    if left:
        u.run("podman", "rm", "-f", *left, check=False)


def status(u: User, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(u.sub("get", kind, name, "-o", "json").stdout)["status"])


def host_uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_a_normal_user_runs_the_shell_pipeline_on_rootless_podman(user: User) -> None:
    info = user.run("podman", "info", "--format", "{{.Host.Security.Rootless}} {{.Store.GraphDriverName}}")
    assert info.stdout.split()[0] == "true", info.stdout
    where = user.run(str(user.home / "venv" / "bin" / "python"), "-c",
                     "import substratus, substratus.bundle as b; print(substratus.__file__); print(b.root())")
    assert where.stdout.splitlines()[0].startswith(str(user.home / "venv")), where.stdout
    assert where.stdout.splitlines()[1].endswith("_bundle"), where.stdout

    examples = user.home / "examples"
    user.run("rm", "-rf", str(examples))
    user.sub("examples", str(examples))
    applied = user.sub("apply", "-f", str(examples / "shell"), "--wait", "--timeout", "400", timeout=500)
    assert "all 5 objects ready" in applied.stderr, applied.stderr[-3000:]

    server = status(user, "server", "bigram-sonnets")
    reply = httpx.post(f"{server['url']}/generate", json={"prompt": "Shall I compare", "max_new_tokens": 6},
                       timeout=30)
    assert reply.status_code == 200 and reply.json()["generation"].startswith("Shall I compare"), reply.text
    assert reply.json()["trained"]["epochs"] == 2  # served from the fine-tuned image

    # the server's process on the host belongs to the user: rootless for real
    (cid,) = user.containers("label=substratus.ai/role=server")
    pid = int(user.run("podman", "inspect", "--format", "{{.State.Pid}}", cid).stdout)
    assert host_uid_of(pid) == user.uid

    # the control plane restarts and adopts the running server
    user.sub("down")
    user.sub("up")
    again = user.sub("apply", "-f", str(examples / "shell"), "--wait", "--timeout", "120")
    assert again.stdout.split().count("unchanged") == 5, again.stdout
    assert user.containers("label=substratus.ai/role=server") == [cid]

    # sub verify as the same user, on the image folder `sub examples` wrote
    verified = user.sub("verify", "model", str(examples / "shell" / "models" / "bigram"), "-o", "json",
                        "--skip", "notebook", timeout=600)
    assert json.loads(verified.stdout)["ok"] is True

    user.sub("delete", "-f", str(examples / "shell"))
    assert user.containers() == []
    assert json.loads(user.sub("get", "-o", "json").stdout) == {"items": []}
