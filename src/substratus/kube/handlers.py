"""The kopf handlers: what kopf still does for the operator, and what it hands over.

    watch events   `on.event` for the four kinds and for the Jobs, Deployments and Pods we made (by
                   our labels): handed to the manager (`kube.manager`), which queues keys for its
                   worker threads and keeps the dependency index. No daemon per object: a key is
                   looked at when a watch event, a dependency or its own `requeue_after` says so.
    delete         kopf's finalizer (`substratus.ai/finalizer`) holds a deleted object while
                   `Reconciler.finalize` removes what it runs and its artifacts; `kopf.TemporaryError`
                   retries until they are gone. ownerReferences on every child make the cluster's
                   garbage collector clean up too.
    start, stop    the manager is made when kopf starts (login and settings are done by then) and its
                   workers stopped when kopf cleans up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional

import kopf

from substratus.kube.manager import Manager
from substratus.resources import crd
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS
from substratus.runtimes.kubernetes.workloads import MANAGED_BY

log = logging.getLogger("substratus.kube")
CHILDREN = (("batch", "v1", "jobs"), ("apps", "v1", "deployments"), ("", "v1", "pods"))


class Handlers:
    """Registers the handlers on a kopf registry; the manager is made at start-up."""

    def __init__(self, make_manager: Callable[[], Manager]) -> None:
        self.make_manager = make_manager
        self.manager: Optional[Manager] = None

    def register(self, registry: kopf.OperatorRegistry) -> None:
        kopf.on.startup(registry=registry, id="manager")(self.startup)
        kopf.on.cleanup(registry=registry, id="shutdown")(self.cleanup)
        for kind in KINDS:
            plural = crd.plural(kind)
            kopf.on.event(crd.GROUP, crd.VERSION, plural, registry=registry,
                          id=f"queue-{kind.lower()}")(self.resource_event_for(kind))
            kopf.on.delete(crd.GROUP, crd.VERSION, plural, registry=registry,
                           id=f"finalize-{kind.lower()}")(self.finalizer_for(kind))
        for group, version, plural in CHILDREN:
            kopf.on.event(group, version, plural, labels=dict(MANAGED_BY), registry=registry,
                          id=f"queue-owner-of-{plural}")(self.child_event)

    async def startup(self, **_: Any) -> None:
        self.manager = self.make_manager()
        self.manager.start()

    async def cleanup(self, **_: Any) -> None:
        if self.manager is not None:
            self.manager.stop()

    def resource_event_for(self, kind: str) -> Any:
        async def on_event(event: dict[str, Any], body: Any, namespace: str, name: str, **_: Any) -> None:
            assert self.manager is not None
            self.manager.on_object_event(ObjectKey(kind, namespace, name), event.get("type"), body)
        on_event.__name__ = f"on_{kind.lower()}_event"
        return on_event

    async def child_event(self, body: Any, **_: Any) -> None:
        assert self.manager is not None
        self.manager.on_child_event(body.get("metadata", {}).get("labels") or {})

    def finalizer_for(self, kind: str) -> Any:
        def finalize(namespace: str, name: str, logger: logging.Logger, **_: Any) -> None:
            assert self.manager is not None
            left = self.manager.reconciler.finalize(ObjectKey(kind, namespace, name))
            if left:
                raise kopf.TemporaryError(f"{left} container(s) still going away", delay=1)
            logger.info("%s %s/%s: everything it ran is removed", kind, namespace, name)
        finalize.__name__ = f"finalize_{kind.lower()}"
        return finalize
