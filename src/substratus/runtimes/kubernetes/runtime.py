"""KubernetesRuntime: the `Runtime` protocol over the Kubernetes API.

A planner's container becomes Kubernetes objects by its role label (see
`workloads`): `run` creates them, `container(s)` reads them back as
`ContainerState`s, `logs` reads the pod's output, `stop`/`remove` scale down or
delete (children go with them). Builds are BuildKit Jobs (`builds`) whose
context a local directory reaches through the artifact store; `image_info`
reads the registry. Like the engine runtime, the cluster is the source of
truth: objects are found again by name and labels.

`ContainerState.status` speaks Kubernetes here: `pending` (not started),
`running` (started, not ready), `ready` (its readiness probe passes),
`restarting` (CrashLoopBackOff; `exit_code` is the last exit), `exited`
(a Job or Pod that finished; `exit_code` set).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, Optional

from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactStore, pack
from substratus.errors import AlreadyExists, BuildError, EngineError
from substratus.runtimes.base import (
    LABEL_PREFIX,
    MANAGED,
    BuildSpec,
    Completed,
    ContainerState,
    ExecResult,
    ImageInfo,
    LogSink,
    RunSpec,
    Runtime,
)
from substratus.runtimes.kubernetes import builds, names, workloads
from substratus.runtimes.kubernetes.client import KubeApi
from substratus.runtimes.kubernetes.events import KubeEvents
from substratus.runtimes.kubernetes.registry import RegistryClient
from substratus.runtimes.kubernetes.settings import KubeSettings
from substratus.runtimes.kubernetes.workloads import CONTAINER_LABEL, CONTAINER_NAME_ANNOTATION, Owner

CR_VERSION = "substratus.ai/v1"
MAIN_KINDS = (("batch/v1", "Job"), ("apps/v1", "Deployment"), ("v1", "Pod"))
CONTROLLER_KINDS = {"Job", "ReplicaSet", "Deployment"}


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def _standalone(pod: dict[str, Any]) -> bool:
    """A pod we created ourselves (notebook, once), not one a Job or Deployment made."""
    return not any(o.get("kind") in CONTROLLER_KINDS for o in _meta(pod).get("ownerReferences") or [])


def _main_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The status of the pod's first container: the planner's (a server's readiness helper comes after it)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    main = ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
    return next((s for s in statuses if s.get("name") == main), {})


class KubernetesRuntime:
    engine = "kubernetes"

    def __init__(self, api: KubeApi, settings: KubeSettings, *, store: Optional[ArtifactStore] = None,
                 registry: Optional[RegistryClient] = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll_seconds: float = 1.0) -> None:
        self.api, self.settings, self.store = api, settings, store
        host = settings.registry.split("/", 1)[0]
        self.registry = registry or RegistryClient(insecure_hosts=(host,) if settings.registry_insecure else ())
        self.clock, self.sleep, self.poll = clock, sleep, poll_seconds

    # -- owners -----------------------------------------------------------------------------
    def owner(self, labels: dict[str, str]) -> Optional[Owner]:
        """The custom resource the labels name (kind, namespace, name), for ownerReferences.

        Labels naming no resource (contract checks, tests) give no owner; labels
        naming one that is gone raise, so nothing is created that no one owns.
        """
        kind, name = labels.get(LABEL_PREFIX + "kind"), labels.get(LABEL_PREFIX + "name")
        if not kind or not name:
            return None
        namespace = labels.get(LABEL_PREFIX + "namespace", "default")
        obj = self.api.get(CR_VERSION, kind, name, namespace)
        if obj is None:
            raise EngineError(f"{kind} {namespace}/{name} no longer exists; not creating its workload")
        return Owner(CR_VERSION, kind, name, _meta(obj)["uid"])

    # -- containers -------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> ContainerState:
        w = workloads.from_run_spec(spec, owner=self.owner(spec.labels), image=self.settings.image_ref(spec.image))
        objects = workloads.objects_for(w, self.settings)
        for obj in objects:
            if obj["kind"] in ("Service", "Secret", "Deployment"):
                # Services and Secrets outlive a notebook's suspend; a Deployment given a new
                # template (a new model image) rolls its pods instead of being replaced.
                self.api.apply(obj)
                continue
            try:
                self.api.create(obj)
            except AlreadyExists as err:
                raise AlreadyExists(f"{obj['kind']} {w.namespace}/{w.object_name} already exists "
                                    f"(container {spec.name})", hint="remove it first") from err
        state = self.container(spec.name)
        if state is None:
            raise EngineError(f"{spec.name} vanished right after it was created")
        return state

    def _find(self, name: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        selector = {CONTAINER_LABEL: names.object_name(name)}
        for api_version, kind in MAIN_KINDS:
            for obj in self.api.list(api_version, kind, namespace, selector):
                if kind != "Pod" or _standalone(obj):
                    return obj
        return None

    def container(self, name: str) -> Optional[ContainerState]:
        obj = self._find(name)
        return self._state(obj) if obj is not None else None

    def containers(self, labels: dict[str, str]) -> list[ContainerState]:
        namespace = labels.get(LABEL_PREFIX + "namespace")
        encoded, _ = names.encode_labels(labels)
        out = []
        for api_version, kind in MAIN_KINDS:
            for obj in self.api.list(api_version, kind, namespace, encoded):
                if kind != "Pod" or _standalone(obj):
                    out.append(self._state(obj))
        return out

    def _pods_of(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        meta = _meta(obj)
        if obj["kind"] == "Pod":
            return [obj]
        pods = self.api.list("v1", "Pod", meta["namespace"], {CONTAINER_LABEL: meta["labels"][CONTAINER_LABEL]})
        pods = [p for p in pods if not _standalone(p)]
        return sorted(pods, key=lambda p: _meta(p).get("creationTimestamp") or "")

    def _state(self, obj: dict[str, Any]) -> ContainerState:
        meta = _meta(obj)
        pods = self._pods_of(obj)
        pod = pods[-1] if pods else None
        running, exit_code, status = self._condition(obj, pod)
        containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", obj.get("spec") or {})
        main = (containers.get("containers") or [{}])[0]
        pstatus = (pod or {}).get("status") or {}
        return ContainerState(
            name=meta.get("annotations", {}).get(CONTAINER_NAME_ANNOTATION, meta["name"]),
            id=meta.get("uid", ""), image=main.get("image", ""),
            labels=names.decode_labels(meta.get("labels") or {}, meta.get("annotations") or {}),
            running=running, exit_code=exit_code, status=status,
            ports={p["containerPort"]: p["containerPort"] for p in main.get("ports", [])},
            started_at=(obj.get("status") or {}).get("startTime") or pstatus.get("startTime") or "",
            finished_at=(obj.get("status") or {}).get("completionTime") or "",
        )

    def _condition(self, obj: dict[str, Any], pod: Optional[dict[str, Any]]) -> tuple[bool, Optional[int], str]:
        """(running, exit code, status word) from the object and its newest pod."""
        st = obj.get("status") or {}
        if obj["kind"] == "Job":
            conds = {c["type"]: c for c in st.get("conditions") or [] if c.get("status") == "True"}
            if "Complete" in conds:
                return False, 0, "exited"
            if "Failed" in conds:
                term = (_main_status(pod or {}).get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                return False, code if code is not None else 1, "exited"
        if obj["kind"] == "Deployment" and (obj.get("spec") or {}).get("replicas", 1) == 0:
            return False, 137, "exited"  # stopped: scaled to zero
        if obj["kind"] == "Pod" and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            term = (_main_status(obj).get("state") or {}).get("terminated") or {}
            return False, term.get("exitCode", 0 if st.get("phase") == "Succeeded" else 1), "exited"
        if pod is None or (pod.get("status") or {}).get("phase") in (None, "Pending"):
            return True, None, "pending"
        main = _main_status(pod)
        waiting = (main.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            last = ((main.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            return True, last, "restarting"
        return True, None, "ready" if main.get("ready") else "running"

    def logs(self, name: str, *, tail: Optional[int] = None, follow: bool = False) -> Iterator[str]:
        obj = self._find(name)
        if obj is None:
            return
        pods = self._pods_of(obj)
        if not pods:
            return
        pod = pods[-1]
        container = pod["spec"]["containers"][0]["name"]
        yield from self.api.log_lines(_meta(pod)["name"], _meta(pod)["namespace"], container=container,
                                      tail=tail, follow=follow)

    async def stream_logs(self, name: str, *, tail: Optional[int] = None,
                          follow: bool = False) -> AsyncGenerator[str, None]:
        """`logs` for an event loop. The API client is synchronous, so one thread of its own (never a
        worker of the HTTP server) reads the stream; closing this iterator stops it at its next line
        or when the pod's stream ends (the client's read cannot be interrupted)."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[Optional[str]] = asyncio.Queue(maxsize=256)
        stop = threading.Event()

        def hand_over(item: Optional[str]) -> bool:
            while not stop.is_set():
                try:
                    asyncio.run_coroutine_threadsafe(lines.put(item), loop).result(timeout=1)
                    return True
                except concurrent.futures.TimeoutError:  # the reader is slow: the queue is full
                    continue
                except RuntimeError:  # the loop is gone
                    return False
            return False

        def pump() -> None:
            try:
                for line in self.logs(name, tail=tail, follow=follow):
                    if not hand_over(line):
                        return
            finally:
                hand_over(None)

        threading.Thread(target=pump, name=f"logs-{name}", daemon=True).start()
        try:
            while (line := await lines.get()) is not None:
                yield line
        finally:
            stop.set()

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        """A command in the workload's main container (what `sub notebook` syncs files through)."""
        obj = self._find(name)
        pods = self._pods_of(obj) if obj is not None else []
        if not pods:
            raise EngineError(f"cannot run a command in {name}: it has no pod", hint="is it running? `sub get`")
        pod = pods[-1]
        if workdir:
            argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", workdir, *argv]
        code, out, err = self.api.exec_in_pod(_meta(pod)["name"], _meta(pod)["namespace"],
                                              pod["spec"]["containers"][0]["name"], argv, stdin, timeout)
        return ExecResult(exit_code=code, stdout=out, stderr=err)

    def _all_logs(self, name: str) -> Iterator[str]:
        """Every container's output, init containers first (a build's prepare step, then BuildKit)."""
        obj = self._find(name)
        pods = self._pods_of(obj) if obj is not None else []
        if not pods:
            return
        pod = pods[-1]
        spec = pod.get("spec") or {}
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            yield from self.api.log_lines(_meta(pod)["name"], _meta(pod)["namespace"], container=c["name"])

    def stop(self, name: str, timeout: int = 10) -> bool:
        obj = self._find(name)
        if obj is None:
            return False
        meta = _meta(obj)
        if obj["kind"] == "Deployment":
            self.api.patch("apps/v1", "Deployment", meta["name"], {"spec": {"replicas": 0}}, meta["namespace"])
        elif obj["kind"] == "Job":
            self.api.patch("batch/v1", "Job", meta["name"], {"spec": {"suspend": True}}, meta["namespace"])
        else:
            self.api.delete("v1", "Pod", meta["name"], meta["namespace"])
        return True

    def remove(self, name: str) -> bool:
        obj = self._find(name)
        if obj is None:
            return False
        meta = _meta(obj)
        self.api.delete(obj["apiVersion"], obj["kind"], meta["name"], meta["namespace"])
        self.api.delete("v1", "Service", meta["name"], meta["namespace"])
        self.api.delete("v1", "Secret", names.child_name(meta["name"], "env"), meta["namespace"])
        return True

    def run_once(self, spec: RunSpec, timeout: float) -> Completed:
        labels = {MANAGED: "true", LABEL_PREFIX + "role": "once", **spec.labels}
        name = spec.name or f"sub-once-{uuid.uuid4().hex[:10]}"
        once = RunSpec(**{**spec.__dict__, "name": name, "labels": labels})
        w = workloads.from_run_spec(once, owner=self.owner(labels), image=self.settings.image_ref(spec.image))
        w.deadline_seconds = max(1, int(timeout))
        for obj in workloads.objects_for(w, self.settings):
            self.api.create(obj)
        try:
            state = self._wait(name, timeout)
            output = "\n".join(self.logs(name))
        finally:
            self.remove(name)
        if state is None or state.running:
            return Completed(exit_code=124, output=f"(timed out after {timeout:.0f}s)", timed_out=True)
        return Completed(exit_code=state.exit_code or 0, output=output)

    def _wait(self, name: str, timeout: float) -> Optional[ContainerState]:
        deadline = self.clock() + timeout
        while True:
            state = self.container(name)
            if state is not None and not state.running:
                return state
            if self.clock() >= deadline:
                return state
            self.sleep(self.poll)

    # -- images -----------------------------------------------------------------------------
    def build(self, spec: BuildSpec, log: LogSink) -> None:
        """Build a local directory in the cluster: tarball to the artifact store, then a BuildKit Job."""
        if self.store is None:
            raise EngineError("building a local directory on Kubernetes needs an artifact store",
                              hint="set artifactStore in the settings (s3://, gs:// or pvc://)")
        data = pack(spec.context)
        key = ArtifactLayout().source_archive(hashlib.sha256(data).hexdigest())
        if not self.store.exists(key):
            self.store.write_bytes(key, data)
        namespace = spec.labels.get(LABEL_PREFIX + "namespace", "default")
        job = builds.BuildJob(name=f"sub-build-{hashlib.sha256(spec.tag.encode()).hexdigest()[:12]}",
                              namespace=namespace, image=self.settings.image_ref(spec.tag),
                              context=builds.ArchiveContext(str(key)), labels=dict(spec.labels),
                              owner=self.owner(spec.labels))
        self.build_job(job, log)

    def build_job(self, job: builds.BuildJob, log: LogSink, timeout: Optional[float] = None) -> None:
        """Run one builder Job to its end, streaming its log; BuildError with the tail when it fails."""
        obj = builds.builder_job(job, self.settings)
        name = job.name
        if self._find(name, job.namespace) is not None:
            self.remove(name)
        self.api.create(obj)
        recent: deque[str] = deque(maxlen=40)
        try:
            state = self._wait(name, timeout or job.deadline_seconds)
            for line in self._all_logs(name):
                recent.append(line)
                log(line)
        finally:
            self.remove(name)
        if state is None or state.running or state.exit_code != 0:
            raise BuildError(f"image build of {job.image} failed (exit {state.exit_code if state else '?'})",
                             log_tail="\n".join(recent),
                             hint=f"fix the Dockerfile or the build context; `kubectl logs job/{obj['metadata']['name']}` "
                                  "while it runs")

    def image_info(self, ref: str) -> Optional[ImageInfo]:
        return self.registry.image_info(self.settings.image_ref(ref))

    def images(self) -> dict[str, str]:
        """Images in the registry under `settings.registry`, by the planners' names, with their digests.

        Nothing without a registry setting; registries that refuse to list (`/v2/_catalog`) give {}
        too, and the planners then learn of images from `image_info` as they ask."""
        if not self.settings.registry:
            return {}
        host, _, prefix = self.settings.registry.partition("/")
        out = {}
        for repo in self.registry.repositories(host):
            if prefix and not repo.startswith(prefix + "/"):
                continue
            for tag in self.registry.tags(host, repo):
                ref = f"{host}/{repo}:{tag}"
                out[self.settings.local_ref(ref)] = self.registry.digest(ref)
        return out

    def remove_image(self, ref: str) -> bool:
        return self.registry.delete(self.settings.image_ref(ref))

    def events(self, labels: dict[str, str]) -> KubeEvents:
        return KubeEvents(self.api, labels, labels.get(LABEL_PREFIX + "namespace"))

    def background(self) -> "KubernetesRuntime":
        return self  # no engine processes of its own to lower the priority of

    def gpu_available(self) -> bool:
        for node in self.api.list("v1", "Node"):
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            if str(allocatable.get(self.settings.gpu_resource_name, "0")) not in ("0", ""):
                return True
        return False



def as_runtime(runtime: KubernetesRuntime) -> Runtime:
    """Where mypy checks that KubernetesRuntime keeps the Runtime protocol."""
    return runtime
