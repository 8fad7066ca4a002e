"""Carries out what planners ask for, through a Runtime, and reports typed outcomes.

Quick actions (start a container, choose a port or token) run inline in the
reconcile pass, so the next pass sees their effect. Slow ones (builds,
contract checks, judging a finished job, removing a container) run on thread
pools; when one finishes, its outcomes are applied to the object's state and
the object is queued again (`Report`). An action whose key is in flight is
never started twice. Outcomes are plain data and `apply_outcome` is a pure
function, so what an action changes is visible and testable.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import re
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from substratus.build import contract
from substratus.build.trained import trained_dockerfile
from substratus.controlplane.actions import (
    Action,
    Allocate,
    BuildImage,
    BuildTrained,
    CheckContract,
    CollectJob,
    RemoveContainer,
    StartContainer,
)
from substratus.controlplane.ledger import BuiltImages
from substratus.controlplane.observe import ContainerCache, ImageCache
from substratus.controlplane.state import AnyState, BuildState, DatasetState, Failure, WorkloadState
from substratus.errors import SubstratusError, tail
from substratus.resources.status import Reason
from substratus.runtimes.base import BuildSpec, Runtime

log = logging.getLogger("substratus.executor")
Key = tuple[str, str, str]
TRAINED_DOCKERFILE = "Dockerfile.substratus"
# How podman and docker say that the image to run is not there (then they try a registry, and fail).
MISSING_IMAGE = re.compile(r"image not known|no such image|unable to find image|pinging container registry|"
                           r"manifest unknown|repository does not exist|pull access denied", re.I)


# ---- outcomes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failed:
    key: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class Verified:
    image: str


@dataclass(frozen=True)
class Digested:
    run_key: str
    digest: str


@dataclass(frozen=True)
class Allocated:
    port: Optional[int] = None
    token: Optional[str] = None


@dataclass(frozen=True)
class PortLost:
    """The chosen port was taken by someone else: choose another."""


Outcome = Union[Failed, Verified, Digested, Allocated, PortLost]
Report = Callable[[Key, list[Outcome]], None]


def apply_outcome(state: AnyState, outcome: Outcome) -> AnyState:
    """The state after `outcome` (pure)."""
    if isinstance(outcome, Failed):
        failures = {**state.failures, outcome.key: Failure(reason=outcome.reason, message=outcome.message)}
        return state.model_copy(update={"failures": failures})
    if isinstance(outcome, Verified) and isinstance(state, BuildState):
        kept = [i for i in state.verified if i != outcome.image][-7:]  # the latest few images only
        return state.model_copy(update={"verified": [*kept, outcome.image]})
    if isinstance(outcome, Digested) and isinstance(state, DatasetState):
        return state.model_copy(update={"digests": {**state.digests, outcome.run_key: outcome.digest}})
    if isinstance(outcome, Allocated) and isinstance(state, WorkloadState):
        update = {k: v for k, v in (("port", outcome.port), ("token", outcome.token)) if v is not None}
        return state.model_copy(update=update)
    if isinstance(outcome, PortLost) and isinstance(state, WorkloadState):
        return state.model_copy(update={"port": None})
    return state


# ---- the executor -----------------------------------------------------------------------------

class InFlight:
    """Which actions of each owner are running now: an action is never run twice at once, and a
    pass can see what it is still waiting for. Shared by the local and the Kubernetes executors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Key, set[str]] = defaultdict(set)

    def claim(self, owner: Key, key: str) -> bool:
        """Mark `key` running; False when it already is."""
        with self._lock:
            if key in self._keys[owner]:
                return False
            self._keys[owner].add(key)
            return True

    def finish(self, owner: Key, key: str) -> None:
        with self._lock:
            self._keys[owner].discard(key)
            if not self._keys[owner]:
                del self._keys[owner]

    def of(self, owner: Key) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys.get(owner, ()))


BUILD_ORDER = {"Dataset": 0, "Model": 1}  # a dataset's image first: its load then runs beside the model's build


class PriorityPool:
    """A fixed pool of threads taking work lowest priority first, in arrival order within one
    priority (ThreadPoolExecutor's queue is FIFO only)."""

    def __init__(self, workers: int, name: str, gather: float = 0.03) -> None:
        self.gather = gather
        self._queue: "queue.PriorityQueue[tuple[int, int, Optional[Callable[[], None]]]]" = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, fn: Callable[[], None]) -> None:
        self._queue.put((priority, next(self._seq), fn))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[2] is not None and self.gather and item[0] > 0:
                # Objects applied together reach their builds within milliseconds of each other,
                # in whatever order their passes ran: wait a moment so the first build started
                # is the most useful one, not the one whose pass happened to finish first (work of
                # the first priority has nothing to wait for).
                time.sleep(self.gather)
                self._queue.put(item)
                item = self._queue.get()
            if item[2] is None:
                return
            item[2]()

    def shutdown(self) -> None:
        """Drop what has not started; running work finishes on its own (daemon threads)."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            self._queue.put((-1, next(self._seq), None))


class Dispatcher:
    """What every executor does with a plan's actions, whatever it runs them on: an action runs at
    most once at a time per owner (InFlight); quick ones (start, allocate) run inline, builds on a
    pool that starts datasets' first, the rest on a pool; each reports its outcomes when it ends; an
    exception becomes the action's outcomes through `failed`. Subclasses say how to do each action
    (`quick`, `slow`) and may read some errors differently (`failed`). workers=0 runs every action
    inline (deterministic, for tests)."""

    def __init__(self, report: Report, *, build_workers: int, workers: int) -> None:
        self.report = report
        self._builds = PriorityPool(build_workers, "substratus-build") if workers else None
        self._misc = ThreadPoolExecutor(workers, "substratus-action") if workers else None
        self._running = InFlight()

    def quick(self, owner: Key, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        raise NotImplementedError

    def slow(self, owner: Key, action: Action) -> list[Outcome]:
        raise NotImplementedError

    def failed(self, action: Action, err: Exception) -> list[Outcome]:
        log.exception("%s crashed", action.key)
        return [crash_outcome(action, err)]

    def in_flight(self, owner: Key) -> frozenset[str]:
        return self._running.of(owner)

    def busy(self, owner: Key) -> bool:
        return bool(self.in_flight(owner))

    def shutdown(self) -> None:
        if self._builds is not None:
            self._builds.shutdown()
        if self._misc is not None:
            self._misc.shutdown(wait=False, cancel_futures=True)

    def submit(self, owner: Key, action: Action) -> str:
        """Run or schedule one action. Returns what happened, for logs and tests."""
        if not self._running.claim(owner, action.key):
            return "in-flight"
        if isinstance(action, (StartContainer, Allocate)):
            self._run(owner, action, self.quick)
            return "done"
        if self._misc is None or self._builds is None:
            self._run(owner, action, self.slow)
        elif isinstance(action, (BuildImage, BuildTrained)):
            # A trained image is baked from a finished run: nothing applied with it needs to go first.
            priority = 0 if isinstance(action, BuildTrained) else BUILD_ORDER.get(owner[0], 2)
            self._builds.submit(priority, lambda: self._run(owner, action, self.slow))
        else:
            self._misc.submit(self._run, owner, action, self.slow)
        return "scheduled"

    def _run(self, owner: Key, action: Any, how: Callable[[Key, Any], list[Outcome]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = how(owner, action)
        except Exception as err:  # noqa: BLE001 - any crash becomes the action's reported outcome
            outcomes = self.failed(action, err)
        finally:
            self._running.finish(owner, action.key)
        log.debug("%s done in %.2fs: %s", action.key, time.perf_counter() - started, outcomes or "ok")
        self.report(owner, outcomes)


class Executor(Dispatcher):
    """Carries actions out on this machine's engine."""

    def __init__(self, runtime: Runtime, containers: ContainerCache, images: ImageCache, report: Report, *,
                 build_workers: int = 2, workers: int = 4,
                 port_finder: Callable[[], int] = contract.free_port,
                 token_maker: Callable[[], str] = lambda: secrets.token_hex(16),
                 built: Optional[BuiltImages] = None) -> None:
        super().__init__(report, build_workers=build_workers, workers=workers)
        self.runtime, self.containers, self.images, self.built = runtime, containers, images, built
        self.port_finder, self.token_maker = port_finder, token_maker

    def quick(self, owner: Key, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        if isinstance(action, Allocate):
            if action.what == "port":
                return [Allocated(port=self.port_finder())]
            return [Allocated(token=self.token_maker())]
        return self.start(owner, action)

    def slow(self, owner: Key, action: Action) -> list[Outcome]:
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
    def start(self, owner: Key, action: StartContainer) -> list[Outcome]:
        for m in action.spec.mounts:
            if not m.read_only:
                Path(m.source).mkdir(parents=True, exist_ok=True)
        log.info("starting %s (%s)", action.spec.name, action.reason)
        try:
            state = self.runtime.run(action.spec)
        except SubstratusError as err:
            text = str(err)
            if "address already in use" in text or "port is already allocated" in text:
                log.warning("port of %s taken; choosing another", action.spec.name)
                return [PortLost()]
            if "already in use" in text:  # our cache missed a container of that name: look again
                self.containers.relist()
                return []
            if MISSING_IMAGE.search(text):  # removed under us (elsewhere on a shared engine): build it again
                log.warning("image %s of %s vanished; it will be built again", action.spec.image, action.spec.name)
                self.images.invalidate()
                return []
            return [Failed(action.failure_key, action.failure_reason,
                           f"the engine could not start {action.spec.name}: {err.message}")]
        self.containers.put(owner, state)
        return []

    # -- slow actions ----------------------------------------------------------------------------
    def remove(self, owner: Key, action: RemoveContainer) -> None:
        log.info("removing %s (%s)", action.name, action.reason)
        if action.save_log_to is not None:
            save_logs(self.runtime, action.name, action.save_log_to)
        self.runtime.remove(action.name)
        self.containers.drop(owner, action.name)

    def build_image(self, a: BuildImage) -> list[Outcome]:
        # No owner labels in a source image: on podman a LABEL instruction is one more committed layer
        # (0.2-0.45 s of every source build). The ledger records whose image it is instead.
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
        problems = [r for r in contract.check_image(self.runtime.background(), a.image, a.kind) if not r.ok]
        if problems:
            text = "; ".join(f"{r.clause}: {r.evidence}" for r in problems)
            return [Failed(a.key, Reason.CONTRACT_VIOLATION, f"image {a.image} breaks the {a.kind} contract: {text}")]
        return [Verified(a.image)]

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

    def collect_job(self, owner: Key, a: CollectJob) -> list[Outcome]:
        """Judge a finished load/train job, keep its log, remove its container.

        A job that exited 0 and wrote its outputs needs no log to be judged: it is marked succeeded
        and reported at once, so the next stage starts while the log is copied and the container
        removed (the container stays in the cache until then, so `sub logs` finds the log in one
        place or the other). A failure is judged with the last lines of its log."""
        job_log = a.run_dir / "job.log"
        runtime = self.runtime
        outcomes = judge_job(a, "") if a.exit_code == 0 else None
        if outcomes == []:
            if a.step == "load":
                outcomes.append(Digested(a.run_key, sha256_file(a.expect)))
            mark_succeeded(a.run_dir)
            self.report(owner, outcomes)
            outcomes = []
            runtime = runtime.background()  # the next stage has started: it gets the CPUs first
        save_logs(runtime, a.name, job_log, replace=True)
        if outcomes is None or outcomes:
            outcomes = judge_job(a, tail(job_log.read_text(errors="replace") if job_log.exists() else "", 15))
        runtime.remove(a.name)
        self.containers.drop(owner, a.name)
        return outcomes


def mark_succeeded(run_dir: Path) -> None:
    marker = run_dir / ".succeeded"
    tmp = marker.with_suffix(".tmp")
    tmp.write_text("ok\n")
    tmp.replace(marker)  # the run counts only once its outputs were judged complete


def judge_job(a: CollectJob, last: str) -> list[Outcome]:
    if a.step == "load":
        wrote = a.expect.is_file() and a.expect.stat().st_size > 0
    else:
        wrote = a.expect.is_dir() and any(a.expect.iterdir())
    return verdict(a, last, wrote)


def verdict(a: CollectJob, last: str, wrote: bool) -> list[Outcome]:
    """The judgement of a finished load/train job, wherever its outputs live (a local directory, or the
    artifact store of a cluster: the operator checks `wrote` there), in the same words."""
    script = f"{a.step}.sh"
    reason = Reason.LOAD_FAILED if a.step == "load" else Reason.TRAIN_FAILED
    if a.exit_code != 0:
        return [Failed(a.failure_key, reason, f"{script} exited with code {a.exit_code}; last log lines:\n{last}")]
    if a.step == "load" and not wrote:
        return [Failed(a.failure_key, reason,
                       f"{script} exited 0 but wrote nothing at LOAD_DATA_PATH ({contract.DATA_DIR}/{a.expect.name}); "
                       f"the contract says load.sh saves the data at exactly that path. Last log lines:\n{last}")]
    if a.step == "train" and not wrote:
        return [Failed(a.failure_key, reason,
                       f"{script} exited 0 but left {contract.TRAINED_DIR} empty; the contract says train.sh "
                       f"saves the trained model there. Last log lines:\n{last}")]
    return []


def crash_outcome(action: Action, err: Exception) -> Outcome:
    if isinstance(action, CollectJob):
        reason = Reason.LOAD_FAILED if action.step == "load" else Reason.TRAIN_FAILED
        return Failed(action.failure_key, reason, f"internal error while judging {action.step}.sh: {err}")
    return Failed(action.key, Reason.BUILD_FAILED, f"internal error: {err}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


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
    except SubstratusError as err:
        tail_text = getattr(err, "log_tail", "") or ""
        return BuildFailure(f"{err.message} while building {spec.tag}; last build log lines:\n{tail(tail_text, 15)}")
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
