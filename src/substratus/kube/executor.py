"""Carries out the planners' actions on a cluster, and reports the same typed outcomes as locally.

    StartContainer  KubernetesRuntime.run: a Job (load, train), a Deployment + Service
                    (server: applied, so a new image rolls it), a Secret + Pod + Service
                    (notebook)
    RemoveContainer KubernetesRuntime.remove (its log appended to the store first, when asked)
    BuildImage      a BuildKit Job: git sources cloned by BuildKit at the pinned commit, `dir`
                    sources from the tarball `sub apply` uploaded (builds.GitContext/ArchiveContext)
    BuildTrained    a BuildKit Job FROM the base image with the run's trained/ from the store
    CheckContract   the contract's static clauses: the image config from the registry, and a
                    check Pod running `command -v` for the scripts (conformance.check_image)
    CollectJob      the Job's log saved into the run, the outputs judged in the artifact store
                    (`executor.verdict`, the local words), the `.succeeded` marker written,
                    the Job deleted
    Allocate        the port is the container's own (a Service publishes it); a token is random

Quick actions (start, allocate) run inline in the reconcile pass; the others on thread
pools, one at a time per action key, reporting their outcomes when done (`Report`), as the
local executor does. Failures follow the same policy as locally (`reconcile.dispatch`), by
the type the Kubernetes client gave the API server's answer: one that may pass (unreachable,
5xx, throttled, an object of that name still going away: `AlreadyExists`) is retried with
backoff; one that will not (invalid, `Unauthorized`) becomes the action's failure, reported
until the object is applied again.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Optional, Union

from substratus import contract
from substratus.artifacts.store import ArtifactStore
from substratus.build import conformance, naming
from substratus.build.trained import trained_dockerfile
from substratus.errors import BuildError, SubstratusError, tail
from substratus.kube.observe import MARKER, RegistryImages
from substratus.reconcile.actions import (
    Action,
    Allocate,
    BuildImage,
    BuildTrained,
    CheckContract,
    CollectJob,
    RemoveContainer,
    StartContainer,
)
from substratus.reconcile.dispatch import Dispatcher
from substratus.reconcile.outcomes import Allocated, Digested, Failed, Outcome, checked, verdict
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Reason
from substratus.runtimes.kubernetes import builds
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime

log = logging.getLogger("substratus.kube.executor")
Report = Callable[[ObjectKey, list[Outcome]], None]
PORTS = {"ModelServer": contract.SERVER_PORT, "Notebook": contract.NOTEBOOK_PORT}
MAX_EXITED_LOG = 1 << 20  # an exited workload's log in the store is kept to its last MiB


class KubeExecutor(Dispatcher):
    """Carries actions out on a cluster: the dispatching is the local executor's (Dispatcher)."""

    def __init__(self, runtime: KubernetesRuntime, store: Optional[ArtifactStore], images: RegistryImages,
                 report: Report, *, build_workers: int = 2, workers: int = 4,
                 token_maker: Callable[[], str] = lambda: secrets.token_hex(16),
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(report, build_workers=build_workers, workers=workers, clock=clock)
        self.runtime, self.store, self.images = runtime, store, images
        self.token_maker = token_maker

    def quick(self, owner: ObjectKey, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        return self.start(action) if isinstance(action, StartContainer) else self.allocate(owner, action)

    def slow(self, owner: ObjectKey, action: Action) -> list[Outcome]:
        if isinstance(action, BuildImage):
            return self.build_image(owner, action)
        if isinstance(action, CheckContract):
            return self.check(action)
        if isinstance(action, BuildTrained):
            return self.build_trained(owner, action)
        if isinstance(action, CollectJob):
            return self.collect_job(owner, action)
        if isinstance(action, RemoveContainer):
            self.remove(action)
        return []

    # -- quick actions ---------------------------------------------------------------------------
    def start(self, a: StartContainer) -> list[Outcome]:
        """Create the workload's objects. An earlier one of that name still going away (AlreadyExists)
        is a temporary failure like any other: retried with backoff by the dispatcher."""
        log.info("starting %s (%s)", a.spec.name, a.reason)
        self.runtime.run(a.spec)
        return []

    def allocate(self, owner: ObjectKey, a: Allocate) -> list[Outcome]:
        if a.what == "port":  # no host port on a cluster: the container's own, which its Service publishes
            return [Allocated(port=PORTS.get(owner[0], contract.SERVER_PORT))]
        return [Allocated(token=self.token_maker())]

    # -- slow actions ----------------------------------------------------------------------------
    def remove(self, a: RemoveContainer) -> None:
        log.info("removing %s (%s)", a.name, a.reason)
        if a.save_log_to is not None and self.store is not None:
            self.append_log(str(a.save_log_to), list(self.runtime.logs(a.name)))
        self.runtime.remove(a.name)

    def build_image(self, owner: ObjectKey, a: BuildImage) -> list[Outcome]:
        src = a.source
        context: builds.BuildContext
        if src.git_url and src.git_commit:
            context = builds.GitContext(url=src.git_url, commit=src.git_commit, path=src.git_path or "")
        elif src.dir and src.context:
            context = builds.ArchiveContext(key=src.context)
        else:
            return [Failed(a.key, Reason.SOURCE_FAILED, f"nothing to build {a.tag} from ({src.description})")]
        job = self.build_job(owner, "build", a.tag, context, a.labels)
        err = self.run_build(job, a.tag, str(a.log_path) if a.log_path else None)
        return [Failed(a.key, Reason.BUILD_FAILED, err)] if err else []

    def build_trained(self, owner: ObjectKey, a: BuildTrained) -> list[Outcome]:
        base = self.runtime.settings.image_ref(a.base)  # BuildKit pulls the base from the registry
        context = builds.TrainedContext(base_image=base, trained_key=str(a.run_dir / "trained"),
                                        dockerfile=trained_dockerfile(base))
        job = self.build_job(owner, "trained", a.tag, context, a.labels)
        err = self.run_build(job, a.tag, str(a.run_dir / "build.log"))
        return [Failed(a.key, Reason.BUILD_FAILED, err)] if err else []

    def build_job(self, owner: ObjectKey, what: str, tag: str, context: builds.BuildContext,
                  labels: dict[str, str]) -> builds.BuildJob:
        kind, ns, name = owner
        return builds.BuildJob(name=f"sub-{what}-{kind.lower()}-{name}-{naming.digest(tag)[:10]}", namespace=ns,
                               image=self.runtime.settings.image_ref(tag), context=context, labels=dict(labels),
                               owner=self.runtime.owner(labels))

    def run_build(self, job: builds.BuildJob, tag: str, log_key: Optional[str]) -> Optional[str]:
        """Run a builder Job to its end; the log goes to the store. An error message, or None when pushed."""
        lines: list[str] = []
        log.info("building %s in %s/%s", tag, job.namespace, job.name)
        try:
            self.runtime.build_job(job, lines.append)
        except BuildError as err:
            self.save_log(log_key, lines)
            return f"{err.message} while building {tag}; last build log lines:\n{tail(err.log_tail or '', 15)}"
        self.save_log(log_key, lines)
        # The builder pushed it: trust that even if this operator cannot read the registry (no rebuild loop).
        self.images.record(tag, self.images.confirm(tag, fresh=True) or "")
        return None

    def check(self, a: CheckContract) -> list[Outcome]:
        return checked(a, conformance.check_image(self.runtime, a.image, a.kind))

    def collect_job(self, owner: ObjectKey, a: CollectJob) -> list[Outcome]:
        """Keep the Job's log in its run, judge the outputs in the store, mark the run, delete the Job.

        A loaded file's digest is recorded before the marker is written, so the dataset is never
        seen loaded without it (dependents put it into their lineage)."""
        if self.store is None:
            raise SubstratusError("judging a job needs the artifact store", hint="set artifactStore in the settings")
        run = PurePosixPath(a.run_dir)
        lines = list(self.runtime.logs(a.name))
        self.store.write_bytes(run / "job.log", ("\n".join(lines) + "\n").encode())
        outcomes = verdict(a, tail("\n".join(lines), 15), self.store.has_content(PurePosixPath(a.expect)))
        if not outcomes:
            if a.step == "load":
                self.report(owner, [Digested(a.run_key, self.store.sha256(PurePosixPath(a.expect)))])
            self.store.write_bytes(run / MARKER, b"ok\n")  # the run counts only once judged complete
        self.runtime.remove(a.name)
        return outcomes

    # -- logs in the store -----------------------------------------------------------------------
    def save_log(self, key: Optional[str], lines: list[str]) -> None:
        if key is None or self.store is None:
            return
        try:
            self.store.write_bytes(key, ("\n".join(lines) + "\n").encode())
        except SubstratusError as err:
            log.warning("could not save the log %s: %s", key, err)

    def append_log(self, key: str, lines: list[str]) -> None:
        assert self.store is not None
        try:
            old = self.store.read_tail(key, MAX_EXITED_LOG)
            self.store.write_bytes(key, (old + ("\n".join(lines) + "\n").encode())[-MAX_EXITED_LOG:])
        except SubstratusError as err:
            log.warning("could not save the log %s: %s", key, err)

