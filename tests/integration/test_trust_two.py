"""Issue 25's holes (trust, round two), each driven end to end through `sub` and the real engine.

An attacker controls a source repository, a loader, a trainer, code in a notebook or a server;
the person running `sub` (often as root) is trusted. Every test here failed on the code before
the issue was fixed (what it did then is in its docstring) and passes now. Host files are only
ever created under the test's tmp_path. Refusals of bad input are also counted in
tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Sub
from tests.integration.test_runtime_failures import HEAD, MODEL_SCRIPTS, busybox_image

DATASET_SCRIPTS = {"notebook.sh": "exec sleep 1000"}


def escape_dockerfile(target: Path, secret: Path) -> str:
    """CVE-2024-1753 in buildah < 1.35.1: a bind mount `from` a stage whose /link -> / binds the
    host's root read-write. The stage is unique (a fresh echo) so that podman builds it in this
    build: with its layers cached the step fails instead of escaping."""
    return (f"FROM scratch AS link\nCOPY busybox /bin/busybox\n"
            f'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox ln -s / /link && /bin/busybox echo {time.time_ns()} > /u"]\n'
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "RUN mkdir -p /tmp /model/saved\n"
            f"RUN --mount=type=bind,from=link,source=/link,target=/x,rw "
            f"cat /x{secret} > /model/saved/leak; echo pwned > /x{target}\n"
            + "".join(f"COPY {n} /usr/local/bin/{n}\n" for n in MODEL_SCRIPTS) + "WORKDIR /model\n")


def test_a_dockerfile_cannot_bind_the_host_root(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 1: this dir Model read a 0600 host file into its image, wrote PWNED on the host and
    became Ready. Now `sub apply` refuses the source, naming the instruction, before any build."""
    secret, target = tmp_path / "host-secret", tmp_path / "PWNED"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    img = busybox_image(tmp_path / "img", busybox, "/model", MODEL_SCRIPTS)
    (img / "Dockerfile").write_text(escape_dockerfile(target, secret))
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\nspec: {{source: {{dir: img}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "240")
    assert not target.exists(), "the build wrote a file on the host"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec.source.dir" in proc.stderr and "from=" in proc.stderr and "CVE-2024-1753" in proc.stderr
    assert json.loads(sub.ok("get", "-o", "json")) == {"items": []}


def test_a_git_source_takes_the_same_refusal(sub: Sub, tmp_path: Path, busybox: Path) -> None:
    """Item 1, git: a repository with the same Dockerfile went the same build path."""
    secret, target = tmp_path / "host-secret", tmp_path / "PWNED"
    secret.write_text("HOST-SECRET\n")
    secret.chmod(0o600)
    repo = busybox_image(tmp_path / "repo", busybox, "/model", MODEL_SCRIPTS)
    (repo / "Dockerfile").write_text(escape_dockerfile(target, secret))
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "escape"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    (tmp_path / "m.yaml").write_text(f"{HEAD}kind: Model\nmetadata: {{name: m}}\n"
                                     f"spec: {{source: {{git: {{url: '{repo}'}}}}}}\n")
    proc = sub("apply", "-f", str(tmp_path / "m.yaml"), "--wait", "--timeout", "240")
    assert not target.exists(), "the build wrote a file on the host"
    assert proc.returncode == 1 and "spec.source.git" in proc.stderr and "from=" in proc.stderr, proc.stderr


def test_the_control_plane_says_which_known_escapes_apply(sub: Sub, engine: str) -> None:
    """Item 1: nothing said which published escapes the engine, builder and runc have."""
    from substratus.runtimes.advisories import engine_versions, known_escapes

    expected = known_escapes(engine_versions(engine))
    sub.ok("up")
    log = sub.home / "controlplane.log"
    deadline = time.monotonic() + 60
    while "known escape(s) apply" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert f"{len(expected)} known escape(s) apply" in text
    for advisory in expected:
        assert advisory.cve in text
    if engine == "podman":  # this machine: Debian 12's podman 4.3.1, buildah 1.28.2
        assert "CVE-2024-1753" in text and "refuses RUN --mount with from=" in text
