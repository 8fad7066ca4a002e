"""Every kind of object `sub kube install` and the generators can produce, under the
settings that change their shape (artifact store kind, registry auth, GPUs, users)."""

from __future__ import annotations

from typing import Any

from substratus.build.trained import trained_dockerfile
from substratus.runtimes.base import Mount, RunSpec
from substratus.runtimes.kubernetes import builds, install, workloads
from substratus.runtimes.kubernetes.settings import KubeSettings, Placement, Toleration, WorkloadSecurity
from substratus.runtimes.kubernetes.workloads import Owner
from tests.kubernetes.harness import labels

OWNER = {kind: Owner("substratus.ai/v1", kind, "tiny", f"00000000-0000-4000-8000-00000000000{i}")
         for i, kind in enumerate(("Dataset", "Model", "ModelServer", "Notebook"))}
IMAGE = "localhost/substratus/model-default-tiny:0123456789abcdef"

SETTINGS: dict[str, KubeSettings] = {
    "defaults": KubeSettings(),
    "s3": KubeSettings(registry="registry.example.com/substratus", artifact_store="s3://bucket/substratus",
                       s3_endpoint_url="http://minio.storage:9000", artifact_secret="substratus-s3",
                       registry_secret="regcred"),
    "gcs-insecure-registry": KubeSettings(registry="registry.local:5000/sub", registry_insecure=True,
                                          artifact_store="gs://bucket"),
    "placed-nonroot": KubeSettings(
        artifact_store="pvc://shared/team-a", image_pull_policy="Always", gpu_resource_name="amd.com/gpu",
        placement=Placement(node_selector={"pool": "ml"}, tolerations=[Toleration(key="ml", value="yes",
                                                                                  effect="NoSchedule")]),
        gpu_placement=Placement(node_selector={"accelerator": "h100"}),
        workload_security=WorkloadSecurity(run_as_user=1000, run_as_group=1000, fs_group=1000)),
}


def run_specs() -> list[tuple[RunSpec, Owner]]:
    load = RunSpec(name="sub-k8s-dataset-default-tiny-load-0123456789", image=IMAGE, command=["load.sh"],
                   env={"LOAD_DATA_PATH": "/data/tiny.jsonl"},
                   mounts=[Mount("objects/dataset/default/tiny/r/data", "/data"),
                           Mount("objects/dataset/default/tiny/r/logs", "/dataset/logs")],
                   labels=labels("Dataset", "tiny", "load"))
    train = RunSpec(name="sub-k8s-model-default-tiny-train-0123456789", image=IMAGE, command=["train.sh"],
                    env={"TRAIN_DATA_PATH": "/data/tiny.jsonl", "TRAIN_DATA_LIMIT": "100", "TRAIN_BATCH_SIZE": "8",
                         "TRAIN_EPOCHS": "1"},
                    mounts=[Mount("objects/dataset/default/tiny/r/data", "/data", read_only=True),
                            Mount("objects/model/default/tiny/r/trained", "/model/trained"),
                            Mount("objects/model/default/tiny/r/logs", "/model/logs")],
                    labels=labels("Model", "tiny", "train"), gpu=True)
    server = RunSpec(name="sub-k8s-modelserver-default-tiny-server", image=IMAGE, command=["serve.sh"],
                     ports={8080: 18080}, labels=labels("ModelServer", "tiny", "server", image=IMAGE))
    gpu_server = RunSpec(**{**server.__dict__, "gpu": True})
    notebook = RunSpec(name="sub-k8s-notebook-default-tiny-notebook", image=IMAGE, command=["notebook.sh"],
                       ports={8888: 18888}, env={"JUPYTER_TOKEN": "secret-token"},
                       mounts=[Mount("objects/dataset/default/tiny/r/data", "/data", read_only=True)],
                       labels=labels("Notebook", "tiny", "notebook", image=IMAGE))
    once = RunSpec(name="sub-once-0123456789", image=IMAGE, entrypoint=["sh", "-c"], command=["command -v serve.sh"],
                   labels={"substratus.ai/role": "once"})
    return [(load, OWNER["Dataset"]), (train, OWNER["Model"]), (server, OWNER["ModelServer"]),
            (gpu_server, OWNER["ModelServer"]), (notebook, OWNER["Notebook"]), (once, OWNER["Model"])]


def build_jobs(settings: KubeSettings) -> list[builds.BuildJob]:
    ref = settings.image_ref(IMAGE)
    base = dict(namespace="default", image=ref, labels=labels("Model", "tiny", "source"), owner=OWNER["Model"])
    return [
        builds.BuildJob(name="sub-build-git", context=builds.GitContext("https://github.com/org/repo", "a" * 40,
                                                                        "models/tiny"), **base),
        builds.BuildJob(name="sub-build-dir", context=builds.ArchiveContext("sources/dirs/" + "b" * 64 + ".tar.gz"),
                        **base),
        builds.BuildJob(name="sub-build-trained", context=builds.TrainedContext(
            ref, "objects/model/default/tiny/r/trained", trained_dockerfile(ref)), **base),
    ]


def everything() -> list[tuple[str, dict[str, Any]]]:
    """(description, object) for every generated object under every settings variant."""
    out: list[tuple[str, dict[str, Any]]] = []
    for label, settings in SETTINGS.items():
        out += [(f"{label}: install {o['kind']} {o['metadata']['name']}", o) for o in install.bundle(settings)]
        for spec, owner in run_specs():
            w = workloads.from_run_spec(spec, owner=owner, image=settings.image_ref(spec.image))
            out += [(f"{label}: {w.role} {o['kind']}", o) for o in workloads.objects_for(w, settings)]
        out += [(f"{label}: build {b.name}", builds.builder_job(b, settings)) for b in build_jobs(settings)]
    return out
