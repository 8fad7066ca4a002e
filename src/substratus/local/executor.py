"""Carries out what planners ask for, through a Runtime, and reports typed outcomes.

Quick actions (start a container, choose a port or token) run inline in the
reconcile pass, so the next pass sees their effect. Slow ones (builds,
contract checks, judging a finished job, removing a container) run on thread
pools; when one finishes, its outcomes are applied to the object's state and
the object is queued again (`Report`). An action whose key is in flight is
never started twice. Outcomes are plain data and `apply_outcome` is a pure
function, so what an action changes is visible and testable.

Failures follow the shared policy (`reconcile.dispatch`): an error the engine
runtime classified as temporary is retried with backoff, a permanent one is
recorded. Three engine errors are answered here first, by type: a host port
taken (choose another: `PortLost`), a container name in use (our cache missed
it: list again) and an image gone (removed elsewhere: forget it, so it is built
again).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from substratus import contract
from substratus.build import conformance
from substratus.build.trained import trained_dockerfile
from substratus.errors import BuildError, ImageMissing, NameInUse, PortInUse, SubstratusError, tail
from substratus.local import buildguard, outputs
from substratus.local.ledger import BuiltImages
from substratus.local.observe import ContainerCache, ImageCache
from substratus.local.outputs import Examined, OutputLimits
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
from substratus.reconcile.outcomes import Allocated, Digested, Failed, Outcome, PortLost, Report, checked, verdict
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Reason
from substratus.runtimes.base import BuildSpec, Runtime, free_port

log = logging.getLogger("substratus.executor")
TRAINED_DOCKERFILE = "Dockerfile.substratus"


# ---- outcomes ---------------------------------------------------------------------------------

class Executor(Dispatcher):
    """Carries actions out on this machine's engine."""

    def __init__(self, runtime: Runtime, containers: ContainerCache, images: ImageCache, report: Report, *,
                 build_workers: int = 2, workers: int = 4, clock: Callable[[], float] = time.time,
                 port_finder: Callable[[], int] = free_port,
                 token_maker: Callable[[], str] = lambda: secrets.token_hex(16),
                 built: Optional[BuiltImages] = None, output_limits: OutputLimits = OutputLimits()) -> None:
        super().__init__(report, build_workers=build_workers, workers=workers, clock=clock)
        self.runtime, self.containers, self.images, self.built = runtime, containers, images, built
        self.output_limits = output_limits
        self.port_finder, self.token_maker = port_finder, token_maker

    def quick(self, owner: ObjectKey, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        if isinstance(action, Allocate):
            if action.what == "port":
                return [Allocated(port=self.port_finder())]
            return [Allocated(token=self.token_maker())]
        return self.start(owner, action)

    def slow(self, owner: ObjectKey, action: Action) -> list[Outcome]:
        if isinstance(action, BuildImage):
            return self.build_image(action)
        if isinstance(action, CheckContract):
            return self.check(action)
        if isinstance(action, BuildTrained):
            return self.build_trained(action)
        if isinstance(action, CollectJob):
            return self.collect_job(owner, action)
        if isinstance(action, RemoveContainer):
            self.remove(owner, action)
        return []

    # -- quick actions ---------------------------------------------------------------------------
    def start(self, owner: ObjectKey, action: StartContainer) -> list[Outcome]:
        for m in action.spec.mounts:
            if not m.read_only:
                Path(m.source).mkdir(parents=True, exist_ok=True)
        log.info("starting %s (%s)", action.spec.name, action.reason)
        try:
            state = self.runtime.run(action.spec)
        except PortInUse:
            log.warning("port of %s taken; choosing another", action.spec.name)
            return [PortLost()]
        except NameInUse:  # our cache missed a container of that name: look again (and retry later)
            self.containers.relist()
            raise
        except ImageMissing:  # removed under us (elsewhere on a shared engine): it is built again
            log.warning("image %s of %s vanished; it will be built again", action.spec.image, action.spec.name)
            self.images.invalidate()
            raise
        self.containers.put(owner, state)
        return []

    # -- slow actions ----------------------------------------------------------------------------
    def remove(self, owner: ObjectKey, action: RemoveContainer) -> None:
        log.info("removing %s (%s)", action.name, action.reason)
        if action.save_log_to is not None:
            save_logs(self.runtime, action.name, action.save_log_to)
        self.runtime.remove(action.name)
        self.containers.drop(owner, action.name)

    def build_image(self, a: BuildImage) -> list[Outcome]:
        # No owner labels in a source image: on podman a LABEL instruction is one more committed layer
        # (0.2-0.45 s of every source build). The ledger records whose image it is instead.
        refused = buildguard.refusal(self.runtime, Path(a.source.context))
        if refused:
            return [Failed(a.key, Reason.SOURCE_FAILED, refused)]
        with self.images.building():
            built = build_with_log(self.runtime, BuildSpec(context=Path(a.source.context), tag=a.tag), a.log_path)
            if isinstance(built, BuildFailure):
                return [Failed(a.key, Reason.BUILD_FAILED, built.message)]
            self._record(a.tag, built)
        return []

    def _record(self, tag: str, image_id: Optional[str]) -> None:
        iid = self.images.added(tag, image_id)
        if self.built is not None and iid:
            self.built.add(iid)

    def check(self, a: CheckContract) -> list[Outcome]:
        # Beside the image's next step (a load, a build): that step gets the CPUs first.
        try:
            return checked(a, conformance.check_image(self.runtime.background(), a.image, a.kind))
        except ImageMissing:  # removed under us: it is built again, then checked
            self.images.invalidate()
            raise

    def build_trained(self, a: BuildTrained) -> list[Outcome]:
        dockerfile = a.run_dir / TRAINED_DOCKERFILE
        dockerfile.write_text(trained_dockerfile(a.base))
        # Made once from one run's outputs and never rebuilt: no layer is worth keeping for a later build.
        spec = BuildSpec(context=a.run_dir, tag=a.tag, dockerfile=dockerfile, labels=a.labels, layer_cache=False)
        with self.images.building():
            built = build_with_log(self.runtime, spec, a.run_dir / "build.log", ignore=("logs", "job.log", "data"))
            if isinstance(built, BuildFailure):
                return [Failed(a.key, Reason.BUILD_FAILED, built.message)]
            self._record(a.tag, built)
        return []

    def collect_job(self, owner: ObjectKey, a: CollectJob) -> list[Outcome]:
        """Judge a finished load/train job, keep its log, remove its container.

        A job that exited 0 and wrote its outputs needs no log to be judged: it is marked succeeded
        and reported at once, so the next stage starts while the log is copied and the container
        removed (the container stays in the cache until then, so `sub logs` finds the log in one
        place or the other). A failure is judged with the last lines of its log."""
        job_log = a.run_dir / "job.log"
        runtime = self.runtime
        found = examine(a, self.output_limits) if a.exit_code == 0 else None
        outcomes = judge_job(a, "", found) if found is not None else None
        if outcomes == []:
            if a.step == "load" and found is not None and found.digest:
                outcomes.append(Digested(a.run_key, found.digest))
            mark_succeeded(a.run_dir)
            self.report(owner, outcomes)
            outcomes = []
            runtime = runtime.background()  # the next stage has started: it gets the CPUs first
        save_logs(runtime, a.name, job_log, replace=True)
        if outcomes is None or outcomes:
            outcomes = judge_job(a, tail(job_log.read_text(errors="replace") if job_log.exists() else "", 15), found)
        runtime.remove(a.name)
        self.containers.drop(owner, a.name)
        return outcomes


def mark_succeeded(run_dir: Path) -> None:
    marker = run_dir / ".succeeded"
    tmp = marker.with_suffix(".tmp")
    tmp.write_text("ok\n")
    tmp.replace(marker)  # the run counts only once its outputs were judged complete


def examine(a: CollectJob, limits: OutputLimits) -> Examined:
    """The job's outputs, checked without trusting them (local.outputs); a load's digest with them."""
    if a.step == "load":
        return outputs.examine_load(a.expect.parent, a.expect.name, f"{contract.DATA_DIR}/{a.expect.name}", limits)
    return outputs.examine_trained(a.expect, contract.TRAINED_DIR, limits)


def judge_job(a: CollectJob, last: str, found: Optional[Examined]) -> list[Outcome]:
    if a.exit_code == 0 and found is not None and found.problem:
        reason = Reason.LOAD_FAILED if a.step == "load" else Reason.TRAIN_FAILED
        return [Failed(a.failure_key, reason, f"{a.step}.sh exited 0 but its output is refused: {found.problem}. "
                                              f"Last log lines:\n{last}")]
    return verdict(a, last, found is not None and found.wrote)


@dataclass(frozen=True)
class BuildFailure:
    message: str


def build_with_log(runtime: Runtime, spec: BuildSpec, log_path: Optional[Path],
                   ignore: tuple[str, ...] = ()) -> Union[BuildFailure, str, None]:
    """Build, writing the log to `log_path`; returns what failed, or the image's id (None when the
    engine did not say it)."""
    if ignore:
        (spec.context / ".dockerignore").write_text("\n".join(ignore) + "\n")
    fh = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = log_path.open("w", encoding="utf-8")

    def write(line: str) -> None:
        if fh is not None:
            fh.write(line + "\n")
            fh.flush()

    try:
        return runtime.build(spec, write)
    except BuildError as err:  # the build failed; an engine that failed (EngineError) is tried again
        return BuildFailure(f"{err.message} while building {spec.tag}; last build log lines:\n"
                            f"{tail(err.log_tail or '', 15)}")
    finally:
        if fh:
            fh.close()


def save_logs(runtime: Runtime, name: str, path: Path, replace: bool = False) -> None:
    """Append the container's log to `path`, or (`replace`) put it there whole, at once: a reader
    never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".part") if replace else path
    try:
        with target.open("w" if replace else "a", encoding="utf-8") as fh:
            for line in runtime.logs(name):
                fh.write(line + "\n")
        if replace:
            target.replace(path)
    except SubstratusError as err:
        log.warning("could not save logs of %s: %s", name, err)
        if replace:
            target.unlink(missing_ok=True)
