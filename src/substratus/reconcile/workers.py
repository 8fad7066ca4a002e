"""Workers taking object keys from a `WorkQueue`: controller-runtime's processNextWorkItem, for both backends.

    process(key)  one pass with the queue's rules: an exception is retried with capped exponential
                  backoff and touches no other key; success forgets the failures; a pass that asks to
                  be looked at again (`requeue_after`) is queued then, one that does not waits for
                  something to wake it (a watch event, a dependency, an action finishing, a resync)
    run()         a worker's loop; `start(n)` runs n of them on threads. The queue never hands one key
                  to two workers at once, so passes over one object never overlap.

Nothing here knows what a key is or how a pass is made: the local controller and the operator hand
in their `reconcile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, Optional, TypeVar

from substratus.reconcile.queue import WorkQueue

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("substratus.workers")


class Workers(Generic[K]):
    def __init__(self, queue: WorkQueue[K], reconcile: Callable[[K], Optional[float]], *, name: str = "reconcile",
                 record: Optional[Callable[[K, str, float], None]] = None,
                 before: Optional[Callable[[K], None]] = None) -> None:
        """`record(key, "ok" | "error", seconds)` after each pass (metrics); `before(key)` ahead of
        each (the local controller waits there for its first container list)."""
        self.queue, self.reconcile, self.name = queue, reconcile, name
        self.record, self.before = record, before

    def process(self, key: K) -> None:
        """One pass for `key` with the queue's retry rules (tests call it synchronously)."""
        started = time.perf_counter()
        try:
            requeue = self.reconcile(key)
        except Exception as err:  # noqa: BLE001 - one object's failure never stops the others
            delay = self.queue.add_rate_limited(key)
            log.warning("reconciling %s failed (retry in %.2fs): %s", key, delay, err,
                        exc_info=not isinstance(err, OSError) and self.queue.failures(key) == 1)
            self._record(key, "error", started)
            return
        self.queue.forget(key)
        self._record(key, "ok", started)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    def run(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return  # shut down
            try:
                if self.before is not None:
                    self.before(key)
                self.process(key)
            finally:
                self.queue.done(key)

    def start(self, n: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, name=f"{self.name}-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        return threads

    def _record(self, key: K, outcome: str, started: float) -> None:
        if self.record is not None:
            self.record(key, outcome, time.perf_counter() - started)
