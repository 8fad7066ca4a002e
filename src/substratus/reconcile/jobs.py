"""Pure planners for the kinds that build and run jobs: Dataset and Model.

    plan_<kind>(obj, state, snapshot, facts, deps...) -> Plan

No I/O, no clock, no randomness here: `observe` takes the snapshot of the
world first (images, this object's containers, run markers, probes,
progress files), the planner decides, and the executor (local engine or the
Kubernetes operator) carries the actions out. A plan carries the new typed
state, the conditions, what the object publishes in `status`, and when to
look again (`requeue_after`). Servers and notebooks are in `workloads`;
the shared vocabulary (Snapshot, Facts, Dep, Plan) in `plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from substratus import contract
from substratus.build import conformance, naming
from substratus.reconcile.actions import (
    BuildImage,
    BuildTrained,
    CheckContract,
    CollectJob,
    RemoveContainer,
    StartContainer,
)
from substratus.reconcile.plan import Dep, Facts, Plan, Snapshot, waiting_on, wants_gpu
from substratus.reconcile.state import AnyState, BuildState, DatasetState, ModelState, Source
from substratus.resources.schema import Dataset, Model, Resource
from substratus.resources.status import Lineage, LineageDataset, LineageModel, Progress, Reason, SourceStatus
from substratus.runtimes.base import RunSpec

JOB_RECHECK = 2.0  # a running job is woken by its exit event; this re-reads its progress file meanwhile


def own_image(obj: Resource, src: Source) -> str:
    return naming.source_image(obj.kind, obj.namespace, obj.name, src.revision, src.git_path or "")


def training_key(base_image: str, data_url: str, params: dict[str, object]) -> str:
    return naming.digest("train", base_image, data_url, params)


def wanted_images(obj: Resource, state: AnyState, base: Optional[Dep], dataset: Optional[Dep]) -> list[str]:
    """The images a planning pass of `obj` may look for, so `observe` asks the engine about those alone
    (listing every image of a busy engine takes seconds)."""
    refs: list[str] = []
    if isinstance(state, BuildState) and state.source is not None:
        refs.append(own_image(obj, state.source))
    if isinstance(obj, Model):
        base_image = base.status.container_image if base is not None else (refs[0] if refs else None)
        if base_image and base is not None:
            refs.append(base_image)
        training = obj.spec.training
        if base_image and training is not None and dataset is not None and dataset.status.url:
            key = training_key(base_image, dataset.status.url, training.params.wire())
            refs.append(naming.trained_image(obj.namespace, obj.name, key))
    return refs


# ---- shared steps ---------------------------------------------------------------------------

def source_status(src: Source) -> SourceStatus:
    return SourceStatus(description=src.description, revision=src.revision, git_url=src.git_url,
                        git_commit=src.git_commit, git_path=src.git_path, dir=src.dir)


def source_image(plan: Plan, obj: Resource, state: BuildState, snap: Snapshot,
                 facts: Facts) -> tuple[Optional[str], bool]:
    """The object's own image: built, then checked against the contract beside the next step.

    Returns (tag, verified): tag once the image exists, verified once it passed the check.
    """
    src = state.source
    if src is None:
        plan.wait("Built", Reason.SOURCE_FAILED, "the source was never resolved; apply the manifest again")
        return None, False
    kind: Literal["Model", "Dataset"] = "Dataset" if obj.kind == "Dataset" else "Model"
    plan.published.source = source_status(src)
    tag = own_image(obj, src)
    build = BuildImage(tag=tag, source=src, labels=naming.object_labels(obj.kind, obj.namespace, obj.name,
                                                                        instance=facts.instance, role="source"),
                       log_path=facts.layout.build_log(obj.kind, obj.namespace, obj.name))
    check = CheckContract(image=tag, kind=kind)
    for key in (build.key, check.key):
        if key in state.failures:
            failed = state.failures[key]
            plan.wait("Built", failed.reason, failed.message)
            return None, False
    if tag not in snap.images:
        plan.act(build, snap)
        plan.wait("Built", Reason.BUILDING, f"building {tag} from {src.description}")
        return None, False
    if tag in state.verified:
        plan.done("Built", Reason.BUILT, f"{tag} from {src.description}")
        return tag, True
    plan.act(check, snap)
    plan.wait("Built", Reason.BUILDING, f"checking {tag} against the {kind} contract")
    return tag, False


def remove_stale(plan: Plan, snap: Snapshot, keep: set[str], role: str) -> None:
    for name, c in snap.containers.items():
        if c.labels.get(naming.label("role")) == role and name not in keep:
            plan.actions.append(RemoveContainer(name=name, reason=f"outdated {role} container"))


def run_job(plan: Plan, *, spec: RunSpec, run_dir: Path, expect: Path, step: str, snap: Snapshot,
            state: BuildState, waiting: Reason, failed_reason: Reason) -> bool:
    """Drive a load/train container to a judged end. True once the run succeeded."""
    type_ = "Loaded" if step == "load" else "Trained"
    if str(run_dir) in snap.succeeded:
        c = snap.containers.get(spec.name)
        if c is not None and not c.running and c.exit_code is not None and \
                f"collect:{spec.name}" not in snap.in_flight:
            # Judged, but its container outlived a control plane stopped before removing it.
            plan.act(RemoveContainer(name=spec.name, save_log_to=run_dir / "job.log",
                                     reason=f"{step}.sh finished before the control plane stopped"), snap)
        return True
    key = f"job:{spec.name}"
    if key in state.failures:
        plan.wait(type_, state.failures[key].reason, state.failures[key].message)
        return False
    c = snap.containers.get(spec.name)
    if f"remove:{spec.name}" in snap.in_flight:
        plan.wait(type_, waiting, f"waiting for the old {spec.name} to be removed", requeue_after=0.5)
        return False
    progress = snap.progress.get(str(run_dir))
    if progress is not None:
        plan.published.progress = progress
    if c is None:
        if plan.act(StartContainer(spec=spec, reason=f"start {step}", failure_key=key,
                                   failure_reason=failed_reason), snap):
            plan.wait(type_, waiting, f"starting {step}.sh in {spec.name}")
        else:
            plan.wait(type_, waiting, f"{step}.sh finished; checking its outputs")
    elif c.running or c.exit_code is None:
        plan.wait(type_, waiting, f"{step}.sh running in container {spec.name}", requeue_after=JOB_RECHECK)
    else:
        plan.act(CollectJob(name=spec.name, run_dir=run_dir, exit_code=c.exit_code, expect=expect,
                            step="load" if step == "load" else "train", failure_key=key,
                            run_key=run_dir.name), snap)
        plan.wait(type_, waiting, f"{step}.sh exited with {c.exit_code}; checking its outputs")
    return False


def job_progress(plan: Plan, previous: Optional[Progress], phase: str) -> None:
    """Keep the last progress of a finished job in status (its file is not read once it is done)."""
    if plan.published.progress is None and previous is not None and previous.phase == phase:
        plan.published.progress = previous


# ---- Dataset --------------------------------------------------------------------------------

def dataset_run_key(tag: str, filename: str) -> str:
    return naming.digest("load", tag, filename)


def plan_dataset(obj: Dataset, state: DatasetState, snap: Snapshot, facts: Facts,
                 previous: Optional[Progress] = None) -> Plan:
    plan = Plan(state=state)
    tag, verified = source_image(plan, obj, state, snap, facts)
    if tag is None:
        return plan
    plan.published.container_image = tag
    key = dataset_run_key(tag, obj.spec.filename)
    run_dir = facts.layout.run_dir("Dataset", obj.namespace, obj.name, key)
    name = naming.container_name("Dataset", obj.namespace, obj.name, "load", key, instance=facts.instance)
    remove_stale(plan, snap, {name}, "load")
    spec = RunSpec(name=name, image=tag, command=["load.sh"], env=contract.load_env(obj.spec.filename),
                   mounts=conformance.load_mounts(str(run_dir / "data"), str(run_dir / "logs")),
                   labels=naming.object_labels("Dataset", obj.namespace, obj.name, instance=facts.instance,
                                               role="load", run=key[:16]),
                   limits=obj.spec.run_limits(), network=contract.LOAD_NETWORK)
    done = run_job(plan, spec=spec, run_dir=run_dir, expect=run_dir / "data" / obj.spec.filename, step="load",
                   snap=snap, state=state, waiting=Reason.LOADING, failed_reason=Reason.LOAD_FAILED)
    job_progress(plan, previous, "load")
    if not done:
        return plan
    if not verified:
        return plan.wait("Loaded", Reason.BUILDING, f"load.sh finished; waiting for the contract check of {tag}")
    plan.done("Loaded", Reason.LOADED, f"load.sh wrote {contract.DATA_DIR}/{obj.spec.filename}")
    plan.published.url = facts.layout.artifact_url(run_dir / "data" / obj.spec.filename)
    plan.published.digest = state.digests.get(run_dir.name)
    return plan.finish(Reason.LOADED, "data loaded")


# ---- Model ----------------------------------------------------------------------------------

def plan_model(obj: Model, state: ModelState, snap: Snapshot, facts: Facts, base: Optional[Dep],
               dataset: Optional[Dep], previous: Optional[Progress] = None) -> Plan:
    plan = Plan(state=state)
    plan.published.compute_types = list(obj.spec.compute.types)  # servers and notebooks on it read it from status
    base_image, verified = model_base(plan, obj, state, snap, facts, base)
    if base_image is None:
        return plan
    training = obj.spec.training
    if training is None:
        # Published while it is still being checked, so models trained from it can start at once; they
        # only count as trained once this one is Ready (the check passed).
        plan.published.container_image = base_image
        if not verified:
            return plan
        return plan.finish(Reason.READY, f"model image {base_image}")
    assert dataset is not None
    if not dataset.ready or not dataset.status.url:
        remove_stale(plan, snap, set(), "train")
        return waiting_on(plan, "Trained", dataset, "Dataset", training.dataset_name)
    return plan_training(plan, obj, state, snap, facts, base_image, verified, base, dataset, previous)


def model_base(plan: Plan, obj: Model, state: ModelState, snap: Snapshot, facts: Facts,
               base: Optional[Dep]) -> tuple[Optional[str], bool]:
    name = obj.spec.source.model_name
    if name is None:
        return source_image(plan, obj, state, snap, facts)
    assert base is not None
    image = base.status.container_image
    if base.ready and image:
        plan.done("Built", Reason.BASE_MODEL_READY, f"based on model {name!r} ({image})")
        return image, True
    if base.exists and base.current and image and base.status.reason == Reason.BUILDING.value:
        # the base image is built and being checked against the contract: start beside the check
        plan.wait("Built", Reason.WAITING_FOR_MODEL, f"model {name!r} ({image}) is being checked")
        return image, False
    remove_stale(plan, snap, set(), "train")  # whatever ran on a base that is gone or failed
    waiting_on(plan, "Built", base, "Model", name)
    return None, False


def plan_training(plan: Plan, obj: Model, state: ModelState, snap: Snapshot, facts: Facts, base_image: str,
                  verified: bool, base: Optional[Dep], dataset: Dep, previous: Optional[Progress]) -> Plan:
    training = obj.spec.training
    assert training is not None and dataset.status.url is not None
    data_file = facts.layout.artifact_path(dataset.status.url)
    params = training.params.wire()
    key = training_key(base_image, dataset.status.url, params)
    run_dir = facts.layout.run_dir("Model", obj.namespace, obj.name, key)
    tag = naming.trained_image(obj.namespace, obj.name, key)
    lineage = model_lineage(obj, state, snap, base_image, base, dataset, tag)
    name = naming.container_name("Model", obj.namespace, obj.name, "train", key, instance=facts.instance)
    remove_stale(plan, snap, {name}, "train")
    if tag in snap.images and verified:
        plan.done("Trained", Reason.TRAINED, f"trained on dataset {training.dataset_name!r} with {params}")
        job_progress(plan, previous, "train")
        plan.published.container_image, plan.published.lineage = tag, lineage
        return plan.finish(Reason.TRAINED, f"model image {tag}")
    spec = RunSpec(name=name, image=base_image, command=["train.sh"],
                   env=contract.train_env(data_file.name, params),
                   mounts=conformance.train_mounts(str(data_file.parent), str(run_dir / "trained"),
                                                str(run_dir / "logs")),
                   labels=naming.object_labels("Model", obj.namespace, obj.name, instance=facts.instance,
                                               role="train", run=key[:16]),
                   gpu=wants_gpu(tuple(obj.spec.compute.types), facts.gpu), limits=obj.spec.run_limits(),
                   network=contract.TRAIN_NETWORK)
    done = run_job(plan, spec=spec, run_dir=run_dir, expect=run_dir / "trained", step="train", snap=snap,
                   state=state, waiting=Reason.TRAINING, failed_reason=Reason.TRAIN_FAILED)
    job_progress(plan, previous, "train")
    if not done:
        return plan
    build = BuildTrained(tag=tag, base=base_image, run_dir=run_dir,
                         labels={**naming.object_labels("Model", obj.namespace, obj.name, instance=facts.instance,
                                                        role="trained"),
                                 **lineage_labels(lineage)})
    if build.key in state.failures:
        return plan.wait("Trained", state.failures[build.key].reason, state.failures[build.key].message)
    if tag in snap.images:
        return plan.wait("Trained", Reason.BUILDING, f"trained; waiting for the contract check of {base_image}")
    plan.act(build, snap)
    return plan.wait("Trained", Reason.BUILDING,
                     f"building {tag} with {contract.TRAINED_DIR} copied into {contract.SAVED_DIR}")


def model_lineage(obj: Model, state: ModelState, snap: Snapshot, base_image: str, base: Optional[Dep],
                  dataset: Dep, tag: str) -> Lineage:
    training = obj.spec.training
    assert training is not None
    if base is not None:
        base_source = base.status.lineage.base_model.source if base.status.lineage else base.status.source
    else:
        base_source = source_status(state.source) if state.source else None
    return Lineage(
        base_model=LineageModel(name=obj.spec.source.model_name or obj.name, image=base_image,
                                image_id=snap.images.get(base_image), source=base_source),
        dataset=LineageDataset(name=training.dataset_name, url=dataset.status.url, digest=dataset.status.digest,
                               source=dataset.status.source),
        params=training.params.wire(), trained_image=tag)


def lineage_labels(lineage: Lineage) -> dict[str, str]:
    """OCI annotations on the trained image, so lineage travels with it."""
    labels = {"org.opencontainers.image.base.name": lineage.base_model.image,
              "ai.substratus.dataset": lineage.dataset.name,
              "ai.substratus.training.params": naming.canonical_json(lineage.params)}
    if lineage.base_model.image_id:
        labels["org.opencontainers.image.base.digest"] = lineage.base_model.image_id
    if lineage.dataset.digest:
        labels["ai.substratus.dataset.digest"] = lineage.dataset.digest
    source = lineage.base_model.source
    if source is not None and source.git_url:
        labels["org.opencontainers.image.source"] = source.git_url
        labels["org.opencontainers.image.revision"] = source.git_commit or source.revision
    return labels
