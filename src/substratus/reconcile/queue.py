"""A work queue of object keys, in the manner of controller-runtime's.

- A key is queued at most once however often it is added (de-duplicated).
- A key being processed is never handed to a second worker; adding it meanwhile
  marks it dirty, and it is queued again when the worker calls `done`.
- `add_after` schedules a key (the earliest request wins); `add_rate_limited`
  retries a failing key with capped exponential backoff until `forget`.

The clock is injected so tests never wait on real time: with a fake clock,
`get(block=False)` hands out whatever is due.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Optional, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, base_delay: float = 0.05,
                 max_delay: float = 60.0) -> None:
        self._clock = clock
        self._base, self._max = base_delay, max_delay
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, float] = {}           # key -> when it is due
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False

    # -- adding ------------------------------------------------------------------------------
    def add(self, key: K) -> None:
        with self._cond:
            self._add(key)

    def add_many(self, keys: list[K]) -> None:
        with self._cond:
            for key in keys:
                self._add(key)

    def _add(self, key: K) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        self._waiting.pop(key, None)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            when = self._clock() + delay
            if self._shutdown or key in self._dirty or self._waiting.get(key, float("inf")) <= when:
                return
            self._waiting[key] = when
            heapq.heappush(self._heap, (when, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Retry `key` after a delay that doubles with each failure in a row (capped); returns it."""
        with self._cond:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay = float(min(self._max, self._base * 2.0 ** n))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # -- taking ------------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: Optional[float] = None) -> Optional[K]:
        """The next key to process (marked processing), or None on shutdown / nothing due."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if self._shutdown or not block:
                    return None
                wait = self._next_due()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) == when:
                del self._waiting[key]
                self._add(key)

    def _next_due(self) -> Optional[float]:
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded by an earlier schedule or an add
        return max(0.0, self._heap[0][0] - self._clock()) if self._heap else None

    # -- state -------------------------------------------------------------------------------
    def processing(self, key: K) -> bool:
        with self._cond:
            return key in self._processing

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def scheduled(self) -> int:
        with self._cond:
            return len(self._waiting)

    def next_due_in(self) -> Optional[float]:
        with self._cond:
            return self._next_due()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
