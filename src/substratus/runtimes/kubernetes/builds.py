"""Image builds in the cluster: a Job running rootless BuildKit, one per image.

Three kinds of build context, as the planners need them:

    GitContext      BuildKit clones the repository itself at the pinned commit
                    (`context=URL#COMMIT:PATH`): nothing to prepare
    ArchiveContext  a `dir` source that `sub` uploaded to the artifact store as a
                    tarball; an init container unpacks it
    TrainedContext  the trained-model image: an init container fetches the run's
                    `trained/` and writes the Dockerfile (`FROM base`, `COPY trained/
                    <saved dir>/`) that `build.trained` gives the caller

The builder is `moby/buildkit:*-rootless` by default (settings.builderImage):
runs as UID 1000, no privileged mode. Rootless BuildKit needs the seccomp and
AppArmor profiles unconfined and setuid `newuidmap` (so privilege escalation
stays allowed for that one container), as moby/buildkit's
examples/kubernetes/job.rootless.yaml documents; the namespace's Pod Security
level must allow that (`privileged`; `baseline` forbids an unconfined seccomp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from substratus.runtimes.kubernetes import names, podspec
from substratus.runtimes.kubernetes.settings import KubeSettings
from substratus.runtimes.kubernetes.workloads import CONTAINER_LABEL, CONTAINER_NAME_ANNOTATION, MANAGED_BY, Owner

BUILDER_UID = 1000  # fixed by the rootless BuildKit image
WORKSPACE = "/workspace"
CONTEXT_DIR = f"{WORKSPACE}/context"
BUILDKITD_CONFIG = f"{WORKSPACE}/buildkitd.toml"
DEFAULT_DEADLINE = 3600


@dataclass(frozen=True)
class GitContext:
    url: str
    commit: str
    path: str = ""

    def buildkit_url(self) -> str:
        sub = f":{self.path.strip('/')}" if self.path.strip("/") else ""
        return f"{self.url}#{self.commit}{sub}"


@dataclass(frozen=True)
class ArchiveContext:
    key: str  # a .tar.gz in the artifact store


@dataclass(frozen=True)
class TrainedContext:
    base_image: str
    trained_key: str   # the run's trained/ directory in the artifact store
    dockerfile: str    # build.trained.trained_dockerfile(base_image)


BuildContext = Union[GitContext, ArchiveContext, TrainedContext]


@dataclass
class BuildJob:
    name: str          # the planner's name for the build (object name derived from it)
    namespace: str
    image: str         # the full reference to push, e.g. registry.example.com/substratus/model-x:h
    context: BuildContext
    labels: dict[str, str] = field(default_factory=dict)   # planner labels, also image labels
    owner: Optional[Owner] = None
    deadline_seconds: int = DEFAULT_DEADLINE


def buildctl_args(b: BuildJob, settings: KubeSettings) -> list[str]:
    args = ["build", "--progress=plain", "--frontend=dockerfile.v0"]
    if isinstance(b.context, GitContext):
        args += ["--opt", f"context={b.context.buildkit_url()}"]
    else:
        args += ["--local", f"context={CONTEXT_DIR}", "--local", f"dockerfile={CONTEXT_DIR}"]
    for key, value in sorted(b.labels.items()):
        args += ["--opt", f"label:{key}={value}"]
    output = f"type=image,name={b.image},push=true"
    if settings.registry_insecure:
        output += ",registry.insecure=true"
    return args + ["--output", output]


def _prepare(b: BuildJob, settings: KubeSettings) -> tuple[list[str], dict[str, str]]:
    """The init container's `python -m substratus.artifacts` arguments and env ([] when not needed).

    `--write PATH=VAR` writes the value of env var VAR to PATH: the Dockerfile of a
    trained build, and buildkitd's config when the registry speaks plain HTTP.
    """
    args: list[str] = []
    env: dict[str, str] = {}
    if isinstance(b.context, ArchiveContext):
        args = ["--untar", "--map", f"{CONTEXT_DIR}={b.context.key}"]
    elif isinstance(b.context, TrainedContext):
        args = ["--map", f"{CONTEXT_DIR}/trained={b.context.trained_key}",
                "--write", f"{CONTEXT_DIR}/Dockerfile=SUBSTRATUS_DOCKERFILE"]
        env["SUBSTRATUS_DOCKERFILE"] = b.context.dockerfile
    if settings.registry_insecure:
        host = settings.registry.split("/", 1)[0]
        args += ["--write", f"{BUILDKITD_CONFIG}=SUBSTRATUS_BUILDKITD_TOML"]
        env["SUBSTRATUS_BUILDKITD_TOML"] = f'[registry."{host}"]\n  http = true\n  insecure = true\n'
    if not args:
        return [], {}
    return ["fetch", "--store", settings.artifact_store, *args], env


def _prepare_container(settings: KubeSettings, args: list[str], extra_env: dict[str, str]) -> dict[str, Any]:
    env = podspec.artifact_env(settings) + [{"name": k, "value": v} for k, v in sorted(extra_env.items())]
    c: dict[str, Any] = {
        "name": "prepare-context", "image": settings.operator_image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "substratus.artifacts"], "args": args, "env": env,
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE},
                         {"name": podspec.TMP_VOLUME, "mountPath": "/tmp"}],
        # The builder runs as 1000 and must read what this writes: same user.
        "securityContext": {**podspec.own_container_security(), "runAsUser": BUILDER_UID, "runAsGroup": BUILDER_UID},
    }
    if settings.artifact_secret:
        c["envFrom"] = [{"secretRef": {"name": settings.artifact_secret}}]
    return c


def _builder_container(b: BuildJob, settings: KubeSettings) -> dict[str, Any]:
    flags = "--oci-worker-no-process-sandbox"
    if settings.registry_insecure:
        flags += f" --config {BUILDKITD_CONFIG}"
    mounts = [{"name": "workspace", "mountPath": WORKSPACE, "readOnly": True},
              {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"}]
    env = [{"name": "BUILDKITD_FLAGS", "value": flags}]
    if settings.registry_secret:
        mounts.append({"name": "registry-auth", "mountPath": "/home/user/.docker", "readOnly": True})
        env.append({"name": "DOCKER_CONFIG", "value": "/home/user/.docker"})
    return {
        "name": "buildkit", "image": settings.builder_image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["buildctl-daemonless.sh"], "args": buildctl_args(b, settings), "env": env,
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": BUILDER_UID, "runAsGroup": BUILDER_UID,
            # Needed by rootless BuildKit (see the module docstring); nothing else is relaxed.
            "seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"},
        },
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
    }


def builder_job(b: BuildJob, settings: KubeSettings) -> dict[str, Any]:
    name = names.object_name(b.name)
    labels, kept = names.encode_labels(b.labels)
    meta: dict[str, Any] = {"name": name, "namespace": b.namespace,
                            "labels": {**labels, **MANAGED_BY, CONTAINER_LABEL: name},
                            "annotations": {**kept, CONTAINER_NAME_ANNOTATION: b.name,
                                            "substratus.ai/image-ref": b.image}}
    if b.owner is not None:
        meta["ownerReferences"] = [b.owner.reference()]
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}, {"name": "buildkitd", "emptyDir": {}},
                                     {"name": podspec.TMP_VOLUME, "emptyDir": {}}]
    if settings.registry_secret:
        volumes.append({"name": "registry-auth", "secret": {
            "secretName": settings.registry_secret, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": BUILDER_UID, "runAsGroup": BUILDER_UID,
                            "fsGroup": BUILDER_UID},
        "containers": [_builder_container(b, settings)], "volumes": volumes,
        **podspec.placement(settings, gpu=False),
    }
    prepare, prepare_env = _prepare(b, settings)
    if prepare:
        pod["initContainers"] = [_prepare_container(settings, prepare, prepare_env)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": b.deadline_seconds,
                     "template": {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                                  "spec": pod}}}
