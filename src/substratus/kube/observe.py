"""Seeing one object's world on a cluster: the `Snapshot` the planners take, as locally.

    containers   its Jobs, Deployments and standalone Pods, found by the planners' labels
                 (KubernetesRuntime.containers), read afresh each pass
    images       the registry, by the planners' names (`RegistryImages`): listed once,
                 kept current by our own builds, and asked about a tag before it is built
    succeeded    the `.succeeded` markers the operator writes into the artifact store
                 when it has judged a run's outputs complete
    progress     `logs/progress.jsonl` of a running job's run, from the artifact store
    probes       readiness as the kubelet reports it (the server or notebook container's
                 Ready state, from the readinessProbe the generators render from the
                 contract's readiness rule, `contract.READINESS`); the operator never
                 sends HTTP probes into the cluster itself
    log_tails    the last lines of a container that is not ready, from the pod's log
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import PurePath, PurePosixPath
from typing import Optional

from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactError, ArtifactStore
from substratus.build import naming
from substratus.errors import SubstratusError
from substratus.reconcile.plan import Snapshot
from substratus.reconcile.progress import job_progress
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.base import ContainerState
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime

log = logging.getLogger("substratus.kube.observe")
MARKER = ".succeeded"
RUNS_JOBS = ("Dataset", "Model")
NEGATIVE_TTL = 30.0     # seconds an "absent from the registry" answer is trusted
RELIST_PERIOD = 300.0   # seconds between listings of the registry's catalogue


class RegistryImages:
    """The registry's images by the planners' names (`localhost/substratus/...`), with their digests.

    Listed once (the catalogue), then kept current by our own builds (`record`). A registry may
    refuse to list its catalogue (many do), and images may be pushed while the operator is down,
    so a tag the planners want to build is looked up on its own before it is built (`confirm`)."""

    def __init__(self, runtime: KubernetesRuntime, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime, self.clock = runtime, clock
        self._lock = threading.Lock()
        self._images: Optional[dict[str, str]] = None
        self._listed_at = 0.0
        self._absent: dict[str, float] = {}

    def all(self) -> dict[str, str]:
        """Every known image; the catalogue is listed again every RELIST_PERIOD (an informer's resync)."""
        with self._lock:
            if self._images is not None and self.clock() < self._listed_at + RELIST_PERIOD:
                return dict(self._images)
        try:
            listed = self.runtime.images()
        except SubstratusError as err:  # an unreachable registry must not stop every pass
            log.warning("cannot list the registry: %s", err)
            listed = {}
        with self._lock:
            self._images, self._listed_at = listed, self.clock()
            return dict(self._images)

    def confirm(self, tag: str, fresh: bool = False) -> Optional[str]:
        """The image's digest when the registry has `tag` (recorded), else None (remembered a while,
        unless `fresh`: right after a build pushed it)."""
        with self._lock:
            if not fresh and self.clock() < self._absent.get(tag, 0.0):
                return None
        try:
            info = self.runtime.image_info(tag)
        except SubstratusError as err:
            log.warning("cannot ask the registry about %s: %s", tag, err)
            info = None
        if info is None:
            with self._lock:
                self._absent[tag] = self.clock() + NEGATIVE_TTL
            return None
        self.record(tag, info.id)
        return info.id

    def record(self, tag: str, image_id: str) -> None:
        with self._lock:
            self._images = {**(self._images or {}), tag: image_id}
            self._absent.pop(tag, None)

    def lookup(self, ref: str) -> Optional[str]:
        """A digest for `ref` from what is known, else from the registry (source resolution)."""
        return self.all().get(ref) or self.confirm(ref)


class ClusterObserver:
    def __init__(self, runtime: KubernetesRuntime, store: Optional[ArtifactStore], layout: ArtifactLayout,
                 images: RegistryImages) -> None:
        self.runtime, self.store, self.layout, self.images = runtime, store, layout, images

    def containers(self, key: ObjectKey) -> dict[str, ContainerState]:
        kind, ns, name = key
        return {c.name: c for c in self.runtime.containers(naming.object_labels(kind, ns, name))}

    def snapshot(self, key: ObjectKey, now: float, in_flight: frozenset[str]) -> Snapshot:
        containers = self.containers(key)
        probes, tails = self.readiness(containers)
        object_dir = self.layout.object_dir(*key)
        runs = key[0] in RUNS_JOBS  # only these have runs in the artifact store
        return Snapshot(now=now, images=dict(self.images.all()), containers=containers,
                        succeeded=self.succeeded(object_dir) if runs else frozenset(), in_flight=in_flight,
                        probes=probes, log_tails=tails,
                        progress=job_progress(containers.values(), object_dir, self.read_tail) if runs else {})

    def readiness(self, containers: dict[str, ContainerState]) -> tuple[dict[str, bool], dict[str, str]]:
        probes: dict[str, bool] = {}
        tails: dict[str, str] = {}
        for cname, c in containers.items():
            if c.labels.get(naming.label("role")) not in ("server", "notebook"):
                continue
            probes[cname] = c.status == "ready"
            if not probes[cname] and c.status != "pending":
                tails[cname] = self.log_tail(cname)
        return probes, tails

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.runtime.logs(name, tail=lines))
        except SubstratusError as err:  # a tail is a courtesy; never fail a pass for it
            return f"(could not read the container's log: {err})"

    def succeeded(self, object_dir: PurePosixPath) -> frozenset[str]:
        """Run directories (as the planners name them) holding the marker of a judged, complete run.

        A store that cannot be read fails the pass (it is retried with backoff): seeing no marker
        would make the planners run a finished job again."""
        if self.store is None:
            return frozenset()
        found = self.store.glob(object_dir / "*" / MARKER)
        return frozenset(str(PurePosixPath(k).parent) for k in found)

    def read_tail(self, key: PurePath, limit: int) -> str:
        """The end of a file in the artifact store, "" when it is not there (yet)."""
        if self.store is None:
            return ""
        try:
            return self.store.read_tail(PurePosixPath(key), limit).decode("utf-8", "replace")
        except ArtifactError:
            return ""
