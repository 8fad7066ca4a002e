"""KubernetesRuntime verbs against the emulated cluster over real HTTP.

The simulated controllers run Jobs and Deployments and play the kubelet; each
test scripts what its containers do (exit codes, logs, readiness).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.artifacts.store import ArtifactStore, unpack
from substratus.errors import BuildError, EngineError
from substratus.runtimes.base import BuildSpec, Mount, RunSpec
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.client import KubeApi
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.kubernetes.cluster import Cluster
from tests.kubernetes.harness import create_cr, install_crds, labels, wait_for
from tests.kubernetes.kubelet import Controllers, Outcome, default_script

IMAGE = "localhost/substratus/model-default-tiny:0123456789abcdef"


class Scripted(Controllers):
    """Controllers whose containers do what `plan` says, keyed by container name (default otherwise)."""

    def __init__(self) -> None:
        super().__init__(script=self.decide)
        self.plan: dict[str, Outcome] = {}

    def decide(self, pod: dict[str, Any], container: dict[str, Any]) -> Outcome:
        key = f"{pod['metadata']['labels'].get('substratus.ai/role')}/{container['name']}"
        return self.plan.get(key) or default_script(pod, container)


@pytest.fixture
def controllers() -> Scripted:
    return Scripted()


@pytest.fixture
def cluster(controllers: Scripted) -> Iterator[Cluster]:
    with Cluster(controllers) as c:
        yield c
    assert controllers.errors == []


@pytest.fixture
def api(cluster: Cluster) -> KubeApi:
    api = KubeApi.connect(cluster.kubeconfig)
    install_crds(api)
    return api


@pytest.fixture
def settings() -> KubeSettings:
    return KubeSettings(registry="registry.example.com/substratus")


@pytest.fixture
def runtime(api: KubeApi, settings: KubeSettings) -> KubernetesRuntime:
    return KubernetesRuntime(api, settings, poll_seconds=0.05)


def load_spec(name: str = "sub-k8s-dataset-default-shakespeare-load-0123456789") -> RunSpec:
    return RunSpec(name=name, image="localhost/substratus/dataset-default-shakespeare:feedbeef", command=["load.sh"],
                   env={"LOAD_DATA_PATH": "/data/shakespeare.jsonl"},
                   mounts=[Mount("objects/dataset/default/shakespeare/0123456789abcdef/data", "/data"),
                           Mount("objects/dataset/default/shakespeare/0123456789abcdef/logs", "/dataset/logs")],
                   labels=labels("Dataset", "shakespeare", "load", run="0123456789abcdef"))


def test_a_load_job_runs_to_success_owned_by_its_dataset(api: KubeApi, runtime: KubernetesRuntime,
                                                         controllers: Scripted, cluster: Cluster) -> None:
    ds = create_cr(api, "Dataset", "shakespeare", {"filename": "shakespeare.jsonl", "source": {"dir": "/src"}})
    controllers.plan["load/main"] = Outcome(exit_code=0, logs=["load: reading", "load: wrote 280 records"], after=0.3)
    spec = load_spec()
    state = runtime.run(spec)
    assert state.name == spec.name and state.running and state.exit_code is None
    job = api.get("batch/v1", "Job", names.object_name(spec.name), "default")
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/substratus/dataset-default-shakespeare:feedbeef"
    assert container["args"] == ["load.sh"] and "command" not in container
    done = wait_for("the load job to finish", lambda: (s := runtime.container(spec.name)) and not s.running and s)
    assert done.exit_code == 0 and done.status == "exited"
    assert list(runtime.logs(spec.name)) == ["load: reading", "load: wrote 280 records"]
    assert list(runtime.logs(spec.name, tail=1)) == ["load: wrote 280 records"]
    found = runtime.containers({"substratus.ai/kind": "Dataset", "substratus.ai/name": "shakespeare",
                                "substratus.ai/role": "load"})
    assert [c.name for c in found] == [spec.name]
    assert spec.labels.items() <= found[0].labels.items()
    assert runtime.remove(spec.name) is True
    assert runtime.container(spec.name) is None
    wait_for("the job's pod to be collected", lambda: cluster.objects("v1/pods") == [])
    assert runtime.remove(spec.name) is False


def test_a_failed_train_job_reports_its_exit_code_and_log_tail(api: KubeApi, runtime: KubernetesRuntime,
                                                               controllers: Scripted) -> None:
    create_cr(api, "Model", "tiny", {"source": {"modelName": "base"}, "training": {"datasetName": "d"}})
    controllers.plan["train/main"] = Outcome(exit_code=3, logs=["epoch 1", "loss is nan", "train.sh: giving up"])
    spec = RunSpec(name="sub-k8s-model-default-tiny-train-aaaaaaaaaa", image=IMAGE, command=["train.sh"],
                   env={"TRAIN_DATA_PATH": "/data/d.jsonl", "TRAIN_EPOCHS": "1"},
                   mounts=[Mount("objects/dataset/default/d/run/data", "/data", read_only=True),
                           Mount("objects/model/default/tiny/run/trained", "/model/trained")],
                   labels=labels("Model", "tiny", "train"), gpu=True)
    runtime.run(spec)
    done = wait_for("the train job to fail", lambda: (s := runtime.container(spec.name)) and not s.running and s)
    assert done.exit_code == 3
    assert list(runtime.logs(spec.name, tail=2)) == ["loss is nan", "train.sh: giving up"]
    job = api.get("batch/v1", "Job", names.object_name(spec.name), "default")
    assert job is not None
    assert any(c["type"] == "Failed" for c in job["status"]["conditions"])
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": 1}


def test_a_server_becomes_ready_and_rolls_onto_a_new_image(api: KubeApi, runtime: KubernetesRuntime,
                                                           controllers: Scripted, cluster: Cluster) -> None:
    create_cr(api, "ModelServer", "tiny", {"modelName": "tiny"})
    controllers.plan["server/server"] = Outcome(exit_code=None, logs=["serve.sh: listening on :8080"], after=0.3)
    name = "sub-k8s-modelserver-default-tiny-server"

    def spec(image: str) -> RunSpec:
        return RunSpec(name=name, image=image, command=["serve.sh"], ports={8080: 18080},
                       labels=labels("ModelServer", "tiny", "server", image=image))

    state = runtime.run(spec(IMAGE))
    assert state.running
    ready = wait_for("the server to be ready", lambda: (s := runtime.container(name)) and s.status == "ready" and s)
    assert ready.labels["substratus.ai/image"] == IMAGE  # the planner's label value comes back, not its hash
    assert ready.ports == {8080: 8080}
    svc = api.get("v1", "Service", names.object_name(name), "default")
    assert svc is not None and svc["spec"]["ports"][0]["port"] == 8080
    first_pods = {p["metadata"]["uid"] for p in cluster.objects("v1/pods")}

    new_image = IMAGE.replace("0123456789abcdef", "fedcba9876543210")
    runtime.run(spec(new_image))  # same container name, new image: the Deployment rolls
    dep = api.get("apps/v1", "Deployment", names.object_name(name), "default")
    assert dep is not None and dep["metadata"]["generation"] == 2
    wait_for("the old pod to be replaced", lambda: {p["metadata"]["uid"] for p in cluster.objects("v1/pods")}
             .isdisjoint(first_pods) and len(cluster.objects("v1/pods")) == 1)
    rolled = wait_for("the rolled server to be ready", lambda: (s := runtime.container(name)) and s.status == "ready"
                      and s.labels["substratus.ai/image"] == new_image and s)
    assert rolled.running
    assert list(runtime.logs(name)) == ["serve.sh: listening on :8080"]
    assert runtime.stop(name) is True
    stopped = runtime.container(name)
    assert stopped is not None and not stopped.running and stopped.exit_code == 137


def test_a_crashing_server_is_reported_restarting(api: KubeApi, runtime: KubernetesRuntime,
                                                  controllers: Scripted) -> None:
    create_cr(api, "ModelServer", "bad", {"modelName": "bad"})
    controllers.plan["server/server"] = Outcome(exit_code=2, logs=["serve.sh: no model at /model/saved"])
    name = "sub-k8s-modelserver-default-bad-server"
    runtime.run(RunSpec(name=name, image=IMAGE, command=["serve.sh"], labels=labels("ModelServer", "bad", "server")))
    state = wait_for("CrashLoopBackOff", lambda: (s := runtime.container(name)) and s.status == "restarting" and s)
    assert state.exit_code == 2 and state.running


def test_a_notebook_keeps_its_token_in_a_secret(api: KubeApi, runtime: KubernetesRuntime, cluster: Cluster) -> None:
    create_cr(api, "Notebook", "nb", {"modelName": "tiny"})
    name = "sub-k8s-notebook-default-nb-notebook"
    token = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    runtime.run(RunSpec(name=name, image=IMAGE, command=["notebook.sh"], ports={8888: 18888},
                        env={"JUPYTER_TOKEN": token}, labels=labels("Notebook", "nb", "notebook", image=IMAGE)))
    pod = api.get("v1", "Pod", names.object_name(name), "default")
    assert pod is not None
    assert token not in json.dumps(pod)
    env = pod["spec"]["containers"][0]["env"]
    assert env == [{"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": names.child_name(names.object_name(name), "env"), "key": "JUPYTER_TOKEN"}}}]
    secret = api.get("v1", "Secret", names.child_name(names.object_name(name), "env"), "default")
    assert secret is not None and base64.b64decode(secret["data"]["JUPYTER_TOKEN"]).decode() == token
    assert wait_for("the notebook to be ready", lambda: (s := runtime.container(name)) and s.status == "ready")
    assert runtime.stop(name) is True  # suspend: the pod goes, the Service and Secret stay
    wait_for("the notebook pod to go", lambda: runtime.container(name) is None)
    assert api.get("v1", "Service", names.object_name(name), "default") is not None
    runtime.run(RunSpec(name=name, image=IMAGE, command=["notebook.sh"], ports={8888: 18888},
                        env={"JUPYTER_TOKEN": token}, labels=labels("Notebook", "nb", "notebook", image=IMAGE)))
    assert wait_for("the resumed notebook", lambda: (s := runtime.container(name)) and s.status == "ready")
    assert runtime.remove(name) is True
    assert api.get("v1", "Service", names.object_name(name), "default") is None
    assert api.get("v1", "Secret", names.child_name(names.object_name(name), "env"), "default") is None


def test_run_once_returns_the_exit_code_and_output_and_cleans_up(runtime: KubernetesRuntime, controllers: Scripted,
                                                                 cluster: Cluster) -> None:
    controllers.plan["once/main"] = Outcome(exit_code=0, logs=["found serve.sh /usr/local/bin/serve.sh",
                                                               "missing train.sh"])
    done = runtime.run_once(RunSpec(name="", image=IMAGE, entrypoint=["sh", "-c"], command=["command -v serve.sh"]),
                            timeout=20)
    assert done.exit_code == 0
    assert done.output.splitlines() == ["found serve.sh /usr/local/bin/serve.sh", "missing train.sh"]
    assert cluster.objects("v1/pods") == []
    controllers.plan["once/main"] = Outcome(exit_code=127, logs=["sh: not found"])
    failed = runtime.run_once(RunSpec(name="", image=IMAGE, entrypoint=["sh", "-c"], command=["x"]), timeout=20)
    assert failed.exit_code == 127 and failed.output == "sh: not found"


def test_run_once_times_out(runtime: KubernetesRuntime, controllers: Scripted, cluster: Cluster) -> None:
    controllers.plan["once/main"] = Outcome(exit_code=0, after=60)
    done = runtime.run_once(RunSpec(name="", image=IMAGE, command=["sleep", "60"]), timeout=0.5)
    assert done.exit_code == 124 and "timed out" in done.output
    assert cluster.objects("v1/pods") == []


def test_nothing_is_created_for_a_resource_that_is_gone(runtime: KubernetesRuntime, cluster: Cluster) -> None:
    with pytest.raises(EngineError, match="no longer exists"):
        runtime.run(load_spec())
    assert cluster.objects("batch/v1/jobs") == []


def test_deleting_the_custom_resource_cascades(api: KubeApi, runtime: KubernetesRuntime, controllers: Scripted,
                                               cluster: Cluster) -> None:
    create_cr(api, "Dataset", "shakespeare", {"filename": "s.jsonl", "source": {"dir": "/src"}})
    controllers.plan["load/main"] = Outcome(exit_code=0, after=30)
    spec = load_spec()
    runtime.run(spec)
    wait_for("the load pod", lambda: cluster.objects("v1/pods"))
    assert api.delete("substratus.ai/v1", "Dataset", "shakespeare", "default")
    wait_for("the job and its pod to be collected",
             lambda: cluster.objects("batch/v1/jobs") == [] and cluster.objects("v1/pods") == [])


def test_gpu_available_reads_node_allocatable(api: KubeApi, runtime: KubernetesRuntime, cluster: Cluster) -> None:
    assert runtime.gpu_available() is False
    cluster.call(_add_node(cluster, "cpu-node", {"cpu": "8"}))
    assert runtime.gpu_available() is False
    cluster.call(_add_node(cluster, "gpu-node", {"cpu": "8", "nvidia.com/gpu": "1"}))
    assert runtime.gpu_available() is True


async def _add_node(cluster: Cluster, name: str, allocatable: dict[str, str]) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        await http.post(f"{cluster.url}/api/v1/nodes", json={
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"allocatable": allocatable}})


def test_build_uploads_the_context_and_runs_buildkit(api: KubeApi, cluster: Cluster, controllers: Scripted,
                                                     bucket: str, tmp_path: Path) -> None:
    create_cr(api, "Model", "tiny", {"source": {"dir": "/src"}})
    settings = KubeSettings(registry="registry.example.com/substratus", artifact_store=f"s3://{bucket}/artifacts")
    store = ArtifactStore(settings.artifact_store)
    runtime = KubernetesRuntime(api, settings, store=store, poll_seconds=0.05)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
    controllers.plan["source/prepare-context"] = Outcome(exit_code=0, logs=["fetched 1 file(s)"])
    controllers.plan["source/buildkit"] = Outcome(exit_code=0, logs=["#1 [internal] load build definition",
                                                                      "#5 pushing layers done"])
    lines: list[str] = []
    tag = "localhost/substratus/model-default-tiny:0123456789abcdef"
    runtime.build(BuildSpec(context=context, tag=tag, labels=labels("Model", "tiny", "source")), lines.append)
    assert lines == ["fetched 1 file(s)", "#1 [internal] load build definition", "#5 pushing layers done"]
    created = [c for c in cluster.server.created_log if c[0] == "Job"]
    assert len(created) == 1 and cluster.objects("batch/v1/jobs") == []  # the builder Job is removed after
    archives = store.list("sources/dirs")
    assert len(archives) == 1
    extracted = tmp_path / "back"
    unpack(store.read_bytes(f"sources/dirs/{archives[0]}"), extracted)
    assert (extracted / "Dockerfile").read_text() == "FROM scratch\nWORKDIR /model\n"

    controllers.plan["source/buildkit"] = Outcome(exit_code=1, logs=["#4 ERROR: failed to solve: no such file"])
    with pytest.raises(BuildError) as err:
        runtime.build(BuildSpec(context=context, tag=tag + "x", labels=labels("Model", "tiny", "source")),
                      lines.append)
    assert "failed to solve" in err.value.log_tail


def test_build_needs_an_artifact_store(runtime: KubernetesRuntime, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="needs an artifact store"):
        runtime.build(BuildSpec(context=tmp_path, tag="localhost/substratus/x:y"), lambda _: None)


def test_events_follow_what_the_runtime_creates_and_removes(api: KubeApi, runtime: KubernetesRuntime,
                                                            controllers: Scripted) -> None:
    """Runtime.events: the controller's container cache follows these (create/update/remove by name)."""
    create_cr(api, "Dataset", "shakespeare", {"filename": "s.jsonl", "source": {"dir": "/src"}})
    controllers.plan["load/main"] = Outcome(exit_code=0, after=0.3)
    selector = {"substratus.ai/managed": "true", "substratus.ai/instance": "k8s"}
    stream = runtime.events(selector)
    seen: list[tuple[str, str]] = []
    reader = threading.Thread(target=lambda: seen.extend((e.action, e.name) for e in stream), daemon=True)
    reader.start()
    spec = load_spec()
    runtime.run(spec)
    wait_for("the job to finish", lambda: (s := runtime.container(spec.name)) and not s.running)
    runtime.remove(spec.name)
    wait_for("the remove event", lambda: ("remove", spec.name) in seen)
    stream.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert seen[0] == ("start", spec.name)
    assert ("died", spec.name) in seen  # the job (and its pod) finished
    assert {name for _, name in seen} == {spec.name}  # named as the planner named it, nothing foreign


def test_secret_env_goes_to_the_secret(api: KubeApi, runtime: KubernetesRuntime) -> None:
    create_cr(api, "ModelServer", "open", {"modelName": "tiny", "address": "0.0.0.0"})
    name = "sub-k8s-modelserver-open-server-abcdef"
    runtime.run(RunSpec(name=name, image=IMAGE, command=["serve.sh"], ports={8080: 18080},
                        publish_address="0.0.0.0", secret_env={"SUBSTRATUS_SERVER_TOKEN": "s3cr3t-t0ken"},
                        labels=labels("ModelServer", "open", "server")))
    dep = api.get("apps/v1", "Deployment", names.object_name(name), "default")
    assert dep is not None and "s3cr3t-t0ken" not in json.dumps(dep)
    secret = api.get("v1", "Secret", names.child_name(names.object_name(name), "env"), "default")
    assert secret is not None
    assert base64.b64decode(secret["data"]["SUBSTRATUS_SERVER_TOKEN"]).decode() == "s3cr3t-t0ken"
