"""Where the local controller's keys come from, besides the API and the plans themselves: its sources,
in controller-runtime's words.

    EngineSource  the engine's event stream (`podman events` / `docker events`, filtered to this
                  control plane's labels): subscribe, then list the containers (queueing their owners),
                  then follow; a broken stream is opened again and the list taken again, as an informer
                  relists. A container's start, death or removal queues its owner; an image that went
                  queues the objects that publish it.
    StoreSource   the store's own events, through the dependency index (`reconcile.index`): an object
                  whose published status changed queues the objects that refer to it.
    every         a timer: the resync of every key (in case an event was missed), garbage collection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from substratus.build import naming
from substratus.local.observe import Observer
from substratus.local.store import Event, Store
from substratus.reconcile.index import DependencyIndex
from substratus.reconcile.queue import WorkQueue
from substratus.resources.objectkey import ObjectKey
from substratus.runtimes.base import EngineEvent, EventStream, Runtime

log = logging.getLogger("substratus.controller")
ENGINE_RETRY = 2.0
QUIET_IMAGE_ACTIONS = ("pull", "push", "save", "mount", "unmount", "exists")


class EngineSource:
    def __init__(self, runtime: Runtime, observer: Observer, store: Store, queue: WorkQueue[ObjectKey],
                 stop: threading.Event) -> None:
        self.runtime, self.observer, self.store, self.queue, self.stop = runtime, observer, store, queue, stop
        self.subscribed = threading.Event()  # the engine's event stream is open (or failed to open)
        self.listed = threading.Event()  # the first list of the engine's containers is done (or failed)
        self._events: EventStream | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                events = self._events = self.runtime.events(self.observer.containers.selector)
                self.observer.images.invalidate()  # what changed while no stream was open is not known
                self.subscribed.set()
                self.queue.add_many(sorted(self.observer.containers.relist()))
                self.listed.set()
                for event in events:
                    self.on_event(event)
            except Exception as err:  # noqa: BLE001 - the engine went away: reconnect and relist
                log.warning("engine event stream failed: %s", err)
                self.subscribed.set()
                self.listed.set()  # start the workers anyway: their passes retry until the engine is back
            self.stop.wait(ENGINE_RETRY)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()

    def on_event(self, event: EngineEvent) -> None:
        log.debug("engine event %s %s %s", event.type, event.action, event.name)
        if event.type == "container":
            owner = self.observer.containers.on_event(event)
            if owner is not None:
                self.queue.add(owner)
            return
        if event.type == "image" and event.action not in QUIET_IMAGE_ACTIONS:
            if self.observer.images.on_event(event.action, event.name):  # images may have gone: users look again
                self.queue.add_many(self.users_of_image(event.name))

    def users_of_image(self, ref: str) -> list[ObjectKey]:
        """Objects that publish `ref`; every object when a base image or a bare id went."""
        records = self.store.records()
        if not ref.startswith(naming.IMAGE_REPO + "/"):
            return [r.key for r in records]
        return [r.key for r in records if r.status.get("containerImage") == ref]


class StoreSource:
    """The store's events into the dependency index; the dependents it names are queued."""

    def __init__(self, store: Store, queue: WorkQueue[ObjectKey], index: DependencyIndex) -> None:
        self.queue, self.index = queue, index
        for rec in store.records():
            index.observe(rec.key, rec.body.get("spec") or {}, rec.status, rec.generation, deleting=rec.deleting)
        store.subscribe(self.on_event)

    def on_event(self, event: Event) -> None:
        rec = event.record
        self.queue.add_many(self.index.observe(rec.key, rec.body.get("spec") or {}, rec.status, rec.generation,
                                               deleting=rec.deleting, deleted=event.type == "DELETED"))


def every(period: float, fn: Callable[[], object], stop: threading.Event, what: str) -> Callable[[], None]:
    """A loop calling `fn` every `period` seconds until `stop`; a failure is logged, never fatal."""
    def loop() -> None:
        while not stop.wait(period):
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - a timer must never stop the controller
                log.warning("%s failed: %s", what, err)
    return loop
