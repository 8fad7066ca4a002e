"""Kubernetes objects for the planners' workloads: pure functions, dicts out.

The planners describe a container (`RunSpec`: image, command, contract env,
artifact mounts, labels, GPU); its role label decides what it becomes here:

    load, train   a Job (backoffLimit 0: a failed script is a failed run, as locally)
    server        a Deployment and a Service
    notebook      a Secret holding the token, a Pod and a Service
    once          a Pod that runs to completion (contract checks)

Every object carries the planner's labels (values Kubernetes refuses are hashed,
the originals kept in annotations, see `names`), an ownerReference to the
custom resource it serves, so that deleting the resource deletes its
children, and the hardening in `podspec`.

Servers and notebooks are ready by the contract's readiness rule
(`contract.READINESS`), rendered by `readiness_probe`: a rule of one required
GET (a notebook's) is the kubelet's own httpGet probe; any other (a server's:
GET /docs, and GET /readyz where the server offers it) is an httpGet on the
readiness helper, a small container of the operator image in the same pod that
applies the rule (`runtimes.readiness`). The local backend applies the same
rule with the same code, so a server is ready on a cluster exactly when it
would be on this machine.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from substratus import contract
from substratus.runtimes import readiness as readiness_helper
from substratus.runtimes.base import LABEL_PREFIX, Mount, RunSpec
from substratus.runtimes.kubernetes import names, podspec
from substratus.runtimes.kubernetes.podspec import ArtifactMount
from substratus.runtimes.kubernetes.settings import KubeSettings

ROLE = LABEL_PREFIX + "role"
CONTAINER_LABEL = LABEL_PREFIX + "container"
CONTAINER_NAME_ANNOTATION = LABEL_PREFIX + "container-name"
MANAGED_BY = {"app.kubernetes.io/managed-by": "substratus"}
JOB_ROLES = ("load", "train")
SECRET_ENV = contract.SECRET_ENV  # env vars whose values go into a Secret, never into a pod spec
HELPER_PORT = 9450        # the readiness helper's; a port the contract does not name
HELPER_MODULE = "substratus.runtimes.readiness"
PROBE_PERIOD_SECONDS = 5
PROBE_FAILURE_THRESHOLD = 3


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
    return {contract.SERVER_PORT: "http", contract.NOTEBOOK_PORT: "notebook"}.get(port, f"port-{port}")


def readiness_probe(rule: contract.Readiness) -> dict[str, Any]:
    """The main container's readinessProbe for the contract's rule: the kubelet's own httpGet when
    the rule is one required GET, else an httpGet on the readiness helper (`readiness_helper`)."""
    native = rule.native
    if native is not None:
        get, timeout = {"path": native.path, "port": native.port}, rule.timeout_seconds
    else:  # the helper sends every GET of the rule in turn before it answers
        get, timeout = {"path": "/", "port": HELPER_PORT}, rule.timeout_seconds * len(rule.checks) + 1
    return {"httpGet": get, "periodSeconds": PROBE_PERIOD_SECONDS, "timeoutSeconds": math.ceil(timeout),
            "failureThreshold": PROBE_FAILURE_THRESHOLD}


def readiness_helper_container(rule: contract.Readiness, settings: KubeSettings) -> Optional[dict[str, Any]]:
    """The helper container that applies `rule` inside the pod, or None when the kubelet can."""
    if rule.native is not None:
        return None
    return {
        "name": "readiness",
        "image": settings.operator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", HELPER_MODULE],
        "args": readiness_helper.helper_args(rule, HELPER_PORT),
        "ports": [{"name": "readiness", "containerPort": HELPER_PORT, "protocol": "TCP"}],
        "securityContext": podspec.own_container_security(),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
    }


def with_readiness(pod: dict[str, Any], role: str, settings: KubeSettings) -> None:
    """Give the pod's main container the readinessProbe of `role`'s rule (and the helper it needs)."""
    rule = contract.READINESS[role]
    pod["containers"][0]["readinessProbe"] = readiness_probe(rule)
    helper = readiness_helper_container(rule, settings)
    if helper is not None:
        pod["containers"].append(helper)


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
    port = contract.SERVER_PORT
    pod["containers"][0].setdefault("ports", [{"name": _port_name(port), "containerPort": port, "protocol": "TCP"}])
    with_readiness(pod, "server", settings)
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
    return [deployment, service(w, contract.SERVER_PORT, _port_name(contract.SERVER_PORT))]


def notebook(w: Workload, settings: KubeSettings) -> list[dict[str, Any]]:
    """Secret (the token) + Pod + Service. Suspending deletes the Pod; the planner does that."""
    meta = metadata(w)
    pod_body = pod_spec(w, settings, restart="Always")
    port = contract.NOTEBOOK_PORT
    pod_body["containers"][0].setdefault("ports", [{"name": _port_name(port), "containerPort": port,
                                                    "protocol": "TCP"}])
    with_readiness(pod_body, "notebook", settings)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_body}
    return [pod, service(w, port, _port_name(port))]


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
