"""One reconcile core for both backends, as controller-runtime keeps one Reconciler and swaps the client.

    plan_for(obj, state, snap, facts, lookup, previous) -> Plan
        the planner of the object's kind, with the objects it refers to found through `lookup`
    wanted_for(obj, state, lookup) -> the images a pass may ask the engine about
    Published, Lookup
        what an object shows the objects that refer to it: its generation, its published `status`,
        whether it is going away. Never its spec: what dependents need is published (a Model's
        `computeTypes`, its `containerImage`, a Dataset's `url` and `digest`)
    check_references(objects, exists)
        refuse a manifest that names a missing object, naming the field that names it

What differs between the backends is only how a referenced object is looked up (the local store's
record; the custom resource on the API server) and how a plan's actions are carried out (the
local executor on podman or docker; the Kubernetes one). The dependency index that wakes
dependents is `reconcile.index`; the queue and its workers `reconcile.queue` and `reconcile.workers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from substratus.errors import ValidationError
from substratus.reconcile import state as states
from substratus.reconcile.jobs import plan_dataset, plan_model, wanted_images
from substratus.reconcile.plan import Dep, Facts, Plan, Snapshot
from substratus.reconcile.workloads import plan_notebook, plan_server
from substratus.resources.objectkey import ObjectKey
from substratus.resources.references import named_references
from substratus.resources.schema import Dataset, Model, ModelServer, Notebook, Resource
from substratus.resources.status import Progress, Status


@dataclass(frozen=True)
class Published:
    """A referenced object as others may see it."""

    generation: int
    status: Mapping[str, Any]         # wire form, as stored or served
    deleting: bool = False


Lookup = Callable[[ObjectKey], Optional[Published]]  # None: no such object


def dep(lookup: Lookup, key: ObjectKey) -> Dep:
    """A referenced object as its published status shows it."""
    found = lookup(key)
    if found is None or found.deleting:
        return Dep(exists=False)
    status = Status.model_validate(found.status)
    return Dep(exists=True, current=status.observed_generation == found.generation, status=status)


def once_per_pass(lookup: Lookup) -> Lookup:
    """`lookup`, asked at most once per key: one pass sees one version of each object it refers to (and
    a backend that asks an API server asks once)."""
    seen: dict[ObjectKey, Optional[Published]] = {}

    def cached(key: ObjectKey) -> Optional[Published]:
        if key not in seen:
            seen[key] = lookup(key)
        return seen[key]
    return cached


@dataclass(frozen=True)
class Refs:
    """The objects one object refers to, by the role they play for it."""

    base: Optional[Dep] = None        # Model: spec.source.modelName
    dataset: Optional[Dep] = None     # Model: spec.training.datasetName
    model: Optional[Dep] = None       # ModelServer: spec.modelName
    target: Optional[Dep] = None      # Notebook: spec.modelName, else spec.datasetName


def refs_of(obj: Resource, lookup: Lookup) -> Refs:
    ns = obj.namespace
    if isinstance(obj, Model):
        base = obj.spec.source.model_name
        training = obj.spec.training
        return Refs(base=dep(lookup, ObjectKey("Model", ns, base)) if base else None,
                    dataset=dep(lookup, ObjectKey("Dataset", ns, training.dataset_name)) if training else None)
    if isinstance(obj, ModelServer):
        return Refs(model=dep(lookup, ObjectKey("Model", ns, obj.spec.model_name)))
    if isinstance(obj, Notebook):
        key = ObjectKey("Model", ns, obj.spec.model_name) if obj.spec.model_name \
            else ObjectKey("Dataset", ns, obj.spec.dataset_name or "")
        return Refs(target=dep(lookup, key))
    return Refs()


def plan_for(obj: Resource, state: states.AnyState, snap: Snapshot, facts: Facts, lookup: Lookup,
             previous: Optional[Progress] = None) -> Plan:
    """The plan for `obj` (pure, given `lookup` is a read of what was observed). `previous`: the
    progress its status showed, carried on while a job's progress file says nothing newer."""
    refs = refs_of(obj, lookup)
    if isinstance(obj, Dataset):
        assert isinstance(state, states.DatasetState)
        return plan_dataset(obj, state, snap, facts, previous)
    if isinstance(obj, Model):
        assert isinstance(state, states.ModelState)
        return plan_model(obj, state, snap, facts, refs.base, refs.dataset, previous)
    if isinstance(obj, ModelServer):
        assert isinstance(state, states.ServerState) and refs.model is not None
        return plan_server(obj, state, snap, facts, refs.model)
    assert isinstance(obj, Notebook) and isinstance(state, states.NotebookState) and refs.target is not None
    return plan_notebook(obj, state, snap, facts, refs.target)


def wanted_for(obj: Resource, state: states.AnyState, lookup: Lookup) -> list[str]:
    """The images a pass of `obj` may look for (so an observer asks about those alone)."""
    refs = refs_of(obj, lookup)
    return wanted_images(obj, state, refs.base, refs.dataset)


def check_references(objects: Iterable[Resource], exists: Callable[[ObjectKey], bool]) -> None:
    """Every object a manifest refers to exists, or is in the same batch; else ValidationError naming each
    field (`model/tuned: spec.training.datasetName`), nothing applied. `exists`: the backend's look."""
    objects = list(objects)
    batch = {o.key for o in objects}
    problems: list[tuple[str, str]] = []
    for o in objects:
        spec = o.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        for field, key in named_references(o.kind, o.namespace, spec):
            if key == o.key:
                problems.append((f"{o.ref}: {field}", f"{o.kind.lower()} {key.name!r} cannot refer to itself"))
            elif key not in batch and not exists(key):
                problems.append((f"{o.ref}: {field}",
                                 f"{key.kind} {key.name!r} does not exist in namespace {key.namespace!r}; apply it "
                                 f"too (in the same `sub apply`) or fix the name (see `sub get {key.kind.lower()}s`)"))
    if problems:
        raise ValidationError(problems, hint="nothing was applied")
