"""`sub kube install` (printed and applied) and the operator skeleton, against the emulated cluster.

The real `sub` and `python -m substratus.operator` run as subprocesses, talking
HTTP to the emulator through a kubeconfig, as they would to a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from substratus.runtimes.kubernetes import install
from substratus.runtimes.kubernetes.client import KubeApi
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.kubernetes.cluster import Cluster
from tests.kubernetes.conftest import free_port
from tests.kubernetes.harness import create_cr, wait_for
from tests.kubernetes.kubelet import Controllers

SUB = str(Path(sys.executable).with_name("sub"))


def sub(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    controllers = Controllers()
    with Cluster(controllers) as c:
        yield c
    assert controllers.errors == []


def test_dry_run_prints_the_bundle_with_flags_over_the_settings_file(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("registry: from-file.example.com/sub\ngpuResourceName: amd.com/gpu\n")
    proc = sub("kube", "install", "--dry-run", "--settings", str(settings_file),
               "--registry", "registry.example.com/substratus", "--artifact-store", "s3://bucket/prefix")
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    expected = KubeSettings(registry="registry.example.com/substratus", artifact_store="s3://bucket/prefix",
                            gpu_resource_name="amd.com/gpu")
    assert docs == install.bundle(expected)


def test_dry_run_refuses_bad_settings_naming_them(tmp_path: Path) -> None:
    proc = sub("kube", "install", "--dry-run", "--artifact-store", "bucket-without-scheme")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "artifactStore: 'bucket-without-scheme' is not an artifact store URL" in proc.stderr


def test_install_applies_to_the_cluster_and_is_idempotent(cluster: Cluster) -> None:
    first = sub("kube", "install", "--kubeconfig", cluster.kubeconfig, "--registry", "r.example.com/s")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "namespace/substratus created"
    assert "customresourcedefinition/modelservers.substratus.ai created" in lines
    assert lines[-1] == "deployment/substratus-operator created"
    assert len(lines) == len(install.bundle(KubeSettings()))
    again = sub("kube", "install", "--kubeconfig", cluster.kubeconfig, "--registry", "r.example.com/s")
    assert again.returncode == 0 and all(line.endswith(" unchanged") for line in again.stdout.splitlines())
    changed = sub("kube", "install", "--kubeconfig", cluster.kubeconfig, "--registry", "other.example.com/s")
    assert "configmap/substratus-settings updated" in changed.stdout.splitlines()
    api = KubeApi.connect(cluster.kubeconfig)
    cm = api.get("v1", "ConfigMap", "substratus-settings", "substratus")
    assert cm is not None and "registry: other.example.com/s" in cm["data"]["settings.yaml"]
    crd = api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "datasets.substratus.ai")
    assert crd is not None and crd["status"]["conditions"][0]["type"] == "Established"


def test_install_without_a_reachable_cluster_says_so(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}))
    proc = sub("kube", "install", "--kubeconfig", str(kubeconfig), timeout=180)
    assert proc.returncode == 1
    assert "cannot reach the API server" in proc.stderr and "kubectl cluster-info" in proc.stderr


class OperatorProcess:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "substratus.operator", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_operator_connects_reads_its_settings_and_watches_the_four_kinds(cluster: Cluster) -> None:
    assert sub("kube", "install", "--kubeconfig", cluster.kubeconfig, "--artifact-store", "s3://bucket/x")\
        .returncode == 0
    port = free_port()
    op = OperatorProcess("--kubeconfig", cluster.kubeconfig, "--liveness", f"http://127.0.0.1:{port}/healthz")
    try:
        wait_for("the operator to start watching", lambda: op.saw("watching datasets, models, modelservers, "
                                                                  "notebooks in all namespaces"), timeout=60)
        assert op.saw("artifact store s3://bucket/x")
        api = KubeApi.connect(cluster.kubeconfig)
        created = [
            create_cr(api, "Dataset", "shakespeare", {"filename": "s.jsonl", "source": {"dir": "/src"}}),
            create_cr(api, "Model", "tiny", {"source": {"dir": "/src"}}, namespace="team-a"),
            create_cr(api, "ModelServer", "tiny", {"modelName": "tiny"}),
            create_cr(api, "Notebook", "nb", {"modelName": "tiny"}),
        ]
        for what in ("Dataset default/shakespeare", "Model team-a/tiny", "ModelServer default/tiny",
                     "Notebook default/nb"):
            # ADDED from the watch, or LISTED when it existed before the watch began
            wait_for(f"the operator to observe {what}", lambda: op.saw(f" {what} (generation 1)"), timeout=60)
        api.patch("substratus.ai/v1", "Model", "tiny", {"spec": {"compute": {"types": ["GPU"]}}}, "team-a")
        wait_for("the change", lambda: op.saw("observed MODIFIED Model team-a/tiny (generation 2)"), timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        time.sleep(1)
        # Phase 1 observes only: no status, finalizer or annotation was written to the resources.
        for obj in created:
            meta = obj["metadata"]
            now = api.get("substratus.ai/v1", obj["kind"], meta["name"], meta["namespace"])
            assert now is not None and "status" not in now
            assert not now["metadata"].get("finalizers") and not now["metadata"].get("annotations")
        assert op.saw("phase 2 of issue 9")
    finally:
        code = op.stop()
    assert code == 0, "\n".join(op.lines[-30:])


def test_operator_without_its_settings_says_how_to_install(cluster: Cluster) -> None:
    proc = subprocess.run([sys.executable, "-m", "substratus.operator", "--kubeconfig", cluster.kubeconfig],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ConfigMap substratus/substratus-settings not found" in proc.stderr
    assert "sub kube install" in proc.stderr


def test_sub_operator_is_the_same_entry_point() -> None:
    proc = sub("operator", "--help")
    assert proc.returncode == 0 and "--all-namespaces" in proc.stdout and "--liveness" in proc.stdout
