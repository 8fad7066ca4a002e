"""Kubernetes objects for the planners' workloads: pure functions, dicts out.

The planners describe a container (`RunSpec`: image, command, contract env,
artifact mounts, labels, GPU); its role label decides what it becomes here:

    load, train   a Job (backoffLimit 0: a failed script is a failed run, as locally)
    server        a Deployment (readiness GET /docs on 8080) and a Service
    notebook      a Secret holding the token, a Pod and a Service
    once          a Pod that runs to completion (contract checks)

Every object carries the planner's labels (values Kubernetes refuses are hashed,
the originals kept in annotations, see `names`), an ownerReference to the
custom resource it serves, so that deleting the resource deletes its
children, and the hardening in `podspec`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Optional

from substratus.runtimes.base import LABEL_PREFIX, Mount, RunSpec
from substratus.runtimes.kubernetes import names, podspec
from substratus.runtimes.kubernetes.podspec import ArtifactMount
from substratus.runtimes.kubernetes.settings import KubeSettings

ROLE = LABEL_PREFIX + "role"
CONTAINER_LABEL = LABEL_PREFIX + "container"
CONTAINER_NAME_ANNOTATION = LABEL_PREFIX + "container-name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "substratus"}
JOB_ROLES = ("load", "train")
SERVER_PORT, NOTEBOOK_PORT = 8080, 8888
# Env vars whose values are secrets: they go into a Secret, never into a pod spec.
SECRET_ENV = frozenset({"JUPYTER_TOKEN"})


@dataclass(frozen=True)
class Owner:
    """The custom resource a workload belongs to (for ownerReferences)."""

    api_version: str
    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


@dataclass
class Workload:
    """One container the planners want, in the terms Kubernetes needs."""

    name: str                 # the planner's container name
    namespace: str
    role: str
    image: str
    command: Optional[list[str]] = None   # Kubernetes `command` (the image ENTRYPOINT when None)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    mounts: list[ArtifactMount] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    gpu: bool = False
    owner: Optional[Owner] = None
    workdir: Optional[str] = None
    resources: dict[str, Any] = field(default_factory=dict)
    deadline_seconds: Optional[int] = None

    @property
    def object_name(self) -> str:
        return names.object_name(self.name)


def from_run_spec(spec: RunSpec, *, owner: Optional[Owner] = None, image: Optional[str] = None) -> Workload:
    """Map a RunSpec onto a Workload.

    docker's ENTRYPOINT/CMD pair is Kubernetes' command/args: `spec.entrypoint`
    becomes `command`, `spec.command` becomes `args`, so `["serve.sh"]` runs
    exactly as `podman run IMAGE serve.sh` does. Mount sources are keys into
    the artifact store (the Kubernetes layout's paths). `secret_env` (and a
    token that came in `env`) goes into a Secret; `publish_address` has no
    meaning in a cluster, where a Service publishes the port.
    """
    env = {k: v for k, v in spec.env.items() if k not in SECRET_ENV}
    secret = {**{k: v for k, v in spec.env.items() if k in SECRET_ENV}, **spec.secret_env}
    command: Optional[list[str]] = None
    args = list(spec.command)
    if spec.entrypoint is not None:
        command, args = list(spec.entrypoint[:1]), list(spec.entrypoint[1:]) + args
    return Workload(
        name=spec.name, namespace=spec.labels.get(LABEL_PREFIX + "namespace", "default"),
        role=spec.labels.get(ROLE, "once"), image=image or spec.image, command=command, args=args, env=env,
        secret_env=secret, mounts=[_artifact(m) for m in spec.mounts], ports=sorted(spec.ports),
        labels=dict(spec.labels), gpu=spec.gpu, owner=owner, workdir=spec.workdir)


def _artifact(m: Mount) -> ArtifactMount:
    return ArtifactMount(key=m.source.strip("/"), target=m.target, read_only=m.read_only)


def metadata(w: Workload, name: Optional[str] = None) -> dict[str, Any]:
    labels, kept = names.encode_labels(w.labels)
    meta: dict[str, Any] = {
        "name": name or w.object_name, "namespace": w.namespace,
        "labels": {**labels, **MANAGED_BY, CONTAINER_LABEL: w.object_name},
        "annotations": {**kept, CONTAINER_NAME_ANNOTATION: w.name},
    }
    if w.owner is not None:
        meta["ownerReferences"] = [w.owner.reference()]
    return meta


def main_container(w: Workload, settings: KubeSettings, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = {"name": w.role if w.role in ("server", "notebook") else "main", "image": w.image,
                         "imagePullPolicy": settings.image_pull_policy}
    if w.command is not None:
        c["command"] = w.command
    if w.args:
        c["args"] = w.args
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(w.env.items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name(w), "key": k}}}
            for k in sorted(w.secret_env)]
    if env:
        c["env"] = env
    if w.workdir:
        c["workingDir"] = w.workdir
    if w.ports:
        c["ports"] = [{"name": _port_name(p), "containerPort": p, "protocol": "TCP"} for p in w.ports]
    if mounts:
        c["volumeMounts"] = mounts
    resources = podspec.gpu_resources(settings, w.gpu, w.resources)
    if resources:
        c["resources"] = resources
    c["securityContext"] = podspec.workload_container_security(settings)
    return c


def _port_name(port: int) -> str:
    return {SERVER_PORT: "http", NOTEBOOK_PORT: "notebook"}.get(port, f"port-{port}")


def pod_spec(w: Workload, settings: KubeSettings, *, restart: str) -> dict[str, Any]:
    plumbing = podspec.artifact_plumbing(w.mounts, settings)
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": podspec.workload_pod_security(settings),
        "containers": [main_container(w, settings, plumbing.mounts)],
        **podspec.placement(settings, w.gpu),
    }
    if plumbing.init_containers:
        spec["initContainers"] = plumbing.init_containers
        spec["terminationGracePeriodSeconds"] = podspec.SYNC_GRACE_SECONDS
    if plumbing.volumes:
        spec["volumes"] = plumbing.volumes
    if settings.registry_secret:
        spec["imagePullSecrets"] = [{"name": settings.registry_secret}]
    return spec


def job(w: Workload, settings: KubeSettings) -> dict[str, Any]:
    """A load or train run: one pod, never retried, kept until the planner collects it."""
    meta = metadata(w)
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                     "spec": pod_spec(w, settings, restart="Never")},
    }
    if w.deadline_seconds:
        spec["activeDeadlineSeconds"] = w.deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def server(w: Workload, settings: KubeSettings) -> list[dict[str, Any]]:
    """Deployment + Service. A new model image is a new pod template: the Deployment rolls."""
    meta = metadata(w)
    pod = pod_spec(w, settings, restart="Always")
    container = pod["containers"][0]
    container.setdefault("ports", [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}])
    container["readinessProbe"] = {"httpGet": {"path": "/docs", "port": SERVER_PORT},
                                   "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
    # A GPU server cannot surge onto a second GPU it may not have: replace it instead.
    strategy: dict[str, Any] = {"type": "Recreate"} if w.gpu else \
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {CONTAINER_LABEL: w.object_name}},
            "strategy": strategy,
            "progressDeadlineSeconds": settings.ready_timeout_seconds,
            "revisionHistoryLimit": 2,
            "template": {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                         "spec": pod},
        },
    }
    return [deployment, service(w, SERVER_PORT, "http")]


def notebook(w: Workload, settings: KubeSettings) -> list[dict[str, Any]]:
    """Secret (the token) + Pod + Service. Suspending deletes the Pod; the planner does that."""
    meta = metadata(w)
    pod_body = pod_spec(w, settings, restart="Always")
    container = pod_body["containers"][0]
    container.setdefault("ports", [{"name": "notebook", "containerPort": NOTEBOOK_PORT, "protocol": "TCP"}])
    # The contract promises Jupyter on 8888, nothing about its paths: a TCP probe.
    container["readinessProbe"] = {"tcpSocket": {"port": NOTEBOOK_PORT}, "periodSeconds": 5}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_body}
    return [pod, service(w, NOTEBOOK_PORT, "notebook")]


def once_pod(w: Workload, settings: KubeSettings) -> dict[str, Any]:
    """A pod that runs one command to completion (contract checks); the runtime deletes it."""
    spec = pod_spec(w, settings, restart="Never")
    if w.deadline_seconds:
        spec["activeDeadlineSeconds"] = w.deadline_seconds
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata(w), "spec": spec}


def service(w: Workload, port: int, port_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(w),
        "spec": {"type": "ClusterIP", "selector": {CONTAINER_LABEL: w.object_name},
                 "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}]},
    }


def secret_name(w: Workload) -> str:
    return names.child_name(w.object_name, "env")


def secret(w: Workload) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(w.secret_env.items())}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata(w, secret_name(w)),
            "type": "Opaque", "data": data}


def objects_for(w: Workload, settings: KubeSettings) -> list[dict[str, Any]]:
    """Everything one workload is made of, in creation order (the Secret its env refers to first)."""
    first = [secret(w)] if w.secret_env else []
    if w.role in JOB_ROLES:
        return first + [job(w, settings)]
    if w.role == "server":
        return first + server(w, settings)
    if w.role == "notebook":
        return first + notebook(w, settings)
    return first + [once_pod(w, settings)]


def service_url(w: Workload, port: int) -> str:
    """Where the Service answers inside the cluster."""
    return f"http://{w.object_name}.{w.namespace}.svc.cluster.local:{port}"
