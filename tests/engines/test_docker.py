"""The docker runtime end to end: what a Docker user runs.

`sub` runs with SUBSTRATUS_ENGINE=docker and a PATH holding docker and git but no
podman, against a Docker API (podman's `system service` on a socket of this
tier's own, or a real Docker named by SUBSTRATUS_TEST_DOCKER_HOST). The
integration tier's contract pipeline runs unchanged through it: load, train,
serve, notebook, suspend, `logs -f`, re-apply, control-plane restart with
adoption, a change rolled out, delete. Then `sub verify` on a good and a
broken image. The runtime's event stream through `docker events` (which the
control plane wakes on) keeps to its labels. Base images: a root file system imported with `docker import`, and
python-base built through the Docker API with the CA bundle in its context;
the whole `sub images build` (ml-base too) is heavy and opt-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus.baseimages.context import HOST_CA_BUNDLE
from substratus.baseimages.decide import ROOTFS
from substratus.runtimes.engine import EngineRuntime
from tests.integration.conftest import Sub, cleanup
from tests.integration.fixtures_verify import prepare_module
# Not named test_*: pytest must not collect it here with the integration tier's fixtures.
from tests.integration.test_contract_pipeline import \
    test_shell_contract_images_from_git_go_through_the_whole_pipeline as contract_pipeline

TEST_PYTHON_BASE = "localhost/substratus-test/python-base:docker-tier"
TEST_ROOTFS = "localhost/substratus-test/debian-rootfs:docker-tier"
CA_BUNDLE = HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else Path(__file__)  # any file shows the path it takes


@pytest.fixture
def docker_sub(tmp_path: Path, docker_env: dict[str, str], docker_only_path: str,
               monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Sub]:
    for key, value in docker_env.items():  # the test's own `docker ps` checks use the same API
        monkeypatch.setenv(key, value)
    sub = Sub(tmp_path / "home", SUBSTRATUS_ENGINE="docker", PATH=docker_only_path, **docker_env)
    yield sub
    log = sub.home / "controlplane.log"
    if log.exists():
        print("control plane log (tail):\n" + log.read_text(errors="replace")[-3000:])
    cleanup(sub, "docker")


def test_the_contract_pipeline_runs_through_the_docker_runtime(docker_sub: Sub, tmp_path: Path,
                                                                static_busybox: Path) -> None:
    contract_pipeline(docker_sub, tmp_path, static_busybox, "docker")
    log = (docker_sub.home / "controlplane.log").read_text()
    assert "using docker" in log, log[-2000:]
    # the control plane wakes on `docker events`: its event watcher runs through the docker CLI
    daemon = json.loads((docker_sub.home / "controlplane.json").read_text())["pid"]
    watchers = [argv for pid, argv in children(daemon) if argv[:1] == ["docker"] and "events" in argv]
    assert watchers, f"no `docker events` under the control plane: {children(daemon)}"


def children(parent: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the processes whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append((int(stat.parent.name), [os.path.basename(argv[0].decode())] +
                          [a.decode() for a in argv[1:] if a]))
    return found


def test_engine_events_arrive_through_docker(docker_env: dict[str, str], tmp_path: Path, static_busybox: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in docker_env.items():
        monkeypatch.setenv(key, value)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy2(static_busybox, ctx / "busybox")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    image, label = "localhost/substratus-test/events:docker-tier", f"events-{tmp_path.name}"
    subprocess.run(["docker", "build", "-q", "-t", image, str(ctx)], check=True, capture_output=True, timeout=300)
    stream = EngineRuntime("docker").events({"substratus.ai/test": label})
    seen: list[tuple[str, str]] = []
    reader = threading.Thread(target=lambda: seen.extend((e.action, e.name) for e in stream if e.type == "container"))
    reader.start()
    try:
        time.sleep(1)  # the events process subscribes
        for name, tag in (("ours", label), ("other", "not-ours")):
            subprocess.run(["docker", "run", "--name", f"sub-events-{name}-{tmp_path.name}", "--label",
                            f"substratus.ai/test={tag}", image, "/bin/busybox", "true"], check=True,
                           capture_output=True, timeout=120)
        deadline = time.monotonic() + 30
        while ("died", f"sub-events-ours-{tmp_path.name}") not in seen and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stream.close()
        reader.join(timeout=10)
        subprocess.run(["docker", "rm", "-f", f"sub-events-ours-{tmp_path.name}",
                        f"sub-events-other-{tmp_path.name}"], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    assert ("start", f"sub-events-ours-{tmp_path.name}") in seen and ("died", f"sub-events-ours-{tmp_path.name}") in seen
    assert not [e for e in seen if "other" in e[1]], f"an event of a container without our label: {seen}"


def test_sub_verify_passes_a_good_image_and_fails_a_broken_one_through_docker(docker_sub: Sub,
                                                                            tmp_path: Path) -> None:
    prepare = prepare_module()
    good = prepare.prepare_fixture("model-shell", tmp_path / "good")
    proc = docker_sub("verify", "model", str(good), "-o", "json", timeout=600)
    report = json.loads(proc.stdout)
    failed = [c["id"] for c in report["clauses"] if c["status"] == "FAIL"]
    assert proc.returncode == 0 and report["ok"] is True, (failed, proc.stderr[-3000:])
    assert {"build", "serve.generate", "train.image", "notebook.listen"} <= \
        {c["id"] for c in report["clauses"] if c["status"] == "PASS"}

    spec = prepare.fixture_spec("broken/model-serve-wrong-port")
    broken = prepare.prepare_fixture("broken/model-serve-wrong-port", tmp_path / "broken")
    proc = docker_sub("verify", "model", str(broken), "-o", "json", *spec["args"], timeout=600)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert [c["id"] for c in report["clauses"] if c["status"] == "FAIL"] == [spec["breaks"]]
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=substratus.ai/role=verify"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == [], "sub verify left containers behind"


def test_a_root_file_system_imports_and_runs_through_docker(docker_env: dict[str, str], tmp_path: Path,
                                                           static_busybox: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in docker_env.items():
        monkeypatch.setenv(key, value)
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(static_busybox, rootfs / "bin" / "busybox")
    ref = "localhost/substratus-test/imported:docker-tier"
    if not os.environ.get("SUBSTRATUS_TEST_DOCKER_HOST"):  # podman's API: `sub images build` may use RUN --mount
        assert "Podman Engine" in EngineRuntime("docker").server_components()
    try:
        EngineRuntime("docker").import_rootfs(rootfs, ref, ['CMD ["/bin/busybox", "echo", "imported"]'])
        out = subprocess.run(["docker", "run", "--rm", ref], capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "imported", out.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True)


def test_python_base_builds_through_docker_with_the_ca_bundle_in_its_context(docker_sub: Sub) -> None:
    if subprocess.run(["docker", "image", "inspect", ROOTFS], capture_output=True).returncode != 0:
        pytest.skip(f"{ROOTFS} is not in this Docker's storage (make setup makes it for podman)")
    subprocess.run(["docker", "tag", ROOTFS, TEST_ROOTFS], check=True)  # pins it while we build FROM it
    args = ("images", "build", "--only", "python-base", "--pull-timeout", "0", "--python-base", TEST_PYTHON_BASE,
            "--rootfs", TEST_ROOTFS, "--ca-bundle", str(CA_BUNDLE))
    try:
        built = docker_sub(*args, timeout=600)
        assert built.returncode == 0, built.stderr[-3000:]
        assert built.stdout.startswith(f"{TEST_PYTHON_BASE} built"), built.stdout
        assert "building base images with docker" in built.stderr
        inside = subprocess.run(["docker", "run", "--rm", TEST_PYTHON_BASE, "cat",
                                 "/usr/local/share/ca-certificates/substratus-host-bundle.crt"],
                                capture_output=True, text=True, timeout=120)
        assert inside.stdout == CA_BUNDLE.read_text()
        again = docker_sub(*args)
        assert again.stdout.startswith(f"{TEST_PYTHON_BASE} unchanged"), again.stdout
    finally:
        subprocess.run(["docker", "rmi", TEST_PYTHON_BASE, TEST_ROOTFS], capture_output=True)


@pytest.mark.heavy
def test_every_base_image_builds_through_docker(docker_sub: Sub) -> None:
    """Heavy (SUBSTRATUS_HEAVY=1; 13 minutes on a busy 2-core machine): debootstrap, docker import,
    python-base, ml-base with the torch wheel bind-mounted from the context."""
    if not os.environ.get("SUBSTRATUS_HEAVY"):
        pytest.skip("heavy: set SUBSTRATUS_HEAVY=1 (make test-heavy)")
    names = {"--python-base": "localhost/substratus-test/python-base:docker-heavy",
             "--ml-base": "localhost/substratus-test/ml-base:docker-heavy",
             "--rootfs": "localhost/substratus-test/debian-rootfs:docker-heavy"}
    try:
        built = docker_sub("images", "build", "--pull-timeout", "5",
                           *[a for kv in names.items() for a in kv], timeout=1800)
        assert built.returncode == 0, built.stderr[-5000:]
        assert "installing torch from the local wheel" in built.stderr or "downloading torch" in built.stderr
        check = subprocess.run(["docker", "run", "--rm", names["--ml-base"], "python", "-c",
                                "import torch, transformers, substratus_ml; assert torch.version.cuda is None; "
                                "print(torch.__version__)"], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0 and "+cpu" in check.stdout, check.stderr[-2000:]
        history = subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.Size}} {{.CreatedBy}}",
                                  names["--ml-base"]], capture_output=True, text=True).stdout
        assert ".whl" not in "".join(l for l in history.splitlines() if "COPY" in l), "the wheel became a layer"
    finally:
        subprocess.run(["docker", "rmi", *names.values()], capture_output=True)
