"""One level-based pass over one custom resource, through the controller core's planners.

    read      the resource; its typed state from the `substratus.ai/state` annotation (records);
              applied again (a new generation, or `sub apply` re-annotated it)? then resolve the
              source afresh and forget failures, as a re-apply does locally
    observe   its Jobs, Deployments and Pods, the registry, the artifact store (observe)
    plan      `plan_dataset`, `plan_model`, `plan_server`, `plan_notebook`: the same pure
              functions the local controller calls, with Facts saying that the platform probes,
              restarts and rolls workloads itself
    write     status (`build_status`: the local conditions and reasons) and the state, only if
              the object did not change meanwhile (else the pass simply runs again)
    act       the plan's actions, through the Kubernetes runtime (executor)

What differs from local is what a cluster makes different: readiness is the pod's Ready
condition; a server's URL is its Service's; a tag the planners want to build is first looked
up in the registry (it may have been pushed while the operator was down). `kopf` drives the
passes (app): one daemon per object, woken by watch events, requeued as the plan says.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, cast

from substratus import contract
from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactError, ArtifactStore
from substratus.build import naming
from substratus.errors import SourceError
from substratus.kube import records, sources
from substratus.kube.executor import KubeExecutor
from substratus.kube.observe import ClusterObserver, RegistryImages
from substratus.reconcile import state as states
from substratus.reconcile.actions import BuildImage, BuildTrained
from substratus.reconcile.jobs import plan_dataset, plan_model
from substratus.reconcile.layout import Layout
from substratus.reconcile.outcomes import Outcome, apply_outcome
from substratus.reconcile.plan import Dep, Facts, Plan, Snapshot
from substratus.reconcile.status import build_status, utcnow
from substratus.reconcile.workloads import plan_notebook, plan_server
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS, Dataset, Model, ModelServer, Notebook, Resource
from substratus.resources.status import Reason, Status
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.annotations import STATE, annotations_of, apply_trigger
from substratus.runtimes.kubernetes.client import KubeApi, merge_patch
from substratus.runtimes.kubernetes.runtime import CR_VERSION, KubernetesRuntime
from substratus.runtimes.kubernetes.workloads import Owner

log = logging.getLogger("substratus.kube")
GPU_RECHECK = 60.0
ROLES = {"ModelServer": ("server", contract.SERVER_PORT), "Notebook": ("notebook", contract.NOTEBOOK_PORT)}


def meta(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = body.get("metadata") or {}
    return out


def generation_of(body: dict[str, Any]) -> int:
    return int(meta(body).get("generation", 1))


def deleting(body: dict[str, Any]) -> bool:
    return bool(meta(body).get("deletionTimestamp"))


def parse(kind: str, body: dict[str, Any]) -> Resource:
    m = meta(body)
    doc = {"apiVersion": CR_VERSION, "kind": kind, "spec": body.get("spec") or {},
           "metadata": {k: v for k, v in (("name", m.get("name")), ("namespace", m.get("namespace")),
                                          ("labels", m.get("labels"))) if v}}
    return KINDS[kind].model_validate(doc)


def service_url(kind: str, namespace: str, name: str) -> str:
    """Where the Service of a server or notebook answers inside the cluster."""
    role, port = ROLES[kind]
    service = names.object_name(naming.container_name(kind, namespace, name, role))
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


def cluster_facts(layout: ArtifactLayout, ready_timeout: float, gpu: bool) -> Facts:
    """What holds on a cluster: keys in the artifact store for paths (the planners only do path
    arithmetic on the layout, which store keys support); readiness from the kubelet, which
    already applies its probe's failure threshold (so one not-ready report is NotReady) and
    restarts what crashes (so the operator never restarts a silent server itself)."""
    return Facts(layout=cast(Layout, layout), instance="", gpu=gpu, ready_timeout=ready_timeout,
                 failure_threshold=1, liveness_timeout=math.inf, platform_restarts=True)


class Reconciler:
    def __init__(self, api: KubeApi, runtime: KubernetesRuntime, store: Optional[ArtifactStore], *,
                 scratch: Path, wake: Callable[[ObjectKey], None] = lambda key: None,
                 clock: Callable[[], float] = time.time, build_workers: int = 2, workers: int = 4) -> None:
        self.api, self.runtime, self.store, self.scratch, self.wake, self.clock = \
            api, runtime, store, scratch, wake, clock
        self.layout = ArtifactLayout(store=runtime.settings.artifact_store)
        self.images = RegistryImages(runtime)
        self.observer = ClusterObserver(runtime, store, self.layout, self.images)
        self.executor = KubeExecutor(runtime, store, self.images, self.on_outcomes, build_workers=build_workers,
                                     workers=workers, clock=clock)
        self._locks: dict[ObjectKey, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._gpu: tuple[bool, float] = (False, -math.inf)

    def lock(self, key: ObjectKey) -> threading.Lock:
        with self._locks_guard:
            return self._locks[key]

    def get(self, key: ObjectKey) -> Optional[dict[str, Any]]:
        kind, ns, name = key
        return self.api.get(CR_VERSION, kind, name, ns)

    def facts(self) -> Facts:
        gpu, checked = self._gpu
        if self.clock() - checked > GPU_RECHECK:
            gpu = self.runtime.gpu_available()
            self._gpu = (gpu, self.clock())
        return cluster_facts(self.layout, float(self.runtime.settings.ready_timeout_seconds), gpu)

    # -- one pass ----------------------------------------------------------------------------------
    def reconcile(self, key: ObjectKey) -> Optional[float]:
        """One pass; returns when to look again (None: when something changes)."""
        body = self.get(key)
        if body is None or deleting(body):
            return None  # gone, or the delete handler finalizes it
        obj = parse(key[0], body)
        stored = records.Stored.read(body)
        state, source_error = self.current_state(obj, body, stored)
        if source_error and isinstance(state, states.BuildState) and state.source is None:
            plan = Plan(state=state).wait("Built", Reason.SOURCE_FAILED, source_error)  # nothing to observe
        else:
            snap = self.observer.snapshot(key, self.clock(), self.executor.in_flight(key))
            snap = replace(snap, retrying=self.executor.retrying(key))
            plan = self.confirmed(obj, state, snap, self.facts(), body)
        publish_cluster_urls(plan, obj)
        status = build_status(generation_of(body), body.get("status") or {}, plan, utcnow())
        if not self.write(key, body, apply_trigger(body), plan.state, source_error, status, acting=bool(plan.actions)):
            return 0.0  # the object changed while we planned: plan again from what is there now
        for action in plan.actions:
            log.debug("%s/%s/%s: %s -> %s", *key, action.key, self.executor.submit(key, action))
        return plan.requeue_after

    def current_state(self, obj: Resource, body: dict[str, Any],
                      stored: records.Stored) -> tuple[states.AnyState, str]:
        """(typed state, source error) for the object as applied now."""
        token = self.read_token(obj) if stored.has_token else None
        state = records.decode(obj.kind, stored, token)
        if records.is_current(stored, body):
            return state, stored.source_error
        state = state.model_copy(update={"failures": {}})  # applied again: "try again", as locally
        if not isinstance(state, states.BuildState):
            return state, ""
        try:
            source = sources.resolve(obj, annotations_of(body), self.images.lookup, self.scratch)
        except SourceError as err:
            log.warning("%s %s/%s: %s", obj.kind, obj.namespace, obj.name, err)
            return state.model_copy(update={"source": None}), str(err)
        return state.model_copy(update={"source": source}), ""

    def confirmed(self, obj: Resource, state: states.AnyState, snap: Snapshot, facts: Facts,
                  body: dict[str, Any]) -> Plan:
        """The plan, after asking the registry about tags it wants to build (pushed before we knew)."""
        plan = self.plan(obj, state, snap, facts, body)
        for _ in range(3):
            wanted = [a.tag for a in plan.actions if isinstance(a, (BuildImage, BuildTrained))]
            found = {tag: digest for tag in wanted if (digest := self.images.confirm(tag)) is not None}
            if not found:
                break
            snap = replace(snap, images={**snap.images, **found})
            plan = self.plan(obj, state, snap, facts, body)
        return plan

    def plan(self, obj: Resource, state: states.AnyState, snap: Snapshot, facts: Facts, body: dict[str, Any]) -> Plan:
        """The controller core's planner for the kind, with its references as their status shows them."""
        ns, previous = obj.namespace, Status.model_validate(body.get("status") or {}).progress
        if isinstance(obj, Dataset):
            assert isinstance(state, states.DatasetState)
            return plan_dataset(obj, state, snap, facts, previous)
        if isinstance(obj, Model):
            assert isinstance(state, states.ModelState)
            base = self.dep("Model", ns, obj.spec.source.model_name) if obj.spec.source.model_name else None
            training = obj.spec.training
            dataset = self.dep("Dataset", ns, training.dataset_name) if training else None
            return plan_model(obj, state, snap, facts, base, dataset, previous)
        if isinstance(obj, ModelServer):
            assert isinstance(state, states.ServerState)
            return plan_server(obj, state, snap, facts, self.dep("Model", ns, obj.spec.model_name))
        assert isinstance(obj, Notebook) and isinstance(state, states.NotebookState)
        target = (self.dep("Model", ns, obj.spec.model_name) if obj.spec.model_name
                  else self.dep("Dataset", ns, obj.spec.dataset_name or ""))
        return plan_notebook(obj, state, snap, facts, target)

    def dep(self, kind: str, namespace: str, name: str) -> Dep:
        """A referenced object as its published status shows it."""
        body = self.get(ObjectKey(kind, namespace, name))
        if body is None or deleting(body):
            return Dep(exists=False)
        status = Status.model_validate(body.get("status") or {})
        compute = tuple(((body.get("spec") or {}).get("compute") or {}).get("types") or ("CPU",))
        return Dep(exists=True, current=status.observed_generation == meta(body).get("generation"), status=status,
                   compute_types=compute)

    # -- writing -----------------------------------------------------------------------------------
    def write(self, key: ObjectKey, body: dict[str, Any], trigger: str, state: states.AnyState, source_error: str,
              status: dict[str, Any], acting: bool = False) -> bool:
        """Status and state, unless the object changed since `body` was read. False on such a conflict.

        `acting`: the plan has actions, so the object is read again even when nothing is to be written.
        An action that finished after `body` was read has its outcome in the state by now (a contract
        check's verdict, say): the pass plans again instead of running the action a second time."""
        old = body.get("status") or {}
        text, _ = records.encode(trigger, state, source_error)
        if annotations_of(body).get(STATE) == text and status in (old, self._written.get(key)) and not acting:
            return True  # nothing to write nor to do (most passes): no need to read the object again
        with self.lock(key):
            fresh = self.get(key)
            if fresh is None or deleting(fresh) or meta(fresh).get("generation") != meta(body).get("generation") \
                    or annotations_of(fresh).get(STATE) != annotations_of(body).get(STATE) \
                    or apply_trigger(fresh) != trigger:
                return False
            self.save_state(key, fresh, trigger, state, source_error)
            old = fresh.get("status") or {}
            if status != old and status != self._written.get(key):
                kind, ns, name = key
                self.api.patch(CR_VERSION, kind, name, {"status": merge_patch(old, status)}, ns, subresource="status")
                self._written[key] = status
        return True

    def save_state(self, key: ObjectKey, fresh: dict[str, Any], trigger: str, state: states.AnyState,
                   source_error: str) -> None:
        """The state annotation (and the token's Secret); the caller holds the object's lock."""
        kind, ns, name = key
        text, token = records.encode(trigger, state, source_error)
        if token and token != self.read_token_of(kind, ns, name):
            owner = Owner(CR_VERSION, kind, name, meta(fresh)["uid"])
            self.api.apply(records.token_secret(kind, name, ns, token, owner))
        if annotations_of(fresh).get(STATE) != text:
            self.api.patch(CR_VERSION, kind, name, {"metadata": {"annotations": {STATE: text}}}, ns)

    def read_token(self, obj: Resource) -> Optional[str]:
        return self.read_token_of(obj.kind, obj.namespace, obj.name)

    def read_token_of(self, kind: str, namespace: str, name: str) -> Optional[str]:
        secret = self.api.get("v1", "Secret", records.token_secret_name(kind, name), namespace)
        return records.token_from_secret(secret)

    def on_outcomes(self, key: ObjectKey, outcomes: list[Outcome]) -> None:
        """An action finished: fold its outcomes into the object's state, then look at it again."""
        if outcomes:
            with self.lock(key):
                body = self.get(key)
                if body is not None and not deleting(body):
                    stored = records.Stored.read(body)
                    token = self.read_token_of(*key) if stored.has_token else None
                    state = records.decode(key[0], stored, token)
                    for outcome in outcomes:
                        state = apply_outcome(state, outcome)
                    self.save_state(key, body, stored.trigger, state, stored.source_error)
        self.wake(key)

    # -- deletion ----------------------------------------------------------------------------------
    def finalize(self, key: ObjectKey) -> int:
        """Remove what the object runs and its artifacts; returns how many containers are still there."""
        containers = self.observer.containers(key)
        for name in containers:
            log.info("removing %s (%s/%s/%s deleted)", name, *key)
            self.runtime.remove(name)
        left = len(self.observer.containers(key))
        if left:
            self.deleting_status(key, left)
            return left
        self.remove_artifacts(key)
        self._written.pop(key, None)
        return 0

    def remove_artifacts(self, key: ObjectKey) -> None:
        """Its runs, logs and loaded data go with it; a store that cannot be reached does not hold the
        deletion up (the object would never go): what is left is named in the log."""
        if self.store is None:
            return
        where = self.layout.object_dir(*key)
        try:
            self.store.remove(where)
        except ArtifactError as err:
            log.warning("%s/%s/%s deleted, but its artifacts at %s stay: %s", *key,
                        self.layout.artifact_url(where), err)

    def deleting_status(self, key: ObjectKey, left: int) -> None:
        body = self.get(key)
        if body is None:
            return
        plan = Plan(state=states.load(key[0], {}), reason=Reason.DELETING,
                    message=f"being deleted; {left} container(s) still going away")
        status = build_status(generation_of(body), body.get("status") or {}, plan, utcnow())
        old = body.get("status") or {}
        self.api.patch(CR_VERSION, key[0], key[2], {"status": merge_patch(old, {**old, **status})}, key[1],
                       subresource="status")


def publish_cluster_urls(plan: Plan, obj: Resource) -> None:
    """A server's or notebook's URL is its Service's inside the cluster (not a host port); the
    notebook's token is not published in status on a cluster (it stays in its Secret)."""
    if obj.kind not in ROLES or not plan.published.url:
        return
    local = plan.published.url.split("/?", 1)[0]
    url = service_url(obj.kind, obj.namespace, obj.name)
    plan.published.url = url
    plan.message = plan.message.replace(local, url)
    plan.conditions = [c.model_copy(update={"message": c.message.replace(local, url)}) for c in plan.conditions]
