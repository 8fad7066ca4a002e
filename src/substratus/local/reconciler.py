"""One level-based pass over one object of the local store: the local backend's Reconciler.

    read      the record (body, generation, typed state) from the store's memory
    observe   its containers, the images its pass will want, run markers, progress, probes (observe)
    plan      `reconcile.core.plan_for`, the planner both backends share, with the objects it
              refers to looked up in the store (`lookup`: their published status, never their spec)
    write     status and state, only if the object did not change meanwhile (else the pass simply
              runs again)
    act       the plan's actions, through the executor (podman or docker)

The workers (`reconcile.workers`) call `reconcile` for the keys the queue hands them; the
controller (`local.controller`) wires this up with the queue, the event sources and the executor.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

from substratus.local.executor import Executor
from substratus.local.observe import Observer
from substratus.local.store import Record, Store
from substratus.reconcile import state as states
from substratus.reconcile.actions import RemoveContainer
from substratus.reconcile.core import Lookup, Published, once_per_pass, plan_for, wanted_for
from substratus.reconcile.layout import Layout
from substratus.reconcile.plan import Facts
from substratus.reconcile.status import build_status, utcnow
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS, Resource
from substratus.resources.status import Status

log = logging.getLogger("substratus.controller")


class LocalReconciler:
    def __init__(self, store: Store, observer: Observer, executor: Executor, layout: Layout, facts: Facts, *,
                 clock: Callable[[], float]) -> None:
        self.store, self.observer, self.executor, self.layout, self.clock = store, observer, executor, layout, clock
        self.facts = facts  # the controller adds what it learns at start (a GPU)

    def lookup(self, key: ObjectKey) -> Optional[Published]:
        """A referenced object as the store has it: the local backend's `reconcile.core.Lookup`."""
        rec = self.store.get(*key)
        return None if rec is None else Published(rec.generation, rec.status, rec.deleting)

    def reconcile(self, key: ObjectKey) -> Optional[float]:
        """One pass; returns when to look again (None: when something changes)."""
        rec = self.store.get(*key)
        if rec is None:
            return self.remove_orphans(key)
        if rec.deleting:
            return self.finalize(rec)
        obj, state, lookup, wanted = self.wanted(rec)
        snap = self.observer.snapshot(key, self.clock(), self.executor.in_flight(key), wanted)
        snap = replace(snap, retrying=self.executor.retrying(key))
        plan = plan_for(obj, state, snap, self.facts, lookup, Status.model_validate(rec.status).progress)
        status = build_status(rec.generation, rec.status, plan, utcnow())
        new_state = states.dump(plan.state)
        conflict = False

        def write(fresh: Record) -> Optional[Record]:
            nonlocal conflict
            if fresh.generation != rec.generation or fresh.state != rec.state or fresh.deleting:
                conflict = True  # changed while we planned: plan again from what is there now
                return None
            return replace(fresh, status=status, state=new_state)

        self.store.update(key, write, utcnow())
        if conflict:
            return 0.0
        for action in plan.actions:
            log.debug("%s: %s -> %s", key, action.key, self.executor.submit(key, action))
        return plan.requeue_after

    def wanted(self, rec: Record) -> tuple[Resource, states.AnyState, Lookup, list[str]]:
        """The object, its state, the pass's view of what it refers to, and the images the pass may want."""
        obj = KINDS[rec.kind].model_validate(rec.body)
        state = states.load(rec.kind, rec.state)
        lookup = once_per_pass(self.lookup)
        return obj, state, lookup, wanted_for(obj, state, lookup)

    def finalize(self, rec: Record) -> Optional[float]:
        containers = self.observer.containers.of(rec.key)
        for name in containers:
            self.executor.submit(rec.key, RemoveContainer(name=name, reason="object deleted"))
        if containers or self.executor.in_flight(rec.key) & {f"remove:{n}" for n in containers}:
            return 1.0  # the remove events or the executor's report wake us sooner
        self.store.delete_many([rec.key])
        threading.Thread(target=shutil.rmtree, args=(self.layout.object_dir(*rec.key),),
                         kwargs={"ignore_errors": True}, daemon=True).start()
        return None

    def remove_orphans(self, key: ObjectKey) -> Optional[float]:
        """Containers whose object is gone (deleted while the control plane was down)."""
        for name in self.observer.containers.of(key):
            self.executor.submit(key, RemoveContainer(name=name, reason="its object no longer exists"))
        return None
