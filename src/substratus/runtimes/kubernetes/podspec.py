"""The parts every generated pod shares: security, placement, GPUs, artifacts.

Security: our own containers (artifact fetch/sync, the operator) run as a
non-root user with no privilege escalation, no capabilities, the runtime's
default seccomp profile and a read-only root filesystem. Contract images get
the same hardening except the user: the contract names none, so they run as
the image's USER unless `workloadSecurity` in the settings picks one.

Artifacts: a mount of the planner's (`/data` <- `objects/dataset/ns/n/run/data`)
becomes, with a `pvc://` store, a subPath of one ReadWriteMany claim; with an
object store (`s3://`, `gs://`), an emptyDir that an init container fills
(read-only inputs) or a native sidecar uploads when the main container has
exited (outputs; Kubernetes >= 1.29 runs restartable init containers as sidecars
and stops them after the main container).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from substratus.runtimes.kubernetes.settings import KubeSettings

OWN_UID = 65532  # "nonroot" in distroless and friends; nothing in our images depends on the number
ARTIFACTS_VOLUME = "artifacts"
TMP_VOLUME = "tmp"
STAGE_ROOT = "/substratus/stage"
SYNC_GRACE_SECONDS = 1800  # time the sidecar gets to upload after the main container exits


@dataclass(frozen=True)
class ArtifactMount:
    """A key in the artifact store, seen by the main container at `target`."""

    key: str
    target: str
    read_only: bool = False


@dataclass
class Plumbing:
    """What artifacts add to a pod: volumes, the main container's mounts, helper containers."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


def own_container_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": OWN_UID, "runAsGroup": OWN_UID,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def workload_container_security(settings: KubeSettings) -> dict[str, Any]:
    sec: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                           "seccompProfile": {"type": "RuntimeDefault"}}
    user = settings.workload_security
    if user.run_as_user is not None:
        sec.update({"runAsUser": user.run_as_user, "runAsNonRoot": user.run_as_user != 0})
    if user.run_as_group is not None:
        sec["runAsGroup"] = user.run_as_group
    return sec


def workload_pod_security(settings: KubeSettings) -> dict[str, Any]:
    sec: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if settings.workload_security.fs_group is not None:
        sec["fsGroup"] = settings.workload_security.fs_group
    return sec


def placement(settings: KubeSettings, gpu: bool) -> dict[str, Any]:
    """nodeSelector and tolerations: the general ones, plus the GPU ones for GPU pods."""
    selector = dict(settings.placement.node_selector)
    tolerations = [t.wire() for t in settings.placement.tolerations]
    if gpu:
        selector.update(settings.gpu_placement.node_selector)
        tolerations += [t.wire() for t in settings.gpu_placement.tolerations if t.wire() not in tolerations]
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    return out


def gpu_resources(settings: KubeSettings, gpu: bool, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Container `resources`: what the caller asked for, plus one GPU (limits) when `gpu`."""
    out = {k: dict(v) for k, v in (base or {}).items()}
    if gpu:
        out.setdefault("limits", {})[settings.gpu_resource_name] = 1
    return out


def store_location(settings: KubeSettings) -> tuple[str, str, str]:
    """(scheme, bucket or claim, prefix) of the artifact store URL."""
    scheme, rest = settings.artifact_store.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    return scheme, bucket, prefix.strip("/")


def artifact_plumbing(mounts: list[ArtifactMount], settings: KubeSettings) -> Plumbing:
    if not mounts:
        return Plumbing()
    scheme, bucket, prefix = store_location(settings)
    if scheme == "pvc":
        return _pvc_plumbing(mounts, bucket, prefix)
    return _object_store_plumbing(mounts, settings)


def _pvc_plumbing(mounts: list[ArtifactMount], claim: str, prefix: str) -> Plumbing:
    plumbing = Plumbing(volumes=[{"name": ARTIFACTS_VOLUME, "persistentVolumeClaim": {"claimName": claim}}])
    for m in mounts:
        sub = f"{prefix}/{m.key}" if prefix else m.key
        plumbing.mounts.append({"name": ARTIFACTS_VOLUME, "mountPath": m.target, "subPath": sub,
                                "readOnly": m.read_only})
    return plumbing


def _object_store_plumbing(mounts: list[ArtifactMount], settings: KubeSettings) -> Plumbing:
    plumbing = Plumbing(volumes=[{"name": TMP_VOLUME, "emptyDir": {}}])
    fetch: list[tuple[str, str, str]] = []
    sync: list[tuple[str, str, str]] = []
    for i, m in enumerate(mounts):
        volume = f"artifact-{i}"
        plumbing.volumes.append({"name": volume, "emptyDir": {}})
        plumbing.mounts.append({"name": volume, "mountPath": m.target, "readOnly": m.read_only})
        (fetch if m.read_only else sync).append((volume, f"{STAGE_ROOT}/{i}", m.key))
    if fetch:
        args = ["fetch", "--store", settings.artifact_store]
        for _, path, key in fetch:
            args += ["--map", f"{path}={key}"]
        plumbing.init_containers.append(_helper("fetch-artifacts", args, fetch, settings))
    if sync:
        args = ["sync", "--store", settings.artifact_store]
        for _, path, key in sync:
            args += ["--map", f"{path}={key}"]
        sidecar = _helper("sync-artifacts", args, sync, settings)
        sidecar["restartPolicy"] = "Always"  # a native sidecar: uploads once the main container exits
        plumbing.init_containers.append(sidecar)
    return plumbing


def _helper(name: str, args: list[str], maps: list[tuple[str, str, str]], settings: KubeSettings) -> dict[str, Any]:
    """A container of the operator image running `python -m substratus.artifacts ARGS`."""
    container: dict[str, Any] = {
        "name": name,
        "image": settings.operator_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "substratus.artifacts"],
        "args": args,
        "env": artifact_env(settings),
        "volumeMounts": [{"name": v, "mountPath": p} for v, p, _ in maps]
                        + [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
        "securityContext": own_container_security(),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    if settings.artifact_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.artifact_secret}}]
    return container


def artifact_env(settings: KubeSettings) -> list[dict[str, Any]]:
    env = [{"name": "HOME", "value": "/tmp"}]
    if settings.s3_endpoint_url:
        env.append({"name": "SUBSTRATUS_S3_ENDPOINT_URL", "value": settings.s3_endpoint_url})
    return env
