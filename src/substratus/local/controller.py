"""The controller: a work queue of object keys, reconciled level-based, one key at a time.

Keys come in from the API (apply, delete), from the engine's events (a
container started, died or went; an image vanished), from dependencies (a
Dataset that became ready wakes the Models trained on it), from the executor
(a build finished) and from plans (`requeue_after`: probe a starting server
again in 100 ms). Each pass re-reads the object and takes a snapshot of the
world, plans (pure), writes status and state if the object did not change
meanwhile (else it simply goes round again), then acts.

An exception in one pass is retried with capped exponential backoff and never
touches another object. A failure that retrying will not fix is recorded in
the object's state by the executor and reported until the spec changes.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

from substratus.build import naming
from substratus.local import gc
from substratus.local.executor import Executor
from substratus.local.ledger import BuiltImages
from substratus.local.metrics import Metrics
from substratus.local.observe import Observer, Prober
from substratus.local.outputs import OutputLimits
from substratus.local.probes import http_probe
from substratus.local.store import Event, Record, Store
from substratus.reconcile import state as states
from substratus.reconcile.actions import RemoveContainer
from substratus.reconcile.jobs import plan_dataset, plan_model, wanted_images
from substratus.reconcile.layout import Layout
from substratus.reconcile.outcomes import Outcome, apply_outcome
from substratus.reconcile.plan import Dep, Facts, Plan, Snapshot
from substratus.reconcile.queue import WorkQueue
from substratus.reconcile.status import build_status, reason_of, utcnow
from substratus.reconcile.workloads import plan_notebook, plan_server
from substratus.resources.objectkey import ObjectKey
from substratus.resources.references import references
from substratus.resources.schema import KINDS, Dataset, Model, ModelServer, Notebook, Resource
from substratus.resources.status import Status
from substratus.runtimes.base import EngineEvent, EventStream, Runtime

log = logging.getLogger("substratus.controller")
RESYNC_PERIOD = 300.0
ENGINE_RETRY = 2.0
GC_PERIOD = 600.0




class Controller:
    def __init__(self, store: Store, runtime: Runtime, layout: Layout, *,
                 clock: Callable[[], float] = time.time, prober: Prober = http_probe,
                 ready_timeout: float = 600.0, workers: int = 4, executor_workers: int = 4, build_workers: int = 1,
                 keep_runs: int = 2, gc_period: float = GC_PERIOD,
                 port_finder: Optional[Callable[[], int]] = None,
                 token_maker: Optional[Callable[[], str]] = None,
                 output_limits: Optional[OutputLimits] = None) -> None:
        self.store, self.runtime, self.layout, self.clock = store, runtime, layout, clock
        self.observer = Observer(runtime, layout, prober)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(clock=clock)
        self.metrics = Metrics()
        extra = {k: v for k, v in (("port_finder", port_finder), ("token_maker", token_maker),
                                   ("output_limits", output_limits)) if v is not None}
        self.executor = Executor(runtime, self.observer.containers, self.observer.images, self.on_outcomes,
                                 workers=executor_workers, build_workers=build_workers, clock=clock,
                                 built=BuiltImages(layout.built_images), **extra)  # type: ignore[arg-type]
        self.facts = Facts(layout=layout, instance=layout.instance, ready_timeout=ready_timeout)
        self.workers = workers
        self.keep_runs, self.gc_period = keep_runs, gc_period
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dependents: dict[ObjectKey, set[ObjectKey]] = defaultdict(set)  # referenced object -> objects referencing it
        self._published: dict[ObjectKey, tuple[object, ...]] = {}
        self._events: Optional[EventStream] = None
        self._subscribed = threading.Event()  # the engine's event stream is open (or failed to open)
        self._listed = threading.Event()  # the first list of the engine's containers is done (or failed)
        for rec in store.records():
            self._index(rec)
        store.subscribe(self.on_store_event)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt what runs, queue every object, and start the workers and the engine watch. The engine
        calls happen in the background, so the API answers at once (`sub` waits on it)."""
        self._spawn(self._bootstrap, "bootstrap")

    def _bootstrap(self) -> None:
        try:
            self.facts = replace(self.facts, gpu=self.runtime.gpu_available())
        except Exception as err:  # noqa: BLE001 - the engine is down: no GPU for now
            log.warning("could not ask the engine about GPUs: %s", err)
        # The watch subscribes to the engine's events, then lists what runs (queueing the owners): no
        # pass plans before the containers of this instance are known, and none is missed in between.
        # The workers start at once: while the engine lists, each asks about the images its first pass
        # will want (`_work`), side by side with the list.
        self._spawn(self._watch_engine, "engine-events")
        self.queue.add_many(sorted(r.key for r in self.store.records()))
        for i in range(self.workers):
            self._spawn(self._work, f"reconcile-{i}")
        self._spawn(self._resync, "resync")
        if self.gc_period > 0:
            self._spawn(self._collect_garbage, "gc")

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        if self._events is not None:
            self._events.close()
        self.executor.shutdown()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()
            if key is None:
                return
            try:
                if not self._listed.is_set():
                    self._ask_about_images(key)
                    self._listed.wait()
                self.process(key)
            finally:
                self.queue.done(key)

    def _ask_about_images(self, key: ObjectKey) -> None:
        """Before the first list of containers is done: ask the engine about the images `key`'s pass will
        want, so that its answers are in the image cache when the pass plans (on a fresh start the list
        and these lookups take ~0.15 s each). Only once the event stream is open: answers from before it
        are forgotten. Any failure is left to the pass itself to meet and report."""
        self._subscribed.wait()
        rec = self.store.get(*key)
        if rec is None or rec.deleting:
            return
        try:
            self.observer.images.lookup(self.wanted(rec)[3])
        except Exception as err:  # noqa: BLE001 - the pass asks again and reports
            log.debug("looking up the images of %s/%s/%s ahead of its pass: %s", *key, err)

    def process(self, key: ObjectKey) -> None:
        """One pass for `key`, with the queue's retry rules (also used by tests, synchronously)."""
        started = time.perf_counter()
        try:
            requeue = self.reconcile(key)
        except Exception as err:  # noqa: BLE001 - one object's failure never stops the others
            delay = self.queue.add_rate_limited(key)
            log.warning("reconciling %s/%s/%s failed (retry in %.1fs): %s", *key, delay, err,
                        exc_info=not isinstance(err, OSError))
            self.metrics.reconciled(key[0], "error", time.perf_counter() - started)
            return
        self.queue.forget(key)
        self.metrics.reconciled(key[0], "ok", time.perf_counter() - started)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    # -- one pass ----------------------------------------------------------------------------------
    def reconcile(self, key: ObjectKey) -> Optional[float]:
        rec = self.store.get(*key)
        if rec is None:
            return self.remove_orphans(key)
        if rec.deleting:
            return self.finalize(rec)
        obj, state, deps, wanted = self.wanted(rec)
        snap = self.observer.snapshot(key, self.clock(), self.executor.in_flight(key), wanted)
        snap = replace(snap, retrying=self.executor.retrying(key))
        plan = self.plan(obj, state, snap, Status.model_validate(rec.status), deps)
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
            log.debug("%s/%s/%s: %s -> %s", *key, action.key, self.executor.submit(key, action))
        return plan.requeue_after

    def wanted(self, rec: Record) -> tuple[Resource, states.AnyState, dict[str, Dep], list[str]]:
        """The object, its state, what it depends on, and the images its pass may look for."""
        obj = KINDS[rec.kind].model_validate(rec.body)
        state = states.load(rec.kind, rec.state)
        deps = self.deps(obj)
        return obj, state, deps, wanted_images(obj, state, deps.get("base"), deps.get("dataset"))

    def deps(self, obj: Resource) -> dict[str, Dep]:
        """The objects `obj` refers to, as their published status shows them."""
        ns = obj.namespace
        if isinstance(obj, Model):
            out = {}
            if obj.spec.source.model_name:
                out["base"] = self.dep("Model", ns, obj.spec.source.model_name)
            if obj.spec.training:
                out["dataset"] = self.dep("Dataset", ns, obj.spec.training.dataset_name)
            return out
        if isinstance(obj, ModelServer):
            return {"model": self.dep("Model", ns, obj.spec.model_name)}
        if isinstance(obj, Notebook):
            return {"target": self.dep("Model", ns, obj.spec.model_name) if obj.spec.model_name
                    else self.dep("Dataset", ns, obj.spec.dataset_name or "")}
        return {}

    def plan(self, obj: Resource, state: states.AnyState, snap: Snapshot, status: Status,
             deps: dict[str, Dep]) -> Plan:
        previous = status.progress
        if isinstance(obj, Dataset):
            assert isinstance(state, states.DatasetState)
            return plan_dataset(obj, state, snap, self.facts, previous)
        if isinstance(obj, Model):
            assert isinstance(state, states.ModelState)
            return plan_model(obj, state, snap, self.facts, deps.get("base"), deps.get("dataset"), previous)
        if isinstance(obj, ModelServer):
            assert isinstance(state, states.ServerState)
            return plan_server(obj, state, snap, self.facts, deps["model"])
        assert isinstance(obj, Notebook) and isinstance(state, states.NotebookState)
        return plan_notebook(obj, state, snap, self.facts, deps["target"])

    def dep(self, kind: str, namespace: str, name: str) -> Dep:
        rec = self.store.get(kind, namespace, name)
        if rec is None or rec.deleting:
            return Dep(exists=False)
        status = Status.model_validate(rec.status)
        compute = tuple(rec.body.get("spec", {}).get("compute", {}).get("types") or ("CPU",))
        return Dep(exists=True, current=status.observed_generation == rec.generation, status=status,
                   compute_types=compute)

    # -- deletion ------------------------------------------------------------------------------------
    def delete(self, keys: list[ObjectKey]) -> dict[ObjectKey, list[str]]:
        """Mark objects for deletion (one write) and queue them; returns the containers to be removed."""
        doomed = {k: sorted(self.observer.containers.of(k)) for k in keys if self.store.get(*k) is not None}
        self.store.update_many(list(doomed), lambda r: replace(r, deleting=True), utcnow())
        self.queue.add_many(list(doomed))
        return doomed

    def finalize(self, rec: Record) -> Optional[float]:
        containers = self.observer.containers.of(rec.key)
        for name in containers:
            self.executor.submit(rec.key, RemoveContainer(name=name, reason="object deleted"))
        if containers or self.executor.in_flight(rec.key) & {f"remove:{n}" for n in containers}:
            return 1.0  # the remove events or the executor's report wake us sooner
        self.store.delete_many([rec.key])
        self.queue.forget(rec.key)
        threading.Thread(target=shutil.rmtree, args=(self.layout.object_dir(*rec.key),),
                         kwargs={"ignore_errors": True}, daemon=True).start()
        return None

    def remove_orphans(self, key: ObjectKey) -> Optional[float]:
        """Containers whose object is gone (deleted while the control plane was down)."""
        for name in self.observer.containers.of(key):
            self.executor.submit(key, RemoveContainer(name=name, reason="its object no longer exists"))
        return None

    # -- wake-ups ------------------------------------------------------------------------------------
    def on_outcomes(self, key: ObjectKey, outcomes: list[Outcome]) -> None:
        if outcomes:
            def change(rec: Record) -> Record:
                state = states.load(rec.kind, rec.state)
                for outcome in outcomes:
                    state = apply_outcome(state, outcome)
                return replace(rec, state=states.dump(state))

            self.store.update(key, change, utcnow())
            self.metrics.outcomes(outcomes)
        self.queue.add(key)

    def on_store_event(self, event: Event) -> None:
        """Keep the reference index; wake the dependents of an object whose published status changed."""
        rec = event.record
        self._index(rec, deleted=event.type == "DELETED")
        st = rec.status
        published = (st.get("ready"), st.get("containerImage"), st.get("url"), st.get("digest"),
                     st.get("observedGeneration"), reason_of(st), event.type == "DELETED" or rec.deleting)
        if self._published.get(rec.key) != published:
            self._published[rec.key] = published
            if event.type == "DELETED":
                self._published.pop(rec.key, None)
            self.queue.add_many(sorted(self._dependents.get(rec.key, ())))

    def _index(self, rec: Record, deleted: bool = False) -> None:
        for deps in self._dependents.values():
            deps.discard(rec.key)
        if not deleted:
            for target in references(rec.kind, rec.namespace, rec.body.get("spec", {})):
                self._dependents[target].add(rec.key)

    def _watch_engine(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._events = self.runtime.events(self.observer.containers.selector)
                self.observer.images.invalidate()  # what changed while no stream was open is not known
                self._subscribed.set()
                self.queue.add_many(sorted(self.observer.containers.relist()))
                self._listed.set()
                for event in events:
                    self.on_engine_event(event)
            except Exception as err:  # noqa: BLE001 - the engine went away: reconnect and relist
                log.warning("engine event stream failed: %s", err)
                self._subscribed.set()
                self._listed.set()  # start the workers anyway: their passes retry until the engine is back
            self._stop.wait(ENGINE_RETRY)

    def on_engine_event(self, event: EngineEvent) -> None:
        log.debug("engine event %s %s %s", event.type, event.action, event.name)
        if event.type == "container":
            owner = self.observer.containers.on_event(event)
            if owner is not None:
                self.queue.add(owner)
            return
        if event.type == "image" and event.action not in ("pull", "push", "save", "mount", "unmount", "exists"):
            if self.observer.images.on_event(event.action, event.name):  # images may have gone: users look again
                self.queue.add_many(self.users_of_image(event.name))

    def users_of_image(self, ref: str) -> list[ObjectKey]:
        """Objects that publish `ref`; every object when a base image or a bare id went."""
        records = self.store.records()
        if not ref.startswith(naming.IMAGE_REPO + "/"):
            return [r.key for r in records]
        return [r.key for r in records if r.status.get("containerImage") == ref]

    def _resync(self) -> None:
        while not self._stop.wait(RESYNC_PERIOD):
            self.queue.add_many([r.key for r in self.store.records()])

    def _collect_garbage(self) -> None:
        while not self._stop.wait(self.gc_period):
            try:
                self.collect_garbage()
            except Exception as err:  # noqa: BLE001 - garbage collection must never stop the controller
                log.warning("garbage collection failed: %s", err)

    def collect_garbage(self) -> gc.Garbage:
        containers = [c for owner in self.observer.containers.owners()
                      for c in self.observer.containers.of(owner).values()]
        return gc.collect(self.layout, self.runtime, self.store.records(), containers, self.keep_runs)
