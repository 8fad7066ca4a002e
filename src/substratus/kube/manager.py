"""The operator's work queue: the local controller's queue semantics on a cluster.

A key is looked at when a watch event, a dependency or its own `requeue_after` says so, never
because time passed: no kopf daemon per object (each an asyncio task that wakes on its own and
polls the world, the sweep the local core left behind), but kopf's watch streams feeding one
`reconcile.queue.WorkQueue` that a few worker threads (`reconcile.workers`) take keys from.

    watch events   kopf's `on.event` for the four kinds (its initial list included, so every object
                   is queued at start-up) and for the Jobs, Deployments and Pods we made (their owner
                   is queued: a Job finished, a pod became ready)
    dependencies   the dependency index (`reconcile.index`): an object whose published status
                   changed queues the objects that refer to it
    requeue_after  what the plan asked (at least MIN_REQUEUE: readiness arrives as pod events)
    actions        a finished action's report queues its owner (`Reconciler.on_outcomes`)
    resync         every RESYNC seconds every known key, in case an event was missed (controller-
                   runtime's SyncPeriod, whose default is 10 hours; kopf re-lists on its own when a
                   watch breaks)

One key is never processed by two workers at once (the queue), so the passes over one object never
overlap; an exception is retried with capped exponential backoff (50 ms doubling to 60 s). Our own
status and state writes come back as watch events: those that only echo what this operator wrote
queue nothing (`Reconciler.echo`), so an object at rest costs nothing. kopf still runs the finalizer
(`kube.handlers`): deletion stays kopf's, as the Kubernetes tier checks it.

Built plainly, with no kopf: tests drive `on_object_event` and `process` themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional

from substratus.kube.reconciler import Reconciler, deleting, generation_of
from substratus.reconcile.index import DependencyIndex
from substratus.reconcile.queue import WorkQueue
from substratus.reconcile.workers import Workers
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS
from substratus.runtimes.base import LABEL_PREFIX

log = logging.getLogger("substratus.kube")
RESYNC = 36000.0          # every known key again after this long (controller-runtime's default SyncPeriod)
MIN_REQUEUE = 0.5         # readiness arrives as watch events: no need to poll faster than this
WORKERS = 4


def requeue_delay(requeue: Optional[float]) -> Optional[float]:
    """When to look again after a pass that asked for `requeue` (None: when something changes)."""
    if requeue is None or requeue <= 0:
        return requeue
    return max(MIN_REQUEUE, min(requeue, RESYNC))


class Manager:
    def __init__(self, make_reconciler: Callable[[Callable[[ObjectKey], None]], Reconciler], *,
                 workers: int = WORKERS, resync: float = RESYNC,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`make_reconciler(wake)`: the reconciler, told how to queue a key (its actions' reports)."""
        self.queue: WorkQueue[ObjectKey] = WorkQueue(clock=clock)
        self.index = DependencyIndex()
        self.reconciler = make_reconciler(self.queue.add)
        self.workers = Workers(self.queue, self.reconcile, name="substratus-pass")
        self.worker_count, self.resync_period = workers, resync
        self._known: set[ObjectKey] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        self.workers.start(self.worker_count)
        threading.Thread(target=self._resync, name="substratus-resync", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.reconciler.executor.shutdown()

    def reconcile(self, key: ObjectKey) -> Optional[float]:
        started = time.perf_counter()
        requeue = self.reconciler.reconcile(key)
        log.debug("pass over %s took %.3fs; next in %s", key, time.perf_counter() - started, requeue)
        return requeue_delay(requeue)

    def process(self, key: ObjectKey) -> None:
        """One pass with the queue's rules (tests call it synchronously)."""
        self.workers.process(key)

    # -- watch events ----------------------------------------------------------------------------
    def on_object_event(self, key: ObjectKey, event_type: Optional[str], body: Mapping[str, Any]) -> None:
        """A watch event of one of our custom resources (type None: kopf's initial list)."""
        deleted = event_type == "DELETED"
        wake = self.index.observe(key, body.get("spec") or {}, body.get("status") or {}, generation_of(dict(body)),
                                  deleting=deleting(dict(body)), deleted=deleted)
        with self._lock:
            if deleted:
                self._known.discard(key)
            else:
                self._known.add(key)
        if deleted:
            self.queue.forget(key)
        elif not self.reconciler.echo(key, body):
            self.queue.add(key)
        self.queue.add_many(wake)

    def on_child_event(self, labels: Mapping[str, str]) -> None:
        """A watch event of a Job, Deployment or Pod we made: its owner looks again."""
        kind, ns, name = (labels.get(LABEL_PREFIX + k) for k in ("kind", "namespace", "name"))
        if kind in KINDS and ns and name:
            self.queue.add(ObjectKey(kind, ns, name))

    def known(self) -> list[ObjectKey]:
        with self._lock:
            return sorted(self._known)

    def _resync(self) -> None:
        while not self._stop.wait(self.resync_period):
            self.queue.add_many(self.known())
