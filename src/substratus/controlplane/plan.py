"""Pure planners: (desired object, observed world) -> actions + status.

No I/O here. `reconciler.observe` gathers a `World` (images, this object's
containers, probes, run markers) and `Dep`s (the objects referenced), a
planner decides, and `executor` carries the actions out. Each pass re-reads
the world (level-based), so a crash or restart anywhere just means the next
pass plans again from what is really there.
"""

from __future__ import annotations

import secrets
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from substratus.build import naming
from substratus.controlplane.actions import (
    Action,
    BuildTrained,
    CollectJob,
    EnsureImage,
    RemoveContainer,
    StartContainer,
)
from substratus.controlplane.layout import Layout
from substratus.resources.schema import Dataset, Model, ModelServer, Notebook, Resource
from substratus.runtimes.base import ContainerState, Mount, RunSpec

# Reasons after which waiting longer will not help (`sub apply --wait` stops on them).
FAILED_REASONS = frozenset({"SourceFailed", "BuildFailed", "ContractViolation", "LoadFailed", "TrainFailed",
                            "CrashLoopBackOff", "ServeFailed", "NotebookFailed", "DependencyFailed"})
SERVER_PORT, NOTEBOOK_PORT = 8080, 8888
RESTART_BACKOFF = (2.0, 5.0, 10.0, 30.0, 60.0)
CRASHLOOP_AFTER = 3


@dataclass
class Dep:
    """A referenced object, as far as a dependent needs to know it."""

    exists: bool
    ready: bool = False
    reason: str = ""
    message: str = ""
    container_image: Optional[str] = None
    memo: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    now: float
    images: Container[str] = frozenset()  # lazily checked by the reconciler
    containers: dict[str, ContainerState] = field(default_factory=dict)
    in_flight: frozenset[str] = frozenset()
    succeeded: Container[Path] = frozenset()  # run dirs holding a .succeeded marker
    probes: dict[str, bool] = field(default_factory=dict)
    log_tails: dict[str, str] = field(default_factory=dict)
    gpu: bool = False
    free_port: int = 0  # a free host port, used only when one must be chosen
    ready_timeout: float = 600.0
    instance: str = ""  # which control plane (one per $SUBSTRATUS_HOME) owns what is created


@dataclass
class Step:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    ready: bool = False
    reason: str = ""
    message: str = ""
    url: Optional[str] = None
    container_image: Optional[str] = None
    memo: dict[str, Any] = field(default_factory=dict)  # a patch: keys to set (None deletes)

    def wait(self, type_: str, reason: str, message: str) -> "Plan":
        self.steps.append(Step(type_, "Unknown" if reason not in FAILED_REASONS else "False", reason, message))
        self.reason, self.message = reason, message
        return self

    def done(self, type_: str, reason: str, message: str = "") -> None:
        self.steps.append(Step(type_, "True", reason, message))


def failure(memo: dict[str, Any], key: str) -> Optional[dict[str, str]]:
    return (memo.get("failed") or {}).get(key)


# ---- shared steps ---------------------------------------------------------------------------

def ensure_source_image(plan: Plan, obj: Resource, memo: dict[str, Any], world: World,
                        layout: Layout) -> Optional[str]:
    """Build + contract-check the object's own source image. Returns the tag once usable."""
    src = memo.get("source") or {}
    if not src:
        plan.wait("Built", "SourceFailed", "the source was never resolved; apply the manifest again")
        return None
    contract_kind = "Dataset" if obj.kind == "Dataset" else "Model"
    path = (getattr(obj.spec.source, "git", None) and obj.spec.source.git.path) or ""
    tag = naming.source_image(obj.kind, obj.namespace, obj.name, src["revision"], path)
    action = EnsureImage(tag=tag, context=Path(src["context"]), kind=contract_kind,
                         labels=naming.object_labels(obj.kind, obj.namespace, obj.name, role="source"),
                         log_path=layout.build_log(obj.kind, obj.namespace, obj.name))
    failed = failure(memo, action.key)
    if failed:
        plan.wait("Built", failed["reason"], failed["message"])
        return None
    if tag in world.images and tag in (memo.get("verified") or []):
        plan.done("Built", "Built", f"{tag} from {src.get('description', '')}")
        return tag
    if action.key not in world.in_flight:
        plan.actions.append(action)
    plan.wait("Built", "Building", f"building {tag} from {src.get('description', '')}")
    return None


def run_job(plan: Plan, *, name: str, spec: RunSpec, run_dir: Path, expect: Path, step: str,
            world: World, memo: dict[str, Any], waiting_reason: str, failed_reason: str) -> bool:
    """Drive a load/train container to a judged end. True once the run succeeded."""
    if run_dir in world.succeeded:
        return True
    key = f"job:{name}"
    failed = failure(memo, key)
    if failed:
        plan.wait(step.capitalize() + "ed", failed_reason, failed["message"])
        return False
    state = world.containers.get(name)
    collect = CollectJob(name=name, run_dir=run_dir, exit_code=-1, expect=expect, step=step, failure_key=key)
    if collect.key in world.in_flight:
        plan.wait(step.capitalize() + "ed", waiting_reason, f"{step} finished; checking its outputs")
    elif state is None:
        plan.actions.append(StartContainer(spec=spec, reason=f"start {step}", failure_key=key,
                                           failure_reason=failed_reason))
        plan.wait(step.capitalize() + "ed", waiting_reason, f"starting {step} in {name}")
    elif state.running or state.exit_code is None:
        plan.wait(step.capitalize() + "ed", waiting_reason, f"{step} running in container {name}")
    else:
        plan.actions.append(CollectJob(name=name, run_dir=run_dir, exit_code=state.exit_code, expect=expect,
                                       step=step, failure_key=key))
        plan.wait(step.capitalize() + "ed", waiting_reason, f"{step} exited with {state.exit_code}")
    return False


def remove_stale(plan: Plan, world: World, keep: set[str], role: str) -> None:
    for name, state in world.containers.items():
        if state.labels.get(naming.label("role")) == role and name not in keep:
            plan.actions.append(RemoveContainer(name=name, reason=f"outdated {role} container"))


def waiting_on(plan: Plan, type_: str, dep: Dep, what: str, name: str) -> None:
    if not dep.exists:
        plan.wait(type_, f"WaitingFor{what}", f"{what} {name!r} does not exist; apply it")
    elif dep.reason in FAILED_REASONS:
        plan.wait(type_, "DependencyFailed", f"{what} {name!r} failed ({dep.reason}): {dep.message}")
    else:
        plan.wait(type_, f"WaitingFor{what}", f"{what} {name!r} is not ready yet ({dep.reason or 'pending'})")


# ---- Dataset --------------------------------------------------------------------------------

def dataset_run(layout: Layout, obj: Dataset, tag: str) -> tuple[str, Path]:
    key = naming.digest("load", tag, obj.spec.filename)
    return key, layout.run_dir("Dataset", obj.namespace, obj.name, key)


def plan_dataset(obj: Dataset, memo: dict[str, Any], world: World, layout: Layout) -> Plan:
    plan = Plan()
    tag = ensure_source_image(plan, obj, memo, world, layout)
    if tag is None:
        return plan
    plan.container_image = tag
    key, run_dir = dataset_run(layout, obj, tag)
    plan.memo["current"] = {"image": tag, "runDir": str(run_dir)}
    name = naming.container_name("Dataset", obj.namespace, obj.name, "load", key, instance=world.instance)
    remove_stale(plan, world, {name}, "load")
    spec = RunSpec(name=name, image=tag, command=["load.sh"],
                   env={"LOAD_DATA_PATH": f"/data/{obj.spec.filename}"},
                   mounts=[Mount(str(run_dir / "data"), "/data"), Mount(str(run_dir / "logs"), "/dataset/logs")],
                   labels=naming.object_labels("Dataset", obj.namespace, obj.name, instance=world.instance, role="load", run=key[:16]),
                   limits=obj.spec.run_limits())
    if not run_job(plan, name=name, spec=spec, run_dir=run_dir, expect=run_dir / "data" / obj.spec.filename,
                   step="load", world=world, memo=memo, waiting_reason="Loading", failed_reason="LoadFailed"):
        return plan
    plan.done("Loaded", "Loaded", f"load.sh wrote /data/{obj.spec.filename}")
    plan.ready, plan.reason, plan.message = True, "Loaded", "data loaded"
    plan.url = (run_dir / "data" / obj.spec.filename).as_uri()
    return plan


# ---- Model ----------------------------------------------------------------------------------

def plan_model(obj: Model, memo: dict[str, Any], world: World, layout: Layout,
               base: Optional[Dep], dataset: Optional[Dep]) -> Plan:
    plan = Plan()
    src = obj.spec.source
    if src.model_name is not None:
        assert base is not None
        if not (base.ready and base.container_image):
            waiting_on(plan, "Built", base, "Model", src.model_name)
            return plan
        base_image: Optional[str] = base.container_image
        plan.done("Built", "BaseModelReady", f"based on model {src.model_name!r} ({base_image})")
    else:
        base_image = ensure_source_image(plan, obj, memo, world, layout)
        if base_image is None:
            return plan
    assert base_image is not None
    training = obj.spec.training
    if training is None:
        plan.container_image = base_image
        plan.ready, plan.reason, plan.message = True, "Ready", f"model image {base_image}"
        return plan
    assert dataset is not None
    if not dataset.ready:
        waiting_on(plan, "Trained", dataset, "Dataset", training.dataset_name)
        return plan
    data_dir = Path(dataset.memo["current"]["runDir"]) / "data"
    filename = dataset.spec["filename"]
    params = training.params
    key = naming.digest("train", base_image, str(data_dir), filename, params.wire())
    run_dir = layout.run_dir("Model", obj.namespace, obj.name, key)
    tag = naming.trained_image(obj.namespace, obj.name, key)
    plan.memo["current"] = {"image": tag, "runDir": str(run_dir)}
    name = naming.container_name("Model", obj.namespace, obj.name, "train", key, instance=world.instance)
    remove_stale(plan, world, {name}, "train")
    if tag in world.images:
        plan.done("Trained", "Trained", f"trained on dataset {training.dataset_name!r} with {params.wire()}")
        plan.container_image = tag
        plan.ready, plan.reason, plan.message = True, "Trained", f"model image {tag}"
        return plan
    spec = RunSpec(
        name=name, image=base_image, command=["train.sh"],
        env={"TRAIN_DATA_PATH": f"/data/{filename}", "DATASET_PATH": f"/data/{filename}",
             "TRAIN_DATA_LIMIT": str(params.data_limit), "TRAIN_BATCH_SIZE": str(params.batch_size),
             "TRAIN_EPOCHS": str(params.epochs)},
        mounts=[Mount(str(data_dir), "/data", read_only=True), Mount(str(run_dir / "trained"), "/model/trained"),
                Mount(str(run_dir / "logs"), "/model/logs")],
        labels=naming.object_labels("Model", obj.namespace, obj.name, instance=world.instance, role="train", run=key[:16]),
        gpu=wants_gpu(obj, world), limits=obj.spec.run_limits(),
    )
    if not run_job(plan, name=name, spec=spec, run_dir=run_dir, expect=run_dir / "trained", step="train",
                   world=world, memo=memo, waiting_reason="Training", failed_reason="TrainFailed"):
        return plan
    build = BuildTrained(tag=tag, base=base_image, run_dir=run_dir,
                         labels=naming.object_labels("Model", obj.namespace, obj.name, role="trained"))
    failed = failure(memo, build.key)
    if failed:
        return plan.wait("Trained", failed["reason"], failed["message"])
    if build.key not in world.in_flight:
        plan.actions.append(build)
    return plan.wait("Trained", "Building", f"building {tag} with /model/trained copied into /model/saved")


def wants_gpu(obj: Model, world: World) -> bool:
    """GPU when preferred and present; CPU when allowed; GPU-only without one still tries (and says so)."""
    types = obj.spec.compute.types
    if types[0] == "GPU" and world.gpu:
        return True
    return "CPU" not in types


# ---- long-running containers (server, notebook) -------------------------------------------------

def keep_running(plan: Plan, *, spec: RunSpec, world: World, memo: dict[str, Any], type_: str,
                 probe_what: str, log_file: Optional[Path] = None) -> bool:
    """Start, roll onto a new image, restart with backoff; True once the probe answers."""
    state = world.containers.get(spec.name)
    failed_reason = "ServeFailed" if type_ == "Serving" else "NotebookFailed"
    failed = failure(memo, f"start:{spec.name}")
    if failed and state is None:
        plan.wait(type_, failed["reason"], failed["message"])
        return False
    image_label = naming.label("image")
    if state is not None and state.labels.get(image_label) != spec.labels.get(image_label):
        plan.actions.append(RemoveContainer(name=spec.name, reason="rolling onto a new image"))
        plan.memo.update({"restarts": 0, "nextRestartAt": None, "startedAt": None})
        plan.wait(type_, "Rolling", f"replacing the container with image {spec.image}")
        return False
    if state is None:
        plan.actions.append(StartContainer(spec=spec, reason="start", failure_key=f"start:{spec.name}",
                                           failure_reason=failed_reason))
        plan.memo["startedAt"] = world.now
        plan.wait(type_, "Starting", f"starting {spec.name}")
        return False
    if not state.running:
        return restart_with_backoff(plan, spec=spec, state=state, world=world, memo=memo, type_=type_,
                                    log_file=log_file)
    if world.probes.get(spec.name):
        plan.memo.update({"restarts": 0, "nextRestartAt": None})
        return True
    started = memo.get("startedAt")
    waited = world.now - float(world.now if started is None else started)
    if waited > world.ready_timeout:
        tail = world.log_tails.get(spec.name, "")
        plan.wait(type_, "ServeFailed", f"{probe_what} did not answer for {waited:.0f}s (limit "
                  f"{world.ready_timeout:.0f}s); last log lines:\n{tail}")
    else:
        plan.wait(type_, "NotReady", f"waiting for {probe_what} (up to {world.ready_timeout:.0f}s)")
    return False


def restart_with_backoff(plan: Plan, *, spec: RunSpec, state: ContainerState, world: World,
                         memo: dict[str, Any], type_: str, log_file: Optional[Path] = None) -> bool:
    restarts = int(memo.get("restarts") or 0)
    tail = world.log_tails.get(spec.name, "")
    reason = "CrashLoopBackOff" if restarts >= CRASHLOOP_AFTER else "ServerExited"
    message = f"{spec.command[0]} exited with code {state.exit_code} (restarts: {restarts}); last log lines:\n{tail}"
    next_at = memo.get("nextRestartAt")
    if next_at is None:
        delay = RESTART_BACKOFF[min(restarts, len(RESTART_BACKOFF) - 1)]
        plan.memo["nextRestartAt"] = world.now + delay
    elif world.now >= float(next_at):
        plan.actions.append(RemoveContainer(name=spec.name, reason="restart after exit", save_log_to=log_file))
        plan.memo.update({"restarts": restarts + 1, "nextRestartAt": None, "startedAt": None})
    plan.wait(type_, reason, message)
    return False


def host_port(memo: dict[str, Any], plan: Plan, world: World) -> int:
    port = memo.get("port")
    if not port:
        port = world.free_port
        plan.memo["port"] = port
    return int(port)


def plan_server(obj: ModelServer, memo: dict[str, Any], world: World, model: Dep,
                layout: Optional[Layout] = None) -> Plan:
    plan = Plan()
    if not (model.ready and model.container_image):
        waiting_on(plan, "Serving", model, "Model", obj.spec.model_name)
        return plan
    port = host_port(memo, plan, world)
    name = naming.container_name("ModelServer", obj.namespace, obj.name, "server", instance=world.instance)
    spec = RunSpec(name=name, image=model.container_image, command=["serve.sh"], ports={SERVER_PORT: port},
                   labels=naming.object_labels("ModelServer", obj.namespace, obj.name, instance=world.instance, role="server",
                                               image=model.container_image, port=str(port)),
                   gpu=bool(model.spec.get("compute", {}).get("types", ["CPU"])[0] == "GPU" and world.gpu),
                   limits=obj.spec.run_limits())
    log_file = layout.object_dir("ModelServer", obj.namespace, obj.name) / "exited.log" if layout else None
    if keep_running(plan, spec=spec, world=world, memo=memo, type_="Serving", probe_what="GET /docs on port 8080",
                    log_file=log_file):
        plan.url = f"http://127.0.0.1:{port}"
        plan.done("Serving", "Serving", f"serve.sh answers GET /docs at {plan.url}/docs")
        plan.ready, plan.reason, plan.message = True, "Serving", f"serving {model.container_image}"
    return plan


def plan_notebook(obj: Notebook, memo: dict[str, Any], world: World, target: Dep,
                  layout: Optional[Layout] = None) -> Plan:
    plan = Plan()
    name = naming.container_name("Notebook", obj.namespace, obj.name, "notebook", instance=world.instance)
    if obj.spec.suspend:
        if name in world.containers:
            plan.actions.append(RemoveContainer(name=name, reason="suspended"))
        plan.steps.append(Step("Running", "False", "Suspended", "spec.suspend is true"))
        plan.reason, plan.message = "Suspended", "suspended (set spec.suspend: false to start it)"
        return plan
    what = "Model" if obj.spec.model_name else "Dataset"
    ref = obj.spec.model_name or obj.spec.dataset_name or ""
    if not (target.ready and target.container_image):
        waiting_on(plan, "Running", target, what, ref)
        return plan
    token = memo.get("token") or secrets.token_hex(16)
    plan.memo["token"] = token
    port = host_port(memo, plan, world)
    mounts = []
    if what == "Dataset":
        mounts.append(Mount(str(Path(target.memo["current"]["runDir"]) / "data"), "/data", read_only=True))
    spec = RunSpec(name=name, image=target.container_image, command=["notebook.sh"], ports={NOTEBOOK_PORT: port},
                   secret_env={"JUPYTER_TOKEN": token}, mounts=mounts, limits=obj.spec.run_limits(),
                   labels=naming.object_labels("Notebook", obj.namespace, obj.name, instance=world.instance, role="notebook",
                                               image=target.container_image, port=str(port)))
    log_file = layout.object_dir("Notebook", obj.namespace, obj.name) / "exited.log" if layout else None
    if keep_running(plan, spec=spec, world=world, memo=memo, type_="Running", probe_what="notebook.sh on port 8888",
                    log_file=log_file):
        plan.url = f"http://127.0.0.1:{port}/?token={token}"
        plan.done("Running", "Running", f"notebook answers on port {port}")
        plan.ready, plan.reason, plan.message = True, "Running", f"notebook on {target.container_image}"
    return plan
