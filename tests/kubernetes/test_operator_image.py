"""The operator image (images/operator, built by `make operator-image`) runs as generated pods run it:
non-root, read-only root filesystem, no capabilities. Its operator connects to the
emulated cluster and its artifact helper talks to moto's S3 server, both over the
host network."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus.artifacts.store import ArtifactStore
from substratus.runtimes.kubernetes.client import KubeApi
from substratus.runtimes.kubernetes.settings import DEFAULT_OPERATOR_IMAGE, KubeSettings
from substratus.runtimes.kubernetes import install
from tests.kubernetes.cluster import Cluster
from tests.kubernetes.harness import create_cr, wait_for
from tests.kubernetes.kubelet import Controllers
from tests.requirements import require

pytestmark = pytest.mark.kubeplay
IMAGE = os.environ.get("SUBSTRATUS_OPERATOR_IMAGE", DEFAULT_OPERATOR_IMAGE)
# What podspec.own_container_security() asks of a cluster, as podman flags.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", "65532:65532", "--network", "host"]


@pytest.fixture(scope="module")
def image() -> str:
    require(shutil.which("podman") is not None, "podman is not installed (run `make setup`)")
    require(subprocess.run(["podman", "image", "exists", IMAGE], timeout=60).returncode == 0,
            f"{IMAGE} is not built: run `make operator-image` (make test-kubernetes does)")
    return IMAGE


def podman_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", "run", "--rm", *HARDENED, *args], capture_output=True, text=True, timeout=timeout)


def test_the_image_runs_as_non_root(image: str) -> None:
    proc = podman_run(image, "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() == "65532", proc.stderr


def test_the_artifact_helper_in_the_image_fetches_from_s3(image: str, bucket: str, s3_env: dict[str, str]) -> None:
    ArtifactStore(f"s3://{bucket}").write_bytes("objects/dataset/default/d/r/data/d.jsonl", b'{"text": "x"}\n')
    env = [arg for k, v in s3_env.items() for arg in ("-e", f"{k}={v}")]
    proc = podman_run(*env, image, "sh", "-c",
                      f"python -m substratus.artifacts fetch --store s3://{bucket} "
                      "--map /tmp/in=objects/dataset/default/d/r/data && cat /tmp/in/d.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{"text": "x"}\n'
    assert "fetched 1 file(s)" in proc.stderr


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster(Controllers()) as c:
        yield c


def test_the_operator_in_the_image_watches_the_emulated_cluster(image: str, cluster: Cluster) -> None:
    api = KubeApi.connect(cluster.kubeconfig)
    for obj in install.bundle(KubeSettings()):
        api.apply(obj)
    name = f"substratus-operator-test-{os.getpid()}"
    kubeconfig = Path(cluster.kubeconfig)
    kubeconfig.chmod(0o644)  # readable by the image's user
    proc = subprocess.Popen(["podman", "run", "--rm", "--name", name, *HARDENED, "-v", f"{kubeconfig}:/kubeconfig:ro",
                             image, "python", "-m", "substratus.kube", "--kubeconfig", "/kubeconfig"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout or []), daemon=True).start()
    try:
        wait_for("the operator to start", lambda: any("watching datasets" in line for line in lines), timeout=120)
        create_cr(api, "Model", "tiny", {"source": {"dir": "/src"}})

        def ready_reason() -> str:
            obj = api.get("substratus.ai/v1", "Model", "tiny", "default") or {}
            ready = [c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"]
            return str(ready[0]["reason"]) if ready else ""

        # A dir source not uploaded by `sub apply` cannot be built in a cluster: the operator in the
        # image reconciles it through the planners to a terminal verdict and holds its finalizer.
        wait_for("the operator's verdict on the model", lambda: ready_reason() == "SourceFailed", timeout=90)
        model = api.get("substratus.ai/v1", "Model", "tiny", "default") or {}
        assert "substratus.ai/finalizer" in model["metadata"]["finalizers"]
    finally:
        subprocess.run(["podman", "stop", "-t", "10", name], capture_output=True, timeout=60)
        proc.wait(timeout=60)
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
