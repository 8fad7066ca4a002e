"""How every backend carries a plan's actions out: at most once at a time per owner
(`InFlight`), quick ones inline, builds on a priority pool, the rest on a thread pool, each
reporting its outcomes when it ends (`Dispatcher`). Backends subclass it and say how to do
each action; the failure policy (`outcomes.temporary`) is the same for both: an action that
failed for now waits out a capped exponential backoff (`Backoff`) while its key still counts as
in flight, so the planners keep the object in progress and ask to look again when it is due."""

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

from substratus.errors import SubstratusError
from substratus.reconcile.actions import Action, Allocate, BuildImage, BuildTrained, StartContainer
from substratus.reconcile.outcomes import RETRY_CAP, Outcome, Report, Retrying, failure, retry_delay, temporary
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


class Backoff:
    """Actions of each owner that failed for now: how often in a row, and when each may run again.
    A success (or a permanent failure) forgets the key; the count survives the wait, so the next
    failure in a row waits twice as long, up to `outcomes.RETRY_CAP`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._failed: dict[tuple[ObjectKey, str], tuple[int, Retrying]] = {}

    def failed(self, owner: ObjectKey, key: str, message: str) -> float:
        """Record one more temporary failure; returns the seconds until the action may run again."""
        with self._lock:
            count = self._failed.get((owner, key), (0, None))[0] + 1
            delay = retry_delay(count)
            self._failed[(owner, key)] = (count, Retrying(message=message, at=self.clock() + delay))
            return delay

    def forget(self, owner: ObjectKey, key: str) -> None:
        with self._lock:
            self._failed.pop((owner, key), None)

    def waiting(self, owner: ObjectKey) -> dict[str, Retrying]:
        """The owner's actions still waiting out their backoff, by key. A key whose wait ended long
        ago and did not fail again (its object deleted, say) is forgotten here."""
        now = self.clock()
        with self._lock:
            for stale in [k for k, (_, r) in self._failed.items() if r.at < now - 2 * RETRY_CAP]:
                del self._failed[stale]
            return {key: r for (o, key), (_, r) in self._failed.items() if o == owner and r.at > now}


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
    exception is judged by the failure policy (`failed`). Subclasses say how to do each action
    (`quick`, `slow`). workers=0 runs every action inline (deterministic, for tests). `clock` must be
    the one the controller's snapshots read (`Snapshot.now`): backoff times are compared with it."""

    def __init__(self, report: Report, *, build_workers: int, workers: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.report = report
        self._builds = PriorityPool(build_workers, "substratus-build") if workers else None
        self._misc = ThreadPoolExecutor(workers, "substratus-action") if workers else None
        self._running = InFlight()
        self._backoff = Backoff(clock)

    def quick(self, owner: ObjectKey, action: Union[StartContainer, Allocate]) -> list[Outcome]:
        raise NotImplementedError

    def slow(self, owner: ObjectKey, action: Action) -> list[Outcome]:
        raise NotImplementedError

    def failed(self, owner: ObjectKey, action: Action, err: Exception) -> list[Outcome]:
        """The failure policy: a temporary error waits out its backoff (no outcome: the object stays in
        progress, and its next pass sees the action in `Snapshot.retrying`); a permanent one is a Failed
        outcome, recorded until the spec changes."""
        if temporary(err):
            delay = self._backoff.failed(owner, action.key, " ".join(str(err).split())[:500])
            log.warning("%s failed for now (retried in %.1fs): %s", action.key, delay, err)
            return []
        self._backoff.forget(owner, action.key)
        if isinstance(err, SubstratusError):
            log.warning("%s failed: %s", action.key, err)
        else:
            log.exception("%s crashed", action.key)
        return [failure(action, err)]

    def in_flight(self, owner: ObjectKey) -> frozenset[str]:
        """Keys of the owner's actions running now or waiting out a backoff (not to be started again yet)."""
        return self._running.of(owner) | frozenset(self._backoff.waiting(owner))

    def retrying(self, owner: ObjectKey) -> dict[str, Retrying]:
        """The owner's actions waiting out a backoff after a temporary failure, by key."""
        return self._backoff.waiting(owner)

    def busy(self, owner: ObjectKey) -> bool:
        return bool(self.in_flight(owner))

    def shutdown(self) -> None:
        if self._builds is not None:
            self._builds.shutdown()
        if self._misc is not None:
            self._misc.shutdown(wait=False, cancel_futures=True)

    def submit(self, owner: ObjectKey, action: Action) -> str:
        """Run or schedule one action. Returns what happened, for logs and tests."""
        if action.key in self._backoff.waiting(owner):
            return "backing-off"
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
        except Exception as err:  # noqa: BLE001 - every failure is judged by the one failure policy
            outcomes = self.failed(owner, action, err)
        else:
            self._backoff.forget(owner, action.key)
        finally:
            self._running.finish(owner, action.key)
        log.debug("%s done in %.2fs: %s", action.key, time.perf_counter() - started, outcomes or "ok")
        self.report(owner, outcomes)
