"""One level-based pass over one custom resource: the operator's Reconciler, the local one's twin.

    read      the resource; its typed state from the `substratus.ai/state` annotation (records);
              applied again (a new generation, or `sub apply` re-annotated it)? then resolve the
              source afresh and forget failures, as a re-apply does locally
    observe   its Jobs, Deployments and Pods, the registry, the artifact store (observe)
    plan      `reconcile.core.plan_for`, the function the local controller calls, with the objects
              it refers to read from the API server (`lookup`: their published status) and Facts
              saying that the platform probes, restarts and rolls workloads itself and that URLs
              are the Services' (`ServiceUrls`)
    write     status (`build_status`: the local conditions and reasons) and the state, only if
              the object did not change meanwhile (else the pass simply runs again)
    act       the plan's actions, through the Kubernetes runtime (executor)

What differs from local is what a cluster makes different: readiness is the pod's Ready
condition; a server's URL is its Service's; a tag the planners want to build is first looked
up in the registry (it may have been pushed while the operator was down). The manager's
workers (kube.manager) call `reconcile` for the keys its queue hands out; `echo` tells it
which watch events only bring this operator's own writes back. Built from an API and a
runtime alone (workers=0: no threads), as the unit tests build it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
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
from substratus.reconcile.core import Lookup, Published, once_per_pass, plan_for
from substratus.reconcile.layout import Layout
from substratus.reconcile.outcomes import Outcome, apply_outcome
from substratus.reconcile.plan import Facts, Plan, Snapshot, Urls
from substratus.reconcile.status import build_status, utcnow
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS, Resource
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


View = tuple[Any, ...]


def view(body: dict[str, Any], state_text: Optional[str], status: Mapping[str, Any]) -> View:
    """What a pass plans from, and what it writes: equal views need no second pass."""
    m = meta(body)
    return (m.get("generation"), apply_trigger(body), dict(m.get("labels") or {}), deleting(body), state_text,
            dict(status))


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


class ServiceUrls(Urls):
    """On a cluster a server or notebook answers at its Service, inside the cluster (not at a host
    port); a notebook's token stays in its Secret, never in status."""

    def server(self, key: ObjectKey, host: str, port: int) -> str:
        return service_url(key.kind, key.namespace, key.name)

    def notebook(self, key: ObjectKey, port: int, token: str) -> str:
        return service_url(key.kind, key.namespace, key.name)


def cluster_facts(layout: ArtifactLayout, ready_timeout: float, gpu: bool) -> Facts:
    """What holds on a cluster: keys in the artifact store for paths (the planners only do path
    arithmetic on the layout, which store keys support); readiness from the kubelet, which
    already applies its probe's failure threshold (so one not-ready report is NotReady) and
    restarts what crashes (so the operator never restarts a silent server itself); URLs are
    the Services'."""
    return Facts(layout=cast(Layout, layout), instance="", gpu=gpu, ready_timeout=ready_timeout,
                 failure_threshold=1, liveness_timeout=math.inf, platform_restarts=True, urls=ServiceUrls())


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
        self._seen: dict[ObjectKey, tuple[View, ...]] = {}  # what the last pass read and wrote (see `echo`)
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
        self._seen[key] = (view(body, annotations_of(body).get(STATE), body.get("status") or {}),)  # being planned
        obj = parse(key[0], body)
        stored = records.Stored.read(body)
        state, source_error = self.current_state(obj, body, stored)
        if source_error and isinstance(state, states.BuildState) and state.source is None:
            plan = Plan(state=state).wait("Built", Reason.SOURCE_FAILED, source_error)  # nothing to observe
        else:
            snap = self.observer.snapshot(key, self.clock(), self.executor.in_flight(key))
            snap = replace(snap, retrying=self.executor.retrying(key))
            plan = self.confirmed(obj, state, snap, self.facts(), body, once_per_pass(self.lookup))
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
                  body: dict[str, Any], lookup: Lookup) -> Plan:
        """The plan, after asking the registry about tags it wants to build (pushed before we knew)."""
        previous = Status.model_validate(body.get("status") or {}).progress
        plan = plan_for(obj, state, snap, facts, lookup, previous)
        for _ in range(3):
            wanted = [a.tag for a in plan.actions if isinstance(a, (BuildImage, BuildTrained))]
            found = {tag: digest for tag in wanted if (digest := self.images.confirm(tag)) is not None}
            if not found:
                break
            snap = replace(snap, images={**snap.images, **found})
            plan = plan_for(obj, state, snap, facts, lookup, previous)
        return plan

    def lookup(self, key: ObjectKey) -> Optional[Published]:
        """A referenced object as the API server has it: the operator's `reconcile.core.Lookup`."""
        body = self.get(key)
        if body is None:
            return None
        return Published(generation_of(body), body.get("status") or {}, deleting(body))

    # -- writing -----------------------------------------------------------------------------------
    def write(self, key: ObjectKey, body: dict[str, Any], trigger: str, state: states.AnyState, source_error: str,
              status: dict[str, Any], acting: bool = False) -> bool:
        """Status and state, unless the object changed since `body` was read. False on such a conflict.

        `acting`: the plan has actions, so the object is read again even when nothing is to be written.
        An action that finished after `body` was read has its outcome in the state by now (a contract
        check's verdict, say): the pass plans again instead of running the action a second time."""
        old = body.get("status") or {}
        text, _ = records.encode(trigger, state, source_error)
        read = view(body, annotations_of(body).get(STATE), old)
        if annotations_of(body).get(STATE) == text and status in (old, self._written.get(key)) and not acting:
            self._seen[key] = (read, view(body, text, status))
            return True  # nothing to write nor to do (most passes): no need to read the object again
        with self.lock(key):
            fresh = self.get(key)
            if fresh is None or deleting(fresh) or meta(fresh).get("generation") != meta(body).get("generation") \
                    or annotations_of(fresh).get(STATE) != annotations_of(body).get(STATE) \
                    or apply_trigger(fresh) != trigger:
                return False
            old = fresh.get("status") or {}
            # what the pass planned from, and the object after each of its two writes (state, then status),
            # known before the writes: their watch events may come back before the second is done
            self._seen[key] = (read, view(fresh, annotations_of(fresh).get(STATE), old), view(fresh, text, old),
                               view(fresh, text, status))
            self.save_state(key, fresh, trigger, state, source_error)
            if status != old and status != self._written.get(key):
                kind, ns, name = key
                self.api.patch(CR_VERSION, kind, name, {"status": merge_patch(old, status)}, ns, subresource="status")
                self._written[key] = status
        return True

    def echo(self, key: ObjectKey, body: Mapping[str, Any]) -> bool:
        """Whether a watch event of `key` shows only what this operator's last pass planned from or wrote
        (its own state and status coming back, one write after the other; kopf's finalizer and its own
        annotations added meanwhile): then no pass is needed. A change a pass plans from (spec,
        `sub apply`'s annotations, labels, deletion, a state an action's outcome changed) is no echo."""
        shown = view(dict(body), annotations_of(dict(body)).get(STATE), body.get("status") or {})
        return shown in self._seen.get(key, ())

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
        self._seen.pop(key, None)
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

