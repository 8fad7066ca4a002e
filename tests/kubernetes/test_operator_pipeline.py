"""The operator drives the whole pipeline on the emulated cluster, through the planners.

Everything runs for real except the cluster's own machinery: the operator is
`python -m substratus.kube` in a subprocess, connected over HTTP to kmock's
API emulator (watch streams included); `sub` (SUBSTRATUS_BACKEND=kubernetes)
applies the manifests, uploading the `dir` source to the artifact store, moto's
S3 server; the simulated controllers (kubelet.py, pipeline.py) run Jobs, Pods
and Deployments, push what builder Jobs build to a test registry, and upload
what load and train scripts write, as the sidecars would.

One test walks dataset -> model -> fine-tuned model -> server -> notebook, then
a new git commit through to a rolled Deployment, a failing training, suspend,
and delete: one operator start-up for all of it keeps the tier quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from substratus import contract
from substratus.artifacts.store import ArtifactStore
from substratus.runtimes import readiness
from substratus.runtimes.kubernetes import workloads
from substratus.runtimes.kubernetes.client import KubeApi
from tests.kubernetes.cluster import Cluster
from tests.kubernetes.harness import OperatorProcess, wait_for
from tests.kubernetes.pipeline import PipelineControllers
from tests.kubernetes.registry import Registry, serve

SUB = str(Path(sys.executable).with_name("sub"))
CR = "substratus.ai/v1"
MANAGED = {"app.kubernetes.io/managed-by": "substratus"}
WAIT = 90.0


class World:
    def __init__(self, cluster: Cluster, controllers: PipelineControllers, registry: Registry, store: ArtifactStore,
                 env: dict[str, str], tmp: Path) -> None:
        self.cluster, self.controllers, self.registry, self.store, self.env, self.tmp = \
            cluster, controllers, registry, store, env, tmp
        self.api = KubeApi.connect(cluster.kubeconfig)
        self.started = time.monotonic()

    def mark(self, what: str) -> None:
        """A timeline of the steps (shown with -s, or when the test fails)."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {what}", flush=True)

    def sub(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SUB, *args], capture_output=True, text=True, timeout=timeout, env=self.env,
                              stdin=subprocess.DEVNULL)

    def cr(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.api.get(CR, kind, name, "default")
        assert obj is not None, f"{kind} {name} is gone"
        return obj

    def ready(self, kind: str, name: str, reason: str = "", timeout: float = WAIT) -> dict[str, Any]:
        def check() -> Any:
            obj = self.cr(kind, name)
            status = obj.get("status") or {}
            cond = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            current = status.get("observedGeneration") == obj["metadata"]["generation"]
            if reason:
                return obj if current and cond.get("reason") == reason else None
            return obj if current and status.get("ready") else None
        try:
            result: dict[str, Any] = wait_for(f"{kind} {name} {reason or 'ready'}", check, timeout=timeout, every=0.2)
        except AssertionError:
            print(json.dumps(self.cr(kind, name).get("status"), indent=1))
            raise
        return result

    def children(self, plural: str, name: str = "") -> list[dict[str, Any]]:
        out = [o for o in self.cluster.objects(plural)
               if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in MANAGED.items())]
        return [o for o in out if not name or o["metadata"]["labels"].get("substratus.ai/name") == name]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


def sources(tmp: Path) -> tuple[Path, Path]:
    """A dataset directory (uploaded by sub) and a git repository holding the model under model/."""
    data = tmp / "dataset-src"
    data.mkdir()
    (data / "Dockerfile").write_text("FROM localhost/substratus/python-base:bookworm\nWORKDIR /dataset\n")
    (data / "load.sh").write_text("#!/bin/sh\necho loading\n")
    repo = tmp / "models-repo"
    (repo / "model").mkdir(parents=True)
    (repo / "model" / "Dockerfile").write_text("FROM localhost/substratus/python-base:bookworm\nWORKDIR /model\n")
    (repo / "README.md").write_text("models\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return data, repo


def manifests(data: Path, repo: Path) -> list[dict[str, Any]]:
    def m(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": CR, "kind": kind, "metadata": {"name": name, "labels": {"app": "pipe"}}, "spec": spec}
    return [
        m("Dataset", "pipe-data", {"filename": "lines.jsonl", "source": {"dir": str(data)}}),
        m("Model", "pipe-base", {"source": {"git": {"url": str(repo), "path": "model", "branch": "main"}}}),
        m("Model", "pipe-tuned", {"source": {"modelName": "pipe-base"},
                                  "training": {"datasetName": "pipe-data", "params": {"epochs": 1, "batchSize": 2}}}),
        m("ModelServer", "pipe-server", {"modelName": "pipe-tuned"}),
        m("Notebook", "pipe-notebook", {"modelName": "pipe-tuned"}),
    ]


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str, bucket: str, s3_env: dict[str, str]) -> Iterator[World]:
    store = ArtifactStore(f"s3://{bucket}", endpoint_url=moto_endpoint)
    with serve() as registry:
        controllers = PipelineControllers(store, registry)
        with Cluster(controllers) as cluster:
            env = {**os.environ, **s3_env, "KUBECONFIG": cluster.kubeconfig, "SUBSTRATUS_BACKEND": "kubernetes",
                   "TMPDIR": str(tmp_path)}
            w = World(cluster, controllers, registry, store, env, tmp_path)
            installed = w.sub("kube", "install", "--kubeconfig", cluster.kubeconfig,
                              "--registry", f"{registry.host}/substratus", "--registry-insecure",
                              "--artifact-store", f"s3://{bucket}", "--s3-endpoint-url", moto_endpoint)
            assert installed.returncode == 0, installed.stderr
            op = OperatorProcess("--kubeconfig", cluster.kubeconfig, env=env)
            try:
                wait_for("the operator to start", lambda: op.saw("reconciling them through"), timeout=60)
                yield w
            finally:
                started = time.monotonic()
                code = op.stop()
                (tmp_path / "operator.log").write_text("\n".join(op.lines) + "\n")
                print(f"operator stopped in {time.monotonic() - started:.1f}s with {code}; its last lines:")
                print("\n".join(op.lines[-150:]))
            assert code == 0
        assert controllers.errors == []


def created(w: World, prefix: str) -> list[int]:
    """Positions in the API server's creation log of objects whose name starts with `prefix`."""
    return [i for i, (_, _, name) in enumerate(w.cluster.server.created_log) if name.startswith(prefix)]


def reasons(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: f"{c['status']} {c['reason']}" for c in obj["status"]["conditions"]}


def test_pipeline_dataset_to_notebook_then_change_failure_suspend_delete(world: World) -> None:
    w = world
    data, repo = sources(w.tmp)
    manifest = w.tmp / "pipeline.yaml"
    manifest.write_text(yaml.safe_dump_all(manifests(data, repo)))
    dry = w.sub("apply", "-f", str(manifest), "--dry-run=server")  # git resolved, dir packed, nothing written
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == "dataset/pipe-data created (dry run)", dry.stdout
    assert w.cluster.objects("substratus.ai/v1/datasets") == [] and w.store.list("sources") == [], dry
    applied = w.sub("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["dataset/pipe-data created", "model/pipe-base created",
                                           "model/pipe-tuned created", "modelserver/pipe-server created",
                                           "notebook/pipe-notebook created"]
    first = check_pipeline(w)
    w.mark("pipeline ready")

    # A commit outside the model's path: the source is resolved again, nothing is rebuilt.
    (repo / "README.md").write_text("models, documented\n")
    git(repo, "commit", "-q", "-am", "docs only")
    again = w.sub("apply", "-f", str(manifest))
    assert again.stdout.splitlines()[:2] == ["dataset/pipe-data unchanged", "model/pipe-base configured"], again
    wait_for("the new commit to be resolved", lambda: git(repo, "rev-parse", "HEAD")[:7] in
             w.cr("Model", "pipe-base")["status"]["source"]["description"], timeout=WAIT)
    assert w.ready("Model", "pipe-base")["status"]["containerImage"] == first["base"]
    w.mark("docs-only commit resolved, nothing rebuilt")

    # A commit under the model's path: new build -> new image -> retrained -> Deployment rolled.
    check_change_propagates(w, repo, manifest, first)
    w.mark("new commit rolled out")
    check_failed_training(w)
    w.mark("failed training reported, retried")
    check_suspend_and_cli(w, data, repo)
    w.mark("suspended; get/describe")
    check_delete_cascades(w, manifest)
    w.mark("deleted")


def check_pipeline(w: World) -> dict[str, Any]:
    ds = w.ready("Dataset", "pipe-data")
    w.mark("dataset loaded")
    run_key = ds["status"]["url"].split(f"s3://{w.store.url.bucket}/", 1)[1]
    assert ds["status"]["digest"] == w.store.sha256(run_key)
    assert w.store.read_bytes(run_key).decode().count("\n") == 2
    assert reasons(ds) == {"Built": "True Built", "Loaded": "True Loaded", "Ready": "True Loaded"}
    assert ds["status"]["progress"]["step"] == 4
    base = w.ready("Model", "pipe-base")
    w.mark("base model ready")
    assert reasons(base) == {"Built": "True Built", "Ready": "True Ready"}
    image = base["status"]["containerImage"]
    assert w.registry.has(image.replace("localhost/substratus", f"{w.registry.host}/substratus"))
    tuned = w.ready("Model", "pipe-tuned", timeout=WAIT)
    w.mark("fine-tuned model ready")
    assert reasons(tuned) == {"Built": "True BaseModelReady", "Trained": "True Trained", "Ready": "True Trained"}
    lineage = tuned["status"]["lineage"]
    assert lineage["baseModel"]["image"] == image and lineage["dataset"]["digest"] == ds["status"]["digest"]
    assert lineage["params"]["epochs"] == 1 and ":trained-" in tuned["status"]["containerImage"]
    server = w.ready("ModelServer", "pipe-server")
    assert reasons(server) == {"Serving": "True Serving", "Ready": "True Serving"}
    assert server["status"]["url"].endswith(".default.svc.cluster.local:8080")
    [deployment] = w.children("apps/v1/deployments", "pipe-server")
    container, helper = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(tuned["status"]["containerImage"].split("/", 1)[1])
    # ready by the contract's rule: GET /docs, and /readyz where offered, applied by the helper in the pod
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": workloads.HELPER_PORT}
    assert readiness.parse_args(helper["args"])[0] == contract.SERVER_READINESS
    assert len(w.children("v1/services", "pipe-server")) == 1
    notebook = w.ready("Notebook", "pipe-notebook")
    assert reasons(notebook) == {"Running": "True Running", "Ready": "True Running"}
    assert "token" not in notebook["status"]["url"]
    assert len(w.children("v1/pods", "pipe-notebook")) == 1
    for kind, name in (("Model", "pipe-tuned"), ("ModelServer", "pipe-server"), ("Notebook", "pipe-notebook")):
        assert "substratus.ai/finalizer" in w.cr(kind, name)["metadata"]["finalizers"]
    state = json.loads(w.cr("Notebook", "pipe-notebook")["metadata"]["annotations"]["substratus.ai/state"])
    assert state["token"] is True and "token" not in state["state"]  # the token is in a Secret only
    # Children in the order the planners ask for them.
    order = [created(w, p)[0] for p in ("sub-build-dataset-pipe-data", "sub-dataset-pipe-data-load",
                                         "sub-model-pipe-tuned-train", "sub-trained-model-pipe-tuned",
                                         "sub-modelserver-pipe-server")]
    assert order == sorted(order), w.cluster.server.created_log
    assert created(w, "sub-build-model-pipe-base")[0] < created(w, "sub-model-pipe-tuned-train")[0]
    assert created(w, "sub-trained-model-pipe-tuned")[0] < created(w, "sub-notebook-pipe-notebook")[0]
    assert len(created(w, "sub-once-")) == 2  # contract checks of the two source images (a trained one is
    # built FROM a checked one)
    return {"base": image, "tuned": tuned["status"]["containerImage"], "deployment": deployment["metadata"]["uid"]}


def check_change_propagates(w: World, repo: Path, manifest: Path, first: dict[str, Any]) -> None:
    (repo / "model" / "serve.sh").write_text("#!/bin/sh\necho v2\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "serve v2")
    again = w.sub("apply", "-f", str(manifest))
    assert "model/pipe-base configured" in again.stdout.splitlines(), again
    base = wait_for("a new base image", lambda: (o := w.ready("Model", "pipe-base"))["status"]["containerImage"]
                    != first["base"] and o, timeout=WAIT)
    tuned = wait_for("the model retrained on it", lambda: (o := w.ready("Model", "pipe-tuned"))["status"]
                     ["containerImage"] != first["tuned"] and o, timeout=WAIT)
    assert tuned["status"]["lineage"]["baseModel"]["image"] == base["status"]["containerImage"]

    def rolled() -> Any:
        [dep] = w.children("apps/v1/deployments", "pipe-server")
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return dep if image.endswith(tuned["status"]["containerImage"].split("/", 1)[1]) else None
    deployment = wait_for("the Deployment rolled onto the new image", rolled, timeout=WAIT)
    assert deployment["metadata"]["uid"] == first["deployment"]  # the same Deployment, a new template
    w.ready("ModelServer", "pipe-server", "Serving")
    [pod] = wait_for("one server pod on the new template", lambda: [
        p for p in w.children("v1/pods", "pipe-server")
        if p["spec"]["containers"][0]["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]]
        if len(w.children("v1/pods", "pipe-server")) == 1 else None, timeout=WAIT)
    assert pod["status"]["phase"] == "Running"


def check_failed_training(w: World) -> None:
    w.controllers.fail["pipe-bad"] = (1, ["epoch 1/2 step 1 loss 2.31", "Traceback (most recent call last):",
                                          "RuntimeError: CUDA out of memory"])
    bad = w.tmp / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": CR, "kind": "Model", "metadata": {"name": "pipe-bad"},
                                   "spec": {"source": {"modelName": "pipe-base"}, "compute": {"types": ["GPU"]},
                                            "training": {"datasetName": "pipe-data", "params": {"epochs": 2}}}}))
    waited = w.sub("apply", "-f", str(bad), "--wait", "--timeout", str(int(WAIT)))
    assert waited.returncode == 1, waited
    assert "model/pipe-bad failed: TrainFailed" in waited.stderr
    assert "RuntimeError: CUDA out of memory" in waited.stderr
    failed = w.ready("Model", "pipe-bad", "TrainFailed")
    message = reasons(failed)["Ready"], failed["status"]["conditions"][-1]["message"]
    assert message[0] == "False TrainFailed" and "train.sh exited with code 1" in message[1], message
    assert not w.children("batch/v1/jobs", "pipe-bad")  # collected: its log is kept in the run (job.log)
    pod = w.controllers.ran[("train", "pipe-bad")]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}  # compute.types: GPU
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    logs = w.sub("logs", "model", "pipe-bad")
    assert "RuntimeError: CUDA out of memory" in logs.stdout and "job.log" in logs.stdout, logs
    # A server whose serve.sh keeps exiting: the kubelet restarts it, the operator reports it.
    w.controllers.fail["pipe-crash"] = (3, ["loading model", "OSError: /model/saved is empty"])
    crash = w.tmp / "crash.yaml"
    crash.write_text(yaml.safe_dump({"apiVersion": CR, "kind": "ModelServer", "metadata": {"name": "pipe-crash"},
                                     "spec": {"modelName": "pipe-tuned"}}))
    assert w.sub("apply", "-f", str(crash)).returncode == 0
    crashing = w.ready("ModelServer", "pipe-crash", "CrashLoopBackOff")
    message = crashing["status"]["conditions"][-1]["message"]
    assert "serve.sh exited with code 3" in message and "OSError: /model/saved is empty" in message, message
    # Re-applying an unchanged manifest that failed is "try again".
    del w.controllers.fail["pipe-bad"]
    retried = w.sub("apply", "-f", str(bad))
    assert retried.stdout.strip() == "model/pipe-bad retried", retried
    w.ready("Model", "pipe-bad", "Trained")


def check_suspend_and_cli(w: World, data: Path, repo: Path) -> None:
    docs = manifests(data, repo)
    docs[4]["spec"]["suspend"] = True
    suspend = w.tmp / "suspend.yaml"
    suspend.write_text(yaml.safe_dump(docs[4]))
    assert w.sub("apply", "-f", str(suspend)).stdout.strip() == "notebook/pipe-notebook configured"
    nb = w.ready("Notebook", "pipe-notebook", "Suspended")
    assert nb["status"]["ready"] is False and reasons(nb)["Running"] == "False Suspended"
    wait_for("the notebook pod to go", lambda: not w.children("v1/pods", "pipe-notebook"), timeout=WAIT)
    table = w.sub("get")
    assert table.returncode == 0 and "pipe-notebook" in table.stdout and "Suspended" in table.stdout, table
    listed = json.loads(w.sub("get", "models", "-o", "json").stdout)
    assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["pipe-bad", "pipe-base", "pipe-tuned"]
    selected = json.loads(w.sub("get", "models", "-l", "app=pipe", "-o", "json").stdout)
    assert sorted(o["metadata"]["name"] for o in selected["items"]) == ["pipe-base", "pipe-tuned"]
    others = json.loads(w.sub("get", "models", "-l", "app notin (pipe)", "-o", "json").stdout)
    assert [o["metadata"]["name"] for o in others["items"]] == ["pipe-bad"]
    described = w.sub("describe", "model", "pipe-tuned")
    assert "Conditions:" in described.stdout and "Trained" in described.stdout, described
    assert "build.log" in described.stdout


def check_delete_cascades(w: World, manifest: Path) -> None:
    deleted = w.sub("delete", "-l", "app=pipe", timeout=180)  # the five of the manifest, by their label
    assert deleted.returncode == 0, deleted
    assert len(deleted.stdout.splitlines()) == 5 and "pipe-bad" not in deleted.stdout, deleted
    again = w.sub("delete", "-f", str(manifest))
    assert again.returncode == 1 and "dataset/pipe-data: not found" in again.stderr, again
    assert w.sub("delete", "model", "pipe-bad").returncode == 0
    assert w.sub("delete", "server", "pipe-crash").stdout.startswith("modelserver/pipe-crash deleted")
    for plural in ("batch/v1/jobs", "apps/v1/deployments", "v1/pods", "v1/services", "v1/secrets"):
        wait_for(f"no {plural} left", lambda: not [o for o in w.cluster.objects(plural)
                                                   if "substratus.ai/name" in (o["metadata"].get("labels") or {})
                                                   or (o["metadata"].get("labels") or {}).get(
                                                       "app.kubernetes.io/managed-by") == "substratus"],
                 timeout=WAIT)
    for kind in ("datasets", "models", "modelservers", "notebooks"):
        assert w.cluster.objects(f"substratus.ai/v1/{kind}") == []
    assert w.store.list("objects") == []  # the artifacts went with their objects
