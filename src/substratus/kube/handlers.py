"""The kopf handlers: when a pass runs, and what happens on delete.

    one daemon per object    loops: one pass (`Reconciler.reconcile`, in a thread), then sleeps
                             until woken or until the plan's `requeue_after` (at most RESYNC);
                             an exception is retried with capped exponential backoff (50 ms
                             doubling to 60 s), as the local work queue does; a failure the
                             planners report is in the state and stays until re-applied
    wake-ups                 any watch event of the object (spec, annotations); of its Jobs,
                             Deployments and Pods (by our labels: a Job finished, a pod became
                             ready); its actions finishing; a referenced object publishing
                             something new (a Dataset that becomes ready wakes the Models
                             trained on it: an index of references, as locally)
    delete                   kopf's finalizer (`substratus.ai/finalizer`) holds the object
                             while `Reconciler.finalize` removes what it runs and its artifacts;
                             `kopf.TemporaryError` retries until they are gone. ownerReferences
                             on every child make the cluster's garbage collector clean up too.

One daemon per object means one pass at a time per object, never two.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import kopf

from substratus.kube.reconciler import Reconciler
from substratus.resources import crd
from substratus.resources.objectkey import ObjectKey
from substratus.resources.references import references
from substratus.resources.schema import KINDS
from substratus.runtimes.base import LABEL_PREFIX
from substratus.runtimes.kubernetes.workloads import MANAGED_BY

log = logging.getLogger("substratus.kube")
RESYNC = 300.0            # look again at least this often, in case an event was missed
MIN_REQUEUE = 0.5         # readiness arrives as watch events: no need to poll faster than this
BACKOFF = (0.05, 60.0)    # first and largest delay after a failed pass
CHILDREN = (("batch", "v1", "jobs"), ("apps", "v1", "deployments"), ("", "v1", "pods"))


class Wakers:
    """An asyncio.Event per object, set by watch events (in the loop) or finished actions (threads)."""

    def __init__(self) -> None:
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._events: dict[ObjectKey, asyncio.Event] = defaultdict(asyncio.Event)

    def event(self, key: ObjectKey) -> asyncio.Event:
        return self._events[key]

    def wake(self, key: ObjectKey) -> None:
        self._events[key].set()

    def wake_threadsafe(self, key: ObjectKey) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wake, key)

    def forget(self, key: ObjectKey) -> None:
        self._events.pop(key, None)


class Dependents:
    """Which objects refer to which (from their specs), and what each published last."""

    def __init__(self) -> None:
        self._refs: dict[ObjectKey, set[ObjectKey]] = {}
        self._published: dict[ObjectKey, tuple[Any, ...]] = {}

    def update(self, key: ObjectKey, spec: dict[str, Any], deleted: bool = False) -> None:
        if deleted:
            self._refs.pop(key, None)
        else:
            self._refs[key] = references(key[0], key[1], spec)

    def of(self, key: ObjectKey) -> list[ObjectKey]:
        return sorted(k for k, targets in self._refs.items() if key in targets)

    def changed(self, key: ObjectKey, status: dict[str, Any], generation: Any, gone: bool) -> bool:
        """Whether what `key` publishes (readiness, image, data, reason) differs from last time."""
        ready = next((c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        published = (status.get("ready"), status.get("containerImage"), status.get("url"), status.get("digest"),
                     status.get("observedGeneration"), generation, ready, gone)
        if gone:
            self._published.pop(key, None)
            return True
        if self._published.get(key) == published:
            return False
        self._published[key] = published
        return True


class Handlers:
    """Registers the handlers on a kopf registry; the reconciler is made at start-up."""

    def __init__(self, make_reconciler: Any) -> None:
        self.make_reconciler = make_reconciler
        self.reconciler: Optional[Reconciler] = None
        self.wakers = Wakers()
        self.dependents = Dependents()
        self.passes = ThreadPoolExecutor(4, "substratus-pass")

    def register(self, registry: kopf.OperatorRegistry) -> None:
        kopf.on.startup(registry=registry, id="reconciler")(self.startup)
        kopf.on.cleanup(registry=registry, id="shutdown")(self.cleanup)
        for kind in KINDS:
            plural = crd.plural(kind)
            kopf.daemon(crd.GROUP, crd.VERSION, plural, registry=registry, id=f"reconcile-{kind.lower()}",
                        cancellation_timeout=10.0)(self.daemon_for(kind))
            kopf.on.event(crd.GROUP, crd.VERSION, plural, registry=registry,
                          id=f"wake-{kind.lower()}")(self.resource_event_for(kind))
            kopf.on.delete(crd.GROUP, crd.VERSION, plural, registry=registry,
                           id=f"finalize-{kind.lower()}")(self.finalizer_for(kind))
        for group, version, plural in CHILDREN:
            kopf.on.event(group, version, plural, labels=dict(MANAGED_BY), registry=registry,
                          id=f"wake-owner-of-{plural}")(self.child_event)

    async def startup(self, **_: Any) -> None:
        self.wakers.loop = asyncio.get_running_loop()
        self.reconciler = self.make_reconciler(self.wakers.wake_threadsafe)

    async def cleanup(self, **_: Any) -> None:
        if self.reconciler is not None:
            self.reconciler.executor.shutdown()
        self.passes.shutdown(wait=False, cancel_futures=True)

    # -- the daemon ------------------------------------------------------------------------------
    def daemon_for(self, kind: str) -> Any:
        async def reconcile(stopped: kopf.DaemonStopped, namespace: str, name: str, logger: logging.Logger,
                            **_: Any) -> None:
            await self.run(ObjectKey(kind, namespace, name), stopped, logger)
        reconcile.__name__ = f"reconcile_{kind.lower()}"
        return reconcile

    async def run(self, key: ObjectKey, stopped: kopf.DaemonStopped, logger: logging.Logger) -> None:
        assert self.reconciler is not None
        loop = asyncio.get_running_loop()
        wake, failures = self.wakers.event(key), 0
        while not stopped:
            wake.clear()
            started = loop.time()
            try:
                requeue = await loop.run_in_executor(self.passes, self.reconciler.reconcile, key)
                log.debug("pass over %s/%s/%s took %.3fs; next in %s", *key, loop.time() - started, requeue)
            except Exception as err:  # noqa: BLE001 - one object's failure never stops the others
                delay = min(BACKOFF[1], BACKOFF[0] * 2 ** failures)
                failures += 1
                logger.warning("reconciling failed (retry in %.2fs): %s", delay, err,
                               exc_info=not isinstance(err, OSError) and failures == 1)
                await sleep_unless_stopped(stopped, delay)
                continue
            failures = 0
            timeout = RESYNC if requeue is None else (0.0 if requeue == 0 else max(MIN_REQUEUE, min(requeue, RESYNC)))
            if timeout:
                await wait_for_any(wake, stopped, timeout)

    # -- wake-ups --------------------------------------------------------------------------------
    def resource_event_for(self, kind: str) -> Any:
        async def on_event(event: dict[str, Any], body: Any, namespace: str, name: str, **_: Any) -> None:
            key = ObjectKey(kind, namespace, name)
            gone = event.get("type") == "DELETED"
            self.dependents.update(key, dict(body.get("spec") or {}), deleted=gone)
            if gone:
                self.wakers.forget(key)
            else:
                self.wakers.wake(key)
            status = dict(body.get("status") or {})
            if self.dependents.changed(key, status, body.get("metadata", {}).get("generation"), gone):
                for dependent in self.dependents.of(key):
                    self.wakers.wake(dependent)
        on_event.__name__ = f"on_{kind.lower()}_event"
        return on_event

    async def child_event(self, body: Any, **_: Any) -> None:
        labels = body.get("metadata", {}).get("labels") or {}
        kind, ns, name = (labels.get(LABEL_PREFIX + k) for k in ("kind", "namespace", "name"))
        if kind in KINDS and ns and name:
            self.wakers.wake(ObjectKey(kind, ns, name))

    # -- delete ----------------------------------------------------------------------------------
    def finalizer_for(self, kind: str) -> Any:
        def finalize(namespace: str, name: str, logger: logging.Logger, **_: Any) -> None:
            assert self.reconciler is not None
            left = self.reconciler.finalize(ObjectKey(kind, namespace, name))
            if left:
                raise kopf.TemporaryError(f"{left} container(s) still going away", delay=1)
            logger.info("%s %s/%s: everything it ran is removed", kind, namespace, name)
        finalize.__name__ = f"finalize_{kind.lower()}"
        return finalize


async def sleep_unless_stopped(stopped: kopf.DaemonStopped, delay: float) -> None:
    await stopped.wait(delay)


async def wait_for_any(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Until woken, stopped, or `timeout` seconds passed."""
    async def stop() -> None:
        await stopped.wait()

    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
