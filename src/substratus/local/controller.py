"""The local controller, put together as controller-runtime's manager puts a controller together.

    queue       keys of objects to look at (`reconcile.queue`): de-duplicated, never two workers on
                one key, `requeue_after` honoured, failures retried with capped exponential backoff
    workers     threads taking keys and running one level-based pass each (`reconcile.workers`)
    reconciler  that pass: read, observe, plan through the shared core, write, act (`local.reconciler`)
    sources     what queues keys besides the API: the engine's events, the store's events through
                the dependency index (a Dataset that became ready wakes the Models trained on it),
                the executor's reports (a build finished), the resync and GC timers (`local.sources`)

An exception in one pass is retried with capped exponential backoff and never touches another
object. A failure that retrying will not fix is recorded in the object's state by the executor
and reported until the spec changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

from substratus.local import gc
from substratus.local.executor import Executor
from substratus.local.ledger import BuiltImages
from substratus.local.metrics import Metrics
from substratus.local.observe import Observer, Prober
from substratus.local.outputs import OutputLimits
from substratus.local.probes import http_probe
from substratus.local.reconciler import LocalReconciler
from substratus.local.sources import EngineSource, StoreSource, every
from substratus.local.store import Record, Store
from substratus.reconcile import state as states
from substratus.reconcile.index import DependencyIndex
from substratus.reconcile.layout import Layout
from substratus.reconcile.outcomes import Outcome, apply_outcome
from substratus.reconcile.plan import Facts
from substratus.reconcile.queue import WorkQueue
from substratus.reconcile.status import utcnow
from substratus.reconcile.workers import Workers
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.base import EngineEvent, Runtime

log = logging.getLogger("substratus.controller")
RESYNC_PERIOD = 300.0
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
        self.reconciler = LocalReconciler(store, self.observer, self.executor, layout,
                                          Facts(layout=layout, instance=layout.instance, ready_timeout=ready_timeout),
                                          clock=clock)
        self.workers = Workers(self.queue, self.reconciler.reconcile, before=self._before_first_list,
                               record=lambda key, result, seconds: self.metrics.reconciled(key[0], result, seconds))
        self.worker_count = workers
        self.keep_runs, self.gc_period = keep_runs, gc_period
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.index = DependencyIndex()
        self.engine = EngineSource(runtime, self.observer, store, self.queue, self._stop)
        StoreSource(store, self.queue, self.index)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt what runs, queue every object, and start the workers and the engine watch. The engine
        calls happen in the background, so the API answers at once (`sub` waits on it)."""
        self._spawn(self._bootstrap, "bootstrap")

    def _bootstrap(self) -> None:
        try:
            self.reconciler.facts = replace(self.reconciler.facts, gpu=self.runtime.gpu_available())
        except Exception as err:  # noqa: BLE001 - the engine is down: no GPU for now
            log.warning("could not ask the engine about GPUs: %s", err)
        # The watch subscribes to the engine's events, then lists what runs (queueing the owners): no
        # pass plans before the containers of this instance are known, and none is missed in between.
        # The workers start at once: while the engine lists, each asks about the images its first pass
        # will want (`_before_first_list`), side by side with the list.
        self._spawn(self.engine.run, "engine-events")
        self.queue.add_many(sorted(r.key for r in self.store.records()))
        self._threads += self.workers.start(self.worker_count)
        self._spawn(every(RESYNC_PERIOD, self.resync, self._stop, "resync"), "resync")
        if self.gc_period > 0:
            self._spawn(every(self.gc_period, self.collect_garbage, self._stop, "garbage collection"), "gc")

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.engine.close()
        self.executor.shutdown()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _before_first_list(self, key: ObjectKey) -> None:
        """Before the first list of containers is done: ask the engine about the images `key`'s pass will
        want, so that its answers are in the image cache when the pass plans (on a fresh start the list
        and these lookups take ~0.15 s each). Only once the event stream is open: answers from before it
        are forgotten. Any failure is left to the pass itself to meet and report."""
        if self.engine.listed.is_set():
            return
        self.engine.subscribed.wait()
        rec = self.store.get(*key)
        if rec is not None and not rec.deleting:
            try:
                self.observer.images.lookup(self.reconciler.wanted(rec)[3])
            except Exception as err:  # noqa: BLE001 - the pass asks again and reports
                log.debug("looking up the images of %s ahead of its pass: %s", key, err)
        self.engine.listed.wait()

    def process(self, key: ObjectKey) -> None:
        """One pass for `key`, with the queue's retry rules (also used by tests, synchronously)."""
        self.workers.process(key)

    def resync(self) -> None:
        self.queue.add_many([r.key for r in self.store.records()])

    # -- deletion ------------------------------------------------------------------------------------
    def delete(self, keys: list[ObjectKey]) -> dict[ObjectKey, list[str]]:
        """Mark objects for deletion (one write) and queue them; returns the containers to be removed."""
        doomed = {k: sorted(self.observer.containers.of(k)) for k in keys if self.store.get(*k) is not None}
        self.store.update_many(list(doomed), lambda r: replace(r, deleting=True), utcnow())
        self.queue.add_many(list(doomed))
        return doomed

    # -- wake-ups ------------------------------------------------------------------------------------
    def on_outcomes(self, key: ObjectKey, outcomes: list[Outcome]) -> None:
        """The executor's report: fold an action's outcomes into the object's state, then look again."""
        if outcomes:
            def change(rec: Record) -> Record:
                state = states.load(rec.kind, rec.state)
                for outcome in outcomes:
                    state = apply_outcome(state, outcome)
                return replace(rec, state=states.dump(state))

            self.store.update(key, change, utcnow())
            self.metrics.outcomes(outcomes)
        self.queue.add(key)

    def on_engine_event(self, event: EngineEvent) -> None:
        self.engine.on_event(event)

    def collect_garbage(self) -> gc.Garbage:
        containers = [c for owner in self.observer.containers.owners()
                      for c in self.observer.containers.of(owner).values()]
        return gc.collect(self.layout, self.runtime, self.store.records(), containers, self.keep_runs)
