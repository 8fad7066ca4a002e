"""Opt-in: against a real cluster (kind, k3s, GKE...) named by SUBSTRATUS_KUBECONFIG.

`make test-kubernetes-real` runs these; without SUBSTRATUS_KUBECONFIG they are
skipped and the make target says plainly that nothing ran. NEVER RUN YET: no
cluster can be had on the machines this was written on (see docs/kubernetes.md).

What it checks in phase 1: the CRDs become Established on a real API server,
which then accepts the demo manifests and refuses the invalid table (its own
OpenAPI and CEL evaluation, `kubectl --dry-run=server`); the install bundle is
accepted server-side; and the runtime's Jobs and Deployments behave on real
controllers and kubelets with a public busybox image
(SUBSTRATUS_KUBE_TEST_IMAGE). The demo end to end needs the operator's
reconcile loop: phase 2.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from substratus.resources import crd
from substratus.runtimes.base import RunSpec
from substratus.runtimes.kubernetes import install
from substratus.runtimes.kubernetes.client import KubeApi
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.kubernetes.harness import create_cr, labels, wait_for
from tests.kubernetes.test_crd import BASE, INVALID, _set

pytestmark = pytest.mark.kubereal
KUBECONFIG = os.environ.get("SUBSTRATUS_KUBECONFIG", "")
IMAGE = os.environ.get("SUBSTRATUS_KUBE_TEST_IMAGE", "docker.io/library/busybox:1.36")
REPO = Path(__file__).resolve().parents[2]

if not KUBECONFIG:
    pytest.skip("SUBSTRATUS_KUBECONFIG is not set: the real-cluster tier was NOT run", allow_module_level=True)


def kubectl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG, *args], input=stdin, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def api() -> KubeApi:
    return KubeApi.connect(KUBECONFIG)


@pytest.fixture(scope="module")
def crds(api: KubeApi) -> Iterator[None]:
    created = [c["metadata"]["name"] for c in crd.crds() if api.apply(c) == "created"]
    for c in crd.crds():
        wait_for(f"{c['metadata']['name']} Established", lambda c=c: any(
            cond["type"] == "Established" and cond["status"] == "True" for cond in
            ((api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", c["metadata"]["name"]) or {})
             .get("status") or {}).get("conditions", [])), timeout=60)
    yield
    for name in created:  # only what this test created
        api.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)


@pytest.fixture(scope="module")
def namespace(api: KubeApi) -> Iterator[str]:
    name = f"substratus-test-{uuid.uuid4().hex[:6]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.delete("v1", "Namespace", name)


def test_the_demo_manifests_are_accepted_by_the_api_server(crds: None, namespace: str) -> None:
    proc = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "examples" / "demo"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_the_api_server_refuses_what_sub_apply_refuses(crds: None, namespace: str, case: tuple) -> None:
    _, kind, path, value, word = case
    proc = kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                   stdin=yaml.safe_dump(_set(BASE[kind], path, value)))
    assert proc.returncode != 0
    assert word in proc.stderr


def test_the_install_bundle_is_accepted_server_side() -> None:
    proc = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(install.bundle(KubeSettings())))
    assert proc.returncode == 0, proc.stderr


def test_jobs_and_servers_behave_on_a_real_cluster(api: KubeApi, crds: None, namespace: str) -> None:
    runtime = KubernetesRuntime(api, KubeSettings(), poll_seconds=1)
    create_cr(api, "Dataset", "probe", {"filename": "p.jsonl", "source": {"dir": "/x"}}, namespace=namespace)
    create_cr(api, "ModelServer", "probe", {"modelName": "probe"}, namespace=namespace)
    ok = RunSpec(name="sub-real-dataset-probe-load", image=IMAGE, entrypoint=["sh", "-c"],
                 command=["echo loaded; echo done"], labels=labels("Dataset", "probe", "load", namespace=namespace))
    runtime.run(ok)
    done = wait_for("the job", lambda: (s := runtime.container(ok.name)) and not s.running and s, timeout=300)
    assert done.exit_code == 0 and list(runtime.logs(ok.name)) == ["loaded", "done"]
    bad = RunSpec(name="sub-real-dataset-probe-fail", image=IMAGE, entrypoint=["sh", "-c"],
                  command=["echo broken >&2; exit 3"], labels=labels("Dataset", "probe", "load", namespace=namespace))
    runtime.run(bad)
    failed = wait_for("the failing job", lambda: (s := runtime.container(bad.name)) and not s.running and s,
                      timeout=300)
    assert failed.exit_code == 3
    server = RunSpec(name="sub-real-modelserver-probe-server", image=IMAGE, entrypoint=["sh", "-c"],
                     command=["mkdir -p /tmp/www && echo docs > /tmp/www/docs && exec httpd -f -p 8080 -h /tmp/www"],
                     ports={8080: 8080}, labels=labels("ModelServer", "probe", "server", namespace=namespace))
    runtime.run(server)
    wait_for("the server to be ready (GET /docs)", lambda: (s := runtime.container(server.name)) and
             s.status == "ready", timeout=300)
    for spec in (ok, bad, server):
        assert runtime.remove(spec.name)
