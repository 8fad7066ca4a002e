"""Pure planners for long-running containers: ModelServer and Notebook.

What counts as ready is the contract's readiness rule (`contract.READINESS`),
which `observe` applies and reports in the snapshot's `probes`. Readiness is a
probe with thresholds, as a kubelet has it: a starting
container is probed quickly until it answers or the ready timeout passes
(`ServeFailed`, still probed slowly so a late answer heals it); a ready one is
probed every `READY_PERIOD` seconds and becomes `NotReady` after
`failure_threshold` consecutive misses, Ready again when it answers, and is
restarted when it has not answered for `liveness_timeout`. An exited
container is restarted with growing delays (`CrashLoopBackOff` after a few).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from substratus import contract
from substratus.build import naming
from substratus.reconcile.actions import Allocate, RemoveContainer, StartContainer
from substratus.reconcile.plan import Dep, Facts, Plan, Snapshot, waiting_on, wants_gpu
from substratus.reconcile.state import NotebookState, ServerState, WorkloadState
from substratus.resources.schema import ModelServer, Notebook
from substratus.resources.status import Condition, Reason
from substratus.runtimes.base import ContainerState, Mount, RunSpec

RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
CRASHLOOP_AFTER = 3
READY_PERIOD = 10.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _copy(state: object, changes: dict[str, object]) -> ServerState | NotebookState:
    """The workload state with `changes` (typed: a server stays a ServerState)."""
    assert isinstance(state, (ServerState, NotebookState))
    return state.model_copy(update=changes)


def starting_period(waited: float) -> float:
    """Probe quickly at first (a server is often up within a second), then back off."""
    return 0.1 if waited < 3 else 0.5 if waited < 30 else 2.0


def allocate(plan: Plan, state: WorkloadState, snap: Snapshot, token: bool) -> bool:
    """Port (and token) are chosen by the executor and recorded; True once both are there."""
    missing = [Allocate("port")] if state.port is None else []
    if token and state.token is None:
        missing.append(Allocate("token"))
    for action in missing:
        plan.act(action, snap)
    return not missing


def keep_running(plan: Plan, *, spec: RunSpec, state: WorkloadState, snap: Snapshot, facts: Facts, type_: str,
                 failed_reason: Reason, probe_what: str, log_file: Optional[Path], roll_in_place: bool = False) -> bool:
    """Start, roll onto a new image, restart with backoff, probe; True while the probe answers.

    `roll_in_place`: on a platform that rolls this workload itself (a Kubernetes Deployment), a new
    image is applied to the running workload rather than removing it first."""
    c = snap.containers.get(spec.name)
    start_key = f"start:{spec.name}"
    if f"remove:{spec.name}" in snap.in_flight:  # going away: neither alive nor free to start again yet
        plan.wait(type_, Reason.STARTING, f"waiting for the old {spec.name} to be removed", requeue_after=0.5)
        return False
    if c is None and start_key in state.failures:
        plan.wait(type_, state.failures[start_key].reason, state.failures[start_key].message)
        return False
    image_label = naming.label("image")
    if c is not None and c.labels.get(image_label) != spec.labels.get(image_label):
        reset: dict[str, object] = {"restarts": 0, "next_restart_at": None, "started_at": None, "ready_since": None,
                                    "probe_failures": 0}
        if roll_in_place and facts.platform_restarts:  # the Deployment keeps the old pod until the new one is ready
            plan.act(StartContainer(spec=spec, reason="roll onto a new image", failure_key=start_key,
                                    failure_reason=failed_reason), snap)
            plan.state = _copy(state, {**reset, "started_at": snap.now})
            plan.wait(type_, Reason.ROLLING, f"rolling onto {spec.image}", requeue_after=starting_period(0))
            return False
        plan.actions.append(RemoveContainer(name=spec.name, reason="rolling onto a new image"))
        plan.state = _copy(state, reset)
        plan.wait(type_, Reason.ROLLING, f"replacing the container with one on {spec.image}", requeue_after=0)
        return False
    if c is None:
        plan.act(StartContainer(spec=spec, reason="start", failure_key=start_key, failure_reason=failed_reason), snap)
        plan.state = _copy(state, {"started_at": snap.now, "ready_since": None, "probe_failures": 0})
        plan.wait(type_, Reason.STARTING, f"starting {spec.name}", requeue_after=starting_period(0))
        return False
    if facts.platform_restarts and c.status == "restarting":  # the kubelet restarts it with its own backoff
        tail = snap.log_tails.get(spec.name, "")
        plan.wait(type_, Reason.CRASH_LOOP_BACK_OFF, f"{spec.command[0]} exited with code {c.exit_code} and is "
                  f"restarted by the platform with growing delays; last log lines:\n{tail}", requeue_after=READY_PERIOD)
        return False
    if not c.running:
        return restart_with_backoff(plan, spec=spec, c=c, state=state, snap=snap, type_=type_, log_file=log_file)
    return probed(plan, spec=spec, state=state, snap=snap, facts=facts, type_=type_, failed_reason=failed_reason,
                  probe_what=probe_what, log_file=log_file)


def probed(plan: Plan, *, spec: RunSpec, state: WorkloadState, snap: Snapshot, facts: Facts, type_: str,
           failed_reason: Reason, probe_what: str, log_file: Optional[Path]) -> bool:
    answered = snap.probes.get(spec.name, False)
    if answered:
        plan.state = _copy(state, {"probe_failures": 0, "ready_since": state.ready_since or snap.now,
                                              "restarts": 0, "next_restart_at": None})
        plan.requeue(READY_PERIOD)
        return True
    tail = snap.log_tails.get(spec.name, "")
    if state.ready_since is not None:  # it was ready: a miss or two is tolerated, a long silence is not
        failures = state.probe_failures + 1
        plan.state = _copy(state, {"probe_failures": failures})
        silent = failures * READY_PERIOD
        if silent >= facts.liveness_timeout:
            plan.actions.append(RemoveContainer(name=spec.name, save_log_to=log_file,
                                                reason=f"{probe_what} silent for {silent:.0f}s"))
            plan.state = _copy(state, {"restarts": state.restarts + 1, "ready_since": None,
                                                       "started_at": None, "probe_failures": 0})
            plan.wait(type_, Reason.SERVER_EXITED, f"{probe_what} did not answer for {silent:.0f}s; restarting",
                      requeue_after=0)
            return False
        if failures < facts.failure_threshold:
            plan.requeue(READY_PERIOD / 2)
            return True
        plan.wait(type_, Reason.NOT_READY, f"{probe_what} missed {failures} probes in a row; last log lines:\n{tail}",
                  requeue_after=READY_PERIOD / 2)
        return False
    waited = snap.now - (state.started_at if state.started_at is not None else snap.now)
    if waited > facts.ready_timeout:
        plan.wait(type_, failed_reason, f"{probe_what} did not answer for {waited:.0f}s (limit "
                  f"{facts.ready_timeout:.0f}s); last log lines:\n{tail}", requeue_after=READY_PERIOD)
    else:
        plan.wait(type_, Reason.NOT_READY, f"waiting for {probe_what} (up to {facts.ready_timeout:.0f}s)",
                  requeue_after=starting_period(waited))
    return False


def restart_with_backoff(plan: Plan, *, spec: RunSpec, c: ContainerState, state: WorkloadState, snap: Snapshot,
                         type_: str, log_file: Optional[Path]) -> bool:
    tail = snap.log_tails.get(spec.name, "")
    reason = Reason.CRASH_LOOP_BACK_OFF if state.restarts >= CRASHLOOP_AFTER else Reason.SERVER_EXITED
    message = (f"{spec.command[0]} exited with code {c.exit_code} (restarts: {state.restarts}); "
               f"last log lines:\n{tail}")
    if state.next_restart_at is None:
        delay = RESTART_BACKOFF[min(state.restarts, len(RESTART_BACKOFF) - 1)]
        plan.state = _copy(state, {"next_restart_at": snap.now + delay})
        plan.wait(type_, reason, message, requeue_after=delay)
    elif snap.now >= state.next_restart_at:
        plan.actions.append(RemoveContainer(name=spec.name, reason="restart after exit", save_log_to=log_file))
        plan.state = _copy(state, {"restarts": state.restarts + 1, "next_restart_at": None,
                                              "started_at": None, "ready_since": None})
        plan.wait(type_, reason, message, requeue_after=0)
    else:
        plan.wait(type_, reason, message, requeue_after=state.next_restart_at - snap.now)
    return False


def exited_log(facts: Facts, kind: str, obj_ns: str, obj_name: str) -> Path:
    return facts.layout.object_dir(kind, obj_ns, obj_name) / "exited.log"


# ---- ModelServer ----------------------------------------------------------------------------

def plan_server(obj: ModelServer, state: ServerState, snap: Snapshot, facts: Facts, model: Dep) -> Plan:
    plan = Plan(state=state)
    image = model.status.container_image
    if not (model.ready and image):
        return waiting_on(plan, "Serving", model, "Model", obj.spec.model_name)
    address = obj.spec.address
    exposed = address not in LOOPBACK
    if not allocate(plan, state, snap, token=exposed):
        return plan.wait("Serving", Reason.STARTING, "choosing a host port", requeue_after=0)
    assert state.port is not None
    name = naming.container_name("ModelServer", obj.namespace, obj.name, "server", instance=facts.instance)
    spec = RunSpec(name=name, image=image, command=["serve.sh"], ports={contract.SERVER_PORT: state.port},
                   publish_address=address,
                   secret_env={contract.SERVER_TOKEN_ENV: state.token} if exposed and state.token else {},
                   labels=naming.object_labels("ModelServer", obj.namespace, obj.name, instance=facts.instance,
                                               role="server", image=image, port=str(state.port)),
                   gpu=wants_gpu(model.compute_types, facts.gpu), limits=obj.spec.run_limits())
    if keep_running(plan, spec=spec, state=state, snap=snap, facts=facts, type_="Serving",
                    failed_reason=Reason.SERVE_FAILED, probe_what=contract.SERVER_READINESS.describe(),
                    log_file=exited_log(facts, "ModelServer", obj.namespace, obj.name), roll_in_place=True):
        host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
        plan.published.url = facts.urls.server(obj.key, host, state.port)
        plan.done("Serving", Reason.SERVING, f"serve.sh answers {contract.SERVER_READINESS.describe()} at "
                                             f"{plan.published.url}")
        plan.finish(Reason.SERVING, f"serving {image}")
    plan.published.restarts = plan_restarts(plan)
    return plan


def plan_restarts(plan: Plan) -> Optional[int]:
    restarts = getattr(plan.state, "restarts", 0)
    return int(restarts) if restarts else None


# ---- Notebook -------------------------------------------------------------------------------

def plan_notebook(obj: Notebook, state: NotebookState, snap: Snapshot, facts: Facts, target: Dep) -> Plan:
    plan = Plan(state=state)
    name = naming.container_name("Notebook", obj.namespace, obj.name, "notebook", instance=facts.instance)
    if obj.spec.suspend:
        if name in snap.containers:
            plan.actions.append(RemoveContainer(name=name, reason="suspended"))
        plan.conditions.append(Condition(type="Running", status="False", reason=Reason.SUSPENDED.value,
                                         message="spec.suspend is true"))
        plan.reason, plan.message = Reason.SUSPENDED, "suspended (set spec.suspend: false to start it)"
        return plan
    what = "Model" if obj.spec.model_name else "Dataset"
    ref = obj.spec.model_name or obj.spec.dataset_name or ""
    image = target.status.container_image
    if not (target.ready and image):
        return waiting_on(plan, "Running", target, what, ref)
    if not allocate(plan, state, snap, token=True):
        return plan.wait("Running", Reason.STARTING, "choosing a host port and a token", requeue_after=0)
    assert state.port is not None and state.token is not None
    mounts = []
    if what == "Dataset" and target.status.url:
        data = facts.layout.artifact_path(target.status.url).parent
        mounts.append(Mount(str(data), contract.NOTEBOOK_DATA.target, read_only=contract.NOTEBOOK_DATA.read_only))
    spec = RunSpec(name=name, image=image, command=["notebook.sh"], ports={contract.NOTEBOOK_PORT: state.port},
                   secret_env={contract.NOTEBOOK_TOKEN_ENV: state.token}, mounts=mounts,
                   labels=naming.object_labels("Notebook", obj.namespace, obj.name, instance=facts.instance,
                                               role="notebook", image=image, port=str(state.port)),
                   gpu=what == "Model" and wants_gpu(target.compute_types, facts.gpu),
                   limits=obj.spec.run_limits())
    if keep_running(plan, spec=spec, state=state, snap=snap, facts=facts, type_="Running",
                    failed_reason=Reason.NOTEBOOK_FAILED,
                    probe_what=f"notebook.sh ({contract.NOTEBOOK_READINESS.describe()})",
                    log_file=exited_log(facts, "Notebook", obj.namespace, obj.name)):
        plan.published.url = facts.urls.notebook(obj.key, state.port, state.token)
        plan.done("Running", Reason.RUNNING, f"notebook answers on port {state.port}")
        plan.finish(Reason.RUNNING, f"notebook on {image}")
    plan.published.restarts = plan_restarts(plan)
    return plan
