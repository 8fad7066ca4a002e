"""The change feed behind `GET /api/v1/watch`, `sub get -w`, `sub apply --wait` and the dashboard.

The store calls `Hub.publish` (from whichever thread wrote) after every
committed change; each subscriber is an asyncio queue on the server's event
loop, fed with `call_soon_threadsafe`, so a watcher holds no thread. Recent
events are kept in a ring so a client can resume from the `resourceVersion`
it last saw; one that fell further behind is told to list again (HTTP
semantics of Kubernetes' "410 Gone"). A subscriber that cannot keep up is
dropped the same way rather than slowing the writers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Optional

from substratus.local.store import Event, Record, Store

HISTORY = 10_000
SUBSCRIBER_BACKLOG = 10_000
Filter = Callable[[Record], bool]


class Gone(Exception):
    """The requested resourceVersion is older than the history kept: list again, then watch."""


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: "asyncio.Queue[Optional[Event]]"
    overflowed: bool = False


class Hub:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: list[_Subscriber] = []
        store.subscribe(self.publish)

    def publish(self, event: Event) -> None:
        with self._lock:
            self._history.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(self._deliver, sub, event)

    @staticmethod
    def _deliver(sub: _Subscriber, event: Event) -> None:
        if sub.overflowed:
            return
        if sub.queue.qsize() >= SUBSCRIBER_BACKLOG:
            sub.overflowed = True
            sub.queue.put_nowait(None)
            return
        sub.queue.put_nowait(event)

    async def watch(self, keep: Filter, since: Optional[int] = None,
                    heartbeat: float = 15.0) -> AsyncIterator[dict[str, Any]]:
        """Events as JSON-ready dicts: current objects as ADDED first (unless resuming `since`), then
        every change, and a BOOKMARK every `heartbeat` seconds of quiet."""
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:  # subscribe first: what changes from now on is queued for us
            self._subscribers.append(sub)
        try:
            if since is None:
                version, records = self.store.snapshot()  # the queue's duplicates of it are skipped below
                for rec in records:
                    if keep(rec):
                        yield {"type": "ADDED", "object": rec.document()}
            else:
                with self._lock:
                    backlog = self._replay(since)
                version = backlog[-1].resource_version if backlog else since
                for event in backlog:
                    if keep(event.record):
                        yield encode(event)
            yield {"type": "BOOKMARK", "resourceVersion": str(version)}
            async for item in self._follow(sub, keep, version, heartbeat):
                yield item
        finally:
            with self._lock:
                self._subscribers.remove(sub)

    async def _follow(self, sub: _Subscriber, keep: Filter, version: int,
                      heartbeat: float) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except asyncio.TimeoutError:
                yield {"type": "BOOKMARK", "resourceVersion": str(version)}
                continue
            if event is None:
                yield {"type": "ERROR", "status": 410, "message": "the watcher fell behind; list and watch again"}
                return
            if event.resource_version <= version:
                continue  # already sent as part of the initial list or the replay
            version = event.resource_version
            if keep(event.record):
                yield encode(event)

    def check(self, since: int) -> None:
        """Raise Gone when a watch from `since` could not be resumed."""
        with self._lock:
            self._replay(since)

    def _replay(self, since: int) -> list[Event]:
        if since >= self.store.resource_version:
            return []
        if not self._history or self._history[0].resource_version > since + 1:
            raise Gone(f"resourceVersion {since} is too old")
        return [e for e in self._history if e.resource_version > since]


def encode(event: Event) -> dict[str, Any]:
    return {"type": event.type, "object": event.record.document()}
