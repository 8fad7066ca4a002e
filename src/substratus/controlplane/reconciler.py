"""The reconcile loop: observe the world, plan (pure), apply, write status.

Level-based: every pass re-reads the store and the engine, so a restart of
the control plane, or a container that vanished, is simply planned for again.
Containers are found by their labels (the engine is the source of truth).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from substratus.build import naming
from substratus.controlplane import plan as planner
from substratus.controlplane.executor import Executor
from substratus.controlplane.layout import Layout
from substratus.controlplane.probes import free_port, http_ok
from substratus.controlplane.store import Record, Store
from substratus.errors import SubstratusError
from substratus.resources.kinds import KIND_ORDER
from substratus.resources.schema import KINDS, Dataset, Model, ModelServer, Notebook, Resource
from substratus.runtimes.base import MANAGED, ContainerState, Runtime

log = logging.getLogger("substratus.reconciler")


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ImageCache:
    """`tag in images` asks the engine once; positive answers are kept (tags are content names)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.known: set[str] = set()

    def __contains__(self, tag: object) -> bool:
        if not isinstance(tag, str):
            return False
        if tag not in self.known and self.runtime.image_info(tag) is not None:
            self.known.add(tag)
        return tag in self.known


class Markers:
    def __contains__(self, run_dir: object) -> bool:
        return isinstance(run_dir, Path) and (run_dir / ".succeeded").is_file()


def merge_memo(memo: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(memo)
    for k, v in patch.items():
        if k == "failed":
            out["failed"] = {**(out.get("failed") or {}), **v}
        elif k == "verified+":
            out["verified"] = sorted(set(out.get("verified") or []) | {v})
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


class Reconciler:
    def __init__(self, store: Store, runtime: Runtime, layout: Layout, *,
                 clock: Callable[[], float] = time.time, probe: Callable[[str], bool] = http_ok,
                 port_finder: Callable[[], int] = free_port, ready_timeout: float = 600.0,
                 executor: Optional[Executor] = None) -> None:
        self.store, self.runtime, self.layout = store, runtime, layout
        self.clock, self.probe, self.port_finder = clock, probe, port_finder
        self.ready_timeout = ready_timeout
        self.wake = threading.Event()
        self.executor = executor or Executor(runtime, on_done=self.wake.set)
        self.images = ImageCache(runtime)
        # One lock per object: a pass acting on it and a delete of it never interleave
        # (else a pass that read the object before the delete could start a container after it).
        self._locks: dict[tuple[str, str, str], threading.RLock] = defaultdict(threading.RLock)
        self._gpu: Optional[bool] = None

    # -- loop --------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.reconcile_all()
            except Exception:  # noqa: BLE001 - the loop must survive anything one pass hits
                log.exception("reconcile pass failed")
            self.wake.wait(interval)
            self.wake.clear()

    def reconcile_all(self) -> None:
        by_owner: dict[tuple[str, str, str], dict[str, ContainerState]] = defaultdict(dict)
        for c in self.runtime.containers({MANAGED: "true", naming.label("instance"): self.layout.instance}):
            owner = (c.labels.get(naming.label("kind"), ""), c.labels.get(naming.label("namespace"), ""),
                     c.labels.get(naming.label("name"), ""))
            by_owner[owner][c.name] = c
        records = sorted(self.store.records(), key=lambda r: KIND_ORDER.index(r.kind))
        for rec in records:
            try:
                self.reconcile(rec, by_owner.get(rec.key, {}))
            except SubstratusError as err:
                log.warning("reconciling %s/%s/%s: %s", *rec.key, err)

    # -- one object -----------------------------------------------------------------------------
    def reconcile(self, rec: Record, containers: dict[str, ContainerState]) -> planner.Plan:
        obj = KINDS[rec.kind].model_validate(rec.body)
        world = self.observe(containers)
        plan = self.make_plan(obj, rec, world)
        key = rec.key

        def patch(p: dict[str, Any]) -> None:
            self.patch_memo(key, p)

        with self.lock(key):
            if self.store.get(*key) is None:  # deleted while we were planning
                return plan
            for action in plan.actions:
                self.executor.submit(action, patch)
            self.write_status(rec, plan)
        return plan

    def lock(self, key: tuple[str, str, str]) -> threading.RLock:
        return self._locks[key]

    def observe(self, containers: dict[str, ContainerState]) -> planner.World:
        probes: dict[str, bool] = {}
        tails: dict[str, str] = {}
        for name, c in containers.items():
            role = c.labels.get(naming.label("role"))
            port = c.ports.get(planner.SERVER_PORT if role == "server" else planner.NOTEBOOK_PORT)
            if role in ("server", "notebook") and c.running and port:
                path = "/docs" if role == "server" else "/"
                probes[name] = self.probe(f"http://127.0.0.1:{port}{path}")
            if role in ("server", "notebook") and not probes.get(name):
                tails[name] = "\n".join(self.runtime.logs(name, tail=15))
        if self._gpu is None:
            self._gpu = self.runtime.gpu_available()
        return planner.World(now=self.clock(), images=self.images, containers=containers,
                             in_flight=self.executor.in_flight(), succeeded=Markers(), probes=probes,
                             log_tails=tails, gpu=self._gpu, free_port=self.port_finder(),
                             ready_timeout=self.ready_timeout, instance=self.layout.instance)

    def dep(self, kind: str, namespace: str, name: str) -> planner.Dep:
        rec = self.store.get(kind, namespace, name)
        if rec is None:
            return planner.Dep(exists=False)
        ready = rec.status.get("ready", False) and rec.status.get("observedGeneration") == rec.generation
        reason = next((c["reason"] for c in rec.status.get("conditions", []) if c["type"] == "Ready"), "")
        message = next((c.get("message", "") for c in rec.status.get("conditions", []) if c["type"] == "Ready"), "")
        return planner.Dep(exists=True, ready=bool(ready), reason=reason, message=message,
                           container_image=rec.status.get("containerImage"), memo=rec.memo,
                           spec=rec.body.get("spec", {}))

    def make_plan(self, obj: Resource, rec: Record, world: planner.World) -> planner.Plan:
        ns = obj.namespace
        if isinstance(obj, Dataset):
            return planner.plan_dataset(obj, rec.memo, world, self.layout)
        if isinstance(obj, Model):
            base = self.dep("Model", ns, obj.spec.source.model_name) if obj.spec.source.model_name else None
            training = obj.spec.training
            ds = self.dep("Dataset", ns, training.dataset_name) if training else None
            return planner.plan_model(obj, rec.memo, world, self.layout, base, ds)
        if isinstance(obj, ModelServer):
            return planner.plan_server(obj, rec.memo, world, self.dep("Model", ns, obj.spec.model_name), self.layout)
        assert isinstance(obj, Notebook)
        target = (self.dep("Model", ns, obj.spec.model_name) if obj.spec.model_name
                  else self.dep("Dataset", ns, obj.spec.dataset_name or ""))
        if target.exists and obj.spec.dataset_name:
            target.container_image = (target.memo.get("current") or {}).get("image") if target.ready else None
        return planner.plan_notebook(obj, rec.memo, world, target, self.layout)

    # -- writing back -----------------------------------------------------------------------------
    def patch_memo(self, key: tuple[str, str, str], patch: dict[str, Any]) -> None:
        with self._locks[key]:
            rec = self.store.get(*key)
            if rec is not None:
                self.store.update_status(key, rec.generation, rec.status, merge_memo(rec.memo, patch), utcnow())
        self.wake.set()

    def write_status(self, rec: Record, plan: planner.Plan) -> None:
        now = utcnow()
        with self._locks[rec.key]:
            fresh = self.store.get(*rec.key)
            if fresh is None or fresh.generation != rec.generation:
                return
            status = build_status(fresh.status, plan, rec.generation, now)
            memo = merge_memo(fresh.memo, plan.memo)
            if status != fresh.status or memo != fresh.memo:
                self.store.update_status(rec.key, rec.generation, status, memo, now)


def build_status(old: dict[str, Any], plan: planner.Plan, generation: int, now: str) -> dict[str, Any]:
    """Status from a plan, keeping lastTransitionTime when a condition did not change."""
    previous = {c["type"]: c for c in old.get("conditions", [])}
    steps = list(plan.steps)
    if plan.ready:
        steps.append(planner.Step("Ready", "True", plan.reason, plan.message))
    else:
        ready_status = "False" if plan.reason in planner.FAILED_REASONS or plan.reason == "Suspended" else "Unknown"
        steps.append(planner.Step("Ready", ready_status, plan.reason or "Pending", plan.message))
    conditions = []
    for s in steps:
        prev = previous.get(s.type)
        same = prev is not None and (prev["status"], prev["reason"]) == (s.status, s.reason)
        conditions.append({"type": s.type, "status": s.status, "reason": s.reason, "message": s.message,
                           "lastTransitionTime": prev["lastTransitionTime"] if same and prev else now})
    status: dict[str, Any] = {"ready": plan.ready, "conditions": conditions, "observedGeneration": generation}
    if plan.url:
        status["url"] = plan.url
    if plan.container_image:
        status["containerImage"] = plan.container_image
    return status
