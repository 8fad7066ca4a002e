"""How every backend carries a plan's actions out: at most once at a time per owner
(`InFlight`), quick ones inline, builds on a priority pool, the rest on a thread pool, each
reporting its outcomes when it ends (`Dispatcher`). Backends subclass it and say how to do
each action."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Union

from substratus.reconcile.actions import Action, Allocate, BuildImage, BuildTrained, StartContainer
from substratus.reconcile.outcomes import Outcome, Report, crash_outcome
from substratus.resources.objectkey import ObjectKey

log = logging.getLogger("substratus.executor")


class InFlight:
    """Which actions of each owner are running now: an action is never run twice at once, and a
    pass can see what it is still waiting for. Shared by the local and the Kubernetes executors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[ObjectKey, set[str]] = defaultdict(set)

    def claim(self, owner: ObjectKey, key: str) -> bool:
        """Mark `key` running; False when it already is."""
        with self._lock:
            if key in self._keys[owner]:
                return False
            self._keys[owner].add(key)
            return True

    def finish(self, owner: ObjectKey, key: str) -> None:
        with self._lock:
            self._keys[owner].discard(key)
            if not self._keys[owner]:
                del self._keys[owner]

    def of(self, owner: ObjectKey) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys.get(owner, ()))


BUILD_ORDER = {"Dataset": 0, "Model": 1}  # a dataset's image first: its load then runs beside the model's build


class PriorityPool:
    """A fixed pool of threads taking work lowest priority first, in arrival order within one
    priority (ThreadPoolExecutor's queue is FIFO only)."""

    def __init__(self, workers: int, name: str, gather: float = 0.03) -> None:
        self.gather = gather
        self._queue: "queue.PriorityQueue[tuple[int, int, Optional[Callable[[], None]]]]" = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, fn: Callable[[], None]) -> None:
        self._queue.put((priority, next(self._seq), fn))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[2] is not None and self.gather and item[0] > 0:
                # Objects applied together reach their builds within milliseconds of each other,
                # in whatever order their passes ran: wait a moment so the first build started
                # is the most useful one, not the one whose pass happened to finish first (work of
                # the first priority has nothing to wait for).
                time.sleep(self.gather)
                self._queue.put(item)
                item = self._queue.get()
            if item[2] is None:
                return
            item[2]()

    def shutdown(self) -> None:
        """Drop what has not started; running work finishes on its own (daemon threads)."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self._threads:
            self._queue.put((-1, next(self._seq), None))


class Dispatcher:
    """What every executor does with a plan's actions, whatever it runs them on: an action runs at
    most once at a time per owner (InFlight); quick ones (start, allocate) run inline, builds on a
    pool that starts datasets' first, the rest on a pool; each reports its outcomes when it ends; an
    exception becomes the action's outcomes through `failed`. Subclasses say how to do each action
    (`quick`, `slow`) and may read some errors differently (`failed`). workers=0 runs every action
    inline (deterministic, for tests)."""

    def __init__(self, report: Report, *, build_workers: int, workers: int) -> None:
        self.report = report
        self._builds = PriorityPool(build_workers, "substratus-build") if workers else None
        self._misc = ThreadPoolExecutor(workers, "substratus-action") if workers else None
        self._running = InFlight()

    def quick(self, owner: ObjectKey, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        raise NotImplementedError

    def slow(self, owner: ObjectKey, action: Action) -> list[Outcome]:
        raise NotImplementedError

    def failed(self, action: Action, err: Exception) -> list[Outcome]:
        log.exception("%s crashed", action.key)
        return [crash_outcome(action, err)]

    def in_flight(self, owner: ObjectKey) -> frozenset[str]:
        return self._running.of(owner)

    def busy(self, owner: ObjectKey) -> bool:
        return bool(self.in_flight(owner))

    def shutdown(self) -> None:
        if self._builds is not None:
            self._builds.shutdown()
        if self._misc is not None:
            self._misc.shutdown(wait=False, cancel_futures=True)

    def submit(self, owner: ObjectKey, action: Action) -> str:
        """Run or schedule one action. Returns what happened, for logs and tests."""
        if not self._running.claim(owner, action.key):
            return "in-flight"
        if isinstance(action, (StartContainer, Allocate)):
            self._run(owner, action, self.quick)
            return "done"
        if self._misc is None or self._builds is None:
            self._run(owner, action, self.slow)
        elif isinstance(action, (BuildImage, BuildTrained)):
            # A trained image is baked from a finished run: nothing applied with it needs to go first.
            priority = 0 if isinstance(action, BuildTrained) else BUILD_ORDER.get(owner[0], 2)
            self._builds.submit(priority, lambda: self._run(owner, action, self.slow))
        else:
            self._misc.submit(self._run, owner, action, self.slow)
        return "scheduled"

    def _run(self, owner: ObjectKey, action: Any, how: Callable[[ObjectKey, Any], list[Outcome]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = how(owner, action)
        except Exception as err:  # noqa: BLE001 - any crash becomes the action's reported outcome
            outcomes = self.failed(action, err)
        finally:
            self._running.finish(owner, action.key)
        log.debug("%s done in %.2fs: %s", action.key, time.perf_counter() - started, outcomes or "ok")
        self.report(owner, outcomes)
