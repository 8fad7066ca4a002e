"""The generated pod specs are runnable, not only valid: `podman kube play` on this machine.

The busybox contract fixtures (tests/fixtures/contract) are built with podman;
the load and train Jobs' pod templates and the server Deployment that the
generators make for them run under `podman kube play` with local images:
load.sh writes its data, train.sh trains on it, the image built FROM the base
with /model/trained in /model/saved serves, and `/generate` answers.

Two adaptations, both what a cluster does for us and podman 4.3 does not:
- kube play has no Jobs: a Job's pod template is played as a Pod;
- podman 4.3 ignores `subPath` on persistentVolumeClaim volumes (it mounts the
  volume root): each subPath mount of the artifacts claim becomes the hostPath
  directory kubelet would bind (`<claim root>/<subPath>`).
A `hostPort` is added to the server's container port so the test can reach it, and one to
the readiness helper's (a container of the operator image, `make operator-image`) so the test can
ask it what a kubelet would: whether the contract's readiness rule holds inside the pod.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from substratus import contract
from substratus.build.trained import write_trained_context
from substratus.runtimes.base import Mount, RunSpec
from substratus.runtimes.kubernetes import workloads
from substratus.runtimes.kubernetes.settings import DEFAULT_OPERATOR_IMAGE, KubeSettings, WorkloadSecurity
from tests.fixtures.contract.prepare import prepare_fixture
from tests.kubernetes.conftest import free_port
from tests.kubernetes.harness import labels
from tests.requirements import require

pytestmark = pytest.mark.kubeplay
CLAIM = "substratus-artifacts"
OPERATOR_IMAGE = os.environ.get("SUBSTRATUS_OPERATOR_IMAGE", DEFAULT_OPERATOR_IMAGE)  # the readiness helper's
SETTINGS = KubeSettings(artifact_store=f"pvc://{CLAIM}/kubeplay", image_pull_policy="Never",
                        operator_image=OPERATOR_IMAGE)
NON_ROOT = SETTINGS.model_copy(update={"workload_security": WorkloadSecurity(run_as_user=1000, run_as_group=1000)})


def _podman_ready() -> str:
    if shutil.which("podman") is None:
        return "podman is not installed (run `make setup`)"
    if shutil.which("catatonit") is None and not Path("/usr/libexec/podman/catatonit").exists():
        return "catatonit is missing: podman kube play needs it for the pause image (apt-get install catatonit)"
    if subprocess.run(["podman", "info"], capture_output=True, timeout=60).returncode != 0:
        return "`podman info` fails"
    return ""


@pytest.fixture(scope="module")
def podman() -> None:
    why = _podman_ready()
    require(not why, why)


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def images(podman: None, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    built = {}
    for fixture in ("model-shell", "dataset-shell"):
        ctx = prepare_fixture(fixture, tmp_path_factory.mktemp(fixture) / "ctx")
        tag = f"localhost/substratus/kubeplay-{fixture}:{run_id}"
        # The label makes the image ID ours alone: other tests on a shared engine build the same
        # fixture and remove their images by ID, which would take our containers with them.
        subprocess.run(["podman", "build", "-q", "--label", f"substratus.ai/kubeplay-run={run_id}", "-t", tag,
                        str(ctx)], check=True, capture_output=True, timeout=300)
        built[fixture] = tag
    yield built
    for tag in built.values():
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)


class KubePlay:
    """Plays generated objects and takes them down again (only what this test created)."""

    def __init__(self, workdir: Path, claim_root: Path) -> None:
        self.workdir, self.claim_root = workdir, claim_root
        self.files: list[Path] = []

    def adapt(self, obj: dict[str, Any], host_port: int = 0, helper_port: int = 0) -> dict[str, Any]:
        """A Job becomes its pod; artifact subPaths become the hostPath dirs kubelet would bind; the
        main container's port is published on `host_port`, the readiness helper's on `helper_port`."""
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Job":
            tpl = obj["spec"]["template"]
            obj = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {**tpl["metadata"], "name": obj["metadata"]["name"]}, "spec": tpl["spec"]}
        pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
        volumes = [v for v in pod.get("volumes", []) if v["name"] != "artifacts"]
        for i, c in enumerate([*pod.get("initContainers", []), *pod["containers"]]):
            for j, m in enumerate(c.get("volumeMounts", [])):
                if m["name"] == "artifacts":
                    path = self.claim_root / m.pop("subPath")
                    path.mkdir(parents=True, exist_ok=True)
                    m["name"] = f"artifact-{i}-{j}"
                    volumes.append({"name": m["name"], "hostPath": {"path": str(path), "type": "Directory"}})
            published = host_port if c is pod["containers"][0] else helper_port if c["name"] == "readiness" else 0
            for p in c.get("ports", []) if published else []:
                p["hostPort"] = published
        pod["volumes"] = volumes
        return obj

    def play(self, obj: dict[str, Any]) -> str:
        """Play one object; its containers' output goes to `<name>.log` (podman removes exited Job pods'
        containers, and their logs with them)."""
        name = obj["metadata"]["name"]
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(obj))
        proc = subprocess.run(["podman", "kube", "play", "--log-driver", "k8s-file", "--log-opt",
                               f"path={self.workdir / (name + '.log')}", str(path)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        self.files.append(path)
        return obj["metadata"]["name"]

    def down(self) -> None:
        for path in self.files:
            subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, timeout=120)


@pytest.fixture
def kube(tmp_path: Path, podman: None) -> Iterator[KubePlay]:
    claim_root = tmp_path / "claim"
    claim_root.mkdir()
    k = KubePlay(tmp_path, claim_root)
    yield k
    k.down()


def wait_exit(kube: KubePlay, name: str, timeout: float = 180) -> tuple[int, str]:
    """Exit code and output of the pod's main container (k8s-file log lines: time stream tag message)."""
    proc = subprocess.run(["podman", "wait", f"{name}-main"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        events = subprocess.run(["podman", "events", "--stream=false", "--since", "10m", "--filter", f"pod={name}"],
                                capture_output=True, text=True, timeout=60).stdout
        raise AssertionError(f"podman wait {name}-main: {proc.stderr}\nevents:\n{events[-3000:]}")
    log = kube.workdir / f"{name}.log"
    lines = [line.split(" ", 3)[-1] for line in log.read_text().splitlines()] if log.exists() else []
    return int(proc.stdout.strip().splitlines()[-1]), "\n".join(lines)


def generated(spec: RunSpec, settings: KubeSettings = SETTINGS) -> list[dict[str, Any]]:
    return workloads.objects_for(workloads.from_run_spec(spec), settings)


def run_dir(kind: str, name: str) -> str:
    return f"objects/{kind}/default/{name}/0123456789abcdef"


def load_and_train(kube: KubePlay, images: dict[str, str], run_id: str) -> Path:
    """Play the load Job's pod, then the train Job's pod on its data; returns the trained dir."""
    ds = run_dir("dataset", "sonnets")
    load = RunSpec(name=f"sub-kp{run_id}-dataset-default-sonnets-load", image=images["dataset-shell"],
                   command=["load.sh"], env={"LOAD_DATA_PATH": "/data/sonnets.jsonl"},
                   mounts=[Mount(f"{ds}/data", "/data"), Mount(f"{ds}/logs", "/dataset/logs")],
                   labels=labels("Dataset", "sonnets", "load"))
    [job] = generated(load)
    name = kube.play(kube.adapt(job))
    code, logs = wait_exit(kube, name)
    assert code == 0, logs
    data = kube.claim_root / "kubeplay" / ds / "data" / "sonnets.jsonl"
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(records) > 100 and all(set(r) == {"text"} for r in records)
    assert (kube.claim_root / "kubeplay" / ds / "logs" / "load.log").read_text().count("load:") >= 2

    md = run_dir("model", "sonnet-model")
    train = RunSpec(name=f"sub-kp{run_id}-model-default-sonnet-model-train", image=images["model-shell"],
                    command=["train.sh"],
                    env={"TRAIN_DATA_PATH": "/data/sonnets.jsonl", "TRAIN_DATA_LIMIT": "200",
                         "TRAIN_BATCH_SIZE": "16", "TRAIN_EPOCHS": "2"},
                    mounts=[Mount(f"{ds}/data", "/data", read_only=True), Mount(f"{md}/trained", "/model/trained"),
                            Mount(f"{md}/logs", "/model/logs")],
                    labels=labels("Model", "sonnet-model", "train"))
    [job] = generated(train)
    name = kube.play(kube.adapt(job))
    code, logs = wait_exit(kube, name)
    assert code == 0, logs
    trained = kube.claim_root / "kubeplay" / md / "trained"
    assert (trained / "bigrams.tsv").stat().st_size > 0
    assert "epochs=2 batchSize=16 dataLimit=200" in logs
    return trained


def serve(kube: KubePlay, image: str, name: str, settings: KubeSettings = SETTINGS,
          helper_port: int = 0) -> str:
    spec = RunSpec(name=name, image=image, command=["serve.sh"], ports={contract.SERVER_PORT: 0},
                   labels=labels("ModelServer", "sonnet-model", "server", image=image))
    deployment, service = generated(spec, settings)
    assert service["kind"] == "Service"
    port = free_port()
    kube.play(kube.adapt(deployment, host_port=port, helper_port=helper_port))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # generous: CI machines are shared
    while time.monotonic() < deadline:  # the contract's own endpoint; the helper's verdict is a test of its own
        try:
            if httpx.get(f"{url}{contract.DOCS_PATH}", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    state = subprocess.run(["podman", "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}"],
                           capture_output=True, text=True).stdout
    events = subprocess.run(["podman", "events", "--stream=false", "--since", "10m", "--filter", f"pod={name}-pod-0"],
                            capture_output=True, text=True, timeout=60).stdout
    log = kube.workdir / f"{name}.log"
    raise AssertionError(f"{name}: GET /docs never answered on {url}; containers:\n{state}\n"
                         f"log:\n{log.read_text() if log.exists() else '(none)'}\nevents:\n{events[-3000:]}")


def test_load_and_train_job_pods_run_and_write_their_artifacts(kube: KubePlay, images: dict[str, str],
                                                              run_id: str) -> None:
    load_and_train(kube, images, run_id)


@pytest.mark.parametrize("user", ["image-user", "uid-1000"])
def test_the_served_pod_answers_generate(kube: KubePlay, images: dict[str, str], run_id: str, user: str) -> None:
    settings = NON_ROOT if user == "uid-1000" else SETTINGS
    name = f"sub-kp{run_id}-modelserver-default-base-{user}"
    url = serve(kube, images["model-shell"], name, settings)
    inspect = subprocess.run(["podman", "inspect", f"{name}-pod-0-server", "--format", "{{.Config.User}}"],
                             capture_output=True, text=True, timeout=60)
    assert inspect.stdout.strip() == ("1000:1000" if user == "uid-1000" else ""), inspect.stderr
    resp = httpx.post(f"{url}/generate", json={"prompt": "shall I", "max_new_tokens": 5}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["generation"].startswith("shall I")


def test_the_readiness_helper_answers_the_kubelet_by_the_contracts_rule(kube: KubePlay, images: dict[str, str],
                                                                       run_id: str) -> None:
    """The server pod's readinessProbe, as rendered from the contract, asked as a kubelet asks it:
    the helper container applies the rule (GET /docs, and /readyz where offered) inside the pod."""
    require(subprocess.run(["podman", "image", "exists", OPERATOR_IMAGE], timeout=60).returncode == 0,
            f"{OPERATOR_IMAGE} is not built: run `make operator-image` (make test-kubernetes does)")
    helper_port = free_port()
    serve(kube, images["model-shell"], f"sub-kp{run_id}-modelserver-default-ready", helper_port=helper_port)
    probe = workloads.readiness_probe(contract.SERVER_READINESS)["httpGet"]
    assert probe["port"] == workloads.HELPER_PORT
    deadline, got = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        try:
            got = httpx.get(f"http://127.0.0.1:{helper_port}{probe['path']}", timeout=10)
            if got.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert got is not None and got.status_code == 200, got.text if got is not None else "no answer"
    checks = got.json()["checks"]
    assert [c["path"] for c in checks] == [c.path for c in contract.SERVER_READINESS.checks]
    assert checks[0]["status"] == 200 and checks[1]["status"] in contract.ABSENT  # the busybox server has no /readyz


def test_the_trained_image_serves_the_trained_model(kube: KubePlay, images: dict[str, str], run_id: str,
                                                   tmp_path: Path) -> None:
    """The whole flow on real containers: load -> train -> FROM base + trained/ -> serve -> /generate."""
    trained = load_and_train(kube, images, run_id)
    tag = f"localhost/substratus/kubeplay-trained:{run_id}"
    ctx = write_trained_context(images["model-shell"], trained, tmp_path / "trained-ctx")
    subprocess.run(["podman", "build", "-q", "--label", f"substratus.ai/kubeplay-run={run_id}", "-t", tag, str(ctx)],
                   check=True, capture_output=True, timeout=300)
    try:
        url = serve(kube, tag, f"sub-kp{run_id}-modelserver-default-trained-server")
        resp = httpx.post(f"{url}/generate", json={"prompt": "thy beauty", "max_new_tokens": 6}, timeout=10)
        assert resp.status_code == 200
        body = resp.json()
        assert body["generation"].startswith("thy beauty")
        assert body["trained"] is not None  # served from /model/saved of the trained image
    finally:
        kube.down()
        kube.files.clear()
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)
