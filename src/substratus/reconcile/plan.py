"""The planners' shared vocabulary: what a pass sees (`Snapshot`), what holds for every
pass (`Facts`), a referenced object as its status shows it (`Dep`), and what a pass decides
(`Plan`). Pure data and pure helpers; the planners are in `jobs` (Dataset, Model) and
`workloads` (ModelServer, Notebook)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from substratus.reconcile.actions import Action
from substratus.reconcile.layout import Layout
from substratus.reconcile.outcomes import Retrying
from substratus.reconcile.state import AnyState
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Condition, ConditionStatus, Progress, Reason, Status
from substratus.runtimes.base import ContainerState


@dataclass(frozen=True)
class Snapshot:
    """What `observe` saw, for one object, before planning."""

    now: float
    images: dict[str, str] = field(default_factory=dict)              # tag -> image id (local images)
    containers: dict[str, ContainerState] = field(default_factory=dict)  # this object's containers
    succeeded: frozenset[str] = frozenset()    # run dirs (as str) of this object holding a success marker
    in_flight: frozenset[str] = frozenset()    # keys of this object's actions being carried out now (or retried)
    retrying: dict[str, Retrying] = field(default_factory=dict)  # those waiting out a backoff after a temporary
                                                                   # failure: what went wrong, when they run again
    probes: dict[str, bool] = field(default_factory=dict)            # container name -> answered this pass
    log_tails: dict[str, str] = field(default_factory=dict)          # container name -> last lines
    progress: dict[str, Progress] = field(default_factory=dict)      # run dir (str) -> latest progress


class Urls:
    """Where a server or notebook answers, as its status publishes it: the backend knows, the planner
    asks. On this machine, the host port it is published on (a notebook's URL carries its token, as
    Jupyter prints it: the status is its owner's to read). A backend where something else publishes
    workloads (a Kubernetes Service) gives its own."""

    def server(self, key: ObjectKey, host: str, port: int) -> str:
        return f"http://{host}:{port}"

    def notebook(self, key: ObjectKey, port: int, token: str) -> str:
        return f"http://127.0.0.1:{port}/?token={token}"


@dataclass(frozen=True)
class Facts:
    """Configuration that holds for every pass of one control plane."""

    layout: Layout
    instance: str = ""
    gpu: bool = False
    ready_timeout: float = 600.0
    failure_threshold: int = 3        # consecutive failed probes before a ready server is NotReady
    liveness_timeout: float = 300.0   # not answering this long after being ready: restart it
    # Kubernetes: the kubelet restarts crashed containers with its own backoff (a container seen
    # `restarting` is CrashLoopBackOff, not ours to restart) and a Deployment rolls onto a new image
    # in place (StartContainer applies the new template) instead of being removed and started again.
    platform_restarts: bool = False
    urls: Urls = field(default_factory=Urls)


@dataclass(frozen=True)
class Dep:
    """A referenced object, as its published status shows it (never its spec)."""

    exists: bool
    current: bool = False             # status.observedGeneration == metadata.generation
    status: Status = field(default_factory=Status)

    @property
    def ready(self) -> bool:
        return self.exists and self.current and self.status.ready

    @property
    def compute_types(self) -> tuple[str, ...]:
        """What a Model's containers may run on, as it publishes it (CPU until it says)."""
        return tuple(self.status.compute_types or ("CPU",))

    @property
    def reason(self) -> str:
        return self.status.reason


@dataclass
class Plan:
    state: AnyState
    actions: list[Action] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    ready: bool = False
    reason: Reason = Reason.PENDING
    message: str = ""
    published: Status = field(default_factory=Status)  # url, containerImage, digest, source, progress, lineage
    requeue_after: Optional[float] = None
    retry_note: str = ""  # an action of this plan failed for now and is retried: said in the next wait()

    def wait(self, type_: str, reason: Reason, message: str, requeue_after: Optional[float] = None) -> "Plan":
        status: ConditionStatus = "False" if reason.failed else "Unknown"
        if self.retry_note and not reason.failed:
            message, self.retry_note = f"{message}; {self.retry_note}", ""
        self.conditions.append(Condition(type=type_, status=status, reason=reason.value, message=message))
        self.reason, self.message = reason, message
        if requeue_after is not None:
            self.requeue(requeue_after)
        return self

    def done(self, type_: str, reason: Reason, message: str = "") -> None:
        self.conditions.append(Condition(type=type_, status="True", reason=reason.value, message=message))

    def finish(self, reason: Reason, message: str) -> "Plan":
        self.ready, self.reason, self.message = True, reason, message
        return self

    def requeue(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    def act(self, action: Action, snap: Snapshot) -> bool:
        """Add `action` unless the same action is being carried out already. True when added.

        An action waiting out its backoff after a temporary failure is not added either: the plan
        asks to look again when it is due, and its next wait() says what went wrong (the object
        stays in progress; only a permanent failure, recorded in the state, fails it)."""
        if action.key in snap.in_flight:
            retry = snap.retrying.get(action.key)
            if retry is not None:
                self.requeue(max(0.0, retry.at - snap.now))
                self.retry_note = f"retrying after a temporary failure: {retry.message}"
            return False
        self.actions.append(action)
        return True


# ---- image names, and which images a pass will ask about -----------------------------------------

def waiting_on(plan: Plan, type_: str, dep: Dep, what: str, name: str) -> Plan:
    waiting = Reason.WAITING_FOR_DATASET if what == "Dataset" else Reason.WAITING_FOR_MODEL
    if not dep.exists:
        return plan.wait(type_, waiting, f"{what} {name!r} does not exist; apply it")
    if dep.current and dep.status.reason in {r.value for r in Reason if r.failed}:
        message = (dep.status.condition("Ready") or Condition(type="Ready", status="False", reason="")).message
        return plan.wait(type_, Reason.DEPENDENCY_FAILED, f"{what} {name!r} failed ({dep.reason}): {message}")
    return plan.wait(type_, waiting, f"{what} {name!r} is not ready yet ({dep.reason})")


def wants_gpu(types: tuple[str, ...], gpu_present: bool) -> bool:
    """GPU when preferred and present; CPU when allowed; GPU-only without one still tries (and says so)."""
    if types and types[0] == "GPU" and gpu_present:
        return True
    return "CPU" not in types
