"""`sub kube install` (printed and applied) and the operator's start-up, against the emulated cluster.

The real `sub` and `python -m substratus.kube` run as subprocesses, talking
HTTP to the emulator through a kubeconfig, as they would to a cluster.
"""

from __future__ import annotations

import subprocess
import sys
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
from tests.kubernetes.harness import OperatorProcess, create_cr, wait_for
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


def test_operator_connects_reads_its_settings_and_reconciles_the_four_kinds(cluster: Cluster) -> None:
    """Start-up, settings, liveness, and a first pass over each kind; the pipeline itself is
    test_operator_pipeline.py. Without a registry or sources every object says why it waits."""
    assert sub("kube", "install", "--kubeconfig", cluster.kubeconfig, "--artifact-store", "s3://bucket/x")\
        .returncode == 0
    port = free_port()
    op = OperatorProcess("--kubeconfig", cluster.kubeconfig, "--liveness", f"http://127.0.0.1:{port}/healthz")
    try:
        wait_for("the operator to start watching", lambda: op.saw("watching datasets, models, modelservers, "
                                                                  "notebooks in all namespaces"), timeout=60)
        assert op.saw("artifact store s3://bucket/x")
        api = KubeApi.connect(cluster.kubeconfig)
        create_cr(api, "Dataset", "shakespeare", {"filename": "s.jsonl", "source": {"dir": "/src"}})
        create_cr(api, "Model", "tiny", {"source": {"dir": "/src"}}, namespace="team-a")
        create_cr(api, "ModelServer", "tiny", {"modelName": "tiny"})
        create_cr(api, "Notebook", "nb", {"modelName": "tiny"})

        def reason(kind: str, name: str, namespace: str = "default") -> str:
            obj = api.get("substratus.ai/v1", kind, name, namespace) or {}
            ready = [c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"]
            return str(ready[0]["reason"]) if ready else ""

        # A dir source applied without `sub` cannot be built on a cluster: terminal, and says how to apply it.
        wait_for("the dataset's verdict", lambda: reason("Dataset", "shakespeare") == "SourceFailed", timeout=60)
        ds = api.get("substratus.ai/v1", "Dataset", "shakespeare", "default") or {}
        assert "sub --context CONTEXT apply -f FILE" in ds["status"]["conditions"][-1]["message"]
        assert "substratus.ai/finalizer" in ds["metadata"]["finalizers"]
        wait_for("the model's verdict", lambda: reason("Model", "tiny", "team-a") == "SourceFailed", timeout=60)
        # Model default/tiny does not exist (the Model is in team-a): the server and notebook wait for it.
        wait_for("the server to wait", lambda: reason("ModelServer", "tiny") == "WaitingForModel", timeout=60)
        wait_for("the notebook to wait", lambda: reason("Notebook", "nb") == "WaitingForModel", timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        api.delete("substratus.ai/v1", "Notebook", "nb", "default")
        wait_for("the finalizer to let it go", lambda: api.get("substratus.ai/v1", "Notebook", "nb", "default")
                 is None, timeout=60)
    finally:
        code = op.stop(timeout=60)
        print("\n".join(op.lines[-60:]))
    assert code == 0


def test_operator_without_its_settings_says_how_to_install(cluster: Cluster) -> None:
    proc = subprocess.run([sys.executable, "-m", "substratus.kube", "--kubeconfig", cluster.kubeconfig],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "ConfigMap substratus/substratus-settings not found" in proc.stderr
    assert "sub kube install" in proc.stderr


def test_sub_operator_is_the_same_entry_point() -> None:
    proc = sub("operator", "--help")
    assert proc.returncode == 0 and "--all-namespaces" in proc.stdout and "--liveness" in proc.stdout
